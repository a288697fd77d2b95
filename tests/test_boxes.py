"""Box math: hand-computed values and slow pure-Python references."""

from __future__ import annotations

import numpy as np
import pytest

from redact.geometry.boxes import (
    box_area,
    box_inter_wrapped,
    box_ios,
    box_ios_wrapped,
    box_iou,
    box_iou_wrapped,
    clip_boxes,
    dilate_boxes,
    normalize_unwrapped,
    round_out,
    split_at_seam,
)

W = 100.0


def _ref_inter(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h


def _ref_area(a: list[float]) -> float:
    return (a[2] - a[0]) * (a[3] - a[1])


def _ref_pieces(a: list[float], width: float) -> list[list[float]]:
    """A box on the circle as pieces inside [0, width] (independent of split_at_seam)."""
    x1 = a[0] % width
    x2 = x1 + (a[2] - a[0])
    if x2 <= width:
        return [[x1, a[1], x2, a[3]]]
    return [[x1, a[1], width, a[3]], [0.0, a[1], x2 - width, a[3]]]


def _ref_inter_circle(a: list[float], b: list[float], width: float) -> float:
    return sum(_ref_inter(p, q) for p in _ref_pieces(a, width) for q in _ref_pieces(b, width))


def _random_boxes(rng: np.random.Generator, n: int, width: float = W) -> np.ndarray:
    x1 = rng.uniform(0, width, n)
    y1 = rng.uniform(0, 50, n)
    w = rng.uniform(0, 30, n)
    h = rng.uniform(0, 30, n)
    w[rng.random(n) < 0.1] = 0.0  # some degenerate boxes
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)


def test_hand_values() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [2, 2, 4, 4], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(box_area(b), [100, 4, 100])
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 4 / 100, 0.0]])
    np.testing.assert_allclose(box_ios(a, b), [[0.5, 1.0, 0.0]])


def test_empty_inputs() -> None:
    e = np.zeros((0, 4), np.float32)
    b = np.array([[0, 0, 1, 1]], np.float32)
    assert box_area(e).shape == (0,)
    assert box_iou(e, b).shape == (0, 1)
    assert box_ios(b, e).shape == (1, 0)
    assert box_iou_wrapped(e, e, W).shape == (0, 0)
    assert box_ios_wrapped(np.zeros((0,)), b, W).shape == (0, 1)
    boxes, src = split_at_seam(e, W)
    assert boxes.shape == (0, 4) and src.shape == (0,)
    assert clip_boxes(e, W, W).shape == (0, 4)
    assert dilate_boxes(e, 0.1, 4).shape == (0, 4)


def test_iou_ios_match_reference() -> None:
    rng = np.random.default_rng(1)
    a, b = _random_boxes(rng, 40), _random_boxes(rng, 30)
    iou, ios = box_iou(a, b), box_ios(a, b)
    for i, p in enumerate(a.astype(float).tolist()):
        for j, q in enumerate(b.astype(float).tolist()):
            inter = _ref_inter(p, q)
            union = _ref_area(p) + _ref_area(q) - inter
            small = min(_ref_area(p), _ref_area(q))
            assert iou[i, j] == pytest.approx(inter / union if union > 0 else 0.0, abs=1e-12)
            assert ios[i, j] == pytest.approx(inter / small if small > 0 else 0.0, abs=1e-12)
    np.testing.assert_allclose(box_iou(a, b), box_iou(b, a).T)


def test_wrapped_overlap_matches_circle_reference() -> None:
    rng = np.random.default_rng(2)
    a = _random_boxes(rng, 40)
    b = _random_boxes(rng, 35)
    b[:5, 2] = b[:5, 0] + 60  # wide boxes (together wider than W with some of a)
    inter = box_inter_wrapped(a, b, W)
    iou, ios = box_iou_wrapped(a, b, W), box_ios_wrapped(a, b, W)
    crossing = 0
    for i, p in enumerate(a.astype(float).tolist()):
        for j, q in enumerate(b.astype(float).tolist()):
            ref = _ref_inter_circle(p, q, W)
            assert inter[i, j] == pytest.approx(ref, abs=1e-9)
            union = _ref_area(p) + _ref_area(q) - ref
            small = min(_ref_area(p), _ref_area(q))
            assert iou[i, j] == pytest.approx(ref / union if union > 0 else 0.0, abs=1e-12)
            assert ios[i, j] == pytest.approx(ref / small if small > 0 else 0.0, abs=1e-12)
            crossing += ref > 0 and _ref_inter(p, q) == 0
    assert crossing > 0  # the data really exercises overlap across the seam


def test_wrapped_seam_hand_case() -> None:
    a = np.array([[95, 0, 105, 10]], np.float32)  # 95..100 + 0..5
    b = np.array([[0, 0, 5, 10], [90, 0, 100, 10]], np.float32)
    np.testing.assert_allclose(box_ios_wrapped(a, b, W), [[1.0, 0.5]])
    np.testing.assert_allclose(box_iou_wrapped(a, b, W), [[0.5, 50 / 150]])
    np.testing.assert_allclose(box_iou(a, b), [[0.0, 50 / 150]])  # the plain version misses it


def test_split_at_seam() -> None:
    boxes = np.array(
        [[90, 1, 110, 2], [10, 3, 20, 4], [150, 5, 160, 6], [0, 7, 100, 8]], np.float32
    )
    out, src = split_at_seam(boxes, W)
    np.testing.assert_array_equal(src, [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(
        out, [[90, 1, 100, 2], [0, 1, 10, 2], [10, 3, 20, 4], [50, 5, 60, 6], [0, 7, 100, 8]]
    )
    assert out.dtype == np.float32 and np.all(out[:, 2] <= W) and np.all(out[:, 0] >= 0)
    np.testing.assert_array_equal(boxes[0], [90, 1, 110, 2])  # input untouched


def test_normalize_unwrapped_and_round_out() -> None:
    b = np.array([[-5, -1, 5, 3], [205, 0, 215, 1], [10, 0, 130, 1], [99.99999999, 0, 101, 1]])
    out = normalize_unwrapped(b, W, H=2.0)
    np.testing.assert_allclose(out[:3], [[95, 0, 105, 2], [5, 0, 15, 1], [0, 0, 100, 1]])
    assert np.all(out[:, 0] >= 0) and np.all(out[:, 0] < W)
    rng = np.random.default_rng(3)
    lo = rng.uniform(-1e4, 1e4, 1000)
    hi = lo + rng.uniform(0, 10, 1000)
    lo32, hi32 = round_out(lo, hi)
    assert lo32.dtype == np.float32
    assert np.all(lo32.astype(np.float64) <= lo) and np.all(hi32.astype(np.float64) >= hi)
    assert np.all(hi32.astype(np.float64) - hi < 1e-3)


def test_clip_boxes() -> None:
    b = np.array([[-5, -5, 50, 50], [90, 10, 120, 200]], np.float32)
    np.testing.assert_array_equal(clip_boxes(b, 100, 100), [[0, 0, 50, 50], [90, 10, 100, 100]])
    np.testing.assert_array_equal(
        clip_boxes(b, 100, 100, wrap=True), [[95, 0, 150, 50], [90, 10, 120, 100]]
    )


def test_dilate_boxes() -> None:
    b = np.array([[10, 10, 20, 30], [0, 0, 2, 2]], np.float32)
    before = b.copy()
    out = dilate_boxes(b, 0.1, min_size=8)
    np.testing.assert_allclose(out, [[9, 8, 21, 32], [-3, -3, 5, 5]], atol=1e-5)
    np.testing.assert_array_equal(b, before)
    np.testing.assert_array_equal(dilate_boxes(b, 0.0), b)
    with pytest.raises(ValueError):
        dilate_boxes(b, -0.1)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_iou(np.zeros((3, 3)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="positive"):
        box_iou_wrapped(np.zeros((1, 4)), np.zeros((1, 4)), 0)
