"""Decoding raw YOLOv8 detection heads into :class:`Detections`.

A YOLOv8 (ultralytics export, ``nms=False``) head is ``(B, 4 + nc + extra, A)``: per anchor
the box ``cx, cy, w, h`` in input pixels, then ``nc`` class scores (already sigmoid-ed), then
the registry's ``extra_channels`` (e.g. 15 keypoint values of a 5-point face pose model),
which are ignored. The layout is a contract, checked on every batch (:func:`check_head`):
nothing is transposed or guessed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from redact.classes import ObjectClass
from redact.detections import Detections

DEFAULT_MAX_CANDIDATES = 30_000  # pre-NMS cap per image (ultralytics uses the same)
DEFAULT_MAX_DETECTIONS = 1_000  # post-NMS cap per image: generous, recall first


SCORE_TOLERANCE = 1e-3  # class scores may stray this far outside [0, 1] (fp16 rounding)


class DetectorOutputError(RuntimeError):
    """A detector's raw head breaks the output contract: wrong shape, NaN/inf, or class scores
    outside [0, 1]. Raised per batch, so Beam sends the batch to the dead-letter output."""


def _who(model: str) -> str:
    return f"model {model!r}" if model else "model"


def check_head(
    output: np.ndarray,
    *,
    num_classes: int,
    extra_channels: int = 0,
    model: str = "",
    batch: int | None = None,
) -> np.ndarray:
    """Check a raw YOLOv8 head against its contract and return it unchanged.

    The head must be exactly ``(B, 4 + num_classes + extra_channels, A)``: nothing is
    transposed or guessed (a ``(B, A, C)`` head, or a channel count other than the registered
    one, is refused). The box and score channels must be finite, and the scores in [0, 1]
    (within :data:`SCORE_TOLERANCE`). Extra channels are not checked.

    Args:
        output: the raw head.
        num_classes: nc, score channels after the 4 box channels.
        extra_channels: channels after the scores (registry ``extra_channels``).
        model: model id for the error messages.
        batch: expected B (None = any).

    Raises:
        DetectorOutputError: one line naming the model, what was got and what was expected.
    """
    out = np.asarray(output)
    need = 4 + num_classes + extra_channels
    b = "B" if batch is None else f"B={batch}"
    expected = f"({b}, {need}, A) = 4 box + {num_classes} class + {extra_channels} extra channels"
    if (
        out.ndim != 3
        or out.shape[1] != need
        or out.shape[2] < 1
        or (batch is not None and out.shape[0] != batch)
    ):
        raise DetectorOutputError(
            f"{_who(model)}: raw head has shape {tuple(out.shape)}, expected {expected} "
            "(a transposed or differently sized head is refused, never reinterpreted)"
        )
    if not np.issubdtype(out.dtype, np.floating):
        raise DetectorOutputError(f"{_who(model)}: raw head has dtype {out.dtype}, expected float")
    core = out[:, : 4 + num_classes, :]
    finite = np.isfinite(core)
    if not finite.all():
        bad = np.argwhere(~finite)
        i, c, a = (int(v) for v in bad[0])
        raise DetectorOutputError(
            f"{_who(model)}: raw head has {len(bad)} non-finite (NaN/inf) box/score values, "
            f"first {float(core[i, c, a])} at image {i}, channel {c}, anchor {a}"
        )
    scores = core[:, 4:, :]
    lo, hi = float(scores.min()), float(scores.max())
    if lo < -SCORE_TOLERANCE or hi > 1.0 + SCORE_TOLERANCE:
        raise DetectorOutputError(
            f"{_who(model)}: class scores span [{lo:.4g}, {hi:.4g}], expected [0, 1] "
            "(the head must carry sigmoid scores; wrong num_classes/extra_channels?)"
        )
    return out


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) centre/size boxes -> (N, 4) float32 corner boxes (same units)."""
    b = np.asarray(boxes, dtype=np.float32)
    half = b[:, 2:4] * 0.5
    return np.concatenate([b[:, 0:2] - half, b[:, 0:2] + half], axis=1)


def box_iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) xyxy box with (N, 4) xyxy boxes -> (N,) float32 (0 for empty unions)."""
    ix1 = np.maximum(box[0], boxes[:, 0])
    iy1 = np.maximum(box[1], boxes[:, 1])
    ix2 = np.minimum(box[2], boxes[:, 2])
    iy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (box[2] - box[0]) * (box[3] - box[1])
    area_b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou.astype(np.float32)


def nms(
    xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Class-aware greedy NMS.

    Args:
        xyxy: (N, 4) boxes, pixels.
        scores: (N,) scores.
        classes: (N,) integer class ids; boxes of different classes never suppress each other.
        iou_threshold: a box is suppressed when its IoU with a kept, higher-scoring box of the
            same class is strictly greater than this.

    Returns:
        (K,) int64 indices of kept boxes, by decreasing score (ties: lower index first).
    """
    n = len(scores)
    if n == 0:
        return np.zeros(0, np.int64)
    # Shift each class to its own region so one IoU pass is class-aware.
    boxes = np.asarray(xyxy, np.float64)
    span = float(np.max(boxes) - min(float(np.min(boxes)), 0.0)) + 1.0
    boxes = boxes + (np.asarray(classes, np.float64) * span)[:, None]
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        iou = box_iou_one_to_many(boxes[i], boxes[rest])
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def _class_table(
    class_map: Sequence[ObjectClass | None], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    if len(class_map) != num_classes:
        raise ValueError(
            f"class_map has {len(class_map)} entries but the model has {num_classes} classes"
        )
    mapped = np.array([c is not None for c in class_map], dtype=bool)
    ids = np.array([int(c) if c is not None else -1 for c in class_map], dtype=np.int32)
    return mapped, ids


def decode_yolov8(
    output: np.ndarray,
    *,
    num_classes: int,
    class_map: Sequence[ObjectClass | None],
    score_floor: float,
    nms_iou: float,
    input_size: int | tuple[int, int],
    source: int = 0,
    extra_channels: int = 0,
    model: str = "",
    batch: int | None = None,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
) -> list[Detections]:
    """Decode a YOLOv8 head into one :class:`Detections` per image.

    Args:
        output: (B, 4 + nc + extra, A) float raw head; checked by :func:`check_head`.
        num_classes: nc, the number of score channels after the 4 box channels.
        class_map: nc entries, model class index -> ObjectClass, or None to ignore the class.
        score_floor: candidates with best mapped score below this are dropped.
        nms_iou: class-aware NMS IoU threshold (per image, on mapped classes).
        input_size: model input size in pixels, ``S`` or ``(width, height)``; boxes are
            clipped to it.
        source: value stored in ``Detections.source`` (model index in the ensemble).
        extra_channels: channels after the class scores (ignored, but part of the shape).
        model: model id for error messages.
        batch: expected B (None = any).
        max_candidates: keep at most this many top-scoring candidates before NMS.
        max_detections: keep at most this many boxes after NMS.

    Returns:
        B Detections in input pixel coordinates, class_id = ObjectClass values.

    Raises:
        DetectorOutputError: the head breaks its contract (see :func:`check_head`).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    mapped, ids = _class_table(class_map, num_classes)
    out = check_head(
        output, num_classes=num_classes, extra_channels=extra_channels, model=model, batch=batch
    )
    w_in, h_in = (input_size, input_size) if isinstance(input_size, int) else input_size
    results: list[Detections] = []
    if not mapped.any():
        return [Detections.empty() for _ in range(out.shape[0])]
    mapped_idx = np.flatnonzero(mapped)
    for b in range(out.shape[0]):
        # (nc_mapped, A) scores of mapped classes only.
        scores_all = out[b, 4 + mapped_idx, :].astype(np.float32, copy=False)
        best = np.argmax(scores_all, axis=0)
        score = np.take_along_axis(scores_all, best[None, :], axis=0)[0]
        cand = np.flatnonzero(score >= score_floor)
        if cand.size == 0:
            results.append(Detections.empty())
            continue
        if cand.size > max_candidates:
            top = np.argsort(-score[cand], kind="stable")[:max_candidates]
            cand = np.sort(cand[top])
        cls = ids[mapped_idx[best[cand]]]
        conf = score[cand]
        xyxy = cxcywh_to_xyxy(out[b][0:4, cand].T)
        xyxy = np.clip(xyxy, 0.0, np.array([w_in, h_in, w_in, h_in], np.float32))
        keep = nms(xyxy, conf, cls, nms_iou)[:max_detections]
        results.append(
            Detections(
                xyxy[keep],
                conf[keep],
                cls[keep],
                np.full(keep.size, source, np.int16),
            )
        )
    return results
