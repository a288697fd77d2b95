"""The five leaks a hostile tester reproduced against the blocklist sanitisers, as crafted files.

Every test runs a crafted file (``scripts/leak_files.py``) through ``decode_image`` +
``encode_image`` and checks the published copy. They use only the codec's public API, so
they can be pointed at another version of ``redact/io``: with
``REDACT_TEST_CODEC_REV=<git rev>`` in the environment the codec of that revision is loaded
instead (e.g. the revision before the allowlist rewrite, where every case fails).
"""

from __future__ import annotations

import base64
import os

import cv2
import numpy as np
import pytest
import simplejpeg

from redact.io.jpeg_meta import parse_jpeg
from redact.io.leakscan import embedded_images
from redact.io.xmp import gpano_projection
from tests.fixtures.scripts import load_script

leak_files = load_script("leak_files")
codec = leak_files.load_codec(os.environ.get("REDACT_TEST_CODEC_REV") or None)
MAXPIX = 50_000_000


def publish(data: bytes) -> bytes:
    d = codec.decode_image(data, max_pixels=MAXPIX)
    return codec.encode_image(d, d.pixels)


def assert_no_picture(out: bytes) -> None:
    """No secondary picture: leak scan, secret fingerprints, base64 of the secret."""
    assert leak_files.recoverable(out) == []
    secret = leak_files.secret_jpeg()
    assert base64.b64encode(secret)[100:160] not in out
    assert base64.urlsafe_b64encode(secret)[100:160] not in out
    assert out.count(b"\xff\xd8") == (1 if out[:2] == b"\xff\xd8" else 0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# --- 1. XMP scrubbed by literal prefix -------------------------------------------------------


def test_case1_xmp_gimage_attribute_form() -> None:
    data = leak_files.case_xmp_gimage_attribute()
    assert leak_files.recoverable(data)
    assert_no_picture(publish(data))


def test_case1_xmp_gimage_element_form() -> None:
    data = leak_files.case_xmp_gimage_element()
    assert leak_files.recoverable(data)
    assert_no_picture(publish(data))


def test_case1_xmp_gimage_extended_xmp() -> None:
    data = leak_files.case_xmp_gimage_extended()
    assert leak_files.recoverable(data)
    out = publish(data)
    assert_no_picture(out)
    assert b"http://ns.adobe.com/xmp/extension/" not in out


def test_case1_gpano_panorama_with_gimage_keeps_projection() -> None:
    data = leak_files.case_gpano_gimage()
    d = codec.decode_image(data, max_pixels=MAXPIX)
    assert gpano_projection(d.xmp) == "equirectangular"
    out = codec.encode_image(d, d.pixels)
    assert_no_picture(out)
    again = codec.decode_image(out, max_pixels=MAXPIX)
    assert gpano_projection(again.xmp) == "equirectangular"


# --- 2. EXIF thumbnail length, orphan JPEG, unknown tag ----------------------------------------


def test_case2_exif_thumbnail_lying_length_jpeg() -> None:
    data = leak_files.case_exif_thumbnail_lying_length()
    assert leak_files.recoverable(data)
    assert_no_picture(publish(data))


def test_case2_exif_thumbnail_lying_length_png() -> None:
    data = leak_files.case_png_exif_thumbnail()
    assert leak_files.recoverable(data)
    assert_no_picture(publish(data))


def test_case2_exif_orphan_jpeg_after_the_ifds() -> None:
    data = leak_files.case_exif_orphan_trailing_jpeg()
    assert leak_files.recoverable(data)
    assert_no_picture(publish(data))


def test_case2_exif_jpeg_in_unknown_ifd0_tag() -> None:
    data = leak_files.case_exif_unknown_tag_jpeg()
    assert leak_files.recoverable(data)
    out = publish(data)
    assert_no_picture(out)
    # The allowlisted fields survive.
    exif = [p for m, p in parse_jpeg(out).segments if m == 0xE1 and p.startswith(b"Exif")]
    assert len(exif) == 1 and b"TestCam" in exif[0]


def test_exif_serials_owner_makernote_dropped() -> None:
    out = publish(leak_files.case_exif_serials_owner_makernote())
    assert_no_picture(out)
    for secret in (b"Jane Doe", b"J. Doe", b"CAM-0042", b"SN123456", b"LN654321", b"0123456789ab"):
        assert secret not in out
    assert b"secret comment" not in out and b"Vendor" not in out
    assert b"TestCam" in out and b"2024:01:02 03:04:05" in out


# --- 3. PNG text chunks, JPEG COM, ICC ---------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    ["case_png_text_xmp_gimage", "case_png_ztxt_xmp_gimage", "case_png_itxt_compressed_xmp_gimage"],
)
def test_case3_png_xmp_in_any_text_chunk(build: str) -> None:
    data = getattr(leak_files, build)()
    assert leak_files.recoverable(data)
    assert_no_picture(publish(data))


def test_case3_png_base64_images_in_text_chunks() -> None:
    data = leak_files.case_png_text_base64_images()
    assert leak_files.recoverable(data)
    out = publish(data)
    assert_no_picture(out)
    assert b"tEXt" not in out and b"zTXt" not in out and b"iTXt" not in out


def test_case3_jpeg_com_base64_jpeg() -> None:
    data = leak_files.case_com_base64_jpeg()
    assert leak_files.recoverable(data)
    assert_no_picture(publish(data))


def test_case3_jpeg_inside_icc_profile_jpeg() -> None:
    data = leak_files.case_icc_with_jpeg()
    assert leak_files.recoverable(data)
    assert_no_picture(publish(data))


def test_case3_jpeg_inside_icc_profile_png() -> None:
    data = leak_files.case_png_iccp_jpeg()
    assert leak_files.recoverable(data)
    assert_no_picture(publish(data))


# --- 4. a face only in the alpha channel -------------------------------------------------------


def test_case4_alpha_only_face_is_what_the_detector_sees() -> None:
    """RGB black, alpha = 255 - face: on a white page a viewer shows the face. The decoded
    pixels (detector and blur input) must show it too, and the copy must be opaque."""
    data, face = leak_files.case_alpha_only_face()
    d = codec.decode_image(data, max_pixels=MAXPIX)
    assert d.pixels.shape == (*face.shape, 3)
    assert np.abs(d.pixels.astype(int) - face[:, :, None]).max() <= 1
    blurred = np.full_like(d.pixels, 128)  # whatever the blur wrote is what is published
    out = codec.encode_image(d, blurred)
    assert out[25] in (0, 2)  # IHDR colour type: gray or RGB, no alpha channel
    raw = cv2.imdecode(np.frombuffer(out, np.uint8), cv2.IMREAD_UNCHANGED)
    assert raw.ndim == 2 or raw.shape[2] == 3
    assert (raw == 128).all()


# --- 5. orientation with a malformed EXIF block ------------------------------------------------


def test_case5_orientation6_malformed_exif_stored_upright() -> None:
    data, upright = leak_files.case_orientation6_malformed_exif()
    d = codec.decode_image(data, max_pixels=MAXPIX)
    assert d.pixels.shape == upright.shape and psnr(d.pixels, upright) > 30
    out = codec.encode_image(d, d.pixels)
    assert not embedded_images(out)
    # Decoded WITHOUT applying any orientation, the copy is the upright picture.
    raw = simplejpeg.decode_jpeg(out)
    assert raw.shape == upright.shape
    assert psnr(raw, upright) > 30
    # ... and no Orientation tag is left that a viewer could apply on top.
    for m, p in parse_jpeg(out).segments:
        assert not (m == 0xE1 and p.startswith(b"Exif")) or b"\x12\x01\x03\x00" not in p


def test_case5_png_orientation6_malformed_exif_stored_upright() -> None:
    jpeg, upright = leak_files.case_orientation6_malformed_exif()
    stored = np.ascontiguousarray(np.rot90(upright, k=1))
    block = next(p for m, p in parse_jpeg(jpeg).segments if m == 0xE1)[6:]
    data = leak_files.png_with([(b"eXIf", block)], stored)
    d = codec.decode_image(data, max_pixels=MAXPIX)
    np.testing.assert_array_equal(d.pixels, upright)
    out = codec.encode_image(d, d.pixels)
    raw = cv2.imdecode(np.frombuffer(out, np.uint8), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    np.testing.assert_array_equal(raw, upright)
    assert b"eXIf" not in out
