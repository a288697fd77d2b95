"""``backend: auto``: OpenVINO where the worker has it (the ``[openvino]`` extra), else ONNX
Runtime; decided on the worker when the model loads, so a launcher without the extra can start
a job whose workers have it (the Dataflow image does)."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import replace
from typing import Any

from redact.config import Backend, ModelConfig, Precision
from redact.detection.base import DetectorHandler

_LOG = logging.getLogger(__name__)


def openvino_available() -> bool:
    """Whether this process can import OpenVINO (without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def resolve_auto(model_config: ModelConfig, have_openvino: bool | None = None) -> ModelConfig:
    """The concrete config ``backend: auto`` runs as here: OpenVINO at the configured
    ``precision`` when it is importable (``have_openvino``: default, check), else ONNX Runtime
    in float32. Other backends: unchanged."""
    if model_config.backend is not Backend.AUTO:
        return model_config
    ok = openvino_available() if have_openvino is None else have_openvino
    if ok:
        return replace(model_config, backend=Backend.OPENVINO)
    return replace(model_config, backend=Backend.ONNX, precision=Precision.FP32)


class AutoCpuModelHandler(DetectorHandler[Any]):
    """A detector on ``backend: auto``: :meth:`open_model` opens it with
    :class:`~redact.detection.openvino_handler.YoloOpenVinoModelHandler` when OpenVINO is
    importable on this worker, else with
    :class:`~redact.detection.onnx_handler.YoloOnnxModelHandler`, and logs which. Decoding, the
    output contract and the canary are the shared ones of :class:`DetectorHandler`, so the
    canary proves whichever backend runs.
    """

    def _concrete(self) -> DetectorHandler[Any]:
        config = resolve_auto(self.model_config)
        kwargs: dict[str, Any] = {
            "inference_fn": self._inference_fn,
            "blur_thresholds": self.blur_thresholds,
            "canary": self.canary,
        }
        if config.backend is Backend.OPENVINO:
            from redact.detection.openvino_handler import YoloOpenVinoModelHandler

            return YoloOpenVinoModelHandler(self.spec, config, self.model_index, **kwargs)
        from redact.detection.onnx_handler import YoloOnnxModelHandler

        return YoloOnnxModelHandler(self.spec, config, self.model_index, **kwargs)

    def open_model(self) -> Any:
        """Open the model on the backend this worker has (see the class docstring)."""
        handler = self._concrete()
        model = handler.open_model()
        _LOG.info(
            "model %s: backend auto runs %s (%s)",
            self.spec.model_id,
            type(handler).__name__,
            getattr(model, "precision", "float32"),
        )
        return model
