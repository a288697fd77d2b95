"""Per-class thresholds: which merged detections get blurred, reviewed or only recorded
(after the optional stage-2 post-processor, :mod:`redact.postprocess`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from redact.classes import Decision, ObjectClass, Reason
from redact.config import ClassThresholds, RedactConfig
from redact.detections import Detections
from redact.errors import ImageError, Stage
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


def _decide(
    dets: Detections,
    thresholds: Mapping[ObjectClass, ClassThresholds],
    image_height: float | None,
    floor_scores: npt.NDArray[np.float32] | None,
) -> tuple[npt.NDArray[np.bool_], list[Decision], list[Reason]]:
    """(N,) kept mask (``floor_scores``, default the confidence, >= the class floor), one
    decision and one reason per kept detection, from its confidence (see :func:`decide`)."""
    n = len(dets)
    blur = np.zeros(n, np.float32)  # unknown classes cannot come from a validated config:
    review = np.zeros(n, np.float32)  # keep them blurred rather than lose them
    floor = np.zeros(n, np.float32)
    for cls, t in thresholds.items():
        sel = dets.class_id == int(cls)
        blur[sel], review[sel], floor[sel] = t.blur, t.review, t.floor
    keep = (dets.confidence if floor_scores is None else floor_scores) >= floor
    kept = dets[keep]
    s = kept.confidence
    giant = (
        giant_mask(kept, thresholds, image_height)
        if image_height is not None
        else np.zeros(len(kept), bool)
    )
    reasons = [
        Reason.SIZE_PRIOR
        if g
        else Reason.ABOVE_BLUR
        if sb
        else Reason.REVIEW_BAND
        if sr
        else Reason.BELOW_REVIEW
        for g, sb, sr in zip(giant, s >= blur[keep], s >= review[keep], strict=True)
    ]
    return np.asarray(keep, bool), [_DECISION_OF[r] for r in reasons], reasons


_DECISION_OF = {
    Reason.SIZE_PRIOR: Decision.DROPPED,
    Reason.ABOVE_BLUR: Decision.BLUR,
    Reason.REVIEW_BAND: Decision.REVIEW,
    Reason.BELOW_REVIEW: Decision.DROPPED,
    Reason.MANUAL_REGION: Decision.MANUAL,
}


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
    keep, decisions, _ = _decide(dets, thresholds, image_height, None)
    return dets[keep], decisions


def decide_with_reasons(
    dets: Detections,
    thresholds: Mapping[ObjectClass, ClassThresholds],
    image_height: float | None = None,
) -> tuple[Detections, list[Decision], list[Reason]]:
    """:func:`decide` with the reason of each decision."""
    keep, decisions, reasons = _decide(dets, thresholds, image_height, None)
    return dets[keep], decisions, reasons


Rescore = Callable[[Detections], tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]
"""Stage 2 of one image: merged candidates (``confidence`` = stage-1 score) ->
``(stage2, final)`` scores, each (N,) float32 in [0, 1] (see :mod:`redact.postprocess`)."""


@dataclass(frozen=True)
class Selection:
    """One image's decided candidates.

    Attributes:
        detections: N merged candidates, image pixels; ``confidence`` = the score the
            decision used (the final score with stage 2, else the detector's).
        decisions: one per detection.
        stage1: (N,) float32 the detector's (merged) score.
        stage2: (N,) float32 the post-processor's score; NaN where stage 2 did not score the
            candidate (no post-processor, or a giant the size prior dropped).
        reasons: one per detection, why it got its decision (empty: not recorded).
    """

    detections: Detections
    decisions: list[Decision]
    stage1: npt.NDArray[np.float32]
    stage2: npt.NDArray[np.float32]
    reasons: list[Reason] = field(default_factory=list)


def _checked(scores: npt.ArrayLike, n: int, what: str) -> npt.NDArray[np.float32]:
    a = np.asarray(scores, np.float32)
    if a.shape != (n,) or not np.all(np.isfinite(a)) or np.any((a < 0) | (a > 1)):
        raise ImageError(
            "postprocess_failed",
            f"post-processor {what} scores must be ({n},) finite in [0, 1], got shape "
            f"{a.shape}{'' if a.shape != (n,) else ' with non-finite or out-of-range values'}",
            Stage.MERGE,
        )
    return a


def _stage(
    merged: Detections,
    thresholds: Mapping[ObjectClass, ClassThresholds],
    rescore: Rescore | None,
) -> Selection:
    """Floor on the stage-1 score, then stage 2 (if any), then the thresholds."""
    keep, _, _ = _decide(merged, thresholds, None, None)
    cands = merged[keep]
    s1 = cands.confidence.copy()
    if rescore is None or not len(cands):
        decided, decisions, reasons = _decide(cands, thresholds, None, None)
        return Selection(
            cands[decided],
            decisions,
            s1[decided],
            np.full(len(s1), np.nan, np.float32)[decided],
            reasons,
        )
    raw2, raw_final = rescore(cands)
    s2 = _checked(raw2, len(cands), "stage-2")
    final = _checked(raw_final, len(cands), "final")
    scored = Detections(cands.xyxy, final, cands.class_id, cands.source)
    decided, decisions, reasons = _decide(scored, thresholds, None, s1)
    return Selection(scored[decided], decisions, s1[decided], s2[decided], reasons)


def select_candidates(
    tile_detections: Sequence[Detections],
    config: RedactConfig,
    width: int,
    height: int,
    *,
    wrap: bool,
    rescore: Rescore | None = None,
) -> Selection:
    """One image's tile detections (already in image pixels) -> merged, decided candidates.

    Drops raw boxes below the config's score floor, merges them (seam-aware when ``wrap``:
    equirectangular panoramas), keeps those at or above their class's ``floor`` (stage-1
    score), rescoring them with ``rescore`` (stage 2) when given, and applies the per-class
    ``blur``/``review`` thresholds to the final score. The size prior is angular, so it
    applies only to panoramas, whose height is a known 180 deg; it judges the stage-1 score
    of the raw boxes, and its giants are never rescored.

    Raises:
        ImageError: ``rescore`` returned a wrong shape, a non-finite or out-of-range score.
    """
    raw = Detections.merge(list(tile_detections))
    raw = raw[raw.confidence >= config.score_floor]
    period = float(width) if wrap else None
    if not wrap:
        return _stage(merge_detections(raw, config.merge, period), config.thresholds, rescore)
    # The size prior runs on the RAW boxes: merged first, a low-scoring giant would absorb a
    # smaller confident box (union merge) and take it down with it. Giants are merged among
    # themselves and recorded as dropped candidates.
    giant = giant_mask(raw, config.thresholds, float(height))
    kept = _stage(merge_detections(raw[~giant], config.merge, period), config.thresholds, rescore)
    giants, giant_decisions, giant_reasons = decide_with_reasons(
        merge_detections(raw[giant], config.merge, period), config.thresholds, float(height)
    )
    return Selection(
        Detections.merge([kept.detections, giants]),
        kept.decisions + giant_decisions,
        np.concatenate([kept.stage1, giants.confidence]).astype(np.float32),
        np.concatenate([kept.stage2, np.full(len(giants), np.nan, np.float32)]),
        kept.reasons + giant_reasons,
    )


def select_regions(
    tile_detections: Sequence[Detections],
    config: RedactConfig,
    width: int,
    height: int,
    *,
    wrap: bool,
) -> tuple[Detections, list[Decision]]:
    """Stage 1 alone: :func:`select_candidates` without a post-processor, as (detections,
    decisions)."""
    sel = select_candidates(tile_detections, config, width, height, wrap=wrap)
    return sel.detections, sel.decisions
