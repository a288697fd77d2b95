"""JPEG/PNG/EXIF/XMP metadata parsing and privacy sanitising.

Also defines the hand-written EXIF (TIFF) builder reused by ``test_codec.py``.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import simplejpeg

from redact.errors import ImageError
from redact.io import jpeg_meta, png_meta
from redact.io.exif import exif_orientation, sanitize_exif
from redact.io.xmp import scrub_xmp

THUMB_MARK = b"THUMBNAIL-SECRET-PIXELS"
MAKERNOTE = b"VENDOR-PREVIEW!!" * 8
DATETIME = b"2024:01:02 03:04:05\x00"
GPS_LAT = ((52, 1), (22, 1), (1234, 100))

# --- a minimal TIFF/EXIF writer -----------------------------------------------------------


def _layout(e: str, ifds: list[list[tuple]], next_of: dict[int, int], blobs: list[bytes]) -> bytes:
    """Serialise IFDs. Entry = (tag, type, count, value); value is bytes (packed), or
    ("ifd", k) / ("blob", k) for a LONG offset to IFD k / blob k."""

    def data_len(ents: list[tuple]) -> int:
        return sum(len(v) + len(v) % 2 for *_, v in ents if isinstance(v, bytes) and len(v) > 4)

    offs, pos = [], 8
    for ents in ifds:
        offs.append(pos)
        pos += 2 + 12 * len(ents) + 4 + data_len(ents)
    boffs = []
    for b in blobs:
        boffs.append(pos)
        pos += len(b)
    out = bytearray((b"II" if e == "<" else b"MM") + struct.pack(e + "HI", 42, 8))
    for k, ents in enumerate(ifds):
        data_pos = offs[k] + 2 + 12 * len(ents) + 4
        d = bytearray(struct.pack(e + "H", len(ents)))
        data = bytearray()
        for tag, typ, count, v in ents:
            if isinstance(v, tuple):
                val = struct.pack(e + "I", (offs if v[0] == "ifd" else boffs)[v[1]])
            elif len(v) <= 4:
                val = v.ljust(4, b"\x00")
            else:
                val = struct.pack(e + "I", data_pos + len(data))
                data += v + b"\x00" * (len(v) % 2)
            d += struct.pack(e + "HHI", tag, typ, count) + val
        nxt = offs[next_of[k]] if k in next_of else 0
        out += d + struct.pack(e + "I", nxt) + data
    for b in blobs:
        out += b
    assert len(out) == pos
    return bytes(out)


def tiny_jpeg() -> bytes:
    """A real little JPEG carrying THUMB_MARK in a COM segment (our 'thumbnail')."""
    img = np.full((8, 8, 3), 200, np.uint8)
    j = simplejpeg.encode_jpeg(img, quality=80)
    com = b"\xff\xfe" + struct.pack(">H", len(THUMB_MARK) + 2) + THUMB_MARK
    return j[:2] + com + j[2:]


def build_exif(orientation: int = 6, e: str = "<", thumbnail: bool = True) -> bytes:
    """TIFF block: IFD0 (Make, Orientation, Exif & GPS pointers) -> ExifIFD (DateTimeOriginal,
    MakerNote), GPS IFD (LatitudeRef, Latitude) and IFD1 with a JPEG thumbnail."""
    H, L = (lambda v: struct.pack(e + "H", v)), (lambda v: struct.pack(e + "I", v))
    lat = b"".join(struct.pack(e + "II", n, d) for n, d in GPS_LAT)
    thumb = tiny_jpeg()
    ifd0 = [
        (0x010F, 2, 8, b"TestCam\x00"),
        (0x0112, 3, 1, H(orientation)),
        (0x8769, 4, 1, ("ifd", 1)),
        (0x8825, 4, 1, ("ifd", 2)),
    ]
    exif = [(0x9003, 2, len(DATETIME), DATETIME), (0x927C, 7, len(MAKERNOTE), MAKERNOTE)]
    gps = [(0x0001, 2, 2, b"N\x00"), (0x0002, 5, 3, lat)]
    ifds = [ifd0, exif, gps]
    next_of: dict[int, int] = {}
    blobs: list[bytes] = []
    if thumbnail:
        ifds.append(
            [(0x0103, 3, 1, H(6)), (0x0201, 4, 1, ("blob", 0)), (0x0202, 4, 1, L(len(thumb)))]
        )
        next_of = {0: 3}
        blobs = [thumb]
    return _layout(e, ifds, next_of, blobs)


def read_tag(tiff: bytes, path: tuple[int, ...], tag: int) -> bytes | None:
    """Raw value bytes of ``tag`` in the IFD reached through pointer tags ``path``."""
    e = "<" if tiff[:2] == b"II" else ">"
    (off,) = struct.unpack(e + "I", tiff[4:8])
    for hop in (*path, None):
        (n,) = struct.unpack(e + "H", tiff[off : off + 2])
        ents = {}
        for i in range(n):
            p = off + 2 + 12 * i
            t, typ, count = struct.unpack(e + "HHI", tiff[p : p + 8])
            size = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1}[typ] * count
            vp = p + 8 if size <= 4 else struct.unpack(e + "I", tiff[p + 8 : p + 12])[0]
            ents[t] = tiff[vp : vp + size]
        if hop is None:
            return ents.get(tag)
        (off,) = struct.unpack(e + "I", ents[hop])
    return None  # pragma: no cover


def next_ifd(tiff: bytes) -> int:
    e = "<" if tiff[:2] == b"II" else ">"
    (off,) = struct.unpack(e + "I", tiff[4:8])
    (n,) = struct.unpack(e + "H", tiff[off : off + 2])
    return struct.unpack(e + "I", tiff[off + 2 + 12 * n : off + 6 + 12 * n])[0]


# --- EXIF ---------------------------------------------------------------------------------


@pytest.mark.parametrize("e", ["<", ">"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_both_byte_orders(e: str, orientation: int) -> None:
    assert exif_orientation(build_exif(orientation, e)) == orientation


def test_exif_orientation_invalid_or_missing_is_1() -> None:
    assert exif_orientation(build_exif(9)) == 1
    assert exif_orientation(b"garbage!") == 1
    assert exif_orientation(b"") == 1


@pytest.mark.parametrize("e", ["<", ">"])
def test_sanitize_exif_removes_thumbnail_and_makernote_keeps_fields(e: str) -> None:
    raw = build_exif(6, e)
    assert THUMB_MARK in raw and MAKERNOTE in raw and next_ifd(raw) != 0
    clean = sanitize_exif(raw)
    assert clean is not None
    assert THUMB_MARK not in clean
    assert b"\xff\xd8" not in clean  # no JPEG left at all
    assert MAKERNOTE[:8] not in clean
    assert next_ifd(clean) == 0
    assert len(clean) < len(raw)  # the zeroed tail is trimmed
    assert exif_orientation(clean) == 6
    assert read_tag(clean, (), 0x010F) == b"TestCam\x00"
    assert read_tag(clean, (0x8769,), 0x9003) == DATETIME
    assert read_tag(clean, (0x8825,), 0x0001) == b"N\x00"
    lat = read_tag(clean, (0x8825,), 0x0002)
    assert lat == b"".join(struct.pack(e + "II", n, d) for n, d in GPS_LAT)


def test_sanitize_exif_readable_by_pillow() -> None:
    pil = pytest.importorskip("PIL.Image")
    clean = sanitize_exif(build_exif(6))
    assert clean is not None
    img = pil.new("RGB", (4, 4))
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=b"Exif\x00\x00" + clean)
    exif = pil.open(io.BytesIO(buf.getvalue())).getexif()
    assert exif[0x0112] == 6
    assert exif[0x010F] == "TestCam"
    gps = exif.get_ifd(0x8825)
    assert gps[1] == "N"
    assert [float(v) for v in gps[2]] == [52.0, 22.0, 12.34]


def test_sanitize_exif_without_thumbnail_is_unchanged_except_makernote() -> None:
    raw = build_exif(3, thumbnail=False)
    clean = sanitize_exif(raw)
    assert clean is not None and len(clean) == len(raw)
    diff = np.flatnonzero(np.frombuffer(raw, np.uint8) != np.frombuffer(clean, np.uint8))
    start = raw.index(MAKERNOTE)
    assert diff.min() >= start and diff.max() < start + len(MAKERNOTE)


def test_sanitize_exif_malformed_is_dropped() -> None:
    raw = bytearray(build_exif(6))
    raw[4:8] = struct.pack("<I", 10**6)  # IFD0 offset out of range
    assert sanitize_exif(bytes(raw)) is None
    assert sanitize_exif(b"II*\x00") is None
    # Thumbnail offset pointing outside the block: cannot be sure it is gone -> drop.
    raw = bytearray(build_exif(6))
    pos = raw.index(struct.pack("<HHI", 0x0201, 4, 1))
    raw[pos + 8 : pos + 12] = struct.pack("<I", len(raw) + 100)
    assert sanitize_exif(bytes(raw)) is None


# --- XMP ----------------------------------------------------------------------------------

GPANO_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:GPano="http://ns.google.com/photos/1.0/panorama/" '
    b'GPano:ProjectionType="equirectangular" GPano:FullPanoWidthPixels="8000" '
    b'GPano:PoseHeadingDegrees="123.4"/></rdf:RDF></x:xmpmeta>'
)


def test_scrub_xmp_leaves_clean_packet_identical() -> None:
    assert scrub_xmp(GPANO_XMP) is GPANO_XMP


def test_scrub_xmp_removes_thumbnails_and_image_data() -> None:
    xmp = (
        b'<rdf:Description GPano:ProjectionType="equirectangular" GImage:Data="QUJDREVG" '
        b'GImage:Mime="image/jpeg"><xmp:Thumbnails><rdf:Alt><rdf:li><xmpGImg:image>SECRETB64'
        b"</xmpGImg:image></rdf:li></rdf:Alt></xmp:Thumbnails><GDepth:Data>DEPTH</GDepth:Data>"
        b"</rdf:Description>"
    )
    out = scrub_xmp(xmp)
    assert b"SECRETB64" not in out and b"QUJDREVG" not in out and b"DEPTH" not in out
    assert b'GPano:ProjectionType="equirectangular"' in out
    assert b'GImage:Mime="image/jpeg"' in out


# --- JPEG structure -----------------------------------------------------------------------


def _jpeg(q: int = 85, sub: str = "420", shape: tuple[int, int] = (48, 64)) -> bytes:
    rng = np.random.default_rng(0)
    return simplejpeg.encode_jpeg(
        rng.integers(0, 256, (*shape, 3), dtype=np.uint8), quality=q, colorsubsampling=sub
    )


def seg(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def test_parse_jpeg_frame_and_end() -> None:
    data = _jpeg() + b"TRAILING-MOTION-PHOTO"
    st = jpeg_meta.parse_jpeg(data)
    assert (st.frame.width, st.frame.height) == (64, 48)
    assert data[st.end - 2 : st.end] == b"\xff\xd9"
    assert data[st.end :] == b"TRAILING-MOTION-PHOTO"
    assert jpeg_meta.subsampling(st.frame) == "420"


@pytest.mark.parametrize("sub", ["444", "422", "420", "440"])
def test_subsampling_detected(sub: str) -> None:
    st = jpeg_meta.parse_jpeg(_jpeg(sub=sub))
    assert jpeg_meta.subsampling(st.frame) == sub


@pytest.mark.parametrize("q", [1, 10, 25, 50, 51, 75, 90, 95, 99, 100])
def test_estimate_quality_matches_ijg(q: int) -> None:
    st = jpeg_meta.parse_jpeg(_jpeg(q=q))
    assert jpeg_meta.estimate_quality(jpeg_meta.luma_qtable(st)) == q


def test_estimate_quality_without_table() -> None:
    assert jpeg_meta.estimate_quality(None) is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xd8", "unknown_format"),
        (b"\xff\xd8\xff\xd9", "corrupt"),  # EOI before any image data
        (b"\xff\xd8\xff\xe0\x00", "truncated"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "truncated"),
        (b"\xff\xd8\x00\x00\x00\x00", "corrupt"),
    ],
)
def test_parse_jpeg_rejects_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError) as ei:
        jpeg_meta.parse_jpeg(data)
    assert ei.value.reason == reason


def test_select_metadata_whitelist() -> None:
    base = _jpeg()
    exif = seg(0xE1, b"Exif\x00\x00" + build_exif(6))
    xmp = seg(0xE1, jpeg_meta.XMP_ID + GPANO_XMP)
    icc = seg(0xE2, b"ICC_PROFILE\x00\x01\x01" + b"icc-data")
    com = seg(0xFE, b"a comment")
    mpf = seg(0xE2, b"MPF\x00" + b"II*\x00secondary")
    ps = seg(0xED, b"Photoshop 3.0\x00" + b"8BIM-thumbnail")
    unknown = seg(0xE5, b"vendor")
    data = base[:2] + exif + mpf + xmp + ps + icc + unknown + com + base[2:]
    kept = jpeg_meta.select_metadata(jpeg_meta.parse_jpeg(data))
    assert len(kept) == 4
    assert kept[1] == xmp and kept[2] == icc and kept[3] == com
    assert kept[0].startswith(b"\xff\xe1") and THUMB_MARK not in kept[0]
    assert exif_orientation(kept[0][10:]) == 6


def test_extended_xmp_with_image_is_dropped_plain_one_kept() -> None:
    def ext_chunks(guid: bytes, body: bytes, step: int) -> list[bytes]:
        size = len(body)
        return [
            seg(
                0xE1, jpeg_meta.XMP_EXT_ID + guid + struct.pack(">II", size, o) + body[o : o + step]
            )
            for o in range(0, size, step)
        ]

    good = ext_chunks(b"A" * 32, b"<x>GPano-ish extension " + b"z" * 300 + b"</x>", 110)
    # The forbidden name is split across the chunk boundary and chunks are out of order.
    bad_body = b"<x>" + b"q" * 97 + b"GImage:Data='SECRET'</x>"
    bad = ext_chunks(b"B" * 32, bad_body, 104)[::-1]
    assert not any(b"GImage:Data" in c for c in bad)
    base = _jpeg()
    data = base[:2] + b"".join(good) + b"".join(bad) + base[2:]
    kept = jpeg_meta.select_metadata(jpeg_meta.parse_jpeg(data))
    assert list(kept) == good


def test_insert_segments_after_jfif() -> None:
    base = _jpeg()
    com = seg(0xFE, b"hello")
    out = jpeg_meta.insert_segments(base, (com,))
    assert out.count(com) == 1
    assert out.index(com) == 4 + struct.unpack(">H", base[4:6])[0]
    st = jpeg_meta.parse_jpeg(out)
    assert (0xFE, b"hello") in st.segments


# --- PNG structure ------------------------------------------------------------------------


def png_bytes(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return png_meta.SIGNATURE + b"".join(png_meta.chunk(c, b) for c, b in chunks)


def _ihdr(w: int, h: int, depth: int = 8, color: int = 2, interlace: int = 0) -> bytes:
    return struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, interlace)


def test_png_expected_size_and_incomplete_stream() -> None:
    w, h = 5, 3
    raw = b"".join(b"\x00" + bytes(range(3 * w)) for _ in range(h))
    ok = png_bytes([(b"IHDR", _ihdr(w, h)), (b"IDAT", zlib.compress(raw)), (b"IEND", b"")])
    st = png_meta.parse_png(ok)
    assert (st.header.width, st.header.height) == (w, h)
    short = png_bytes([(b"IHDR", _ihdr(w, h)), (b"IDAT", zlib.compress(raw[:-3])), (b"IEND", b"")])
    with pytest.raises(ImageError) as ei:
        png_meta.parse_png(short)
    assert ei.value.reason == "truncated"
    cut = zlib.compress(raw)[:-6]  # stream without its end (CRCs are valid)
    with pytest.raises(ImageError):
        png_meta.parse_png(png_bytes([(b"IHDR", _ihdr(w, h)), (b"IDAT", cut), (b"IEND", b"")]))
    bad = png_bytes([(b"IHDR", _ihdr(w, h)), (b"IDAT", b"\x78\x9cgarbage"), (b"IEND", b"")])
    with pytest.raises(ImageError) as ei:
        png_meta.parse_png(bad)
    assert ei.value.reason in ("corrupt", "truncated")


def test_png_interlaced_expected_size() -> None:
    # Adam7 for 10x10 RGB8 by hand: pass sizes (w,h) = (2,2)(1,2)(3,1)(2,3)(5,2)(5,5)(10,5).
    passes = [(2, 2), (1, 2), (3, 1), (2, 3), (5, 2), (5, 5), (10, 5)]
    expected = sum(ph * (1 + 3 * pw) for pw, ph in passes)
    hdr = png_meta.PngHeader(10, 10, 8, 2, 1)
    assert png_meta._expected_raw_size(hdr) == expected


def test_png_crc_error_and_missing_iend() -> None:
    raw = b"\x00" + bytes(6)
    good = png_bytes([(b"IHDR", _ihdr(2, 1)), (b"IDAT", zlib.compress(raw)), (b"IEND", b"")])
    png_meta.parse_png(good)
    broken = bytearray(good)
    broken[40] ^= 0xFF  # inside the IDAT chunk
    with pytest.raises(ImageError) as ei:
        png_meta.parse_png(bytes(broken))
    assert ei.value.reason == "corrupt"
    with pytest.raises(ImageError) as ei:
        png_meta.parse_png(good[:-12])
    assert ei.value.reason == "truncated"


def test_png_select_metadata_whitelist() -> None:
    itxt = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + GPANO_XMP
    chunks = [
        (b"iCCP", b"icc\x00\x00" + zlib.compress(b"profile")),
        (b"pHYs", struct.pack(">IIB", 2835, 2835, 1)),
        (b"tEXt", b"Author\x00someone"),
        (b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(b"thumb")),
        (b"iTXt", itxt),
        (b"eXIf", build_exif(6, ">")),
        (b"prIv", b"private"),
        (b"tIME", bytes(7)),
    ]
    st = png_meta.PngStructure(png_meta.PngHeader(1, 1, 8, 2, 0), tuple(chunks), ())
    kept = dict(png_meta.select_metadata(st))
    assert set(kept) == {b"iCCP", b"pHYs", b"tEXt", b"iTXt", b"eXIf"}
    assert kept[b"iTXt"] == itxt
    assert THUMB_MARK not in kept[b"eXIf"] and exif_orientation(kept[b"eXIf"]) == 6
