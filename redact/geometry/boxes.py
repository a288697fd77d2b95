"""Vectorized box math on ``xyxy`` pixel boxes (torchvision ``ops/boxes.py`` style).

All functions take (N, 4) array-likes ``[x1, y1, x2, y2]`` with ``x1 <= x2``, ``y1 <= y2``,
handle N == 0, never modify their inputs, and compute in float64.

Panorama boxes are *unwrapped*: ``0 <= x1 < W`` and ``x1 <= x2 <= x1 + W``; a box across the
0/360 seam has ``x2 > W``. The ``*_wrapped`` functions measure overlap on the cylinder of
circumference ``W``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.int64]


def as_boxes(xyxy: npt.ArrayLike, name: str = "boxes", *, ordered: bool = False) -> FloatArray:
    """Validate boxes: (N, 4) finite float64 xyxy (an empty input becomes (0, 4)).

    With ``ordered``, also require ``x1 <= x2`` and ``y1 <= y2``. Raises ValueError.
    """
    b = np.asarray(xyxy, np.float64)
    if b.size == 0:
        return b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"{name} contain non-finite values")
    if ordered and (np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1])):
        raise ValueError(f"{name} must satisfy x1 <= x2 and y1 <= y2")
    return b


_boxes = as_boxes


def _check_width(W: float) -> float:
    W = float(W)
    if not W > 0:
        raise ValueError(f"wrap width must be positive, got {W}")
    return W


def box_area(xyxy: npt.ArrayLike) -> FloatArray:
    """(N, 4) boxes -> (N,) areas in square pixels (float64)."""
    b = _boxes(xyxy)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def _overlap_1d(a1: FloatArray, a2: FloatArray, b1: FloatArray, b2: FloatArray) -> FloatArray:
    """Length of the overlap of intervals ``[a1, a2]`` (N, 1) and ``[b1, b2]`` (1, M) -> (N, M)."""
    return np.clip(np.minimum(a2, b2) - np.maximum(a1, b1), 0.0, None)


def box_inter(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """(N, 4), (M, 4) boxes -> (N, M) intersection areas, square pixels."""
    a, b = _boxes(a, "a"), _boxes(b, "b")
    w = _overlap_1d(a[:, None, 0], a[:, None, 2], b[None, :, 0], b[None, :, 2])
    h = _overlap_1d(a[:, None, 1], a[:, None, 3], b[None, :, 1], b[None, :, 3])
    return w * h


def box_inter_wrapped(a: npt.ArrayLike, b: npt.ArrayLike, W: float) -> FloatArray:
    """(N, 4), (M, 4) unwrapped panorama boxes -> (N, M) intersection areas on the cylinder.

    The x overlap is summed over ``b`` shifted by ``-W, 0, +W``: for boxes at most ``W`` wide
    with ``x1`` in ``[0, W)`` this is exactly the overlap on the circle (it equals the maximum
    over the shifts unless the two boxes are together wider than ``W`` and meet at both ends).
    """
    W = _check_width(W)
    a, b = _boxes(a, "a"), _boxes(b, "b")
    h = _overlap_1d(a[:, None, 1], a[:, None, 3], b[None, :, 1], b[None, :, 3])
    w = np.zeros_like(h)
    for shift in (-W, 0.0, W):
        w += _overlap_1d(a[:, None, 0], a[:, None, 2], b[None, :, 0] + shift, b[None, :, 2] + shift)
    return w * h


def _safe_div(num: FloatArray, den: FloatArray) -> FloatArray:
    """``num / den`` with 0 where ``den <= 0``."""
    ok = den > 0
    return np.where(ok, num / np.where(ok, den, 1.0), 0.0)


def _iou(inter: FloatArray, area_a: FloatArray, area_b: FloatArray) -> FloatArray:
    return _safe_div(inter, area_a[:, None] + area_b[None, :] - inter)


def _ios(inter: FloatArray, area_a: FloatArray, area_b: FloatArray) -> FloatArray:
    return _safe_div(inter, np.minimum(area_a[:, None], area_b[None, :]))


def box_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """(N, 4), (M, 4) boxes -> (N, M) intersection over union (0 where the union is empty)."""
    return _iou(box_inter(a, b), box_area(a), box_area(b))


def box_ios(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """(N, 4), (M, 4) boxes -> (N, M) intersection over the SMALLER of the two areas.

    1.0 when one box lies inside the other; 0 where the smaller box has zero area.
    """
    return _ios(box_inter(a, b), box_area(a), box_area(b))


def box_iou_wrapped(a: npt.ArrayLike, b: npt.ArrayLike, W: float) -> FloatArray:
    """Seam-aware :func:`box_iou` for unwrapped panorama boxes (see :func:`box_inter_wrapped`)."""
    return _iou(box_inter_wrapped(a, b, W), box_area(a), box_area(b))


def box_ios_wrapped(a: npt.ArrayLike, b: npt.ArrayLike, W: float) -> FloatArray:
    """Seam-aware :func:`box_ios` for unwrapped panorama boxes (see :func:`box_inter_wrapped`)."""
    return _ios(box_inter_wrapped(a, b, W), box_area(a), box_area(b))


def round_out(lo: npt.ArrayLike, hi: npt.ArrayLike) -> tuple[Float32Array, Float32Array]:
    """Round interval ends to float32 outwards: ``lo32 <= lo`` and ``hi32 >= hi``."""
    lo = np.asarray(lo, np.float64)
    hi = np.asarray(hi, np.float64)
    lo32 = lo.astype(np.float32)
    hi32 = hi.astype(np.float32)
    lo32 = np.where(lo32.astype(np.float64) > lo, np.nextafter(lo32, np.float32(-np.inf)), lo32)
    hi32 = np.where(hi32.astype(np.float64) < hi, np.nextafter(hi32, np.float32(np.inf)), hi32)
    return lo32.astype(np.float32), hi32.astype(np.float32)


def normalize_unwrapped(xyxy: npt.ArrayLike, W: float, H: float | None = None) -> Float32Array:
    """Put panorama boxes in canonical unwrapped form -> (N, 4) float32.

    Shifts each box by a multiple of ``W`` so that ``0 <= x1 < W``; a box ``W`` or more wide
    becomes the full ring ``[0, W]``; with ``H`` given, y is clipped to ``[0, H]``. Coordinates
    are rounded outwards to float32 (the result always contains the input).
    """
    W = _check_width(W)
    b = _boxes(xyxy).copy()
    full = (b[:, 2] - b[:, 0]) >= W
    shift = np.floor(b[:, 0] / W) * W
    b[:, 0] -= shift
    b[:, 2] -= shift
    over = b[:, 0] >= W  # float64 rounding of tiny negative x1
    b[over, 0] -= W
    b[over, 2] -= W
    b[full, 0] = 0.0
    b[full, 2] = W
    if H is not None:
        b[:, 1] = np.clip(b[:, 1], 0.0, H)
        b[:, 3] = np.clip(b[:, 3], 0.0, H)
    x1, x2 = round_out(b[:, 0], b[:, 2])
    y1, y2 = round_out(b[:, 1], b[:, 3])
    x1 = np.maximum(x1, np.float32(0.0))
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32, copy=False)


def split_at_seam(xyxy: npt.ArrayLike, W: float) -> tuple[Float32Array, IndexArray]:
    """Split unwrapped panorama boxes into boxes inside ``[0, W]``.

    Args:
        xyxy: (N, 4) unwrapped boxes (normalised first, see :func:`normalize_unwrapped`).
        W: panorama width, pixels.

    Returns:
        ``(boxes, src_index)``: (M, 4) float32 boxes with ``0 <= x1 <= x2 <= W`` and (M,) int64
        index of the input box of each. A box with ``x2 > W`` becomes ``[x1, W]`` followed by
        ``[0, x2 - W]``; the pieces of one box are consecutive, in input order.
    """
    W = _check_width(W)
    b = normalize_unwrapped(xyxy, W).astype(np.float64)
    n = b.shape[0]
    crosses = b[:, 2] > W
    reps = np.where(crosses, 2, 1)
    src = np.repeat(np.arange(n, dtype=np.int64), reps)
    out = b[src].copy()
    starts = np.cumsum(reps) - reps  # position of each box's first piece
    first, second = starts[crosses], starts[crosses] + 1
    out[first, 2] = W
    out[second, 0] = 0.0
    out[second, 2] = b[crosses, 2] - W
    x1, x2 = round_out(out[:, 0], out[:, 2])
    x2 = np.minimum(x2, np.float32(W))
    return np.stack([x1, out[:, 1], x2, out[:, 3]], axis=1).astype(np.float32), src


def clip_boxes(xyxy: npt.ArrayLike, W: float, H: float, wrap: bool = False) -> Float32Array:
    """Clip boxes to the image ``[0, W] x [0, H]`` -> (N, 4) float32.

    With ``wrap=True`` (unwrapped panorama boxes) x is not clipped but normalised
    (:func:`normalize_unwrapped`); only y is clipped.
    """
    b = _boxes(xyxy)
    if wrap:
        return normalize_unwrapped(b, W, H)
    out = np.empty_like(b)
    out[:, [0, 2]] = np.clip(b[:, [0, 2]], 0.0, W)
    out[:, [1, 3]] = np.clip(b[:, [1, 3]], 0.0, H)
    return out.astype(np.float32)


def dilate_boxes(xyxy: npt.ArrayLike, frac: float, min_size: float = 0.0) -> Float32Array:
    """Grow boxes -> (N, 4) float32 (not clipped; see :func:`clip_boxes`).

    Each side moves out by ``frac`` times the box's size along that axis (width for x, height
    for y); then a box narrower or shorter than ``min_size`` pixels is widened symmetrically
    about its centre to ``min_size``. Coordinates are rounded outwards.
    """
    if not frac >= 0:
        raise ValueError(f"frac must be >= 0, got {frac}")
    if not min_size >= 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}")
    b = _boxes(xyxy)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    cx = (b[:, 0] + b[:, 2]) / 2.0
    cy = (b[:, 1] + b[:, 3]) / 2.0
    hw = np.maximum(w * (0.5 + frac), min_size / 2.0)
    hh = np.maximum(h * (0.5 + frac), min_size / 2.0)
    x1, x2 = round_out(np.minimum(cx - hw, b[:, 0]), np.maximum(cx + hw, b[:, 2]))
    y1, y2 = round_out(np.minimum(cy - hh, b[:, 1]), np.maximum(cy + hh, b[:, 3]))
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
