"""The diff-based blurred mask and the sufficient-blur criterion, on synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
import simplejpeg

from redact.blur import blur_mask, blur_regions
from redact.config import BlurConfig
from redact.evaluation.pixels import (
    DETAIL_BOUND,
    DiffConfig,
    blurred_mask,
    box_columns,
    coverage,
    crop,
    detail_retained,
    sufficiently_blurred,
)
from tests.fixtures.eval_data import textured

BOXES = np.array([[40, 30, 80, 80], [150, 60, 190, 75], [250, 20, 262, 35]], float)


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    return simplejpeg.decode_jpeg(simplejpeg.encode_jpeg(np.ascontiguousarray(img), quality=q))


@pytest.mark.parametrize("quality", [75, 90, 95])
def test_blurred_mask_finds_blur_not_jpeg_noise(quality):
    orig = _jpeg(textured(160, 320, 1), quality)  # a JPEG original, as in production
    out, changed = blur_regions(orig, BOXES, BlurConfig(), wrap=False)
    pub = _jpeg(out, quality)  # the published copy is re-encoded: untouched pixels shift too
    mask = blurred_mask(orig, pub)
    inner = blur_mask(orig.shape[:2], BOXES, BlurConfig(feather_px=0), wrap=False)
    assert mask[inner].mean() >= 0.98
    # Far from any blurred region JPEG re-encoding never counts as blur. "Far" = beyond one
    # 16x16 MCU from the region: re-encoding a block that holds part of a blurred region (whose
    # cells change brightness strongly) moves the rest of that block too.
    far = ~blur_mask(orig.shape[:2], BOXES, BlurConfig(feather_px=16, dilate=0.5), wrap=False)
    assert not mask[far].any()
    # Cross-check with the pipeline's own mask: nearly the same pixels.
    inter = np.count_nonzero(mask & changed)
    assert inter / np.count_nonzero(mask | changed) > 0.85


def test_identical_images_have_no_blur():
    img = textured(64, 64, 3)
    assert not blurred_mask(img, img).any()
    with pytest.raises(ValueError, match="differ in shape"):
        blurred_mask(img, img[:10])
    with pytest.raises(ValueError, match="threshold"):
        DiffConfig(threshold=0)


def test_box_columns_and_crop_wrap():
    assert box_columns(2, 5, 10, wrap=False).tolist() == [2, 3, 4]
    assert box_columns(8, 12, 10, wrap=True).tolist() == [8, 9, 0, 1]
    assert box_columns(-2, 2, 10, wrap=False).tolist() == [0, 1]
    assert box_columns(3.2, 3.4, 10, wrap=False).tolist() == [3]  # sub-pixel: its centre column
    img = np.arange(20).reshape(2, 10)
    assert crop(img, (8, 0, 12, 1), wrap=True).tolist() == [[8, 9, 0, 1]]
    m = np.zeros((4, 10), bool)
    m[:, 0] = True
    assert coverage(m, (8, 0, 12, 4), wrap=True) == (4, 16)


def _crops(orig: np.ndarray, pub: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    return crop(orig, box, False), crop(pub, box, False)


def test_detail_retained_blurred_half_and_untouched():
    orig = _jpeg(textured(120, 200, 5), 90)
    box = (60.0, 30.0, 100.0, 80.0)
    blurred, _ = blur_regions(orig, [box], BlurConfig(), wrap=False)
    half, _ = blur_regions(
        orig,
        [(60.0, 30.0, 80.0, 80.0)],
        BlurConfig(dilate=0.0, feather_px=0, min_size_px=1),
        wrap=False,
        classes=[1],  # box shape: exactly the left half
    )
    r_blur = detail_retained(*_crops(orig, _jpeg(blurred, 90), box))
    r_half = detail_retained(*_crops(orig, _jpeg(half, 90), box))
    r_same = detail_retained(*_crops(orig, _jpeg(orig, 90), box))
    assert r_blur is not None and r_blur < 0.2
    assert r_half is not None and r_half > 0.8  # the untouched right half keeps its detail
    assert r_same is not None and r_same > 0.95
    assert sufficiently_blurred(r_blur) is True
    assert sufficiently_blurred(r_half) is False and sufficiently_blurred(r_same) is False
    assert DETAIL_BOUND == 0.5


def test_detail_retained_ignores_noise_and_flat_patches():
    orig = textured(64, 64, 9)
    rng = np.random.default_rng(0)
    noisy = np.clip(orig + rng.normal(0, 12, orig.shape), 0, 255).astype(np.uint8)
    # Added noise does not hide detail that is still there (unlike a correlation).
    r = detail_retained(orig, noisy)
    assert r is not None and r > 0.8
    flat = np.full((20, 40, 3), 128, np.uint8)
    assert detail_retained(flat, flat) is None and sufficiently_blurred(None) is None
