"""Union ensemble of detectors, and building the detector handler from a RedactConfig."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from redact.classes import ObjectClass
from redact.config import Backend, ModelConfig, Precision, RedactConfig
from redact.detection.base import (
    TENSORRT_ERROR,
    BackendUnavailableError,
    DetectorHandler,
    TileHandlerMixin,
    TileInference,
)
from redact.detection.canary import blur_thresholds as config_blur_thresholds
from redact.detection.registry import ModelRegistry, ModelSpec
from redact.detections import Detections

TENSORRT_MODULE = "redact.detection.tensorrt_handler"


class LoadedEnsemble(list[Any]):
    """The members' loaded models, in order.

    A ``list`` subclass rather than a plain list: Beam's shared model cache
    (``apache_beam.utils.shared``) keeps a weak reference to the loaded model, and plain
    lists cannot be weakly referenced.
    """


class EnsembleModelHandler(
    TileHandlerMixin, ModelHandler[np.ndarray, PredictionResult, LoadedEnsemble]
):
    """Runs every member on each batch and concatenates their detections per tile.

    Members must produce ``PredictionResult(inference=TileInference)`` (any
    :class:`redact.detection.base.DetectorHandler`). The loaded model is the list of the
    members' models; ``seconds`` of a tile is summed over members. No suppression happens
    here: the merge stage clusters overlapping boxes (union ensemble, recall first).

    :meth:`load_model` loads every member with its own ``load_model``, so each
    :class:`~redact.detection.base.DetectorHandler` member proves itself on the canary for the
    classes it claims; the first miss raises.
    """

    def __init__(self, handlers: Sequence[ModelHandler[np.ndarray, PredictionResult, Any]]) -> None:
        if not handlers:
            raise ValueError("an ensemble needs at least one model handler")
        self._handlers = tuple(handlers)
        maxes = [h.batch_elements_kwargs().get("max_batch_size") for h in self._handlers]
        mins = [h.batch_elements_kwargs().get("min_batch_size") for h in self._handlers]
        max_batch = min((m for m in maxes if m is not None), default=None)
        min_batch = min((m for m in mins if m is not None), default=None)
        if max_batch is not None and min_batch is not None:
            min_batch = min(min_batch, max_batch)
        super().__init__(min_batch_size=min_batch, max_batch_size=max_batch)

    @property
    def handlers(self) -> tuple[ModelHandler[np.ndarray, PredictionResult, Any], ...]:
        return self._handlers

    def load_model(self) -> LoadedEnsemble:
        """Load (and so canary-check) every member, in order."""
        return LoadedEnsemble(h.load_model() for h in self._handlers)

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model: Sequence[Any],
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        """Union of the members' detections, per tile, in batch order."""
        if len(model) != len(self._handlers):
            raise ValueError(f"expected {len(self._handlers)} loaded models, got {len(model)}")
        per_member = [
            list(h.run_inference(batch, m, inference_args))
            for h, m in zip(self._handlers, model, strict=True)
        ]
        for h, results in zip(self._handlers, per_member, strict=True):
            if len(results) != len(batch):
                raise RuntimeError(f"{h!r} returned {len(results)} results for {len(batch)} tiles")
        model_id = "+".join(str(r[0].model_id) for r in per_member) if batch else ""
        out = []
        for i in range(len(batch)):
            infs = [_tile_inference(r[i]) for r in per_member]
            out.append(
                PredictionResult(
                    example=None,
                    inference=TileInference(
                        Detections.merge([t.detections for t in infs]),
                        float(sum(t.seconds for t in infs)),
                    ),
                    model_id=model_id,
                )
            )
        return out

    def __repr__(self) -> str:
        return f"EnsembleModelHandler({list(self._handlers)!r})"


def _tile_inference(result: PredictionResult) -> TileInference:
    inference = result.inference
    if not isinstance(inference, TileInference):
        raise TypeError(
            f"ensemble members must return TileInference, got {type(inference).__name__} "
            f"(model {result.model_id})"
        )
    return inference


def _tensorrt_handler_class() -> type:
    try:
        module = importlib.import_module(TENSORRT_MODULE)
    except ImportError as e:
        raise BackendUnavailableError(f"{TENSORRT_ERROR} ({e})") from e
    try:
        return module.TensorRTModelHandler
    except AttributeError as e:
        raise BackendUnavailableError(
            f"{TENSORRT_ERROR} ({TENSORRT_MODULE} has no TensorRTModelHandler)"
        ) from e


def make_member_handler(
    spec: ModelSpec,
    model_config: ModelConfig,
    index: int,
    *,
    blur_thresholds: Mapping[ObjectClass, float] | None = None,
    canary: str | os.PathLike[str] | None = None,
) -> DetectorHandler[Any]:
    """One detector handler for ``model_config.backend``.

    ``blur_thresholds`` (per class) and ``canary`` (folder; None = packaged) are what its
    ``load_model`` proves the model against (see :mod:`redact.detection.canary`).
    """
    kwargs: dict[str, Any] = {"blur_thresholds": blur_thresholds, "canary": canary}
    if spec.head == "centerface":
        if model_config.backend is Backend.AUTO:
            # CenterFace has one CPU backend: "auto" resolves as on a worker without OpenVINO.
            from redact.detection.auto_handler import resolve_auto

            model_config = resolve_auto(model_config, have_openvino=False)
        if model_config.backend is not Backend.ONNX:
            raise ValueError(
                f"model {spec.name!r}: a centerface head runs on the onnx backend only, "
                f"not {model_config.backend.value!r}"
            )
        from redact.detection.centerface import CenterFaceOnnxModelHandler

        return CenterFaceOnnxModelHandler(spec, model_config, index, **kwargs)
    if model_config.backend is Backend.ONNX:
        from redact.detection.onnx_handler import YoloOnnxModelHandler

        return YoloOnnxModelHandler(spec, model_config, index, **kwargs)
    if model_config.backend is Backend.AUTO:
        from redact.detection.auto_handler import AutoCpuModelHandler

        return AutoCpuModelHandler(spec, model_config, index, **kwargs)
    if model_config.backend is Backend.OPENVINO:
        from redact.detection.openvino_handler import YoloOpenVinoModelHandler

        return YoloOpenVinoModelHandler(spec, model_config, index, **kwargs)
    if model_config.backend is Backend.TENSORRT:
        cls = _tensorrt_handler_class()
        handler: DetectorHandler[Any] = cls(spec, model_config, index, **kwargs)
        return handler
    raise ValueError(f"unsupported backend {model_config.backend!r}")  # pragma: no cover


def member_canary(
    model_config: ModelConfig, canary: str | os.PathLike[str] | None
) -> str | os.PathLike[str] | None:
    """The canary folder of one member: ``canary`` when given, else the model's configured
    ``canary`` (None = the packaged one)."""
    if canary is not None:
        return canary
    return model_config.canary or None


def make_detector_handler(
    config: RedactConfig,
    registry: ModelRegistry,
    *,
    canary: str | os.PathLike[str] | None = None,
) -> ModelHandler[np.ndarray, PredictionResult, Any]:
    """The handler for ``config.models``: the single model, or a union ensemble.

    Resolves every model in the registry (path models are hashed). Model files are
    checked on the worker when loaded (sha256), and each model then proves itself on the
    detector canary (``canary`` folder, None = each model's configured one, else the packaged
    one) at ``config``'s per-class
    blur thresholds before any inference.
    """
    thresholds = config_blur_thresholds(config)
    members = [
        make_member_handler(
            registry.resolve(mc),
            mc,
            i,
            blur_thresholds=thresholds,
            canary=member_canary(mc, canary),
        )
        for i, mc in enumerate(config.models)
    ]
    return members[0] if len(members) == 1 else EnsembleModelHandler(members)


def backend_label(model_config: ModelConfig) -> str:
    """The manifest's ``backend`` of a detector: the backend, and its precision where that is
    not float32 (``openvino/bf16``); part of the models hash, so a change re-does images."""
    label = model_config.backend.value
    if model_config.precision is not Precision.FP32:
        label += f"/{model_config.precision.value}"
    return label


def describe_models(config: RedactConfig, registry: ModelRegistry) -> list[dict[str, Any]]:
    """Manifest rows: one dict per model (index, name, version, sha256, backend, uri, classes):
    the detectors in config order, then the stage-2 post-processor when the config has one (so
    the models hash, hence the markers, change when its weights do)."""
    rows = []
    for i, mc in enumerate(config.models):
        spec = registry.resolve(mc)
        rows.append(
            {
                "index": i,
                "name": spec.name,
                "version": spec.version,
                "sha256": spec.sha256,
                "backend": backend_label(mc),
                "uri": spec.uri,
                "classes": [c.label if c is not None else None for c in spec.classes],
            }
        )
    if config.postprocess.enabled:
        from redact.postprocess import resolve_spec

        spec = resolve_spec(config.postprocess, registry)
        rows.append(
            {
                "index": len(rows),
                "name": spec.name,
                "version": spec.version,
                "sha256": spec.sha256,
                "backend": "postprocess",
                "uri": spec.uri,
                "classes": [c.label if c is not None else None for c in spec.classes],
            }
        )
    return rows
