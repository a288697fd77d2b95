"""Property-based fuzzing of the metadata parsers and rebuilders (hypothesis).

Inputs are arbitrary bytes and mutations (bit flips, overwrites, insertions of the secret
picture, deletions, truncations) of the crafted leak files. Documented error behaviour:

* :func:`redact.io.exif.rebuild_exif`, :func:`~redact.io.exif.exif_orientation`,
  :func:`~redact.io.exif.exif_capture_info`, :func:`redact.io.xmp.sanitize_xmp`,
  :func:`~redact.io.xmp.gpano_projection`, :func:`redact.io.metadata.validate_icc`,
  ``select_metadata`` of :mod:`~redact.io.jpeg_meta`/:mod:`~redact.io.png_meta` and
  :func:`redact.io.leakscan.embedded_images` never raise;
* :func:`redact.io.xmp.parse_xmp` raises only :class:`~redact.io.xmp.XmpError` (ValueError);
* ``parse_jpeg``/``parse_png``/``decode_image``/``encode_image`` raise only
  :class:`redact.errors.ImageError`.

And every output holds no embedded picture and no tag/chunk/namespace outside the allowlist.
Each example must finish within the deadline (no hang). ``REDACT_FUZZ_EXAMPLES=5000`` runs a
longer campaign.
"""

from __future__ import annotations

import base64
import os
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redact.errors import ImageError
from redact.io import jpeg_meta, png_meta
from redact.io.codec import decode_image, encode_image
from redact.io.exif import (
    EXIF_GROUPS,
    allowed_tags,
    exif_capture_info,
    exif_orientation,
    list_tags,
    rebuild_exif,
)
from redact.io.leakscan import embedded_images, payload_images
from redact.io.metadata import MetadataPolicy, validate_icc
from redact.io.xmp import GPANO_NS, XmpError, gpano_projection, parse_xmp, sanitize_xmp
from tests.fixtures.scripts import load_script

leak_files = load_script("leak_files")
SECRET = leak_files.secret_jpeg()
EXAMPLES = int(os.environ.get("REDACT_FUZZ_EXAMPLES", "150"))  # raise for a long fuzz run
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=3000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

JPEG_SEEDS = [build() for name, build in leak_files.CASES.items() if name.endswith(".jpg")]
PNG_SEEDS = [build() for name, build in leak_files.CASES.items() if name.endswith(".png")]
JPEG_SEEDS.append(leak_files.case_orientation6_malformed_exif()[0])
PNG_SEEDS.append(leak_files.case_alpha_only_face()[0])


def _exif_seeds() -> list[bytes]:
    out = []
    for data in JPEG_SEEDS:
        for m, p in jpeg_meta.parse_jpeg(data).segments:
            if m == 0xE1 and p.startswith(b"Exif\x00\x00"):
                out.append(p[6:])
    out.append(leak_files.tiff(leak_files.camera_ifds(6), e=">"))
    return out


def _xmp_seeds() -> list[bytes]:
    return [
        leak_files.gimage_attr_xmp(),
        leak_files.gimage_element_xmp(),
        leak_files.gimage_attr_xmp(leak_files.GPANO_ATTRS, {"GPano": GPANO_NS}),
        leak_files.xmp(
            leak_files.GPANO_ATTRS,
            "<GPano:CroppedAreaLeftPixels>4</GPano:CroppedAreaLeftPixels>",
            {"GPano": GPANO_NS},
        ),
    ]


EXIF_SEEDS = _exif_seeds()
XMP_SEEDS = _xmp_seeds()
ICC_SEEDS = [leak_files.icc_profile(), leak_files.icc_profile([(b"zzzz", b"\x00" * 40)])]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with 1..6 random edits."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "secret", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            value = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0xD8, 0xE1]))
            data[pos : pos + 4] = bytes([value]) * len(data[pos : pos + 4])
        elif op == "insert":
            data[pos:pos] = draw(st.binary(max_size=16))
        elif op == "secret":
            blob = draw(st.sampled_from([SECRET, base64.b64encode(SECRET), SECRET.hex().encode()]))
            data[pos:pos] = blob
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


def _groups() -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(sorted(EXIF_GROUPS)), unique=True).map(tuple)


def _check_exif(out: bytes, groups: tuple[str, ...]) -> None:
    tags = list_tags(out)
    assert tags is not None and tags["ifd1"] == []
    allowed = allowed_tags(groups)
    for ifd in ("ifd0", "exif", "gps"):
        assert set(tags[ifd]) <= allowed[ifd], (ifd, tags[ifd])
    assert payload_images(out) == []
    assert rebuild_exif(out, groups) == out  # a fixed point: nothing left to drop


# --- EXIF -------------------------------------------------------------------------------------


@FUZZ
@given(data=st.one_of(st.binary(max_size=2048), mutated(EXIF_SEEDS)), groups=_groups())
def test_fuzz_rebuild_exif(data: bytes, groups: tuple[str, ...]) -> None:
    exif_orientation(data)
    exif_capture_info(data)
    out = rebuild_exif(data, groups)
    if out is not None:
        _check_exif(out, groups)
        assert 1 <= exif_orientation(out) <= 8


# --- XMP --------------------------------------------------------------------------------------


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=2048), mutated(XMP_SEEDS), st.text(max_size=500).map(str.encode)
    )
)
def test_fuzz_sanitize_xmp(data: bytes) -> None:
    gpano_projection(data)
    try:
        parse_xmp(data)
    except XmpError:
        pass
    out = sanitize_xmp(data)
    if out is not None:
        props = parse_xmp(out)
        assert props and all(ns == GPANO_NS for ns, _, _ in props)
        assert payload_images(out) == []
        assert sanitize_xmp(out) == out


# --- ICC --------------------------------------------------------------------------------------


@FUZZ
@given(data=st.one_of(st.binary(max_size=1024), mutated(ICC_SEEDS)))
def test_fuzz_validate_icc(data: bytes) -> None:
    out = validate_icc(data, b"RGB ", 1 << 20)
    if out is not None:
        assert payload_images(out) == [] and len(out) <= len(data)
        assert validate_icc(out, b"RGB ", 1 << 20) == out


# --- JPEG segment walker ----------------------------------------------------------------------

_JPEG_IDS = (b"Exif\x00\x00", jpeg_meta.XMP_ID, jpeg_meta.ICC_ID)


@FUZZ
@given(data=st.one_of(st.binary(max_size=1024).map(lambda b: b"\xff\xd8" + b), mutated(JPEG_SEEDS)))
def test_fuzz_jpeg_walker_and_selection(data: bytes) -> None:
    try:
        structure = jpeg_meta.parse_jpeg(data)
    except ImageError:
        return
    policy = MetadataPolicy()
    for seg in jpeg_meta.select_metadata(structure, policy):
        assert seg[0] == 0xFF and seg[1] in (0xE1, 0xE2)
        assert struct.unpack(">H", seg[2:4])[0] == len(seg) - 2
        payload = seg[4:]
        assert payload.startswith(_JPEG_IDS)
        assert payload_images(payload) == []
        if payload.startswith(b"Exif\x00\x00"):
            _check_exif(payload[6:], policy.exif_groups)


# --- PNG chunk parser -------------------------------------------------------------------------

_PNG_KEPT = {b"iCCP", b"sRGB", b"gAMA", b"cHRM", b"pHYs", b"eXIf", b"iTXt"}


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=1024).map(lambda b: png_meta.SIGNATURE + b), mutated(PNG_SEEDS)
    )
)
def test_fuzz_png_parser_and_selection(data: bytes) -> None:
    try:
        structure = png_meta.parse_png(data)
    except ImageError:
        return
    policy = MetadataPolicy()
    for ctype, body in png_meta.select_metadata(structure, policy):
        assert ctype in _PNG_KEPT
        assert payload_images(body) == []
        if ctype == b"iTXt":
            assert body.startswith(png_meta.XMP_KEYWORD + b"\x00\x00\x00\x00\x00")
        if ctype == b"eXIf":
            _check_exif(body, policy.exif_groups)


# --- the whole codec --------------------------------------------------------------------------


@settings(FUZZ, max_examples=max(EXAMPLES * 2 // 3, 1))
@given(data=st.one_of(mutated(JPEG_SEEDS), mutated(PNG_SEEDS)))
def test_fuzz_decode_encode_publishes_no_picture(data: bytes) -> None:
    try:
        d = decode_image(data, max_pixels=1_000_000)
    except ImageError:
        return
    out = encode_image(d, d.pixels)  # a metadata_leak ImageError here would fail the test
    assert embedded_images(out) == [] and leak_files.SECRET_MARK not in out
