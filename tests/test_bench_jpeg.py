"""JPEG re-encode fidelity: quantisation-table matching and fast-upsample decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from redact.io import jpeg_meta
from redact.io.codec import decode_image, encode_image
from tests.fixtures.scripts import load_script

load_script("benchmark")  # puts scripts/ (the bench package) on sys.path

from bench.stages import psnr_outside  # noqa: E402

MAXPIX = 50_000_000
PHOTO = Path(__file__).parent / "data" / "sample_shard" / "photos" / "us_car_0b86cecf.jpg"


def _textured(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    img = np.repeat(np.repeat(base, 8, axis=0), 8, axis=1).astype(np.int16)
    img += rng.integers(-20, 21, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("q", [5, 30, 50, 75, 85, 95, 100])
def test_ijg_qtables_are_what_the_encoder_writes(q: int) -> None:
    data = simplejpeg.encode_jpeg(_textured(), quality=q, colorsubsampling="420")
    st = jpeg_meta.parse_jpeg(data)
    luma, chroma = jpeg_meta.ijg_qtables(q)
    assert st.qtables[st.frame.components[0][3]] == luma
    assert st.qtables[st.frame.components[1][3]] == chroma
    assert jpeg_meta.qtables_match_quality(st, q)
    assert not jpeg_meta.qtables_match_quality(st, q - 1 if q > 50 else q + 1)
    assert not jpeg_meta.qtables_match_quality(st, None)


def test_ijg_qtables_rejects_bad_quality() -> None:
    with pytest.raises(ValueError):
        jpeg_meta.ijg_qtables(0)


def _patch_chroma_table(data: bytes) -> bytes:
    """Same JPEG with the second DQT table's last entry changed (still decodable)."""
    st = jpeg_meta.parse_jpeg(data)
    chroma_id = st.frame.components[1][3]
    pos = 2
    while True:
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == jpeg_meta.DQT:
            body = bytearray(data[pos + 4 : pos + 2 + length])
            i = 0
            while i < len(body):
                size = 128 if body[i] >> 4 else 64
                if body[i] & 15 == chroma_id:
                    body[i + size] = max(1, body[i + size] - 7)
                    return data[: pos + 4] + bytes(body) + data[pos + 2 + length :]
                i += 1 + size
        pos += 2 + length


def test_non_ijg_tables_are_reported() -> None:
    data = _patch_chroma_table(simplejpeg.encode_jpeg(_textured(), quality=90))
    d = decode_image(data, max_pixels=MAXPIX)
    assert d.quality == 90 and d.qtables_exact is False
    ok = decode_image(simplejpeg.encode_jpeg(_textured(), quality=90), max_pixels=MAXPIX)
    assert ok.qtables_exact is True


def test_fast_upsample_reencode_is_closer_on_420() -> None:
    data = PHOTO.read_bytes()
    ref = decode_image(data, max_pixels=MAXPIX)
    assert ref.subsampling == "420" and ref.qtables_exact
    none = np.zeros(ref.pixels.shape[:2], bool)

    def psnr(src) -> float:
        enc = encode_image(src, src.pixels)
        out = psnr_outside(ref.pixels, decode_image(enc, max_pixels=MAXPIX).pixels, none)
        assert out is not None
        return out

    fancy = psnr(ref)
    fast = psnr(decode_image(data, max_pixels=MAXPIX, fast_upsample=True))
    assert fancy > 40  # same tables: the re-encode is close already
    assert fast > fancy + 0.3


def test_fast_upsample_changes_nothing_on_444() -> None:
    data = simplejpeg.encode_jpeg(_textured(), quality=90, colorsubsampling="444")
    a = decode_image(data, max_pixels=MAXPIX).pixels
    b = decode_image(data, max_pixels=MAXPIX, fast_upsample=True).pixels
    np.testing.assert_array_equal(a, b)
