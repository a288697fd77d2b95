"""What a published copy actually blurred, measured against the original's pixels.

:func:`blurred_mask`
    A pixel counts as blurred when the local RMS difference between the published copy and
    the original (squared RGB difference averaged over channels, Gaussian-weighted) reaches
    ``threshold`` 8-bit levels both over a neighbourhood (``sigma_px`` 2) and right at the
    pixel (``fine_sigma_px`` 0.8, which keeps the mask from spreading past the region's
    edge); small holes are then closed (5 px ellipse). JPEG re-encoding does not count:
    on a raw dev panorama re-encoded at quality 70-95 the untouched pixels' local RMS stays
    below 4.4 levels (99.9th percentile 2.4), while redact's blur (pixelation + noise of
    ``noise_sigma`` 10) puts 99.9 % of its interior above 4.5. Against the pipeline's own
    changed-pixel mask (:func:`redact.blur.blur_mask`), after re-encoding at quality 75-95:
    IoU 0.96-0.985 on that panorama crop (0.88-0.93 on a synthetic high-contrast texture,
    where differences are larger at the edges), >= 99 % of the regions' interior found, no
    pixel flagged beyond the blur margin. A blur without added noise over flat content
    changes too little to be seen: such pixels are missed, but they held no detail either.

:func:`detail_retained`
    How much of an object's identifying detail survives in the published copy. Both crops
    are scaled so the object is :data:`CANONICAL_HEIGHT_PX` tall, band-passed (Laplacian of a
    sigma-1 Gaussian: structure at the scale of eyes or plate characters), and the share of
    the original's band-pass signal found again in the published one is measured as
    ``|cov(orig, pub)| / var(orig)`` -- added noise does not raise it, unlike a correlation.
    It is computed over the whole object and each of its four halves (left, right, top,
    bottom; halves without detail are skipped) and the maximum is returned, so an object
    left half-blurred is caught. ``None`` when the original has no detail to lose (a flat,
    already-anonymised patch).

An object is **sufficiently blurred** when ``detail_retained <= DETAIL_BOUND`` (0.5).
Calibration (264 MaskON faces >= 8 px, JPEG quality 85): redact's default blur gives median
0.06, 95th percentile 0.22, max 0.44; half the face left untouched gives >= 0.85; an untouched
re-encoded face >= 0.99.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

CANONICAL_HEIGHT_PX = 32
DETAIL_BOUND = 0.5
MIN_DETAIL_VAR = 2.0  # band-pass variance (levels^2) below which a region has no detail
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class DiffConfig:
    """Parameters of :func:`blurred_mask` (see the module docstring for the calibration)."""

    sigma_px: float = 2.0
    fine_sigma_px: float = 0.8  # 0 = neighbourhood test only
    threshold: float = 4.5  # local RMS difference, 8-bit levels
    close_px: int = 5

    def __post_init__(self) -> None:
        if not self.sigma_px > 0:
            raise ValueError(f"sigma_px must be > 0, got {self.sigma_px}")
        if self.fine_sigma_px < 0:
            raise ValueError(f"fine_sigma_px must be >= 0, got {self.fine_sigma_px}")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")
        if self.close_px < 0:
            raise ValueError(f"close_px must be >= 0, got {self.close_px}")


def _rgb(a: npt.ArrayLike, name: str) -> npt.NDArray[np.uint8]:
    img = np.asarray(a)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.dtype != np.uint8:
        raise ValueError(f"{name} must be (H, W[, C]) uint8, got {img.shape} {img.dtype}")
    return img


def blurred_mask(
    original: npt.ArrayLike, published: npt.ArrayLike, cfg: DiffConfig | None = None
) -> npt.NDArray[np.bool_]:
    """(H, W) bool: pixels the published copy blurred. Inputs: (H, W, C) uint8, same shape."""
    cfg = cfg or DiffConfig()
    a, b = _rgb(original, "original"), _rgb(published, "published")
    if a.shape != b.shape:
        raise ValueError(f"original {a.shape} and published {b.shape} differ in shape")
    d2 = np.zeros(a.shape[:2], np.float32)
    for c in range(a.shape[2]):  # per channel: avoids an (H, W, C) float copy
        diff = cv2.subtract(a[:, :, c], b[:, :, c], dtype=cv2.CV_32F)
        d2 += diff * diff
    d2 /= np.float32(a.shape[2])
    t2 = np.float32(cfg.threshold**2)
    local = cv2.GaussianBlur(d2, (0, 0), cfg.sigma_px, borderType=cv2.BORDER_REFLECT)
    hit = local >= t2
    if cfg.fine_sigma_px > 0:
        near = cv2.GaussianBlur(d2, (0, 0), cfg.fine_sigma_px, borderType=cv2.BORDER_REFLECT)
        hit &= near >= t2
    mask = hit.astype(np.uint8)
    if cfg.close_px > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (cfg.close_px, cfg.close_px))
        return np.asarray(cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel), bool)
    return mask.astype(bool)


def box_columns(x1: float, x2: float, width: int, wrap: bool) -> npt.NDArray[np.intp]:
    """Column indices whose pixel centres lie in ``[x1, x2]``, left to right.

    With ``wrap`` (panorama, unwrapped box) indices are taken mod W, at most W of them;
    otherwise they are clipped to the image. A box narrower than a pixel still gets the
    column holding its centre.
    """
    lo, hi = math.ceil(x1 - 0.5), math.floor(x2 - 0.5)
    if hi < lo:
        lo = hi = math.floor((x1 + x2) / 2.0)
    if wrap:
        return np.arange(lo, min(hi + 1, lo + width), dtype=np.intp) % width
    cols = np.arange(lo, hi + 1, dtype=np.intp)
    return cols[(cols >= 0) & (cols < width)]


def box_rows(y1: float, y2: float, height: int) -> npt.NDArray[np.intp]:
    """Row indices whose pixel centres lie in ``[y1, y2]`` (clipped to the image)."""
    lo, hi = math.ceil(y1 - 0.5), math.floor(y2 - 0.5)
    if hi < lo:
        lo = hi = math.floor((y1 + y2) / 2.0)
    rows = np.arange(lo, hi + 1, dtype=np.intp)
    return rows[(rows >= 0) & (rows < height)]


def crop(
    img: npt.NDArray[np.generic], box: tuple[float, float, float, float], wrap: bool
) -> npt.NDArray[np.generic]:
    """The pixels of ``box`` (pixel centres inside it) as a new array; wraps across the seam."""
    h, w = img.shape[:2]
    rows = box_rows(box[1], box[3], h)
    cols = box_columns(box[0], box[2], w, wrap)
    return img[rows[:, None], cols[None, :]]


def coverage(
    mask: npt.NDArray[np.bool_], box: tuple[float, float, float, float], wrap: bool
) -> tuple[int, int]:
    """(blurred pixels, total pixels) of ``box`` in a (H, W) bool mask."""
    c = crop(mask, box, wrap)
    return int(np.count_nonzero(c)), int(c.size)


def _luma(img: npt.ArrayLike) -> npt.NDArray[np.float32]:
    a = np.asarray(img, np.float32)
    if a.ndim == 3:
        a = a[:, :, :3] @ _LUMA if a.shape[2] >= 3 else a[:, :, 0]
    return np.ascontiguousarray(a, dtype=np.float32)


def _band(img: npt.NDArray[np.float32], height: float) -> npt.NDArray[np.float32]:
    """Band-pass of a luma crop at the canonical scale (object ``height`` px tall)."""
    s = CANONICAL_HEIGHT_PX / max(height, 1.0)
    w = max(round(img.shape[1] * s), 2)
    h = max(round(img.shape[0] * s), 2)
    interp = cv2.INTER_AREA if s < 1.0 else cv2.INTER_LINEAR
    small = cv2.resize(img, (w, h), interpolation=interp)
    smooth = cv2.GaussianBlur(small, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT)
    band = cv2.Laplacian(smooth, cv2.CV_32F, borderType=cv2.BORDER_REFLECT)
    return np.asarray(band, dtype=np.float32)


def detail_retained(original: npt.ArrayLike, published: npt.ArrayLike) -> float | None:
    """Share (>= 0; ~1 = untouched, ~0 = destroyed) of the original crop's band-pass detail
    present in the published crop; max over the whole crop and its four halves.

    Args:
        original, published: (h, w[, C]) crops of one object, same shape (uint8 or float).

    Returns:
        The retained share, or ``None`` if the original crop has no detail.
    """
    a, b = _luma(original), _luma(published)
    if a.shape != b.shape:
        raise ValueError(f"crops differ in shape: {a.shape} vs {b.shape}")
    if a.size == 0:
        return None
    la, lb = _band(a, a.shape[0]), _band(b, a.shape[0])
    h, w = la.shape
    regions = (
        (slice(0, h), slice(0, w)),
        (slice(0, h), slice(0, max(w // 2, 1))),
        (slice(0, h), slice(w // 2, w)),
        (slice(0, max(h // 2, 1)), slice(0, w)),
        (slice(h // 2, h), slice(0, w)),
    )
    best: float | None = None
    for i, (rs, cs) in enumerate(regions):
        x = la[rs, cs].astype(np.float64).ravel()
        y = lb[rs, cs].astype(np.float64).ravel()
        x -= x.mean()
        y -= y.mean()
        var = float(np.dot(x, x)) / x.size
        if var < MIN_DETAIL_VAR:
            if i == 0:
                return None  # the object as a whole has no detail to lose
            continue
        r = abs(float(np.dot(x, y)) / x.size) / var
        best = r if best is None else max(best, r)
    return best


def sufficiently_blurred(retained: float | None, bound: float = DETAIL_BOUND) -> bool | None:
    """``retained <= bound``; ``None`` when there was no detail to measure."""
    return None if retained is None else retained <= bound
