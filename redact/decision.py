"""Per-class thresholds: which merged detections get blurred, reviewed or only recorded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from redact.classes import Decision, ObjectClass
from redact.config import ClassThresholds, RedactConfig
from redact.detections import Detections
from redact.merge import merge_detections


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
    ``review_max_height`` x ``image_height`` is ``DROPPED`` too (see :class:`ClassThresholds`).
    """
    n = len(dets)
    blur = np.empty(n, np.float32)
    review = np.empty(n, np.float32)
    floor = np.empty(n, np.float32)
    max_h = np.empty(n, np.float32)
    giant_min = np.empty(n, np.float32)
    for cls, t in thresholds.items():
        sel = dets.class_id == int(cls)
        blur[sel], review[sel], floor[sel] = t.blur, t.review, t.floor
        max_h[sel], giant_min[sel] = t.review_max_height, t.giant_min_score
    known = np.isin(dets.class_id, [int(c) for c in thresholds])
    # Unknown classes cannot come from a validated config; keep them blurred rather than lose them.
    blur[~known], review[~known], floor[~known], max_h[~known] = 0.0, 0.0, 0.0, 0.0
    giant_min[~known] = 0.0
    keep = dets.confidence >= floor
    kept = dets[keep]
    s = kept.confidence
    giant = np.zeros(len(kept), bool)
    if image_height is not None:
        limit = max_h[keep] * np.float32(image_height)
        height = kept.xyxy[:, 3] - kept.xyxy[:, 1]
        giant = (limit > 0) & (height > limit) & (s < giant_min[keep])
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
    merged = merge_detections(raw, config.merge, float(width) if wrap else None)
    return decide(merged, config.thresholds, float(height) if wrap else None)
