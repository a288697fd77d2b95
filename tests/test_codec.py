"""Decode/encode round trips, metadata preservation and failure modes."""

from __future__ import annotations

import importlib.util
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import simplejpeg

from redact.errors import ImageError, Stage
from redact.io import codec, jpeg_meta, png_meta
from redact.io.codec import ImageFormat, decode_image, encode_image
from redact.io.exif import exif_orientation
from redact.io.xmp import parse_xmp

_spec = importlib.util.spec_from_file_location(
    "_redact_test_jpeg_meta", Path(__file__).with_name("test_jpeg_meta.py")
)
assert _spec is not None and _spec.loader is not None
meta_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(meta_helpers)

MAXPIX = 50_000_000
THUMB_MARK = meta_helpers.THUMB_MARK
GPANO_XMP = meta_helpers.GPANO_XMP
GPANO_PROPS = meta_helpers.GPANO_PROPS
ICC = meta_helpers.leak_files.icc_profile()
seg = meta_helpers.seg


def smooth_image(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 smooth colour image (JPEG friendly), asymmetric in both axes."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img[:8, :16] = (255, 0, 0)  # a marker in the top-left corner
    return img


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def find_segments(data: bytes) -> list[tuple[int, bytes]]:
    return list(jpeg_meta.parse_jpeg(data).segments)


def rich_jpeg(stored: np.ndarray, orientation: int = 6, q: int = 90) -> bytes:
    """A camera-like JPEG: Exif (orientation, GPS, thumbnail), XMP GPano, ICC, COM, MPF,
    Photoshop IRB, and a motion-photo trailer after EOI."""
    base = simplejpeg.encode_jpeg(stored, quality=q, colorsubsampling="420")
    segs = [
        seg(0xE1, b"Exif\x00\x00" + meta_helpers.build_exif(orientation)),
        seg(0xE1, jpeg_meta.XMP_ID + GPANO_XMP),
        seg(0xE2, b"ICC_PROFILE\x00\x01\x01" + ICC),
        seg(0xE2, b"MPF\x00II*\x00" + b"secondary-image-index"),
        seg(0xED, b"Photoshop 3.0\x008BIM" + THUMB_MARK),
        seg(0xFE, b"camera comment"),
    ]
    return base[:2] + b"".join(segs) + base[2:] + b"MOTION-PHOTO-TRAILER" + base


# --- JPEG ---------------------------------------------------------------------------------


def test_decode_orientation_6_is_upright() -> None:
    stored = smooth_image()
    data = rich_jpeg(stored, orientation=6)
    d = decode_image(data, max_pixels=MAXPIX)
    ref = simplejpeg.decode_jpeg(simplejpeg.encode_jpeg(stored, quality=90, colorsubsampling="420"))
    assert d.format is ImageFormat.JPEG
    assert d.orientation == 6
    assert (d.height, d.width) == (128, 96)
    np.testing.assert_array_equal(d.pixels, np.rot90(ref, k=-1))
    # The red corner marker (stored top-left) is at the top-right when upright.
    assert d.pixels[0, -1, 0] > 200 and d.pixels[0, -1, 2] < 60
    assert d.quality == 90 and d.subsampling == "420" and not d.grayscale
    assert d.stored_orientation == 6 and d.conversions == ()
    assert d.xmp is not None and parse_xmp(d.xmp) == GPANO_PROPS


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_transforms_are_inverse(orientation: int) -> None:
    img = np.arange(3 * 5 * 2).reshape(3, 5, 2)
    up = codec.to_upright(img, orientation)
    np.testing.assert_array_equal(codec.from_upright(up, orientation), img)


def test_orientation_transforms_match_exif_definition() -> None:
    # Stored 2x3 image; where does the stored top-left pixel (0) end up when upright?
    img = np.arange(6).reshape(2, 3)
    corner = {
        1: (0, 0),
        2: (0, -1),
        3: (-1, -1),
        4: (-1, 0),
        5: (0, 0),
        6: (0, -1),
        7: (-1, -1),
        8: (-1, 0),
    }
    for o, (r, c) in corner.items():
        up = codec.to_upright(img, o)
        assert up.shape == ((2, 3) if o <= 4 else (3, 2))
        assert up[r, c] == 0, o
    # Orientation 6 = rotate 90° clockwise: the stored first row becomes the last column.
    np.testing.assert_array_equal(codec.to_upright(img, 6)[:, -1], img[0])


def test_round_trip_keeps_metadata_and_orientation() -> None:
    stored = smooth_image()
    data = rich_jpeg(stored, orientation=6)
    d = decode_image(data, max_pixels=MAXPIX)
    out = encode_image(d, d.pixels)
    # Stored pixel order and Orientation tag as in the original.
    h, w, _, sub = simplejpeg.decode_jpeg_header(out)
    assert (h, w, sub) == (96, 128, "420")
    assert psnr(simplejpeg.decode_jpeg(out), stored) > 30
    segs = find_segments(out)
    exif = [p for m, p in segs if m == 0xE1 and p.startswith(b"Exif\x00\x00")]
    assert len(exif) == 1
    tiff = exif[0][6:]
    assert exif_orientation(tiff) == 6
    assert meta_helpers.read_tag(tiff, (0x8825,), 0x0001) == b"N\x00"
    assert meta_helpers.read_tag(tiff, (0x8769,), 0x9003) == meta_helpers.DATETIME
    assert meta_helpers.next_ifd(tiff) == 0
    # Thumbnail, Photoshop IRB, MPF, the comment and the trailer are gone; XMP is rebuilt.
    assert THUMB_MARK not in out
    assert b"MPF\x00" not in out and b"Photoshop" not in out and b"camera comment" not in out
    assert b"MOTION-PHOTO-TRAILER" not in out and out.endswith(b"\xff\xd9")
    assert out.count(b"\xff\xd8") == 1
    xmp = [p for m, p in segs if m == 0xE1 and p.startswith(jpeg_meta.XMP_ID)]
    assert len(xmp) == 1 and parse_xmp(xmp[0][len(jpeg_meta.XMP_ID) :]) == GPANO_PROPS
    assert (0xE2, b"ICC_PROFILE\x00\x01\x01" + ICC) in segs
    assert not any(m == 0xFE for m, _ in segs)
    # Decodes to the same upright image.
    d2 = decode_image(out, max_pixels=MAXPIX)
    assert d2.orientation == 6 and d2.pixels.shape == d.pixels.shape
    assert psnr(d2.pixels, d.pixels) > 40


def test_round_trip_readable_by_pillow() -> None:
    pil = pytest.importorskip("PIL.Image")
    import io

    d = decode_image(rich_jpeg(smooth_image(), orientation=6), max_pixels=MAXPIX)
    im = pil.open(io.BytesIO(encode_image(d, d.pixels)))
    assert im.size == (128, 96)
    exif = im.getexif()
    assert exif[0x0112] == 6 and exif.get_ifd(0x8825)[1] == "N"
    assert exif.get_ifd(0x8769)[0x9003] == "2024:01:02 03:04:05"


@pytest.mark.parametrize(("q", "sub"), [(95, "444"), (80, "422"), (60, "420")])
def test_unchanged_pixels_psnr_and_settings_kept(q: int, sub: str) -> None:
    img = smooth_image(120, 160, seed=3)
    d = decode_image(
        simplejpeg.encode_jpeg(img, quality=q, colorsubsampling=sub), max_pixels=MAXPIX
    )
    assert d.quality == q and d.subsampling == sub
    out = encode_image(d, d.pixels)
    d2 = decode_image(out, max_pixels=MAXPIX)
    assert d2.quality == q and d2.subsampling == sub
    assert psnr(d2.pixels, d.pixels) > 40


def test_jpeg_quality_override_and_fallback() -> None:
    img = smooth_image()
    d = decode_image(simplejpeg.encode_jpeg(img, quality=90), max_pixels=MAXPIX)
    assert decode_image(encode_image(d, d.pixels, jpeg_quality=50), max_pixels=MAXPIX).quality == 50
    no_q = codec.DecodedImage(pixels=d.pixels, format=ImageFormat.JPEG, subsampling="444")
    assert decode_image(encode_image(no_q, d.pixels), max_pixels=MAXPIX).quality == 92
    with pytest.raises(ValueError):
        encode_image(d, d.pixels, jpeg_quality=101)
    with pytest.raises(ValueError):
        encode_image(d, d.pixels[:-1])
    with pytest.raises(ValueError):
        encode_image(d, d.pixels.astype(np.float32))


def test_keep_metadata_false_writes_upright_without_metadata() -> None:
    d = decode_image(rich_jpeg(smooth_image(), orientation=6), max_pixels=MAXPIX)
    out = encode_image(d, d.pixels, keep_metadata=False)
    assert b"Exif" not in out and b"GPano" not in out and b"ICC_PROFILE" not in out
    h, w, _, _ = simplejpeg.decode_jpeg_header(out)
    assert (h, w) == (128, 96)  # stored upright: no tag says otherwise
    d2 = decode_image(out, max_pixels=MAXPIX)
    assert d2.orientation == 1 and psnr(d2.pixels, d.pixels) > 40


def test_grayscale_jpeg_stays_grayscale() -> None:
    gray = smooth_image()[:, :, 1:2]
    data = simplejpeg.encode_jpeg(
        np.ascontiguousarray(gray), quality=85, colorspace="GRAY", colorsubsampling="Gray"
    )
    d = decode_image(data, max_pixels=MAXPIX)
    assert d.grayscale and d.pixels.shape == (96, 128, 3)
    np.testing.assert_array_equal(d.pixels[:, :, 0], d.pixels[:, :, 2])
    out = encode_image(d, d.pixels)
    assert simplejpeg.decode_jpeg_header(out)[2] == "Gray"
    assert len(jpeg_meta.parse_jpeg(out).frame.components) == 1
    assert psnr(decode_image(out, max_pixels=MAXPIX).pixels, d.pixels) > 40


def test_progressive_jpeg_decodes_and_truncation_raises() -> None:
    img = smooth_image()
    ok, buf = cv2.imencode(
        ".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    assert ok
    data = buf.tobytes()
    d = decode_image(data, max_pixels=MAXPIX)
    assert psnr(d.pixels, img[:, :, ::-1]) > 30
    with pytest.raises(ImageError):
        decode_image(data[: int(len(data) * 0.9)], max_pixels=MAXPIX)


def test_cmyk_jpeg_converted_to_rgb() -> None:
    """Adobe (inverted) CMYK, as browsers show it: R = C'K'/255 of the stored values."""
    rgb = smooth_image(32, 48, seed=4)
    # Stored inverted CMYK with K' = 255 (no black ink): C' = R, M' = G, Y' = B.
    cmyk = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    cmyk[:8, :8, 3] = 0  # full black ink in a corner
    data = simplejpeg.encode_jpeg(
        np.ascontiguousarray(cmyk), quality=95, colorspace="CMYK", colorsubsampling="444"
    )
    assert jpeg_meta.adobe_transform(jpeg_meta.parse_jpeg(data)) == 2  # YCCK
    d = decode_image(data, max_pixels=MAXPIX)
    assert d.conversions == ("cmyk_to_rgb",) and not d.grayscale
    expect = rgb.copy()
    expect[:8, :8] = 0
    assert psnr(d.pixels[8:, 8:], expect[8:, 8:]) > 30
    assert d.pixels[:6, :6].max() < 16
    out = encode_image(d, d.pixels)
    assert len(jpeg_meta.parse_jpeg(out).frame.components) == 3  # an ordinary RGB JPEG
    assert psnr(simplejpeg.decode_jpeg(out), d.pixels) > 35


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_truncated_jpeg_raises(fraction: float) -> None:
    data = rich_jpeg(smooth_image(), orientation=1)
    end = jpeg_meta.parse_jpeg(data).end
    with pytest.raises(ImageError) as ei:
        decode_image(data[: int(end * fraction)], max_pixels=MAXPIX)
    assert ei.value.reason == "truncated" and ei.value.stage is Stage.DECODE


def test_truncated_jpeg_with_eoi_appended_raises() -> None:
    """A file cut short but 'repaired' with an EOI is only partly decodable: must raise."""
    data = simplejpeg.encode_jpeg(smooth_image(), quality=90)
    with pytest.raises(ImageError) as ei:
        decode_image(data[: int(len(data) * 0.7)] + b"\xff\xd9", max_pixels=MAXPIX)
    assert ei.value.reason == "corrupt"


@pytest.mark.parametrize("seed", range(6))
def test_corrupted_entropy_data_raises(seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = bytearray(simplejpeg.encode_jpeg(img, quality=90))
    sos = data.index(b"\xff\xda")
    start = sos + 2 + struct.unpack(">H", data[sos + 2 : sos + 4])[0]
    # Overwrite a run of entropy-coded bytes with random bytes (no markers).
    pos = int(rng.integers(start + 10, len(data) - 200))
    junk = rng.integers(0, 255, 64, dtype=np.uint8)  # values 0..254: never 0xFF
    data[pos : pos + 64] = junk.tobytes()
    with pytest.raises(ImageError) as ei:
        decode_image(bytes(data), max_pixels=MAXPIX)
    assert ei.value.reason == "corrupt"


@pytest.mark.parametrize("seed", range(3))
def test_random_bytes_raise(seed: int) -> None:
    data = np.random.default_rng(seed).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    with pytest.raises(ImageError) as ei:
        decode_image(data, max_pixels=MAXPIX)
    assert ei.value.reason == "unknown_format"
    # Random bytes behind valid magic numbers.
    for magic in (b"\xff\xd8\xff", png_meta.SIGNATURE):
        with pytest.raises(ImageError):
            decode_image(magic + data, max_pixels=MAXPIX)


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "empty"), (b"\x00\x01\x02\x03", "truncated"), (b"\xff\xd8\xff\xe0", "truncated")],
)
def test_tiny_files_raise(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError) as ei:
        decode_image(data, max_pixels=MAXPIX)
    assert ei.value.reason == reason


def test_too_large_jpeg_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    sof = seg(
        0xC0, struct.pack(">BHHB", 8, 65_000, 65_000, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    )
    sos = seg(0xDA, b"\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00")
    data = b"\xff\xd8" + sof + sos + b"\x12\x34" * 50 + b"\xff\xd9"

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("decoder must not run")

    monkeypatch.setattr(simplejpeg, "decode_jpeg", boom)
    with pytest.raises(ImageError) as ei:
        decode_image(data, max_pixels=400_000_000)
    assert ei.value.reason == "too_large"


# --- PNG ----------------------------------------------------------------------------------


def _png_with(img_bgr: np.ndarray, extra: list[tuple[bytes, bytes]], trailer: bytes = b"") -> bytes:
    ok, buf = cv2.imencode(".png", img_bgr)
    assert ok
    return png_meta.insert_chunks(buf.tobytes(), tuple(extra)) + trailer


def _on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float64)[:, :, None] / 255
    return np.round(rgb * a + 255 * (1 - a)).astype(np.uint8)


def test_png_rgba_flattened_on_white_and_published_opaque() -> None:
    rgb = smooth_image()
    alpha = np.tile(np.arange(128, dtype=np.uint8) * 2, (96, 1))
    bgra = np.dstack([rgb[:, :, ::-1], alpha])
    itxt = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + GPANO_XMP
    extra = [
        (b"iTXt", itxt),
        (b"tEXt", b"Comment\x00hello"),
        (b"eXIf", meta_helpers.build_exif(1)),
        (b"prIv", b"private-data"),
    ]
    d = decode_image(_png_with(bgra, extra, b"AFTER-IEND"), max_pixels=MAXPIX)
    assert d.format is ImageFormat.PNG and not d.grayscale
    assert d.conversions == ("alpha_flattened",)
    assert np.abs(d.pixels.astype(int) - _on_white(rgb, alpha)).max() <= 1
    assert d.xmp is not None and parse_xmp(d.xmp) == GPANO_PROPS
    out = encode_image(d, d.pixels)
    assert THUMB_MARK not in out and b"prIv" not in out and b"AFTER-IEND" not in out
    assert png_meta.read_header(out).color_type == 2  # RGB, no alpha
    st = png_meta.parse_png(out)
    kept = dict(st.chunks)
    assert b"tEXt" not in kept and set(kept) == {b"iTXt", b"eXIf"}
    assert exif_orientation(kept[b"eXIf"]) == 1
    d2 = decode_image(out, max_pixels=MAXPIX)
    np.testing.assert_array_equal(d2.pixels, d.pixels)
    assert d2.conversions == ()


@pytest.mark.parametrize("depth", [8, 16])
def test_png_gray_alpha_and_trns_flattened(depth: int) -> None:
    pil = pytest.importorskip("PIL.Image")
    import io

    gray = np.maximum(smooth_image()[:, :, 0], 20)  # the colour key below (7) only where set
    alpha = np.tile(np.arange(128, dtype=np.uint8) * 2, (96, 1))
    buf = io.BytesIO()
    pil.fromarray(np.dstack([gray, alpha])).save(buf, "PNG")  # (H, W, 2) uint8: mode LA
    d = decode_image(buf.getvalue(), max_pixels=MAXPIX)
    assert d.grayscale and d.conversions == ("alpha_flattened",)
    expect = _on_white(np.repeat(gray[:, :, None], 3, axis=2), alpha)
    assert np.abs(d.pixels.astype(int) - expect).max() <= 1
    out = encode_image(d, d.pixels)
    assert png_meta.read_header(out).color_type == 0
    # Gray with a tRNS colour key (OpenCV ignores it; viewers do not).
    key = 7 if depth == 8 else 7 * 257
    g = gray.astype(np.uint16) * 257 if depth == 16 else gray.copy()
    g[:10, :10] = key
    buf = io.BytesIO()
    pil.fromarray(g).save(buf, "PNG", transparency=key)  # uint16: mode I;16, uint8: L
    assert b"tRNS" in buf.getvalue()
    d = decode_image(buf.getvalue(), max_pixels=MAXPIX)
    assert "alpha_flattened" in d.conversions
    assert (d.pixels[:10, :10] == 255).all()
    assert np.abs(d.pixels[10:, 10:, 0].astype(int) - gray[10:, 10:]).max() <= 1


def test_png_orientation_from_exif() -> None:
    stored = smooth_image()
    d = decode_image(
        _png_with(stored[:, :, ::-1], [(b"eXIf", meta_helpers.build_exif(6))]), max_pixels=MAXPIX
    )
    assert d.orientation == 6
    np.testing.assert_array_equal(d.pixels, np.rot90(stored, k=-1))
    out = encode_image(d, d.pixels)
    raw = cv2.imdecode(np.frombuffer(out, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(raw[:, :, ::-1], stored)  # stored order as the original


def test_png_grayscale_stays_grayscale() -> None:
    gray = smooth_image()[:, :, 0]
    d = decode_image(_png_with(gray, []), max_pixels=MAXPIX)
    assert d.grayscale and d.pixels.shape == (96, 128, 3)
    out = encode_image(d, d.pixels)
    assert png_meta.read_header(out).color_type == 0
    np.testing.assert_array_equal(decode_image(out, max_pixels=MAXPIX).pixels[:, :, 0], gray)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_png_truncated_raises(fraction: float) -> None:
    data = _png_with(smooth_image()[:, :, ::-1], [])
    with pytest.raises(ImageError) as ei:
        decode_image(data[: int(len(data) * fraction)], max_pixels=MAXPIX)
    assert ei.value.reason == "truncated"


def test_png_16_bit_rounded_to_8_bit() -> None:
    img = smooth_image().astype(np.uint16) * 257
    img[0, 0] = (128, 127, 65535)  # 128/257 = 0.498 -> 0; 127 -> 0; 65535 -> 255
    img[0, 1] = (129, 385, 386)  # 0.502 -> 1; 1.498 -> 1; 1.502 -> 2 (truncation gives 0, 1, 1)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    d = decode_image(buf.tobytes(), max_pixels=MAXPIX)
    assert d.conversions == ("16_to_8_bit",)
    expect = np.round(img[:, :, ::-1] / 257).astype(np.uint8)
    np.testing.assert_array_equal(d.pixels, expect)
    assert tuple(d.pixels[0, 0]) == (255, 0, 0) and tuple(d.pixels[0, 1]) == (2, 1, 1)
    out = encode_image(d, d.pixels)
    assert png_meta.read_header(out).bit_depth == 8
    # 16-bit RGBA: flattened and rounded.
    bgra = np.dstack([img, np.full(img.shape[:2], 65535, np.uint16)])
    bgra[:4, :4, 3] = 0
    ok, buf = cv2.imencode(".png", bgra)
    d = decode_image(buf.tobytes(), max_pixels=MAXPIX)
    assert d.conversions == ("16_to_8_bit", "alpha_flattened")
    assert (d.pixels[:4, :4] == 255).all()
    np.testing.assert_array_equal(d.pixels[4:, 4:], expect[4:, 4:])


def test_too_large_png_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = (
        png_meta.SIGNATURE
        + png_meta.chunk(b"IHDR", ihdr)
        + png_meta.chunk(b"IDAT", zlib.compress(b"\x00" * 100))
    )
    data += png_meta.chunk(b"IEND", b"")

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("decoder must not run")

    monkeypatch.setattr(cv2, "imdecode", boom)
    monkeypatch.setattr(png_meta, "parse_png", boom)
    with pytest.raises(ImageError) as ei:
        decode_image(data, max_pixels=400_000_000)
    assert ei.value.reason == "too_large"


def test_png_low_bit_gray_and_palette_transparency_flattened() -> None:
    # 2-bit gray, samples 0 1 2 3 with tRNS key 2: the key shows white, the rest its gray.
    w, h = 8, 2
    raw = b"".join(b"\x00" + bytes([0b00011011, 0b00011011]) for _ in range(h))
    png = (
        png_meta.SIGNATURE
        + png_meta.chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 2, 0, 0, 0, 0))
        + png_meta.chunk(b"tRNS", struct.pack(">H", 2))
        + png_meta.chunk(b"IDAT", zlib.compress(raw))
        + png_meta.chunk(b"IEND", b"")
    )
    d = decode_image(png, max_pixels=MAXPIX)
    assert d.grayscale and d.conversions == ("alpha_flattened",)
    np.testing.assert_array_equal(d.pixels[0, :, 0], [0, 85, 255, 255, 0, 85, 255, 255])
    # Palette with a transparent entry 0 (black): white in the copy.
    plte = bytes([0, 0, 0, 200, 10, 10])
    raw = b"".join(b"\x00" + bytes([0, 1, 0, 1]) for _ in range(2))
    png = (
        png_meta.SIGNATURE
        + png_meta.chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 2, 8, 3, 0, 0, 0))
        + png_meta.chunk(b"PLTE", plte)
        + png_meta.chunk(b"tRNS", b"\x00")
        + png_meta.chunk(b"IDAT", zlib.compress(raw))
        + png_meta.chunk(b"IEND", b"")
    )
    d = decode_image(png, max_pixels=MAXPIX)
    assert not d.grayscale and d.conversions == ("alpha_flattened",)
    assert d.pixels[0, 0].tolist() == [255, 255, 255] and d.pixels[0, 1].tolist() == [200, 10, 10]
    out = encode_image(d, d.pixels)
    assert png_meta.read_header(out).color_type == 2 and b"tRNS" not in out
