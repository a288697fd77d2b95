"""MetadataPolicy: defaults, validation, and what each field does to a published copy."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest
import simplejpeg

from redact.errors import ConfigError, ImageError, Stage
from redact.io import jpeg_meta
from redact.io.codec import DecodedImage, ImageFormat, JpegMetadata, decode_image, encode_image
from redact.io.exif import DEFAULT_EXIF_GROUPS, EXIF_GROUPS, exif_orientation, list_tags
from redact.io.metadata import MetadataPolicy
from redact.io.xmp import GPANO_NS, gpano_projection
from tests.fixtures.scripts import load_script

leak_files = load_script("leak_files")
MAXPIX = 50_000_000


def rich_jpeg(orientation: int = 6) -> tuple[bytes, np.ndarray]:
    """(file, stored pixels): Exif (camera IFDs + Artist/Copyright), GPano XMP, ICC, COM."""
    stored = leak_files.smooth(48, 64, 2)
    stored[:8, :16] = (255, 0, 0)
    ifds = leak_files.camera_ifds(orientation)
    ifds[0] += [(0x013B, 2, 9, b"Jane Doe\x00"), (0x8298, 2, 6, b"(c) X\x00")]
    ifds[0].sort(key=lambda t: t[0])
    segs = [
        leak_files.seg(0xE1, b"Exif\x00\x00" + leak_files.tiff(ifds)),
        leak_files.seg(
            0xE1,
            leak_files.XMP_ID + leak_files.xmp(leak_files.GPANO_ATTRS, "", {"GPano": GPANO_NS}),
        ),
        *leak_files.icc_segments(leak_files.icc_profile()),
        leak_files.seg(0xFE, b"a plain comment"),
    ]
    return leak_files.jpeg_with(segs, simplejpeg.encode_jpeg(stored, 95)), stored


def markers(out: bytes) -> list[int]:
    return [m for m, _ in jpeg_meta.parse_jpeg(out).segments if m not in (0xDB, 0xC4, 0xC0, 0xDA)]


def test_defaults_are_safe_and_plain() -> None:
    p = MetadataPolicy()
    assert (
        p.exif_groups
        == DEFAULT_EXIF_GROUPS
        == (
            "orientation",
            "capture_time",
            "gps",
            "camera",
            "size",
        )
    )
    assert p.xmp_namespaces == (GPANO_NS,)
    assert p.keep_icc and not p.keep_jpeg_comments and p.png_text_keywords == ()
    p._validate("metadata")
    hints = typing.get_type_hints(MetadataPolicy)
    for f in dataclasses.fields(MetadataPolicy):
        assert hints[f.name] in (bool, int, str, tuple[str, ...]), f.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.keep_icc = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"exif_groups": ("orientation", "thumbnail")}, "metadata.exif_groups"),
        ({"exif_groups": "gps"}, "metadata.exif_groups"),
        ({"xmp_namespaces": ("GPano",)}, "metadata.xmp_namespaces"),
        (
            {"xmp_namespaces": ("http://ns.google.com/photos/1.0/image/",)},
            "metadata.xmp_namespaces",
        ),
        ({"xmp_namespaces": ("http://ns.adobe.com/xap/1.0/",)}, "metadata.xmp_namespaces"),
        ({"png_text_keywords": ("",)}, "metadata.png_text_keywords"),
        ({"png_text_keywords": ("XML:com.adobe.xmp",)}, "metadata.png_text_keywords"),
        ({"png_text_keywords": ("Raw profile type exif",)}, "metadata.png_text_keywords"),
        ({"keep_icc": "yes"}, "metadata.keep_icc"),
        ({"max_xmp_bytes": 10}, "metadata.max_xmp_bytes"),
        ({"max_icc_bytes": 1 << 40}, "metadata.max_icc_bytes"),
    ],
)
def test_validate_names_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        MetadataPolicy(**kwargs)._validate("metadata")


def test_every_group_is_valid() -> None:
    MetadataPolicy(exif_groups=tuple(EXIF_GROUPS))._validate("metadata")


def test_default_policy_round_trip() -> None:
    data, stored = rich_jpeg(6)
    d = decode_image(data, max_pixels=MAXPIX)
    assert d.orientation == d.stored_orientation == 6
    out = encode_image(d, d.pixels)
    assert simplejpeg.decode_jpeg(out).shape == stored.shape  # stored order kept, with the tag
    assert markers(out) == [0xE0, 0xE1, 0xE1, 0xE2]  # JFIF, Exif, XMP, ICC; no COM
    assert b"Jane Doe" not in out and b"(c) X" not in out  # copyright is opt-in
    assert gpano_projection(decode_image(out, max_pixels=MAXPIX).xmp) == "equirectangular"


def test_policy_without_orientation_bakes_pixels_upright() -> None:
    data, stored = rich_jpeg(6)
    policy = MetadataPolicy(exif_groups=("camera", "gps"))
    d = decode_image(data, max_pixels=MAXPIX, metadata=policy)
    assert d.orientation == 6 and d.stored_orientation == 1
    out = encode_image(d, d.pixels)
    raw = simplejpeg.decode_jpeg(out)
    assert raw.shape == np.rot90(stored, k=-1).shape  # upright without any tag
    assert np.abs(raw.astype(int) - np.rot90(stored, k=-1)).mean() < 4
    exif = jpeg_meta.parse_jpeg(out).segments[1][1][6:]
    assert exif_orientation(exif) == 1
    tags = list_tags(exif)
    assert tags is not None and 0x0112 not in tags["ifd0"] and 0x010F in tags["ifd0"]


def test_policy_opt_ins_and_outs() -> None:
    data, _ = rich_jpeg(1)
    policy = MetadataPolicy(
        exif_groups=("copyright",), xmp_namespaces=(), keep_icc=False, keep_jpeg_comments=True
    )
    d = decode_image(data, max_pixels=MAXPIX, metadata=policy)
    assert d.xmp is None and gpano_projection(d.xmp) is None
    out = encode_image(d, d.pixels)
    assert markers(out) == [0xE0, 0xE1, 0xFE]
    assert b"Jane Doe" in out and b"(c) X" in out and b"a plain comment" in out
    assert b"TestCam" not in out and b"ICC_PROFILE" not in out
    nothing = MetadataPolicy(exif_groups=(), xmp_namespaces=(), keep_icc=False)
    out = encode_image(decode_image(data, max_pixels=MAXPIX, metadata=nothing), d.pixels)
    assert markers(out) == [0xE0]


def test_encoder_refuses_a_copy_with_an_embedded_picture() -> None:
    """The last line: whatever the metadata layer let through, a picture is never published."""
    pixels = leak_files.smooth(16, 16, 0)
    leaky = JpegMetadata((leak_files.seg(0xFE, leak_files.b64_lines(leak_files.secret_jpeg())),))
    d = DecodedImage(pixels=pixels, format=ImageFormat.JPEG, subsampling="444", metadata=leaky)
    with pytest.raises(ImageError) as ei:
        encode_image(d, pixels)
    assert ei.value.reason == "metadata_leak" and ei.value.stage is Stage.ENCODE
    assert encode_image(d, pixels, keep_metadata=False)  # without the metadata: fine
