"""One-to-one matching of detections to ground-truth boxes (COCO style).

Detections are taken in descending score order; each matches the unmatched, non-ignored
ground-truth box it overlaps most (IoU >= the threshold). A detection with no such box that
overlaps an *ignored* (don't-care) box by IoU >= the threshold is ignored: neither a true nor a
false positive. Everything else is a false positive.

Because the order is by score, matching only the detections scoring >= t gives exactly the
first part of the full matching: precision/recall at every threshold come from one pass
(:mod:`redact.evaluation.sweep`).

Panorama boxes are unwrapped (``x2`` may exceed ``W``); pass ``wrap_width=W`` to measure
overlap on the cylinder (:func:`redact.geometry.boxes.box_iou_wrapped`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from redact.geometry.boxes import box_iou, box_iou_wrapped


class DetStatus(enum.IntEnum):
    FP = 0
    TP = 1
    IGNORED = 2


@dataclass(frozen=True)
class Match:
    """Result of matching N detections with M ground-truth boxes.

    Attributes:
        det_status: (N,) int8 :class:`DetStatus` of each detection.
        det_gt: (N,) int64 index of the matched ground-truth box, -1 if none.
        gt_det: (M,) int64 index of the detection matched to each box, -1 if none
            (always -1 for ignored boxes).
        gt_best_iou: (M,) float64 best IoU of any detection with each box (0 if none).
    """

    det_status: npt.NDArray[np.int8]
    det_gt: npt.NDArray[np.int64]
    gt_det: npt.NDArray[np.int64]
    gt_best_iou: npt.NDArray[np.float64]


def iou_matrix(
    gt: npt.ArrayLike, det: npt.ArrayLike, wrap_width: float | None = None
) -> npt.NDArray[np.float64]:
    """(M, 4) ground truth, (N, 4) detections -> (M, N) IoU (seam-aware with ``wrap_width``)."""
    if wrap_width is None:
        return box_iou(gt, det)
    return box_iou_wrapped(gt, det, wrap_width)


def match_detections(
    gt_boxes: npt.ArrayLike,
    gt_ignore: npt.ArrayLike,
    det_boxes: npt.ArrayLike,
    det_scores: npt.ArrayLike,
    iou_threshold: float,
    wrap_width: float | None = None,
) -> Match:
    """Greedy one-to-one matching by descending score (ties: input order).

    Args:
        gt_boxes: (M, 4) xyxy ground truth, pixels.
        gt_ignore: (M,) bool, don't-care boxes.
        det_boxes: (N, 4) xyxy detections, pixels.
        det_scores: (N,) scores.
        iou_threshold: minimum IoU of a match, in (0, 1].
        wrap_width: panorama width for seam-aware IoU, or None.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    gt = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    ign = np.asarray(gt_ignore, bool).reshape(-1)
    det = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(det_scores, np.float64).reshape(-1)
    m, n = gt.shape[0], det.shape[0]
    if ign.shape[0] != m:
        raise ValueError(f"gt_ignore has {ign.shape[0]} entries but gt_boxes has {m}")
    if scores.shape[0] != n:
        raise ValueError(f"det_scores has {scores.shape[0]} entries but det_boxes has {n}")
    status = np.full(n, DetStatus.FP, np.int8)
    det_gt = np.full(n, -1, np.int64)
    gt_det = np.full(m, -1, np.int64)
    if m == 0 or n == 0:
        return Match(status, det_gt, gt_det, np.zeros(m))
    iou = iou_matrix(gt, det, wrap_width)  # (M, N)
    best = iou.max(axis=1)
    real = ~ign
    free = real.copy()
    for j in np.argsort(-scores, kind="stable"):
        col = iou[:, j]
        cand = np.where(free & (col >= iou_threshold), col, -1.0)
        i = int(np.argmax(cand))
        if cand[i] >= 0.0:
            status[j] = DetStatus.TP
            det_gt[j] = i
            gt_det[i] = j
            free[i] = False
        elif np.any(ign & (col >= iou_threshold)):
            status[j] = DetStatus.IGNORED
    return Match(status, det_gt, gt_det, best)
