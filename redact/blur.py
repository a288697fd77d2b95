"""Irreversible anonymisation of image regions.

Each box is dilated (``BlurConfig.dilate`` of its size on every side, or its class's
``class_dilate``, plus its strength's ``dilate_bonus``; at least ``min_size_px``) and shaped
per class (``BlurConfig.shapes``): the dilated box itself, or an ellipse centred on it whose
semi-axes are the larger of the dilated half-size and ``sqrt(2)`` x the detected half-size,
so the ellipse always covers the detected box's corners. Inside the shape the content is
*replaced* by one of three modes (``BlurConfig.mode`` per class, or per manual region), at a
strength (``BlurConfig.strength``) whose parameters are the one table :data:`STRENGTHS`:

* ``blur``: the region's window is area-averaged to about ``cells`` cells across the shape's
  short side, and those cells are smoothed by a Gaussian of ``smooth`` cell widths and
  upsampled: a smooth blob. No noise is added (no salt-and-pepper grain): the information
  is destroyed by the averaging, which maps every face onto a few numbers.
* ``pixelate``: the same area-averaged cells, upsampled with hard edges (a mosaic).
* ``solid``: one colour, ``BlurConfig.solid_fill``: the mean of the pixels inside the shape,
  or a fixed RGB triple.

Every mode passes ``redact eval --strict`` at every strength (docs/evaluation.md). A soft
edge is added only OUTSIDE the shape over ``feather_px`` pixels; every pixel inside is fully
replaced and every pixel beyond the feather is bit-identical to the input.

Work is done on each region's bounding window only (no full-image float copies). With
``wrap=True`` (equirectangular panoramas) windows wrap around x, so a region crossing the
0/360° seam (``x2 > W`` or ``x1 < 0``) is replaced on both edges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from redact.classes import ObjectClass
from redact.config import BlurConfig, BlurMode, BlurShape, BlurStrength
from redact.geometry.boxes import as_boxes

_MID_CELL_PX = 8  # cell size (px) of the intermediate image the strong blur runs on


@dataclass(frozen=True)
class StrengthParams:
    """What one (mode, strength) does.

    Attributes:
        cells: area-averaged cells across the shape's short side (blur, pixelate; unused by
            solid). Fewer cells = less left of the face.
        smooth: std-dev of the Gaussian smoothing the cells, in cell widths (blur only).
        dilate_bonus: added to the class's ``dilate`` (share of the box size on every side).
    """

    cells: float
    smooth: float
    dilate_bonus: float


# The ONE table of strengths (measured: docs/evaluation.md, scripts/blur_modes.py).
STRENGTHS: dict[BlurMode, dict[BlurStrength, StrengthParams]] = {
    BlurMode.BLUR: {
        BlurStrength.LOW: StrengthParams(cells=6.0, smooth=0.6, dilate_bonus=0.0),
        BlurStrength.MEDIUM: StrengthParams(cells=4.0, smooth=0.6, dilate_bonus=0.0),
        BlurStrength.HIGH: StrengthParams(cells=3.0, smooth=0.75, dilate_bonus=0.1),
    },
    BlurMode.PIXELATE: {
        BlurStrength.LOW: StrengthParams(cells=8.0, smooth=0.0, dilate_bonus=0.0),
        BlurStrength.MEDIUM: StrengthParams(cells=6.0, smooth=0.0, dilate_bonus=0.0),
        BlurStrength.HIGH: StrengthParams(cells=4.0, smooth=0.0, dilate_bonus=0.1),
    },
    BlurMode.SOLID: {
        BlurStrength.LOW: StrengthParams(cells=1.0, smooth=0.0, dilate_bonus=0.0),
        BlurStrength.MEDIUM: StrengthParams(cells=1.0, smooth=0.0, dilate_bonus=0.0),
        BlurStrength.HIGH: StrengthParams(cells=1.0, smooth=0.0, dilate_bonus=0.1),
    },
}
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class _Style:
    """How one region is anonymised: shape, total dilation, mode, strength parameters."""

    shape: BlurShape
    dilate: float
    mode: BlurMode
    params: StrengthParams


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
    style: _Style,
    height: int,
    width: int,
    wrap: bool,
) -> _Region | None:
    """Geometry of one region (``style``: shape and dilation); ``None`` if it lies entirely
    outside the image."""
    shape, dilate = style.shape, style.dilate
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


def _cells(win: npt.NDArray[np.uint8], short_side: float, cells: float) -> npt.NDArray[np.float32]:
    """(nh, nw, C) float32 area averages of ``win`` (h, w, C), about ``cells`` across
    ``short_side`` pixels (at least one cell)."""
    h, w, c = win.shape
    cell = max(short_side / cells, 1.0)
    nw, nh = max(round(w / cell), 1), max(round(h / cell), 1)
    small = cv2.resize(win, (nw, nh), interpolation=cv2.INTER_AREA).reshape(nh, nw, c)
    return small.astype(np.float32)


def _fill_blur(
    win: npt.NDArray[np.uint8], short_side: float, p: StrengthParams
) -> npt.NDArray[np.float32]:
    """Blur mode (h, w, C) float32: area-averaged cells, smoothed, upsampled, re-quantised."""
    h, w, c = win.shape
    cells = _cells(win, short_side, p.cells)
    grid = np.repeat(np.repeat(cells, _MID_CELL_PX, axis=0), _MID_CELL_PX, axis=1)
    mid = cv2.GaussianBlur(
        grid, (0, 0), sigmaX=_MID_CELL_PX * p.smooth, borderType=cv2.BORDER_REPLICATE
    ).reshape(grid.shape)
    up = cv2.resize(mid, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, c)
    new = np.asarray(up, dtype=np.float32)  # already float32: no copy
    return np.rint(new, out=new)


def _fill_pixelate(
    win: npt.NDArray[np.uint8], short_side: float, p: StrengthParams
) -> npt.NDArray[np.float32]:
    """Pixelate mode (h, w, C) float32: hard-edged mosaic of area-averaged cells."""
    h, w, c = win.shape
    cells = np.rint(_cells(win, short_side, p.cells))
    up = cv2.resize(cells, (w, h), interpolation=cv2.INTER_NEAREST).reshape(h, w, c)
    return np.asarray(up, dtype=np.float32)


def _fill_solid(
    win: npt.NDArray[np.uint8], inside: npt.NDArray[np.bool_], fill: str | tuple[int, ...]
) -> npt.NDArray[np.float32]:
    """Solid mode (h, w, C) float32: one colour, the rounded mean of the ``inside`` pixels
    ((h, w) bool) or the RGB ``fill`` (luma on grey channels; alpha keeps its mean)."""
    h, w, c = win.shape
    pix = win[inside] if inside.any() else win.reshape(-1, c)
    colour = np.rint(pix.reshape(-1, c).astype(np.float64).mean(axis=0))
    if not isinstance(fill, str):
        rgb = np.asarray(fill, np.float64)
        if c >= 3:
            colour[:3] = rgb
        else:
            colour[0] = round(float(np.dot(rgb, _LUMA)))
    return np.broadcast_to(colour.astype(np.float32), (h, w, c))


def _replacement(
    win: npt.NDArray[np.uint8], reg: _Region, style: _Style, cfg: BlurConfig
) -> npt.NDArray[np.float32]:
    """Replacement content (h, w, C) float32, integer-valued, of one region's window."""
    if style.mode is BlurMode.PIXELATE:
        return _fill_pixelate(win, reg.short_side, style.params)
    if style.mode is BlurMode.SOLID:
        return _fill_solid(win, reg.alpha >= 1.0, cfg.solid_fill)
    return _fill_blur(win, reg.short_side, style.params)


def _as_image(pixels: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    img = np.asarray(pixels)
    if img.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8, got {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or not 1 <= img.shape[2] <= 4:
        raise ValueError(f"pixels must have shape (H, W) or (H, W, 1..4), got {img.shape}")
    return img


def _per_box(
    values: Sequence[str | BlurMode | BlurStrength] | None, n: int, name: str
) -> list[str | BlurMode | BlurStrength] | None:
    if values is None:
        return None
    out = list(values)
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} entries but boxes has {n}")
    return out


def _styles(
    n: int,
    classes: npt.ArrayLike | None,
    cfg: BlurConfig,
    modes: Sequence[str | BlurMode] | None = None,
    strengths: Sequence[str | BlurStrength] | None = None,
) -> list[_Style]:
    """The style of each of ``n`` boxes, from their classes (faces when ``None``); ``modes``
    and ``strengths`` (one per box: enum or its value, "" or None = the class's) override
    the class's."""
    if classes is None:
        cls = np.full(n, int(ObjectClass.FACE))
    else:
        cls = np.asarray(classes).reshape(-1)
        if cls.shape[0] != n:
            raise ValueError(f"classes has {cls.shape[0]} entries but boxes has {n}")
    per_mode = _per_box(modes, n, "modes")
    per_strength = _per_box(strengths, n, "strengths")
    out = []
    for i, c in enumerate(int(v) for v in cls):
        m = per_mode[i] if per_mode is not None else None
        st = per_strength[i] if per_strength is not None else None
        mode = BlurMode(m) if m else cfg.mode_for(c)
        strength = BlurStrength(st) if st else cfg.strength_for(c)
        params = STRENGTHS[mode][strength]
        out.append(_Style(cfg.shape_for(c), cfg.dilate_for(c) + params.dilate_bonus, mode, params))
    return out


def blur_mask(
    shape: tuple[int, int],
    boxes: npt.ArrayLike,
    cfg: BlurConfig,
    *,
    wrap: bool,
    classes: npt.ArrayLike | None = None,
    modes: Sequence[str | BlurMode] | None = None,
    strengths: Sequence[str | BlurStrength] | None = None,
) -> npt.NDArray[np.bool_]:
    """(H, W) bool mask of the pixels :func:`blur_regions` changes (shape + feather)."""
    height, width = int(shape[0]), int(shape[1])
    mask = np.zeros((height, width), dtype=bool)
    arr = _validate_boxes(boxes)
    styles = _styles(len(arr), classes, cfg, modes, strengths)
    for box, style in zip(arr, styles, strict=True):
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
    modes: Sequence[str | BlurMode] | None = None,
    strengths: Sequence[str | BlurStrength] | None = None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Irreversibly anonymise ``boxes`` in an image.

    Args:
        pixels: (H, W, C) uint8 image (C in 1..4; (H, W) accepted). Not modified.
        boxes: (N, 4) xyxy in pixels. With ``wrap`` boxes may be unwrapped (``x2 > W``).
        cfg: blur settings.
        wrap: the image is an equirectangular panorama: regions wrap around in x.
        classes: (N,) ObjectClass values choosing each box's shape, dilation, mode and
            strength (``cfg.shapes``, ``cfg.class_dilate``, ``cfg.mode``, ``cfg.strength``);
            ``None`` treats every box as a face.
        modes, strengths: (N,) per-box overrides of the class's mode / strength (enum or
            its value; "" or None = the class's), e.g. a manual region's.

    Returns:
        ``(out, mask)``: a new image of the input's shape, and the (H, W) bool mask of the
        pixels that were replaced or feathered. Pixels outside the mask equal the input.

    Raises:
        ValueError: bad pixels, or ``classes``/``modes``/``strengths`` of the wrong length or
            with an unknown value.
    """
    src = np.asarray(pixels)
    img = _as_image(src)
    height, width = img.shape[:2]
    out = img.copy()
    mask = np.zeros((height, width), dtype=bool)
    arr = _validate_boxes(boxes)
    styles = _styles(len(arr), classes, cfg, modes, strengths)
    for box, style in zip(arr, styles, strict=True):
        reg = _region(box, cfg, style, height, width, wrap)
        if reg is None:
            continue
        win = out[reg.y0 : reg.y1, reg.cols]
        new = _replacement(np.ascontiguousarray(win), reg, style, cfg)
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
