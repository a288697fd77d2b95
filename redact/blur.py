"""Irreversible anonymisation of image regions.

Each box is dilated (``BlurConfig.dilate`` of its size on every side, or its class's
``class_dilate``; at least ``min_size_px``) and shaped per class (``BlurConfig.shapes``): the
dilated box itself, or an ellipse centred on it whose semi-axes are the larger of the
dilated half-size and ``sqrt(2)`` x the detected half-size, so the ellipse always covers the
detected box's corners. Inside
the shape the content is *destroyed*, not smoothed: it is pixelated to about ``cells`` cells
across the short side (area average), each cell's brightness is shifted by random noise
(``cell_noise_sigma``, the same shift on every channel: it survives JPEG re-encoding), the
result is strongly blurred, overlaid with additive per-pixel noise (both noises from an
unpredictable RNG) and re-quantised, so no deconvolution can bring detail back. A soft
edge is added only OUTSIDE the shape over ``feather_px`` pixels; every pixel inside is fully
replaced and every pixel beyond the feather is bit-identical to the input.

Work is done on each region's bounding window only (no full-image float copies). With
``wrap=True`` (equirectangular panoramas) windows wrap around x, so a region crossing the
0/360° seam (``x2 > W`` or ``x1 < 0``) is blurred on both edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from redact.classes import ObjectClass
from redact.config import BlurConfig, BlurShape
from redact.geometry.boxes import as_boxes

_MID_CELL_PX = 8  # cell size (px) of the intermediate image the strong blur runs on
_TRIANGULAR_STD = math.sqrt(2.0 * (256.0**2 - 1.0) / 12.0)


@dataclass(frozen=True)
class _Region:
    """One region's window in the image and its per-pixel weights.

    ``cols`` is a slice, or an index array (wrapped windows); ``alpha`` is (h, w) float32 in
    [0, 1]: 1 inside the shape, falling to 0 over the feather outside it.
    """

    y0: int
    y1: int
    cols: slice | npt.NDArray[np.intp]
    alpha: npt.NDArray[np.float32]
    short_side: float  # px, of the dilated shape


def _validate_boxes(boxes: npt.ArrayLike) -> npt.NDArray[np.float64]:
    arr = as_boxes(boxes)
    # Recall first: an inverted box is still a region to blur.
    return np.concatenate(
        [np.minimum(arr[:, :2], arr[:, 2:]), np.maximum(arr[:, :2], arr[:, 2:])], axis=1
    )


def region_size(
    box: npt.ArrayLike, cfg: BlurConfig, shape: BlurShape, dilate: float | None = None
) -> tuple[float, float]:
    """(w, h) in pixels of the shape blurred for one xyxy ``box`` (before feathering);
    ``dilate`` defaults to ``cfg.dilate``."""
    d = cfg.dilate if dilate is None else dilate
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64))
    w = max((x2 - x1) * (1.0 + 2.0 * d), float(cfg.min_size_px))
    h = max((y2 - y1) * (1.0 + 2.0 * d), float(cfg.min_size_px))
    if shape is BlurShape.ELLIPSE:  # through the detected box's corners: never leave them
        w, h = max(w, (x2 - x1) * math.sqrt(2.0)), max(h, (y2 - y1) * math.sqrt(2.0))
    return w, h


def _region(
    box: npt.NDArray[np.float64],
    cfg: BlurConfig,
    style: tuple[BlurShape, float],
    height: int,
    width: int,
    wrap: bool,
) -> _Region | None:
    """Geometry of one region (``style``: shape and dilation); ``None`` if it lies entirely
    outside the image."""
    shape, dilate = style
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = region_size(box, cfg, shape, dilate)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    a, b = w / 2.0, h / 2.0
    margin = cfg.feather_px + 2
    y0 = max(math.floor(cy - b) - margin, 0)
    y1i = min(math.ceil(cy + b) + margin, height)
    full_width = wrap and w >= width
    if full_width:  # a region wrapping the whole panorama: blur the full band
        xs0, xs1 = 0, width
    else:
        xs0 = math.floor(cx - a) - margin
        xs1 = math.ceil(cx + a) + margin
        if wrap and xs1 - xs0 > width:
            xs0 = math.floor(cx - width / 2.0)
            xs1 = xs0 + width
        if not wrap:
            xs0, xs1 = max(xs0, 0), min(xs1, width)
    if y1i <= y0 or xs1 <= xs0:
        return None
    # Pixel centres, in the (unwrapped) coordinates of the box.
    u = ((np.arange(xs0, xs1, dtype=np.float64) + 0.5 - cx) / a)[None, :]
    v = ((np.arange(y0, y1i, dtype=np.float64) + 0.5 - cy) / b)[:, None]
    if full_width:
        inside = np.broadcast_to(np.abs(v) <= 1.0, (y1i - y0, xs1 - xs0))
    elif shape is BlurShape.ELLIPSE:
        inside = u * u + v * v <= 1.0
    else:
        inside = (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if not inside.any():
        # Degenerate (sub-pixel) shape: blur at least the pixel holding the centre.
        iy = min(max(math.floor(cy) - y0, 0), y1i - y0 - 1)
        ix = min(max(math.floor(cx) - xs0, 0), xs1 - xs0 - 1)
        inside = np.zeros((y1i - y0, xs1 - xs0), dtype=bool)
        inside[iy, ix] = True
    if cfg.feather_px > 0:
        outside = np.ascontiguousarray(~inside, dtype=np.uint8)
        dist = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        f = float(cfg.feather_px + 1)
        alpha = np.clip((f - dist) / f, 0.0, 1.0).astype(np.float32)
    else:
        alpha = inside.astype(np.float32)
    cols: slice | npt.NDArray[np.intp]
    if 0 <= xs0 and xs1 <= width:
        cols = slice(xs0, xs1)
    else:
        cols = np.arange(xs0, xs1, dtype=np.intp) % width
    return _Region(y0, y1i, cols, alpha, min(w, h))


def _destroy(
    win: npt.NDArray[np.uint8], short_side: float, cfg: BlurConfig, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Replacement content (h, w, C) float32 for a window: pixelate, blur, add noise."""
    h, w, c = win.shape
    cell = max(short_side / cfg.cells, 1.0)
    nw, nh = max(round(w / cell), 1), max(round(h / cell), 1)
    small = cv2.resize(win, (nw, nh), interpolation=cv2.INTER_AREA).reshape(nh, nw, c)
    cells = small.astype(np.float32)
    if cfg.cell_noise_sigma > 0:
        # one shift per cell for all channels: brightness, not colour (no rainbow patches)
        cells += _noise(rng, (nh, nw, 1), cfg.cell_noise_sigma)
        np.clip(cells, 0.0, 255.0, out=cells)
    grid = np.repeat(np.repeat(cells, _MID_CELL_PX, axis=0), _MID_CELL_PX, axis=1)
    mid = cv2.GaussianBlur(
        grid, (0, 0), sigmaX=_MID_CELL_PX / 2.0, borderType=cv2.BORDER_REPLICATE
    ).reshape(grid.shape)
    up = cv2.resize(mid, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, c)
    new = np.asarray(up, dtype=np.float32)  # already float32: no copy
    if cfg.noise_sigma > 0:
        new += _noise(rng, (h, w, c), cfg.noise_sigma)
    return np.rint(new, out=new)  # re-quantise before compositing


def _noise(
    rng: np.random.Generator, shape: tuple[int, int, int], sigma: float
) -> npt.NDArray[np.float32]:
    """Zero-mean triangular noise of standard deviation ``sigma`` (8-bit levels).

    Difference of two uniform random bytes: ~10x cheaper than Gaussian sampling.
    """
    n = int(np.prod(shape))
    u = np.frombuffer(rng.bytes(2 * n), dtype=np.uint8).reshape(2, *shape)
    diff = u[0].astype(np.float32) - u[1].astype(np.float32)  # std sqrt(2 * (256**2 - 1) / 12)
    return diff * np.float32(sigma / _TRIANGULAR_STD)


def _as_image(pixels: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    img = np.asarray(pixels)
    if img.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8, got {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or not 1 <= img.shape[2] <= 4:
        raise ValueError(f"pixels must have shape (H, W) or (H, W, 1..4), got {img.shape}")
    return img


def _styles(
    n: int, classes: npt.ArrayLike | None, cfg: BlurConfig
) -> list[tuple[BlurShape, float]]:
    """(shape, dilation) of each of ``n`` boxes, from their classes (faces when ``None``)."""
    if classes is None:
        face = int(ObjectClass.FACE)
        return [(cfg.shape_for(face), cfg.dilate_for(face))] * n
    cls = np.asarray(classes).reshape(-1)
    if cls.shape[0] != n:
        raise ValueError(f"classes has {cls.shape[0]} entries but boxes has {n}")
    return [(cfg.shape_for(int(c)), cfg.dilate_for(int(c))) for c in cls]


def blur_mask(
    shape: tuple[int, int],
    boxes: npt.ArrayLike,
    cfg: BlurConfig,
    *,
    wrap: bool,
    classes: npt.ArrayLike | None = None,
) -> npt.NDArray[np.bool_]:
    """(H, W) bool mask of the pixels :func:`blur_regions` changes (shape + feather)."""
    height, width = int(shape[0]), int(shape[1])
    mask = np.zeros((height, width), dtype=bool)
    arr = _validate_boxes(boxes)
    for box, style in zip(arr, _styles(len(arr), classes, cfg), strict=True):
        reg = _region(box, cfg, style, height, width, wrap)
        if reg is not None:
            mask[reg.y0 : reg.y1, reg.cols] |= reg.alpha > 0
    return mask


def blur_regions(
    pixels: npt.ArrayLike,
    boxes: npt.ArrayLike,
    cfg: BlurConfig,
    *,
    wrap: bool,
    classes: npt.ArrayLike | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Irreversibly anonymise ``boxes`` in an image.

    Args:
        pixels: (H, W, C) uint8 image (C in 1..4; (H, W) accepted). Not modified.
        boxes: (N, 4) xyxy in pixels. With ``wrap`` boxes may be unwrapped (``x2 > W``).
        cfg: blur settings.
        wrap: the image is an equirectangular panorama: regions wrap around in x.
        classes: (N,) ObjectClass values choosing each box's shape and dilation
            (``cfg.shapes``, ``cfg.class_dilate``);
            ``None`` treats every box as a face.
        rng: noise source; default ``np.random.default_rng()`` seeded from OS entropy.

    Returns:
        ``(out, mask)``: a new image of the input's shape, and the (H, W) bool mask of the
        pixels that were replaced or feathered. Pixels outside the mask equal the input.
    """
    src = np.asarray(pixels)
    img = _as_image(src)
    height, width = img.shape[:2]
    out = img.copy()
    mask = np.zeros((height, width), dtype=bool)
    if rng is None:
        rng = np.random.default_rng()
    arr = _validate_boxes(boxes)
    for box, style in zip(arr, _styles(len(arr), classes, cfg), strict=True):
        reg = _region(box, cfg, style, height, width, wrap)
        if reg is None:
            continue
        win = out[reg.y0 : reg.y1, reg.cols]
        new = _destroy(np.ascontiguousarray(win), reg.short_side, cfg, rng)
        base = win.astype(np.float32)
        comp = base + reg.alpha[:, :, None] * (new - base)
        out[reg.y0 : reg.y1, reg.cols] = np.clip(np.rint(comp), 0, 255).astype(np.uint8)
        mask[reg.y0 : reg.y1, reg.cols] |= reg.alpha > 0
    return out.reshape(src.shape), mask


def high_frequency_correlation(
    a: npt.ArrayLike, b: npt.ArrayLike, mask: npt.ArrayLike | None = None
) -> float:
    """|Pearson correlation| of the Laplacians of two images (detail shared by both).

    ``a``, ``b``: (H, W) or (H, W, C) arrays of the same shape (channels are averaged);
    ``mask``: optional (H, W) bool selecting the pixels compared. 1.0 = same fine detail,
    ~0 = none in common. Returns 0.0 when either side has no detail at all.
    """
    fa, fb = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    if fa.shape != fb.shape:
        raise ValueError(f"shapes differ: {fa.shape} vs {fb.shape}")
    if fa.ndim == 3:
        fa, fb = fa.mean(axis=2), fb.mean(axis=2)
    if fa.ndim != 2:
        raise ValueError(f"expected (H, W) or (H, W, C) images, got {np.asarray(a).shape}")
    la = cv2.Laplacian(fa, cv2.CV_32F, borderType=cv2.BORDER_REFLECT).astype(np.float64)
    lb = cv2.Laplacian(fb, cv2.CV_32F, borderType=cv2.BORDER_REFLECT).astype(np.float64)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != fa.shape:
            raise ValueError(f"mask shape {m.shape} differs from image {fa.shape}")
        la, lb = la[m], lb[m]
    la = la.ravel() - la.mean() if la.size else la
    lb = lb.ravel() - lb.mean() if lb.size else lb
    denom = math.sqrt(float(np.dot(la, la)) * float(np.dot(lb, lb)))
    if denom == 0.0:
        return 0.0
    return abs(float(np.dot(la, lb)) / denom)
