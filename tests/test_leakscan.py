"""The last-line leak scan: finds every secondary picture, nothing in clean encoder output."""

from __future__ import annotations

import base64
import gzip
import zlib

import cv2
import numpy as np
import pytest
import simplejpeg

from redact.io.leakscan import MIN_TEXT_RUN, embedded_images, payload_images
from tests.fixtures.scripts import load_script

leak_files = load_script("leak_files")
SECRET = leak_files.secret_jpeg()
SECRET_PNG = leak_files.secret_png()


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- no false positives --------------------------------------------------------------------


@pytest.mark.parametrize("sub", ["444", "422", "420", "440", "411"])
def test_clean_jpeg_outputs_at_every_quality(sub: str) -> None:
    img = _noise(48, 64, 1)
    for q in range(1, 101, 3):
        assert embedded_images(simplejpeg.encode_jpeg(img, quality=q, colorsubsampling=sub)) == []
    gray = np.ascontiguousarray(img[:, :, :1])
    out = simplejpeg.encode_jpeg(gray, quality=90, colorspace="GRAY", colorsubsampling="Gray")
    assert embedded_images(out) == []


@pytest.mark.parametrize("seed", range(3))
def test_clean_png_outputs(seed: int) -> None:
    for img in (
        _noise(64, 64, seed),
        leak_files.smooth(64, 64, seed),
        _noise(32, 32, seed)[:, :, 0],
    ):
        ok, buf = cv2.imencode(".png", img)
        assert ok and embedded_images(buf.tobytes()) == []


def test_png_idat_is_not_scanned_but_text_is() -> None:
    # An IDAT payload that happens to hold a JPEG is image data, not metadata.
    png = leak_files.png_with([])
    assert embedded_images(png) == []
    idat_like = leak_files.chunk(b"IDAT", SECRET)
    fake = png[:33] + idat_like + png[33:]
    assert embedded_images(fake) == []
    assert embedded_images(leak_files.png_with([(b"teXt", SECRET)]))


def test_text_without_pictures() -> None:
    assert payload_images(b"plain words " * 100) == []
    assert payload_images(base64.b64encode(bytes(range(256)) * 8)) == []  # long, not a picture
    assert payload_images(b"0123456789abcdef" * 40) == []  # hex, not a picture
    short = base64.b64encode(SECRET)[: MIN_TEXT_RUN - 8]
    assert payload_images(short) == []


# --- what it finds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "blob",
    [
        b"prefix" + SECRET + b"suffix",
        SECRET_PNG,
        b"GIF89a" + bytes(20),
        b"RIFF\x10\x00\x00\x00WEBPVP8 ",
        b"\x00\x00\x00\x18ftypheic" + bytes(8),
        base64.b64encode(SECRET),
        leak_files.b64_lines(SECRET),
        base64.b64encode(SECRET).replace(b"A", b"A\r\n"),
        base64.urlsafe_b64encode(SECRET).rstrip(b"="),
        b"&#10;".join(base64.b64encode(SECRET)[i : i + 60] for i in range(0, 3000, 60)),
        b"\\n".join(base64.b64encode(SECRET)[i : i + 60] for i in range(0, 3000, 60)),
        b"xyz" + base64.b64encode(SECRET),  # misaligned start
        SECRET.hex().encode(),
        b" ".join(SECRET.hex().encode()[i : i + 64] for i in range(0, 4000, 64)),
        zlib.compress(SECRET),
        b"junk" + zlib.compress(SECRET),
        gzip.compress(SECRET),
        base64.b64encode(zlib.compress(SECRET)),
        base64.b64encode(base64.b64encode(SECRET)),
    ],
)
def test_payload_pictures_found(blob: bytes) -> None:
    assert payload_images(blob), blob[:40]


def test_jpeg_structure() -> None:
    base = leak_files.base_jpeg()
    assert embedded_images(base) == []
    app = leak_files.jpeg_with([leak_files.seg(0xE5, b"vendor" + SECRET)])
    assert any("segment 0xE5" in f for f in embedded_images(app))
    trailer = base + SECRET
    assert any("after the JPEG EOI" in f for f in embedded_images(trailer))
    assert embedded_images(base + b"\x00")  # any trailer counts
    second_soi = base[:-2] + b"\xff\xd8" + base[-2:]
    assert embedded_images(second_soi)
    com = leak_files.jpeg_with([leak_files.seg(0xFE, leak_files.b64_lines(SECRET))])
    assert embedded_images(com)
    truncated = leak_files.jpeg_with([leak_files.seg(0xE1, b"x" * 10)])[:30] + SECRET
    assert embedded_images(truncated)


def test_png_structure() -> None:
    text = leak_files.png_with(
        [(b"zTXt", b"k\x00\x00" + zlib.compress(leak_files.b64_lines(SECRET)))]
    )
    assert embedded_images(text)
    itxt = leak_files.png_with(
        [(b"iTXt", b"k\x00\x01\x00\x00\x00" + zlib.compress(base64.b64encode(SECRET_PNG)))]
    )
    assert embedded_images(itxt)
    iccp = leak_files.png_with([(b"iCCP", b"p\x00\x00" + zlib.compress(b"icc" + SECRET))])
    assert embedded_images(iccp)
    assert any("after the PNG IEND" in f for f in embedded_images(leak_files.png_with([]) + b"x"))
    apng = leak_files.png_with([(b"acTL", bytes(8))])
    assert any("APNG" in f for f in embedded_images(apng))


def test_other_data_ignores_its_own_signature() -> None:
    gif = b"GIF89a" + bytes(100)
    assert embedded_images(gif) == []
    assert embedded_images(gif + SECRET)


@pytest.mark.parametrize("seed", range(5))
def test_never_raises_on_random_bytes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for prefix in (b"", b"\xff\xd8\xff", leak_files.PNG_SIGNATURE):
        data = prefix + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
        assert isinstance(embedded_images(data), list)
        assert isinstance(payload_images(data), list)
