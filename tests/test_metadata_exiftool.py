"""exiftool as an independent oracle: what does a real metadata reader find in our copies?

Every crafted leak file (``scripts/leak_files.py``) goes through ``decode_image`` +
``encode_image``; ``exiftool -j -a -G1 -b -n`` on the copy must report no picture-holding tag
(ThumbnailImage, PreviewImage, ImageData, JpgFromRaw, OtherImage, ...), no binary value, and
no tag outside the allowlist groups; GPano survives on a panorama and the orientation a
viewer applies is right. Skipped when exiftool is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import simplejpeg

from redact.io.codec import decode_image, encode_image
from redact.io.exif import EXIF_GROUPS
from redact.io.metadata import MetadataPolicy
from tests.fixtures.scripts import load_script

EXIFTOOL = shutil.which("exiftool")
if EXIFTOOL is None:
    pytest.skip("exiftool is not installed", allow_module_level=True)

leak_files = load_script("leak_files")
MAXPIX = 50_000_000

# Groups (-G1) a copy may show: file/container facts, the rebuilt EXIF, GPano, ICC, PNG.
ALLOWED_GROUPS = {
    "ExifTool",
    "System",
    "File",
    "JFIF",
    "IFD0",
    "ExifIFD",
    "GPS",
    "XMP-x",
    "XMP-GPano",
    "ICC-header",
    "ICC_Profile",
    "PNG",
    "PNG-pHYs",
    "Composite",
}
# exiftool's names for the allowlisted EXIF tags where they differ from the standard's.
_EXIFTOOL_NAMES = {
    "DateTime": "ModifyDate",
    "DateTimeDigitized": "CreateDate",
    "PixelXDimension": "ExifImageWidth",
    "PixelYDimension": "ExifImageHeight",
}
ALLOWED_EXIF = {
    _EXIFTOOL_NAMES.get(spec.name, spec.name) for specs in EXIF_GROUPS.values() for spec in specs
} | {"ExifVersion", "GPSVersionID"}


def exiftool(path: Path) -> dict[str, Any]:
    assert EXIFTOOL is not None
    res = subprocess.run(
        [EXIFTOOL, "-j", "-a", "-G1", "-b", "-n", str(path)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    tags = json.loads(res.stdout)[0]
    tags.pop("SourceFile")
    return tags


def check_copy(tags: dict[str, Any], exif_names: set[str] = ALLOWED_EXIF) -> None:
    for key, value in tags.items():
        group, _, name = key.partition(":")
        assert name not in leak_files.BINARY_TAGS, key
        assert not (isinstance(value, str) and value.startswith("base64:")), key
        assert group in ALLOWED_GROUPS, key
        if group in ("IFD0", "ExifIFD", "GPS"):
            assert name in exif_names, key
        assert "Thumbnail" not in name and "Preview" not in name, key
        assert not name.startswith("Warning") or "Missing required" in str(value), (key, value)


def publish(data: bytes, policy: MetadataPolicy | None = None) -> bytes:
    d = decode_image(data, max_pixels=MAXPIX, metadata=policy)
    return encode_image(d, d.pixels)


@pytest.mark.parametrize("name", sorted(leak_files.CASES))
def test_exiftool_finds_no_picture_and_nothing_outside_the_allowlist(
    name: str, tmp_path: Path
) -> None:
    src = tmp_path / f"orig-{name}"
    src.write_bytes(leak_files.CASES[name]())
    dst = tmp_path / name
    dst.write_bytes(publish(src.read_bytes()))
    check_copy(exiftool(dst))
    assert leak_files.exiftool_pictures(dst) == []


@pytest.mark.parametrize(
    "name",
    [
        "xmp_gimage_attribute.jpg",
        "xmp_gimage_element.jpg",
        "xmp_gimage_extended.jpg",
        "gpano_gimage.jpg",
        "exif_thumbnail_lying_length.jpg",
        "png_itxt_compressed_xmp_gimage.png",
    ],
)
def test_oracle_sees_the_originals_pictures(name: str, tmp_path: Path) -> None:
    """Sanity of the oracle: exiftool does report these originals' hidden pictures."""
    src = tmp_path / name
    src.write_bytes(leak_files.CASES[name]())
    assert leak_files.exiftool_pictures(src)


def test_exiftool_gpano_panorama_keeps_projection(tmp_path: Path) -> None:
    dst = tmp_path / "pano.jpg"
    dst.write_bytes(publish(leak_files.case_gpano_gimage()))
    tags = exiftool(dst)
    check_copy(tags)
    assert tags["XMP-GPano:ProjectionType"] == "equirectangular"
    assert tags["XMP-GPano:PoseHeadingDegrees"] == 123.4
    assert not any(k.startswith("XMP-GImage") for k in tags)


def test_exiftool_orientation_kept_with_stored_pixels(tmp_path: Path) -> None:
    stored = leak_files.smooth(48, 64, 9)
    ifds = leak_files.camera_ifds(orientation=6)
    data = leak_files.jpeg_with(
        [leak_files.seg(0xE1, b"Exif\x00\x00" + leak_files.tiff(ifds))],
        simplejpeg.encode_jpeg(stored, 90),
    )
    dst = tmp_path / "o6.jpg"
    dst.write_bytes(publish(data))
    tags = exiftool(dst)
    check_copy(tags)
    # Stored 64x48 + Orientation 6: a viewer rotates it to 48x64 upright, like the original.
    assert tags["IFD0:Orientation"] == 6
    assert (tags["File:ImageWidth"], tags["File:ImageHeight"]) == (64, 48)
    assert tags["IFD0:Make"] == "TestCam" and tags["GPS:GPSLatitudeRef"] == "N"


def test_exiftool_orientation_baked_when_exif_is_malformed(tmp_path: Path) -> None:
    data, upright = leak_files.case_orientation6_malformed_exif()
    dst = tmp_path / "o6-bad.jpg"
    dst.write_bytes(publish(data))
    tags = exiftool(dst)
    check_copy(tags)
    assert tags.get("IFD0:Orientation", 1) == 1
    assert (tags["File:ImageHeight"], tags["File:ImageWidth"]) == upright.shape[:2]


def test_exiftool_every_group_with_icc(tmp_path: Path) -> None:
    """All EXIF groups on, a valid ICC profile: all allowlisted, all readable."""
    ifds = leak_files.camera_ifds(3)
    ifds[0] += [
        (0x0132, 2, 20, b"2024:01:02 03:04:05\x00"),
        (0x013B, 2, 9, b"Jane Doe\x00"),
        (0x011A, 5, 1, (72).to_bytes(4, "little") + (1).to_bytes(4, "little")),
        (0x0128, 3, 1, (2).to_bytes(2, "little")),
    ]
    ifds[0].sort(key=lambda t: t[0])
    ifds[1] += [(0x9011, 2, 7, b"+02:00\x00"), (0xA002, 4, 1, (64).to_bytes(4, "little"))]
    ifds[1].sort(key=lambda t: t[0])
    segs = [
        leak_files.seg(0xE1, b"Exif\x00\x00" + leak_files.tiff(ifds)),
        *leak_files.icc_segments(leak_files.icc_profile()),
    ]
    dst = tmp_path / "all.jpg"
    dst.write_bytes(
        publish(leak_files.jpeg_with(segs), MetadataPolicy(exif_groups=tuple(EXIF_GROUPS)))
    )
    tags = exiftool(dst)
    check_copy(tags)
    assert tags["IFD0:Orientation"] == 3 and tags["IFD0:Artist"] == "Jane Doe"
    assert tags["IFD0:ModifyDate"] == "2024:01:02 03:04:05"
    assert tags["ExifIFD:OffsetTimeOriginal"] == "+02:00" and tags["ExifIFD:ExifImageWidth"] == 64
    assert tags["ICC-header:ColorSpaceData"] == "RGB "
    assert tags["ICC_Profile:ProfileDescription"] == "Test RGB"
