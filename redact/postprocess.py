"""Stage 2: a learned post-processor that rescores every merged candidate of stage 1.

Stage 1 (the detector over tiles) runs for recall: everything face- or plate-like becomes a
candidate. Stage 2 looks at each merged candidate again with more information than the
detector had (Street View's design): a crop WITH context (about 2x the box: head and
shoulders, the car around a plate) resized to a small fixed size, plus a feature vector
(:data:`FEATURE_NAMES`): the stage-1 score, box size and aspect, panorama geometry (latitude,
angular size and how that size relates to the elevation below the horizon for a camera ~2.5 m
above a ground plane; marked missing on photos), colour statistics of the box and cheap
context (other candidates around it).

The model is an ONNX file (trained by ``scripts/train_postprocess.py``) with inputs
``crops`` (N, 3, S, S) float32 RGB in [0, 1] and ``features`` (N, F) float32, and output
``scores`` (N, C) in [0, 1], one column per class of its registry entry. Its metadata
(``redact_feature_version``, ``redact_context``) must match this module; a mismatch, a
non-finite or out-of-range score, or a failed canary raises (fail closed: the image is
quarantined, never published with fewer blurs).

Final score (:func:`fuse`): the stage-2 score, except that a candidate whose stage-1 score is
at least ``stage1_keep`` keeps ``max(stage1, stage2)`` (stage 2 may only veto low-confidence
candidates), and so does one whose box covers less than ``veto_min_area`` of the image
(:func:`protected_by_area`: a blur's cost is its area, so stage 2 spends its veto where it
buys area back, never on the small, distant faces and plates that stage 1 finds least surely),
one whose stage-2 score is at least its class's ``veto_below`` (stage 2 vetoes only what
it is sure of; a class without a value is never vetoed) and one of a class with a
``veto_min_elevation`` whose box does not lie that far above the horizon
(:func:`protected_by_elevation`: licence plates, whose near and far views stage 2 has not
learned from real examples, may be vetoed only where no road vehicle's plate can be).
:class:`FusionRules` holds these four settings and applies them together; the job, the tuning
scripts and the cost estimates all go through it. The per-class thresholds of the config apply
to the final score; the class ``floor`` still applies to the stage-1 score (what is recorded
at all).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import numpy.typing as npt

from redact.classes import ObjectClass, Projection
from redact.detections import Detections
from redact.errors import ImageError, Stage

if TYPE_CHECKING:
    from redact.config import PostprocessConfig, RedactConfig
    from redact.detection.canary import Canary
    from redact.detection.registry import ModelRegistry, ModelSpec

_LOG = logging.getLogger(__name__)

FEATURE_VERSION = "1"
"""Version of :func:`candidate_features`; a model trained on another version is refused."""

CAMERA_HEIGHT_M = 2.5
"""Assumed camera height above the ground plane (vehicle roof), metres."""

MAX_ASPECT = 2.0
"""The context window's long side is at most this many times its short side (plates)."""

FEATURE_NAMES = (
    "is_face",
    "stage1_score",
    "stage1_logit",
    "log2_height_px",
    "log2_width_px",
    "log2_aspect",
    "is_panorama",
    "latitude_deg",  # box centre; 0 on photos
    "log2_angular_height_deg",  # 0 on photos
    "tan_depression",  # tan(-latitude), clipped to [-3, 3]; 0 on photos
    "log_size_over_depression",  # log(angular height rad / tan(depression)); 0 if not below
    "below_horizon",  # 1 when the box centre is > 0.5 deg below the horizon (panoramas)
    "mean_r",
    "mean_g",
    "mean_b",
    "std_r",
    "std_g",
    "std_b",
    "log_detail",  # log1p(mean |Laplacian|) of the box in the crop, 8-bit levels
    "log_neighbours",  # log1p(other candidates centred inside the context window)
    "other_class_score",  # best stage-1 score of another-class candidate in the window
    "y_rel",  # box centre y / image height
)
N_FEATURES = len(FEATURE_NAMES)


class RescorerError(RuntimeError):
    """The post-processor cannot be used (load, metadata or canary); one line."""


# --- features ---------------------------------------------------------------------------------


def context_windows(
    xyxy: npt.ArrayLike, context: float, max_aspect: float = MAX_ASPECT
) -> npt.NDArray[np.float64]:
    """(N, 4) boxes -> (N, 4) context windows (pixels, same frame as the boxes).

    Each window has the box's centre and ``context`` x its width and height, then its short
    side grows until the aspect ratio is at most ``max_aspect``; both sides at least 4 px.
    """
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    w = np.maximum((b[:, 2] - b[:, 0]) * context, 4.0)
    h = np.maximum((b[:, 3] - b[:, 1]) * context, 4.0)
    w, h = np.maximum(w, h / max_aspect), np.maximum(h, w / max_aspect)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _sample_coords(lo: float, hi: float, size: int) -> npt.NDArray[np.int64]:
    """Integer pixel indices sampling [lo, hi) at most ``2 * size`` times (nearest)."""
    n = int(min(max(math.ceil(hi - lo), 1), 2 * size))
    return np.floor(lo + (np.arange(n) + 0.5) * ((hi - lo) / n)).astype(np.int64)


def extract_crops(
    pixels: npt.NDArray[np.uint8], windows: npt.ArrayLike, size: int, *, wrap: bool
) -> npt.NDArray[np.uint8]:
    """Cut and resize context windows.

    Args:
        pixels: (H, W, 3) uint8 RGB, upright.
        windows: (N, 4) xyxy pixels; on panoramas (``wrap``) x may lie outside [0, W): columns
            wrap around the seam; rows (and photo columns) outside the image repeat the edge.
        size: S, output side in pixels.

    Returns:
        (N, S, S, 3) uint8: each window sampled (nearest) at most 2S times per axis, then
        resized to S x S (area when shrinking, bilinear when enlarging).
    """
    win = np.asarray(windows, np.float64).reshape(-1, 4)
    h, w = pixels.shape[:2]
    out = np.empty((len(win), size, size, 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(win):
        xs = _sample_coords(x1, x2, size)
        ys = np.clip(_sample_coords(y1, y2, size), 0, h - 1)
        xs = np.mod(xs, w) if wrap else np.clip(xs, 0, w - 1)
        patch = pixels[ys[:, None], xs[None, :]]
        shrink = patch.shape[0] > size or patch.shape[1] > size
        out[i] = cv2.resize(
            patch, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
    return out


def _inner_boxes(
    xyxy: npt.NDArray[np.float64], windows: npt.NDArray[np.float64], size: int
) -> npt.NDArray[np.int64]:
    """(N, 4) the box inside its S x S crop, integer pixels, at least 1 px."""
    ww = np.maximum(windows[:, 2] - windows[:, 0], 1e-6)
    wh = np.maximum(windows[:, 3] - windows[:, 1], 1e-6)
    x1 = (xyxy[:, 0] - windows[:, 0]) / ww * size
    x2 = (xyxy[:, 2] - windows[:, 0]) / ww * size
    y1 = (xyxy[:, 1] - windows[:, 1]) / wh * size
    y2 = (xyxy[:, 3] - windows[:, 1]) / wh * size
    ix1 = np.clip(np.floor(x1), 0, size - 1).astype(np.int64)
    iy1 = np.clip(np.floor(y1), 0, size - 1).astype(np.int64)
    ix2 = np.clip(np.ceil(x2), ix1 + 1, size).astype(np.int64)
    iy2 = np.clip(np.ceil(y2), iy1 + 1, size).astype(np.int64)
    return np.stack([ix1, iy1, ix2, iy2], axis=1)


def _colour_stats(
    crops: npt.NDArray[np.uint8], inner: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """(N, 7): mean RGB, std RGB (0..1) and log1p(mean |Laplacian|) inside each inner box."""
    out = np.zeros((len(crops), 7), np.float32)
    for i, (crop, (x1, y1, x2, y2)) in enumerate(zip(crops, inner, strict=True)):
        region = crop[y1:y2, x1:x2].reshape(-1, 3).astype(np.float32) / 255.0
        out[i, 0:3] = region.mean(axis=0)
        out[i, 3:6] = region.std(axis=0)
        gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        lap = np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=1))[y1:y2, x1:x2]
        out[i, 6] = np.log1p(float(lap.mean()))
    return out


def _geometry(
    xyxy: npt.NDArray[np.float64], height: int, panorama: bool
) -> npt.NDArray[np.float32]:
    """(N, 6): is_panorama, latitude, log2 angular height, tan(depression), log(size over
    depression), below_horizon; all 0 for photos (missing)."""
    n = len(xyxy)
    out = np.zeros((n, 6), np.float32)
    if not panorama or n == 0:
        return out
    deg_per_px = 180.0 / float(height)
    yc = (xyxy[:, 1] + xyxy[:, 3]) / 2
    lat = 90.0 - yc * deg_per_px
    ang_h = np.maximum(xyxy[:, 3] - xyxy[:, 1], 1e-3) * deg_per_px
    dep = np.radians(-lat)
    tan_dep = np.tan(np.clip(dep, -1.25, 1.25))
    below = lat < -0.5
    ratio = np.where(
        below, np.log(np.radians(ang_h) / np.maximum(tan_dep, 1e-6)), 0.0
    )  # ~ log(object height / (camera height - object height))
    out[:, 0] = 1.0
    out[:, 1] = lat
    out[:, 2] = np.log2(ang_h)
    out[:, 3] = np.clip(tan_dep, -3.0, 3.0)
    out[:, 4] = ratio
    out[:, 5] = below
    return out


def _context(
    xyxy: npt.NDArray[np.float64],
    windows: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float32],
    classes: npt.NDArray[np.int32],
    period: float | None,
) -> npt.NDArray[np.float32]:
    """(N, 2): log1p(other candidates centred in the window), best stage-1 score of an
    other-class candidate centred in the window (0 if none). Seam-aware with ``period``."""
    n = len(xyxy)
    out = np.zeros((n, 2), np.float32)
    if n == 0:
        return out
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2
    cy = (xyxy[:, 1] + xyxy[:, 3]) / 2
    wcx = (windows[:, 0] + windows[:, 2]) / 2
    dx = cx[None, :] - wcx[:, None]  # [i, j]: candidate j relative to window i
    if period:
        dx = np.mod(dx + period / 2, period) - period / 2
    half_w = (windows[:, 2] - windows[:, 0])[:, None] / 2
    inside = (
        (np.abs(dx) <= half_w) & (cy[None, :] >= windows[:, 1:2]) & (cy[None, :] <= windows[:, 3:4])
    )
    np.fill_diagonal(inside, False)
    out[:, 0] = np.log1p(inside.sum(axis=1))
    other = inside & (classes[None, :] != classes[:, None])
    out[:, 1] = np.where(other, scores[None, :], 0.0).max(axis=1)
    return out


def candidate_features(
    pixels: npt.NDArray[np.uint8],
    dets: Detections,
    projection: Projection,
    *,
    context: float,
    size: int,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """Crops and features of every candidate (the model's inputs, before normalisation).

    Args:
        pixels: (H, W, 3) uint8 RGB of the upright image.
        dets: N merged candidates, image pixels (seam-unwrapped on panoramas: x2 may exceed
            W), ``confidence`` = the stage-1 score.
        projection: EQUIRECTANGULAR (geometry features, seam wrap) or anything else (photo).
        context: context window = ``context`` x the box (see :func:`context_windows`).
        size: S, crop side in pixels.

    Returns:
        crops (N, S, S, 3) uint8 and features (N, :data:`N_FEATURES`) float32.
    """
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be (H, W, 3) uint8, got {pixels.shape} {pixels.dtype}")
    h, w = pixels.shape[:2]
    pano = projection is Projection.EQUIRECTANGULAR
    xyxy = dets.xyxy.astype(np.float64)
    windows = context_windows(xyxy, context)
    crops = extract_crops(pixels, windows, size, wrap=pano)
    n = len(dets)
    feats = np.zeros((n, N_FEATURES), np.float32)
    if n == 0:
        return crops, feats
    s1 = np.clip(dets.confidence.astype(np.float64), 1e-6, 1 - 1e-6)
    bw = np.maximum(xyxy[:, 2] - xyxy[:, 0], 1e-3)
    bh = np.maximum(xyxy[:, 3] - xyxy[:, 1], 1e-3)
    feats[:, 0] = dets.class_id == int(ObjectClass.FACE)
    feats[:, 1] = s1
    feats[:, 2] = np.clip(np.log(s1 / (1 - s1)), -8, 8)
    feats[:, 3] = np.log2(bh)
    feats[:, 4] = np.log2(bw)
    feats[:, 5] = np.log2(bw / bh)
    feats[:, 6:12] = _geometry(xyxy, h, pano)
    feats[:, 12:19] = _colour_stats(crops, _inner_boxes(xyxy, windows, size))
    feats[:, 19:21] = _context(
        xyxy, windows, dets.confidence, dets.class_id, float(w) if pano else None
    )
    feats[:, 21] = (xyxy[:, 1] + xyxy[:, 3]) / 2 / float(h)
    return crops, feats


def to_model_input(crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float32 in [0, 1]."""
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def fuse(
    stage1: npt.ArrayLike,
    stage2: npt.ArrayLike,
    stage1_keep: float,
    protected: npt.ArrayLike | None = None,
    veto_below: float | npt.ArrayLike = 1.0,
) -> npt.NDArray[np.float32]:
    """Final score (N,): ``stage2`` (a veto), or ``max(stage1, stage2)`` where ``stage1 >=
    stage1_keep``, where ``protected`` (N,) bool is set, or where ``stage2 >= veto_below``
    (one value, or (N,) per candidate)."""
    s1 = np.asarray(stage1, np.float32)
    s2 = np.asarray(stage2, np.float32)
    keep = (s1 >= np.float32(stage1_keep)) | (s2 >= np.asarray(veto_below, np.float32))
    if protected is not None:
        keep = keep | np.asarray(protected, bool).reshape(keep.shape)
    return np.where(keep, np.maximum(s1, s2), s2).astype(np.float32)


def veto_below_for(
    class_id: npt.ArrayLike, veto_below: Mapping[ObjectClass, float]
) -> npt.NDArray[np.float32]:
    """(N,) float32 ``veto_below`` of each candidate's class; 0.0 (never vetoed) for a class
    without a value."""
    ids = np.asarray(class_id).reshape(-1)
    return np.array([veto_below.get(ObjectClass(int(c)), 0.0) for c in ids], np.float32)


def protected_by_area(
    xyxy: npt.ArrayLike, image_px: float | npt.ArrayLike, veto_min_area: float
) -> npt.NDArray[np.bool_]:
    """(N,) True for (N, 4) boxes (pixels) covering less than ``veto_min_area`` of their
    image's ``image_px`` pixels (width x height; one value, or (N,) per box): stage 2 may not
    lower their score (0 = none)."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    return np.asarray(area < float(veto_min_area) * np.asarray(image_px, np.float64), bool)


def protected_by_elevation(
    xyxy: npt.ArrayLike,
    class_id: npt.ArrayLike,
    image_height: float | npt.ArrayLike,
    equirect: bool | npt.ArrayLike,
    veto_min_elevation: Mapping[ObjectClass, float],
) -> npt.NDArray[np.bool_]:
    """(N,) True where stage 2 may not lower the score by elevation.

    A candidate of a class in ``veto_min_elevation`` is protected unless its (N, 4) box
    (pixels) lies on an equirectangular image (``equirect``, one value or (N,)) with its lowest
    edge at least that many degrees above the horizon (``image_height`` pixels, one value or
    (N,)). A perspective photo has no horizon, so there such a candidate is always protected,
    except with a limit of -90 deg or less: no elevation restriction, photos included. Classes
    not listed: never protected (False)."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    ids = np.asarray(class_id).reshape(-1)
    limit = np.array(
        [veto_min_elevation.get(ObjectClass(int(c)), -math.inf) for c in ids], np.float64
    )
    listed = ~(limit <= -90.0)  # -inf (not listed) and -90 are unrestricted; NaN is listed
    eq = np.broadcast_to(np.asarray(equirect, bool), ids.shape)
    height = np.broadcast_to(np.asarray(image_height, np.float64), ids.shape)
    bottom_deg = 90.0 - b[:, 3] / height * 180.0
    return np.asarray(listed & ~(eq & (bottom_deg >= limit)), bool)


@dataclass(frozen=True)
class FusionRules:
    """How stage 1's and stage 2's scores combine into the final score: the
    ``postprocess`` settings of the same names (:class:`redact.config.PostprocessConfig`).
    One object, so that the job, the tuning scripts and the cost estimates apply the same rule.
    """

    stage1_keep: float
    veto_min_area: float
    veto_below: Mapping[ObjectClass, float]
    veto_min_elevation: Mapping[ObjectClass, float]

    @classmethod
    def of(cls, pp: PostprocessConfig) -> FusionRules:
        """The rules of a config's ``postprocess`` section."""
        return cls(
            stage1_keep=float(pp.stage1_keep),
            veto_min_area=float(pp.veto_min_area),
            veto_below={ObjectClass(c): float(v) for c, v in pp.veto_below.items()},
            veto_min_elevation={ObjectClass(c): float(v) for c, v in pp.veto_min_elevation.items()},
        )

    def protected(
        self,
        xyxy: npt.ArrayLike,
        class_id: npt.ArrayLike,
        image_px: float | npt.ArrayLike,
        image_height: float | npt.ArrayLike,
        equirect: bool | npt.ArrayLike,
    ) -> npt.NDArray[np.bool_]:
        """(N,) True where stage 2 may not lower the score, whatever it says: small boxes
        (:func:`protected_by_area`) and the elevation rule (:func:`protected_by_elevation`).
        ``image_px`` (width x height) and ``image_height`` are pixels, one value or (N,)."""
        return protected_by_area(xyxy, image_px, self.veto_min_area) | protected_by_elevation(
            xyxy, class_id, image_height, equirect, self.veto_min_elevation
        )

    def final(
        self,
        stage1: npt.ArrayLike,
        stage2: npt.ArrayLike,
        xyxy: npt.ArrayLike,
        class_id: npt.ArrayLike,
        *,
        image_px: float | npt.ArrayLike,
        image_height: float | npt.ArrayLike,
        equirect: bool | npt.ArrayLike,
    ) -> npt.NDArray[np.float32]:
        """(N,) float32 final scores of candidates with (N,) ``stage1`` and ``stage2`` scores,
        (N, 4) boxes (pixels) and (N,) class ids (:func:`fuse`)."""
        protected = self.protected(xyxy, class_id, image_px, image_height, equirect)
        below = veto_below_for(class_id, self.veto_below)
        return fuse(stage1, stage2, self.stage1_keep, protected, below)


# --- the rescorer -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rescored:
    """Stage-2 result of one image's candidates: ``stage2`` (N,) the model's scores and
    ``final`` (N,) the fused scores the decision uses (:func:`fuse`); float32 in [0, 1]."""

    stage2: npt.NDArray[np.float32]
    final: npt.NDArray[np.float32]
    seconds: float = 0.0


class Rescorer:
    """An opened stage-2 model (an ONNX Runtime session and what it needs).

    Args:
        session: an ``onnxruntime.InferenceSession`` of the model.
        model_id: ``name@version`` for messages and the manifest.
        classes: model output column -> ObjectClass (the registry entry's classes).
        context: context factor the model was trained with (ONNX metadata).
        rules: how the stage-1 and stage-2 scores combine (:class:`FusionRules`).
        batch_size: candidates per ``session.run``.
    """

    def __init__(
        self,
        session: Any,
        model_id: str,
        classes: Sequence[ObjectClass | None],
        *,
        context: float,
        rules: FusionRules,
        batch_size: int = 256,
    ) -> None:
        inputs = {i.name: i.shape for i in session.get_inputs()}
        if set(inputs) != {"crops", "features"}:
            raise RescorerError(
                f"post-processor {model_id!r}: inputs must be 'crops' and 'features', got "
                f"{sorted(inputs)}"
            )
        crop_shape, feat_shape = inputs["crops"], inputs["features"]
        if len(crop_shape) != 4 or not isinstance(crop_shape[2], int) or crop_shape[1] != 3:
            raise RescorerError(
                f"post-processor {model_id!r}: 'crops' must be [N, 3, S, S], got {crop_shape}"
            )
        if len(feat_shape) != 2 or feat_shape[1] != N_FEATURES:
            raise RescorerError(
                f"post-processor {model_id!r}: 'features' must be [N, {N_FEATURES}] (feature "
                f"version {FEATURE_VERSION}), got {feat_shape}"
            )
        self.session = session
        self.model_id = model_id
        self.classes = tuple(classes)
        self.size = int(crop_shape[2])
        self.context = float(context)
        self.rules = rules
        self.batch_size = int(batch_size)
        self._output = session.get_outputs()[0].name

    def stage2_scores(
        self, pixels: npt.NDArray[np.uint8], dets: Detections, projection: Projection
    ) -> npt.NDArray[np.float32]:
        """(N,) float32 stage-2 scores of the candidates (the column of each one's class).

        Raises:
            ImageError: non-finite or out-of-range output, a wrong output shape, or a
                candidate of a class the model does not score (the image is quarantined).
        """
        n = len(dets)
        if n == 0:
            return np.zeros(0, np.float32)
        column = np.full(n, -1, np.int64)
        for k, c in enumerate(self.classes):
            if c is not None:
                column[dets.class_id == int(c)] = k
        if np.any(column < 0):
            bad = sorted({int(c) for c in dets.class_id[column < 0]})
            raise ImageError(
                "postprocess_failed",
                f"post-processor {self.model_id!r} does not score class id(s) {bad}",
                Stage.MERGE,
            )
        crops, feats = candidate_features(
            pixels, dets, projection, context=self.context, size=self.size
        )
        x = to_model_input(crops)
        parts = []
        for start in range(0, n, self.batch_size):
            sl = slice(start, start + self.batch_size)
            out = self.session.run([self._output], {"crops": x[sl], "features": feats[sl]})[0]
            parts.append(np.asarray(out, np.float32))
        scores = np.concatenate(parts) if parts else np.zeros((0, len(self.classes)), np.float32)
        if scores.ndim != 2 or scores.shape != (n, len(self.classes)):
            raise ImageError(
                "postprocess_failed",
                f"post-processor {self.model_id!r} returned shape {scores.shape}, expected "
                f"({n}, {len(self.classes)})",
                Stage.MERGE,
            )
        picked = scores[np.arange(n), column]
        if not np.all(np.isfinite(picked)) or np.any((picked < 0) | (picked > 1)):
            raise ImageError(
                "postprocess_failed",
                f"post-processor {self.model_id!r} returned non-finite or out-of-range scores",
                Stage.MERGE,
            )
        return picked.astype(np.float32)

    def rescore(
        self, pixels: npt.NDArray[np.uint8], dets: Detections, projection: Projection
    ) -> Rescored:
        """Stage-2 and final scores of ``dets`` (``confidence`` = stage-1 scores)."""
        t0 = time.perf_counter()
        s2 = self.stage2_scores(pixels, dets, projection)
        final = self.rules.final(
            dets.confidence,
            s2,
            dets.xyxy,
            dets.class_id,
            image_px=pixels.shape[0] * pixels.shape[1],
            image_height=pixels.shape[0],
            equirect=projection is Projection.EQUIRECTANGULAR,
        )
        return Rescored(s2, final, time.perf_counter() - t0)

    def __call__(
        self, pixels: npt.NDArray[np.uint8], dets: Detections, projection: Projection
    ) -> npt.NDArray[np.float32]:
        """(N,) float32 final scores (:meth:`rescore`)."""
        return self.rescore(pixels, dets, projection).final


# --- loading and the canary -------------------------------------------------------------------


def _metadata(session: Any) -> Mapping[str, str]:
    meta = session.get_modelmeta()
    return dict(getattr(meta, "custom_metadata_map", {}) or {})


def open_rescorer(
    data: bytes,
    model_id: str,
    classes: Sequence[ObjectClass | None],
    *,
    rules: FusionRules,
    threads: int = 1,
) -> Rescorer:
    """An ONNX model's bytes -> :class:`Rescorer` (metadata checked; no canary)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, int(threads))
    opts.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # ONNX Runtime raises its own exception types
        raise RescorerError(
            f"cannot open post-processor {model_id!r}: {' '.join(str(e).split())}"
        ) from e
    meta = _metadata(session)
    version = meta.get("redact_feature_version", "")
    if version != FEATURE_VERSION:
        raise RescorerError(
            f"post-processor {model_id!r} was built for feature version {version or '(none)'}, "
            f"this code computes version {FEATURE_VERSION}"
        )
    try:
        context = float(meta.get("redact_context", ""))
    except ValueError:
        raise RescorerError(f"post-processor {model_id!r}: no valid redact_context") from None
    if not 1.0 <= context <= 8.0:
        raise RescorerError(f"post-processor {model_id!r}: redact_context {context} not in [1, 8]")
    return Rescorer(
        session,
        model_id,
        classes,
        context=context,
        rules=rules,
    )


def prove_rescorer(
    rescorer: Rescorer,
    thresholds: Mapping[ObjectClass, float],
    stage1_score: float,
    canary: Canary | None = None,
) -> dict[str, float]:
    """Check that stage 2 itself scores every required detector-canary object as blurrable.

    Each canary crop is fed as a photo whose candidates are its objects' boxes (every
    object, required or not, so context features are realistic), all with stage-1 score
    ``stage1_score`` (a feature); every required object's STAGE-2 score must reach its
    class's ``blur`` threshold. The fusion rules (``stage1_keep``, the area rule,
    ``veto_below``) are deliberately left out: each can only keep a candidate, so with them a
    model that scored everything near 0 would still pass for objects they shield. Returns
    ``{"<crop>#<k>": stage-2 score}`` of the required objects.

    Raises:
        RescorerError: a required object scores below its blur threshold (one line).
    """
    from redact.detection.canary import load_canary

    canary = canary if canary is not None else load_canary()
    out: dict[str, float] = {}
    for crop in canary.crops:
        objs = [o for o in crop.objects if o.cls in rescorer.classes]
        if not objs:
            continue
        dets = Detections(
            np.array([o.box for o in objs], np.float32),
            np.full(len(objs), stage1_score, np.float32),
            np.array([int(o.cls) for o in objs], np.int32),
        )
        try:
            s2 = rescorer.stage2_scores(crop.image, dets, Projection.PERSPECTIVE)
        except ImageError as e:
            raise RescorerError(f"post-processor canary failed on {crop.file}: {e}") from e
        for k, (o, s) in enumerate(zip(objs, s2, strict=True)):
            if not o.must:
                continue
            out[f"{crop.file}#{k}"] = float(s)
            need = float(thresholds[o.cls])
            if not s >= need:
                raise RescorerError(
                    f"post-processor canary failed for {rescorer.model_id!r}: {o.cls.label} #{k} "
                    f"of {crop.file}: stage 2 scores {float(s):.4f} (stage 1 given "
                    f"{stage1_score:g}), needs "
                    f">= {need:.6g} (blur threshold); canary {canary.where}"
                )
    if not out:
        raise RescorerError(f"post-processor canary {canary.where} has no required object")
    return out


def resolve_spec(pp: PostprocessConfig, registry: ModelRegistry | None = None) -> ModelSpec:
    """The registry entry the config names (``model``), or a spec of ``path`` (hash computed)."""
    from redact.config import ModelConfig
    from redact.detection.registry import ModelRegistry

    reg = registry if registry is not None else ModelRegistry.load()
    if pp.path:
        classes = tuple(pp.classes) or (ObjectClass.FACE, ObjectClass.LICENSE_PLATE)
        return reg.resolve(ModelConfig(name=pp.model, path=pp.path, classes=classes))
    return reg[pp.model]


def load_rescorer(
    config: RedactConfig, registry: ModelRegistry | None = None, *, canary: Canary | None = None
) -> Rescorer | None:
    """The config's post-processor, read through Beam FileSystems, sha256-checked, opened and
    proven on the canary; None when ``postprocess.model`` and ``path`` are empty.

    Raises:
        RescorerError, ModelFileError: it cannot be used (the worker, hence the job, fails).
    """
    pp = config.postprocess
    if not pp.enabled:
        return None
    from redact.detection.base import read_verified
    from redact.detection.canary import load_canary

    spec = resolve_spec(pp, registry)
    data = read_verified(spec, "post-processor")
    rescorer = open_rescorer(
        data,
        spec.model_id,
        spec.classes,
        rules=FusionRules.of(pp),
        threads=pp.threads,
    )
    blur = {c: float(t.blur) for c, t in config.thresholds.items()}
    folder = pp.canary or None
    scores = prove_rescorer(
        rescorer,
        blur,
        pp.canary_stage1_score,
        canary if canary is not None else load_canary(folder),
    )
    _LOG.info(
        "post-processor %s passed its canary: lowest required stage-2 score %.3f",
        spec.model_id,
        min(scores.values()),
    )
    return rescorer


__all__ = [
    "FEATURE_NAMES",
    "FEATURE_VERSION",
    "N_FEATURES",
    "FusionRules",
    "Rescored",
    "Rescorer",
    "RescorerError",
    "candidate_features",
    "context_windows",
    "extract_crops",
    "fuse",
    "load_rescorer",
    "open_rescorer",
    "protected_by_area",
    "protected_by_elevation",
    "prove_rescorer",
    "to_model_input",
    "veto_below_for",
]
