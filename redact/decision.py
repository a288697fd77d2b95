"""Per-class thresholds: which merged detections get blurred, reviewed or only recorded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from redact.classes import Decision, ObjectClass
from redact.config import ClassThresholds, RedactConfig
from redact.detections import Detections
from redact.merge import merge_detections


def giant_mask(
    dets: Detections,
    thresholds: Mapping[ObjectClass, ClassThresholds],
    image_height: float,
) -> npt.NDArray[np.bool_]:
    """(N,) True for boxes taller than their class's ``review_max_height`` x ``image_height``
    (pixels) that score below its ``giant_min_score``: the size prior (see
    :class:`ClassThresholds`). Classes missing from ``thresholds`` never match."""
    n = len(dets)
    max_h = np.zeros(n, np.float32)
    giant_min = np.zeros(n, np.float32)
    for cls, t in thresholds.items():
        sel = dets.class_id == int(cls)
        max_h[sel], giant_min[sel] = t.review_max_height, t.giant_min_score
    limit = max_h * np.float32(image_height)
    height = dets.xyxy[:, 3] - dets.xyxy[:, 1]
    return np.asarray((limit > 0) & (height > limit) & (dets.confidence < giant_min), bool)


def decide(
    dets: Detections,
    thresholds: Mapping[ObjectClass, ClassThresholds],
    image_height: float | None = None,
) -> tuple[Detections, list[Decision]]:
    """Apply per-class thresholds.

    Returns the detections at or above their class's ``floor`` and one decision each:
    ``BLUR`` (score >= blur), ``REVIEW`` (review <= score < blur; still blurred) or
    ``DROPPED`` (floor <= score < review; recorded in the manifest only). With
    ``image_height`` (pixels), a box scoring below ``giant_min_score`` and taller than
    ``review_max_height`` x ``image_height`` is ``DROPPED`` too (:func:`giant_mask`).
    """
    n = len(dets)
    blur = np.zeros(n, np.float32)  # unknown classes cannot come from a validated config:
    review = np.zeros(n, np.float32)  # keep them blurred rather than lose them
    floor = np.zeros(n, np.float32)
    for cls, t in thresholds.items():
        sel = dets.class_id == int(cls)
        blur[sel], review[sel], floor[sel] = t.blur, t.review, t.floor
    keep = dets.confidence >= floor
    kept = dets[keep]
    s = kept.confidence
    giant = (
        giant_mask(kept, thresholds, image_height)
        if image_height is not None
        else np.zeros(len(kept), bool)
    )
    decisions = [
        Decision.DROPPED
        if g
        else Decision.BLUR
        if sb
        else Decision.REVIEW
        if sr
        else Decision.DROPPED
        for g, sb, sr in zip(giant, s >= blur[keep], s >= review[keep], strict=True)
    ]
    return kept, decisions


def select_regions(
    tile_detections: Sequence[Detections],
    config: RedactConfig,
    width: int,
    height: int,
    *,
    wrap: bool,
) -> tuple[Detections, list[Decision]]:
    """One image's tile detections (already in image pixels) -> merged, decided detections.

    Drops raw boxes below the config's score floor, merges them (seam-aware when ``wrap``:
    equirectangular panoramas) and applies the per-class thresholds. The size prior is
    angular, so it applies only to panoramas, whose height is a known 180 deg.
    """
    raw = Detections.merge(list(tile_detections))
    raw = raw[raw.confidence >= config.score_floor]
    period = float(width) if wrap else None
    if not wrap:
        return decide(merge_detections(raw, config.merge, period), config.thresholds)
    # The size prior runs on the RAW boxes: merged first, a low-scoring giant would absorb a
    # smaller confident box (union merge) and take it down with it. Giants are merged among
    # themselves and recorded as dropped candidates.
    giant = giant_mask(raw, config.thresholds, float(height))
    kept, decisions = decide(merge_detections(raw[~giant], config.merge, period), config.thresholds)
    giants, giant_decisions = decide(
        merge_detections(raw[giant], config.merge, period), config.thresholds, float(height)
    )
    return Detections.merge([kept, giants]), decisions + giant_decisions
