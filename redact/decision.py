"""Per-class thresholds: which merged detections get blurred, reviewed or only recorded."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from redact.classes import Decision, ObjectClass
from redact.config import ClassThresholds
from redact.detections import Detections


def decide(
    dets: Detections, thresholds: Mapping[ObjectClass, ClassThresholds]
) -> tuple[Detections, list[Decision]]:
    """Apply per-class thresholds.

    Returns the detections at or above their class's ``floor`` and one decision each:
    ``BLUR`` (score >= blur), ``REVIEW`` (review <= score < blur; still blurred) or
    ``DROPPED`` (floor <= score < review; recorded in the manifest only).
    """
    n = len(dets)
    blur = np.empty(n, np.float32)
    review = np.empty(n, np.float32)
    floor = np.empty(n, np.float32)
    for cls, t in thresholds.items():
        sel = dets.class_id == int(cls)
        blur[sel], review[sel], floor[sel] = t.blur, t.review, t.floor
    known = np.isin(dets.class_id, [int(c) for c in thresholds])
    # Unknown classes cannot come from a validated config; keep them blurred rather than lose them.
    blur[~known], review[~known], floor[~known] = 0.0, 0.0, 0.0
    keep = dets.confidence >= floor
    kept = dets[keep]
    s = kept.confidence
    decisions = [
        Decision.BLUR if sb else Decision.REVIEW if sr else Decision.DROPPED
        for sb, sr in zip(s >= blur[keep], s >= review[keep], strict=True)
    ]
    return kept, decisions
