"""Shared detector plumbing for Beam RunInference: result type, preprocessing, decoding.

A backend (ONNX Runtime, TensorRT, ...) subclasses :class:`DetectorHandler` and implements
only :meth:`DetectorHandler.open_model`, returning a :class:`DetectorModel` (input geometry +
a raw ``forward``). Preprocessing, resizing, decoding, the output contract check, the canary
run by ``load_model``, timing and the result type are here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import cv2
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from redact.classes import ObjectClass
from redact.config import ModelConfig, RedactConfig
from redact.detection.canary import CanaryReport
from redact.detection.canary import prove as prove_on_canary
from redact.detection.registry import ModelFileError, ModelSpec
from redact.detection.yolo import decode_yolov8
from redact.detections import Detections

METRICS_NAMESPACE = "redact_detector"
TENSORRT_ERROR = "TensorRT backend requires the [tensorrt] extra and a GPU"
DEFAULT_INPUT_SIZE = 640


def one_line(text: object) -> str:
    """``str(text)`` with every run of whitespace (newlines included) collapsed to a space:
    error messages here are one line, saying what and where."""
    return " ".join(str(text).split())


class BackendUnavailableError(RuntimeError):
    """The backend cannot run on this machine (e.g. TensorRT without the extra or a GPU)."""


def default_blur_thresholds() -> dict[ObjectClass, float]:
    """The per-class ``blur`` thresholds of a default :class:`RedactConfig` (the shipped
    operating point), for handlers built without a config."""
    field = next(f for f in dataclasses.fields(RedactConfig) if f.name == "thresholds")
    if field.default_factory is dataclasses.MISSING:  # pragma: no cover - config changed shape
        raise TypeError("RedactConfig.thresholds has no default")
    defaults: Mapping[ObjectClass, Any] = field.default_factory()
    return {ObjectClass(int(c)): float(t.blur) for c, t in defaults.items()}


@dataclass(frozen=True)
class TileInference:
    """What a detector found in one tile.

    Attributes:
        detections: boxes in TILE pixel coordinates; ``class_id`` = ObjectClass values,
            ``source`` = model index in the ensemble.
        seconds: this tile's share of the batch wall time (batch time / batch size), summed
            over ensemble members.
    """

    detections: Detections
    seconds: float


class DetectorModel(Protocol):
    """A loaded detector: what :meth:`DetectorHandler.load_model` returns.

    Attributes:
        input_size: static square input size in pixels, or None if the model's spatial
            dims are dynamic.
        input_dtype: numpy dtype of the input tensor (float32 or float16).
    """

    input_size: int | None
    input_dtype: np.dtype

    def forward(self, images: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) input_dtype in [0, 1] -> raw YOLOv8 head (B, 4 + nc + extra, A)."""
        ...


ModelT = TypeVar("ModelT", bound=DetectorModel)

InferenceFn = Callable[[Any, np.ndarray, "dict[str, Any] | None"], np.ndarray]
"""``inference_fn(model, images (B,3,S,S), inference_args) -> raw head``."""


def default_inference_fn(
    model: DetectorModel, images: np.ndarray, inference_args: dict[str, Any] | None = None
) -> np.ndarray:
    """Call ``model.forward`` (``inference_args`` are not used by the default)."""
    return model.forward(images)


def preprocess(
    tiles: Sequence[np.ndarray],
    size: int,
    dtype: np.dtype | type,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Stack RGB tiles into a normalised NCHW tensor.

    Args:
        tiles: B arrays (H, W, 3) uint8 RGB; tiles not (size, size) are resized (area/linear).
        size: model input size S in pixels.
        dtype: float32 or float16.
        out: optional C-contiguous (B, 3, S, S) ``dtype`` array to write into (overwritten
            whole); default: a fresh one. The tiles are never modified.

    Returns:
        (B, 3, S, S) ``dtype`` array in [0, 1]: ``out`` when given.
    """
    shape = (len(tiles), 3, size, size)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif out.shape != shape or out.dtype != np.dtype(dtype) or not out.flags.c_contiguous:
        raise ValueError(
            f"preprocess out: need a C-contiguous {shape} {np.dtype(dtype)} array, got "
            f"{out.shape} {out.dtype}"
        )
    for i, tile in enumerate(tiles):
        t = np.asarray(tile)
        if t.ndim != 3 or t.shape[2] != 3:
            raise ValueError(f"tile {i}: expected (H, W, 3) RGB, got shape {t.shape}")
        if t.dtype != np.uint8:
            raise ValueError(f"tile {i}: expected uint8, got {t.dtype}")
        if t.shape[0] != size or t.shape[1] != size:
            shrink = t.shape[0] > size or t.shape[1] > size
            t = cv2.resize(
                t, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            )
        out[i] = t.transpose(2, 0, 1)  # uint8 -> dtype conversion happens in this copy
    out *= np.asarray(1.0 / 255.0, dtype=dtype)
    return out


_INPUT_BUFFERS = threading.local()


def input_buffer(n: int, size: int, dtype: np.dtype | type) -> np.ndarray:
    """A C-contiguous (n, 3, size, size) ``dtype`` array owned by the calling thread, reused by
    its next call (the first ``n`` rows of one buffer per (size, dtype), grown on demand).

    Why: a fresh 39 MB batch of eight 640 px float32 tiles is a fresh mapping the kernel
    zeroes page by page; measured in a 3-panorama job that zeroing was 8.6 % of all CPU time.
    Valid until the same thread asks again: use it for one inference call only.
    """
    cache: dict[tuple[int, str], np.ndarray] = _INPUT_BUFFERS.__dict__.setdefault("by_size", {})
    key = (int(size), np.dtype(dtype).str)
    buf = cache.get(key)
    if buf is None or buf.shape[0] < n:
        buf = np.empty((n, 3, size, size), dtype=dtype)
        cache[key] = buf
    return buf[:n]


def _target_size(model: DetectorModel, spec: ModelSpec, tiles: Sequence[np.ndarray]) -> int:
    if model.input_size:
        return int(model.input_size)
    if spec.input_size:
        return spec.input_size
    longest = max(max(t.shape[0], t.shape[1]) for t in tiles)
    return max(32, -(-longest // 32) * 32)  # YOLOv8 strides need multiples of 32


def _rescale(det: Detections, size: int, tile: np.ndarray) -> Detections:
    """Map boxes from (size, size) model pixels to the tile's (H, W) pixels."""
    h, w = tile.shape[0], tile.shape[1]
    if (h, w) == (size, size) or not len(det):
        return det
    scale = np.array([w / size, h / size, w / size, h / size], np.float32)
    return det.with_boxes(det.xyxy * scale)


def read_verified(spec: ModelSpec, what: str = "model") -> bytes:
    """Read a model file through Beam FileSystems (local, gs://, s3://) and check its sha256.

    Raises :class:`redact.detection.registry.ModelFileError` (unreadable or wrong hash).
    """
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(spec.uri, "application/octet-stream") as f:
            data = bytes(f.read())
    except OSError as e:
        raise ModelFileError(
            f"cannot read {what} {spec.name!r} at {spec.uri}: {one_line(e)}"
        ) from e
    if spec.sha256:
        digest = hashlib.sha256(data).hexdigest()
        if digest != spec.sha256:
            raise ModelFileError(
                f"{what} {spec.name!r} at {spec.uri} has sha256 {digest}, expected {spec.sha256}"
            )
    return data


class TileHandlerMixin:
    """What every tile detector handler (single model or ensemble) reports to Beam."""

    _batching_kwargs: dict[str, Any]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        """Bytes of image data in the batch."""
        return sum(int(np.asarray(t).nbytes) for t in batch)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def batch_elements_kwargs(self) -> Mapping[str, Any]:
        return dict(self._batching_kwargs)


class DetectorHandler(TileHandlerMixin, ModelHandler[np.ndarray, PredictionResult, ModelT]):
    """Base ModelHandler for one YOLOv8-style detector.

    Elements are (S, S, 3) uint8 RGB tiles; results are
    ``PredictionResult(example=None, inference=TileInference, model_id=spec.model_id)``.
    Every raw head is checked against the output contract
    (:func:`redact.detection.yolo.check_head`: exact ``(B, 4 + nc + extra, A)``, finite,
    scores in [0, 1]); a breach raises, so the batch goes to Beam's dead-letter output.

    The constructor is cheap and picklable (spec, config, thresholds, a folder name);
    subclasses open the model in :meth:`open_model`. :meth:`load_model` opens it and then
    proves it on the detector canary (:mod:`redact.detection.canary`) before any inference:
    a miss raises :class:`~redact.detection.canary.CanaryError`, so the worker fails.

    Args:
        spec: the resolved registry entry.
        model_config: batch size, score floor, tile NMS IoU.
        model_index: index of this model in the ensemble (``Detections.source``).
        inference_fn: ``fn(model, images, inference_args) -> raw head`` to override the call.
        blur_thresholds: per-class ``blur`` threshold the canary must be found at (the run
            config's, see :func:`redact.detection.canary.blur_thresholds`); None (or a class
            left out) = a default :class:`~redact.config.RedactConfig`'s.
        canary: canary folder (path); None = the packaged ``models/canary``, resolved on the
            worker when the model is loaded.
    """

    #: Factor applied to the [0, 1] input tensor (a head trained on [0, 255] pixels sets 255).
    input_scale: float = 1.0

    def __init__(
        self,
        spec: ModelSpec,
        model_config: ModelConfig,
        model_index: int = 0,
        *,
        inference_fn: InferenceFn | None = None,
        blur_thresholds: Mapping[ObjectClass, float] | None = None,
        canary: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(
            min_batch_size=model_config.batch_size, max_batch_size=model_config.batch_size
        )
        if not 0 <= model_index < 2**15:
            raise ValueError(f"model_index must be in [0, 32767], got {model_index}")
        self.spec = spec
        self.model_config = model_config
        self.model_index = model_index
        self._inference_fn: InferenceFn = inference_fn or default_inference_fn
        thresholds = default_blur_thresholds()
        thresholds.update(
            {ObjectClass(int(c)): float(v) for c, v in (blur_thresholds or {}).items()}
        )
        self.blur_thresholds: dict[ObjectClass, float] = thresholds
        self.canary: str | None = os.fspath(canary) if canary is not None else None

    def open_model(self) -> ModelT:
        """Read, verify and open the model (backend specific); no canary."""
        raise NotImplementedError(type(self))

    def load_model(self) -> ModelT:
        """:meth:`open_model`, then :meth:`prove` it before any inference.

        Raises:
            CanaryError: the model missed a canary object (the worker must not run it).
        """
        model = self.open_model()
        try:
            self.prove(model)
        except BaseException:
            close = getattr(model, "close", None)
            if callable(close):
                close()  # free device buffers before the worker fails
            raise
        return model

    def decode(self, raw: np.ndarray, size: int, batch: int) -> list[Detections]:
        """The raw output of a batch of ``batch`` tiles -> per-tile Detections in model-input
        pixels (``size`` x ``size``); checks the output contract first (DetectorOutputError).
        YOLOv8 here; other heads override it."""
        return decode_yolov8(
            raw,
            num_classes=self.spec.num_classes,
            extra_channels=self.spec.extra_channels,
            model=self.spec.model_id,
            batch=batch,
            class_map=self.spec.classes,
            score_floor=self.model_config.score_floor,
            nms_iou=self.model_config.tile_nms_iou,
            input_size=size,
            source=self.model_index,
        )

    def prove(self, model: ModelT) -> CanaryReport:
        """Run the canary (``self.canary``) at ``self.blur_thresholds`` through
        :meth:`run_inference`; raises :class:`~redact.detection.canary.CanaryError` on a miss."""
        return prove_on_canary(self, model)

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model: ModelT,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        """Detect in a batch of tiles -> one PredictionResult per tile, in order."""
        if not batch:
            return []
        t0 = time.perf_counter()
        size = _target_size(model, self.spec, batch)
        images = preprocess(
            batch, size, model.input_dtype, out=input_buffer(len(batch), size, model.input_dtype)
        )
        if self.input_scale != 1.0:
            images *= np.asarray(self.input_scale, dtype=images.dtype)
        raw = np.asarray(self._inference_fn(model, images, inference_args))
        decoded = self.decode(raw, size, len(batch))
        seconds = (time.perf_counter() - t0) / len(batch)
        return [
            PredictionResult(
                example=None,
                inference=TileInference(_rescale(det, size, tile), seconds),
                model_id=self.spec.model_id,
            )
            for det, tile in zip(decoded, batch, strict=True)
        ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.model_id!r}, index={self.model_index})"
