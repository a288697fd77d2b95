"""JPEG/PNG/EXIF/XMP metadata parsing and allowlist rebuilding.

Also defines the hand-written EXIF (TIFF) builder reused by ``test_codec.py``.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
import simplejpeg

from redact.errors import ImageError
from redact.io import jpeg_meta, png_meta
from redact.io.exif import allowed_tags, exif_orientation, list_tags, rebuild_exif
from redact.io.leakscan import embedded_images, payload_images
from redact.io.metadata import MetadataPolicy, validate_icc
from redact.io.xmp import GPANO_NS, gpano_projection, parse_xmp, sanitize_xmp
from tests.fixtures.scripts import load_script

leak_files = load_script("leak_files")

THUMB_MARK = b"THUMBNAIL-SECRET-PIXELS"
MAKERNOTE = b"VENDOR-PREVIEW!!" * 8
DATETIME = b"2024:01:02 03:04:05\x00"
GPS_LAT = ((52, 1), (22, 1), (1234, 100))

# --- a minimal TIFF/EXIF writer -----------------------------------------------------------


def _layout(e: str, ifds: list[list[tuple]], next_of: dict[int, int], blobs: list[bytes]) -> bytes:
    """Serialise IFDs with the crafted-file builder of scripts/leak_files.py."""
    return leak_files.tiff(ifds, next_of, blobs, e)


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


def _allowed(tiff: bytes, groups: tuple[str, ...] = MetadataPolicy().exif_groups) -> bool:
    tags = list_tags(tiff)
    assert tags is not None
    allowed = allowed_tags(groups)
    return not tags["ifd1"] and all(set(tags[k]) <= allowed[k] for k in ("ifd0", "exif", "gps"))


@pytest.mark.parametrize("e", ["<", ">"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_both_byte_orders(e: str, orientation: int) -> None:
    assert exif_orientation(build_exif(orientation, e)) == orientation


def test_exif_orientation_invalid_or_missing_is_1() -> None:
    assert exif_orientation(build_exif(9)) == 1
    assert exif_orientation(b"garbage!") == 1
    assert exif_orientation(b"") == 1


@pytest.mark.parametrize("e", ["<", ">"])
def test_rebuild_exif_keeps_allowlisted_fields_only(e: str) -> None:
    raw = build_exif(6, e)
    assert THUMB_MARK in raw and MAKERNOTE in raw and next_ifd(raw) != 0
    clean = rebuild_exif(raw)
    assert clean is not None
    assert THUMB_MARK not in clean and b"\xff\xd8" not in clean  # no JPEG left at all
    assert MAKERNOTE[:8] not in clean
    assert next_ifd(clean) == 0 and _allowed(clean)
    assert clean[:2] == raw[:2]  # byte order kept
    assert exif_orientation(clean) == 6
    assert read_tag(clean, (), 0x010F) == b"TestCam\x00"
    assert read_tag(clean, (0x8769,), 0x9003) == DATETIME
    assert read_tag(clean, (0x8769,), 0x9000) == b"0232"
    assert read_tag(clean, (0x8825,), 0x0001) == b"N\x00"
    lat = read_tag(clean, (0x8825,), 0x0002)
    assert lat == b"".join(struct.pack(e + "II", n, d) for n, d in GPS_LAT)
    assert rebuild_exif(clean) == clean  # a fixed point


def test_rebuild_exif_readable_by_pillow() -> None:
    pil = pytest.importorskip("PIL.Image")
    clean = rebuild_exif(build_exif(6))
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


def test_rebuild_exif_groups_select_tags() -> None:
    raw = build_exif(6)
    only = rebuild_exif(raw, ("orientation",))
    assert only is not None and list_tags(only) == {
        "ifd0": [0x0112],
        "exif": [],
        "gps": [],
        "ifd1": [],
    }
    no_gps = rebuild_exif(raw, ("orientation", "camera", "capture_time"))
    assert no_gps is not None and _allowed(no_gps, ("orientation", "camera", "capture_time"))
    assert read_tag(no_gps, (), 0x8825) is None
    assert rebuild_exif(raw, ()) is None  # nothing kept: no block at all
    with pytest.raises(KeyError):
        rebuild_exif(raw, ("thumbnail",))


def test_rebuild_exif_malformed_is_dropped() -> None:
    raw = bytearray(build_exif(6))
    raw[4:8] = struct.pack("<I", 10**6)  # IFD0 offset out of range
    assert rebuild_exif(bytes(raw)) is None
    assert rebuild_exif(b"II*\x00") is None
    assert rebuild_exif(b"") is None
    # A sub-IFD pointer out of range: the structure is broken -> the whole block goes.
    raw = bytearray(build_exif(6))
    pos = raw.index(struct.pack("<HHI", 0x8769, 4, 1))
    raw[pos + 8 : pos + 12] = struct.pack("<I", len(raw) + 100)
    assert rebuild_exif(bytes(raw)) is None
    assert exif_orientation(bytes(raw)) == 6  # viewers still read IFD0


def test_rebuild_exif_drops_unreadable_or_invalid_values() -> None:
    e = "<"
    make = b"Caf\xe9Cam\x00"  # not ASCII
    ifds = [
        [
            (0x010F, 2, len(make), make),
            (0x0110, 2, 6, b"Mk II\x00"),
            (0x0112, 3, 1, struct.pack("<H", 9)),  # orientation out of range
            (0x8825, 4, 1, ("ifd", 1)),
        ],
        [(0x0002, 5, 2, struct.pack("<IIII", 1, 1, 2, 1)), (0x0001, 2, 2, b"X\x00")],
    ]
    block = bytearray(_layout(e, ifds, {}, []))
    # Model's value offset pointing outside the block: that tag alone is dropped.
    clean = rebuild_exif(bytes(block))
    assert clean is not None
    assert list_tags(clean) == {"ifd0": [0x0110], "exif": [], "gps": [], "ifd1": []}
    pos = block.index(struct.pack("<HHI", 0x0110, 2, 6))
    block[pos + 2 : pos + 4] = struct.pack("<H", 2)
    block[pos + 4 : pos + 8] = struct.pack("<I", 60)  # 60 bytes from a far offset
    block[pos + 8 : pos + 12] = struct.pack("<I", 4000)
    assert rebuild_exif(bytes(block)) is None  # nothing readable left


# --- XMP ----------------------------------------------------------------------------------

GPANO_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:GPano="http://ns.google.com/photos/1.0/panorama/" '
    b'GPano:ProjectionType="equirectangular" GPano:FullPanoWidthPixels="8000" '
    b'GPano:PoseHeadingDegrees="123.4"/></rdf:RDF></x:xmpmeta>'
)
GPANO_PROPS = [
    (GPANO_NS, "ProjectionType", "equirectangular"),
    (GPANO_NS, "FullPanoWidthPixels", "8000"),
    (GPANO_NS, "PoseHeadingDegrees", "123.4"),
]


def test_sanitize_xmp_rebuilds_gpano_packet() -> None:
    out = sanitize_xmp(GPANO_XMP)
    assert out is not None and out != GPANO_XMP
    assert parse_xmp(out) == GPANO_PROPS
    assert gpano_projection(out) == "equirectangular"
    assert sanitize_xmp(out) == out  # a fixed point


def test_sanitize_xmp_matches_namespace_uri_not_prefix() -> None:
    # GPano under another prefix is kept; a "GPano" prefix bound to another URI is not.
    other = GPANO_XMP.replace(b"GPano", b"pano")
    assert parse_xmp(sanitize_xmp(other) or b"") == GPANO_PROPS
    fake = GPANO_XMP.replace(b"http://ns.google.com/photos/1.0/panorama/", b"urn:evil:")
    assert sanitize_xmp(fake) is None
    assert gpano_projection(fake) is None


def test_sanitize_xmp_element_form_and_structures() -> None:
    xmp = leak_files.xmp(
        'GPano:UsePanoramaViewer="True"',
        "<GPano:ProjectionType> Equirectangular </GPano:ProjectionType>"
        '<GPano:Struct rdf:parseType="Resource"><GPano:X>1</GPano:X></GPano:Struct>'
        '<GPano:Res rdf:resource="http://example.com/x"/>'
        "<GPano:Seq><rdf:Seq><rdf:li>a</rdf:li></rdf:Seq></GPano:Seq>",
        {"GPano": GPANO_NS},
    )
    out = sanitize_xmp(xmp)
    assert out is not None
    assert parse_xmp(out) == [
        (GPANO_NS, "UsePanoramaViewer", "True"),
        (GPANO_NS, "ProjectionType", "Equirectangular"),
    ]
    assert gpano_projection(xmp) == gpano_projection(out) == "equirectangular"


def test_sanitize_xmp_drops_images_under_any_prefix() -> None:
    for packet in (leak_files.gimage_attr_xmp(), leak_files.gimage_element_xmp()):
        assert payload_images(packet)
        assert sanitize_xmp(packet) is None  # nothing allowlisted left
    pano = leak_files.gimage_attr_xmp(leak_files.GPANO_ATTRS, {"GPano": GPANO_NS})
    out = sanitize_xmp(pano)
    assert out is not None and not payload_images(out)
    assert b"image/" not in out and gpano_projection(out) == "equirectangular"
    # Allowlisting an image namespace is refused by the sanitiser too.
    assert sanitize_xmp(pano, ("http://ns.google.com/photos/1.0/image/",)) is None


@pytest.mark.parametrize(
    "packet",
    [
        # billion laughs
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&b;</x:xmpmeta>',
        # external entity (XXE)
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&e;</x:xmpmeta>',
        # a DOCTYPE alone
        b"<!DOCTYPE x>" + GPANO_XMP,
        # undeclared prefix, not well formed, two roots, empty
        b'<rdf:Description GPano:ProjectionType="equirectangular"/>',
        GPANO_XMP[:-10],
        GPANO_XMP + GPANO_XMP,
        b"",
    ],
)
def test_sanitize_xmp_refuses_dtd_entities_and_malformed(packet: bytes) -> None:
    assert sanitize_xmp(packet) is None
    assert gpano_projection(packet) is None


def test_sanitize_xmp_bounds() -> None:
    assert sanitize_xmp(GPANO_XMP, max_bytes=len(GPANO_XMP) - 1) is None
    long_value = leak_files.xmp(f'GPano:ProjectionType="{"x" * 2000}"', "", {"GPano": GPANO_NS})
    assert sanitize_xmp(long_value) is None
    deep = leak_files.xmp("", "<GPano:A>" * 100 + "</GPano:A>" * 100, {"GPano": GPANO_NS})
    assert sanitize_xmp(deep) is None


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


def test_select_metadata_allowlist() -> None:
    base = _jpeg()
    exif = seg(0xE1, b"Exif\x00\x00" + build_exif(6))
    xmp = seg(0xE1, jpeg_meta.XMP_ID + GPANO_XMP)
    profile = leak_files.icc_profile()
    icc = seg(0xE2, b"ICC_PROFILE\x00\x01\x01" + profile)
    com = seg(0xFE, b"a comment")
    mpf = seg(0xE2, b"MPF\x00" + b"II*\x00secondary")
    ps = seg(0xED, b"Photoshop 3.0\x00" + b"8BIM-thumbnail")
    unknown = seg(0xE5, b"vendor")
    data = base[:2] + exif + mpf + xmp + ps + icc + unknown + com + base[2:]
    st = jpeg_meta.parse_jpeg(data)
    kept = jpeg_meta.select_metadata(st)
    assert len(kept) == 3
    assert kept[0].startswith(b"\xff\xe1\x00") and kept[0][4:10] == b"Exif\x00\x00"
    assert THUMB_MARK not in kept[0] and exif_orientation(kept[0][10:]) == 6
    assert kept[1][4:].startswith(jpeg_meta.XMP_ID)
    assert parse_xmp(kept[1][4 + len(jpeg_meta.XMP_ID) :]) == GPANO_PROPS
    assert kept[2] == icc  # a valid single-chunk profile comes back identical
    with_com = jpeg_meta.select_metadata(st, MetadataPolicy(keep_jpeg_comments=True))
    assert with_com[-1] == com
    none = MetadataPolicy(exif_groups=(), xmp_namespaces=(), keep_icc=False)
    assert jpeg_meta.select_metadata(st, none) == ()
    # An RGB profile does not describe gray pixels.
    assert len(jpeg_meta.select_metadata(st, color_space=b"GRAY")) == 2


def test_icc_multi_chunk_reassembled_in_order() -> None:
    profile = leak_files.icc_profile([(b"priv", bytes(range(256)) * 20)])
    chunks = leak_files.icc_segments(profile, 1000)
    assert len(chunks) > 3
    base = _jpeg()
    st = jpeg_meta.parse_jpeg(base[:2] + b"".join(chunks[::-1]) + base[2:])
    kept = jpeg_meta.select_metadata(st)
    parts = [jpeg_meta.parse_jpeg(base[:2] + s + base[2:]).segments[0][1] for s in kept]
    assert b"".join(p[14:] for p in parts) == profile
    assert [p[12:14] for p in parts] == [bytes((i + 1, len(kept))) for i in range(len(kept))]
    # Missing or duplicated chunks: the profile is dropped.
    for broken in (chunks[1:], [*chunks, chunks[0]]):
        st = jpeg_meta.parse_jpeg(base[:2] + b"".join(broken) + base[2:])
        assert jpeg_meta.select_metadata(st) == ()


def test_validate_icc() -> None:
    good = leak_files.icc_profile()
    assert validate_icc(good, b"RGB ", 1 << 20) == good
    assert validate_icc(good + b"PADDING", b"RGB ", 1 << 20) == good  # cut to its size
    assert validate_icc(good, b"GRAY", 1 << 20) is None
    assert validate_icc(good, b"RGB ", len(good) - 1) is None
    assert validate_icc(b"icc-data", b"RGB ", 1 << 20) is None
    bad_sig = bytearray(good)
    bad_sig[36:40] = b"xxxx"
    assert validate_icc(bytes(bad_sig), b"RGB ", 1 << 20) is None
    tag_out = bytearray(good)
    tag_out[128 + 4 + 4 : 128 + 4 + 8] = struct.pack(">I", len(good))  # first tag's offset
    assert validate_icc(bytes(tag_out), b"RGB ", 1 << 20) is None
    assert validate_icc(leak_files.icc_profile([(b"zzzz", tiny_jpeg())]), b"RGB ", 1 << 20) is None
    # An unreferenced gap with data in it is zeroed.
    gap = leak_files.icc_profile([(b"zzzz", b"A" * 64)])
    tag = gap.index(b"zzzz")
    gapped = bytearray(gap)
    gapped[tag + 8 : tag + 12] = struct.pack(">I", 32)  # the tag now covers half its data
    out = validate_icc(bytes(gapped), b"RGB ", 1 << 20)
    assert out is not None and b"A" * 32 in out and b"A" * 33 not in out and len(out) == len(gap)


def test_extended_xmp_always_dropped() -> None:
    def ext_chunks(guid: bytes, body: bytes, step: int) -> list[bytes]:
        size = len(body)
        return [
            seg(
                0xE1, jpeg_meta.XMP_EXT_ID + guid + struct.pack(">II", size, o) + body[o : o + step]
            )
            for o in range(0, size, step)
        ]

    good = ext_chunks(b"A" * 32, b"<x>GPano-ish extension " + b"z" * 300 + b"</x>", 110)
    base = _jpeg()
    data = base[:2] + seg(0xE1, jpeg_meta.XMP_ID + GPANO_XMP) + b"".join(good) + base[2:]
    kept = jpeg_meta.select_metadata(jpeg_meta.parse_jpeg(data))
    assert len(kept) == 1 and kept[0][4:].startswith(jpeg_meta.XMP_ID)


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


def test_png_select_metadata_allowlist() -> None:
    itxt = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + GPANO_XMP
    profile = leak_files.icc_profile()
    chunks = [
        (b"iCCP", b"icc\x00\x00" + zlib.compress(profile)),
        (b"pHYs", struct.pack(">IIB", 2835, 2835, 1)),
        (b"gAMA", struct.pack(">I", 45455)),
        (b"sRGB", b"\x00"),
        (b"tEXt", b"Author\x00someone"),
        (b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(b"thumb")),
        (b"iTXt", itxt),
        (b"eXIf", build_exif(6, ">")),
        (b"prIv", b"private"),
        (b"tIME", bytes(7)),
        (b"bKGD", bytes(6)),
    ]
    st = png_meta.PngStructure(png_meta.PngHeader(1, 1, 8, 2, 0), tuple(chunks), ())
    kept = dict(png_meta.select_metadata(st))
    assert set(kept) == {b"iCCP", b"pHYs", b"gAMA", b"sRGB", b"iTXt", b"eXIf"}
    assert png_meta.parse_text(b"iTXt", kept[b"iTXt"]) is not None
    assert kept[b"iTXt"].startswith(b"XML:com.adobe.xmp\x00\x00\x00\x00\x00")
    assert parse_xmp(kept[b"iTXt"][22:]) == GPANO_PROPS
    assert THUMB_MARK not in kept[b"eXIf"] and exif_orientation(kept[b"eXIf"]) == 6
    assert zlib.decompress(kept[b"iCCP"].split(b"\x00", 1)[1][1:]) == profile
    text = MetadataPolicy(png_text_keywords=("Author",))
    kept2 = png_meta.select_metadata(st, text)
    assert (b"tEXt", b"Author\x00someone") in kept2


def test_png_fixed_chunks_validated() -> None:
    chunks = [
        (b"gAMA", struct.pack(">I", 1000)),  # extreme gamma: would change what a viewer sees
        (b"sRGB", b"\x07"),
        (b"pHYs", b"short"),
        (b"cHRM", bytes(31)),
    ]
    st = png_meta.PngStructure(png_meta.PngHeader(1, 1, 8, 2, 0), tuple(chunks), ())
    assert png_meta.select_metadata(st) == ()


def test_png_allowed_text_rewritten_and_checked() -> None:
    b64 = base64.b64encode(tiny_jpeg())
    chunks = [
        (b"zTXt", b"Comment\x00\x00" + zlib.compress(b"plain words")),
        (b"iTXt", b"Title\x00\x01\x00en\x00Titel\x00" + zlib.compress("caf\u00e9".encode())),
        (b"tEXt", b"Description\x00" + b64),
    ]
    st = png_meta.PngStructure(png_meta.PngHeader(1, 1, 8, 2, 0), tuple(chunks), ())
    policy = MetadataPolicy(png_text_keywords=("Comment", "Title", "Description"))
    kept = png_meta.select_metadata(st, policy)
    assert kept == (
        (b"tEXt", b"Comment\x00plain words"),
        (b"iTXt", b"Title\x00\x00\x00\x00\x00" + "caf\u00e9".encode()),
    )
    assert not embedded_images(png_bytes([(b"IHDR", _ihdr(1, 1)), *kept, (b"IEND", b"")]))
