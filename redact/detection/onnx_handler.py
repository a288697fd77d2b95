"""YOLOv8 detector on ONNX Runtime, as a Beam RunInference ModelHandler."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from redact.classes import ObjectClass
from redact.config import ModelConfig
from redact.detection.base import DetectorHandler, InferenceFn, one_line, read_verified
from redact.detection.registry import ModelFileError, ModelSpec

_DTYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
}
_PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
#: ``graph_optimization`` names -> ``onnxruntime.GraphOptimizationLevel`` member names.
GRAPH_OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


@dataclass
class OnnxDetectorModel:
    """A loaded ONNX Runtime session plus its input geometry (a :class:`DetectorModel`).

    Attributes:
        session: the ``onnxruntime.InferenceSession``.
        input_name: name of the image input.
        output_name: name of the first output (the YOLO head).
        input_size: static square input size in pixels, None if dynamic.
        input_dtype: float32 or float16.
    """

    session: Any
    input_name: str
    output_name: str
    input_size: int | None
    input_dtype: np.dtype

    def forward(self, images: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) -> raw head (B, 4 + nc + extra, A) as float32."""
        out = self.session.run([self.output_name], {self.input_name: images})[0]
        return np.asarray(out, dtype=np.float32)


def static_input_size(shape: Sequence[Any], where: str) -> int | None:
    if len(shape) != 4:
        raise ModelFileError(f"{where}: input must be 4-D (B, 3, H, W), got {list(shape)}")
    h, w = shape[2], shape[3]
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        if h != w:
            raise ModelFileError(f"{where}: input must be square, got {h}x{w}")
        return h
    return None


def check_head_declaration(shape: Sequence[Any], spec: ModelSpec, where: str) -> None:
    """Refuse, at load time, a head whose declared shape cannot be (B, C, A) with the
    registered C (dynamic dims are checked on every batch instead).

    Raises:
        ModelFileError: one line naming the model, the declared and the expected shape.
    """
    dims = list(shape)
    channels = dims[1] if len(dims) == 3 else None
    if len(dims) != 3 or (isinstance(channels, int) and channels != spec.head_channels):
        raise ModelFileError(
            f"{where}: head {dims} is not (B, {spec.head_channels}, A) = 4 box + "
            f"{spec.num_classes} class + {spec.extra_channels} extra channels (registry "
            f"num_classes / extra_channels)"
        )


class YoloOnnxModelHandler(DetectorHandler[OnnxDetectorModel]):
    """ONNX Runtime YOLOv8 detector.

    Args:
        spec: the resolved registry entry (uri, sha256, class map).
        model_config: batch size, score floor, tile NMS IoU, intra-op threads.
        model_index: index of this model in the ensemble (``Detections.source``).
        providers: ONNX Runtime execution providers; default: CUDA if available, then CPU
            (decided on the worker at load time).
        inference_fn: ``fn(model, images, inference_args) -> raw head`` to override the call.
        graph_optimization: ``"all"`` (default: constant folding, fusions and the CPU
            NCHWc layout), ``"extended"``, ``"basic"`` or ``"disable"``.
        allow_spinning: whether idle intra-op threads busy-wait for work. ``None`` (default)
            keeps ONNX Runtime's default (spin). Turning it off frees the cores between
            batches for decoding, tiling and encoding on small machines.
        blur_thresholds: per-class blur thresholds the canary must reach (see
            :class:`~redact.detection.base.DetectorHandler`).
        canary: canary folder; None = the packaged ``models/canary``.

    :meth:`load_model` opens the session and runs the canary before any inference.

    CPU session settings: ``intra_op_num_threads`` from ``model_config.intra_op_threads``
    (0 = one per physical core), one inter-op thread (the graph runs sequentially: a YOLO
    head has no parallel branches worth a second pool), the CPU memory arena and memory
    pattern planning on (batches have a fixed shape).
    """

    def __init__(
        self,
        spec: ModelSpec,
        model_config: ModelConfig,
        model_index: int = 0,
        *,
        providers: Sequence[str] | None = None,
        inference_fn: InferenceFn | None = None,
        graph_optimization: str = "all",
        allow_spinning: bool | None = None,
        blur_thresholds: Mapping[ObjectClass, float] | None = None,
        canary: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(
            spec,
            model_config,
            model_index,
            inference_fn=inference_fn,
            blur_thresholds=blur_thresholds,
            canary=canary,
        )
        if graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            raise ValueError(
                f"graph_optimization must be one of {sorted(GRAPH_OPTIMIZATION_LEVELS)}, "
                f"got {graph_optimization!r}"
            )
        self._providers = tuple(providers) if providers is not None else None
        self._graph_optimization = graph_optimization
        self._allow_spinning = allow_spinning

    def _session_options(self) -> Any:
        """``onnxruntime.SessionOptions`` for this model (see the class docstring)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION_LEVELS[self._graph_optimization]
        )
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        opts.enable_cpu_mem_arena = True
        opts.enable_mem_pattern = True
        if self.model_config.intra_op_threads > 0:
            opts.intra_op_num_threads = self.model_config.intra_op_threads
        if self._allow_spinning is not None:
            opts.add_session_config_entry(
                "session.intra_op.allow_spinning", "1" if self._allow_spinning else "0"
            )
        return opts

    def _resolve_providers(self) -> list[str]:
        import onnxruntime as ort

        if self._providers is not None:
            return list(self._providers)
        available = set(ort.get_available_providers())
        return [p for p in _PREFERRED_PROVIDERS if p in available] or ["CPUExecutionProvider"]

    def open_model(self) -> OnnxDetectorModel:
        """Read the model bytes via FileSystems (local, gs://, s3://), check sha256, open the
        session and check the declared input and head shapes (no canary: see load_model)."""
        session, inp, where = self._open_session()
        head = session.get_outputs()[0]
        check_head_declaration(head.shape, self.spec, where)
        return OnnxDetectorModel(
            session=session,
            input_name=inp.name,
            output_name=head.name,
            input_size=static_input_size(inp.shape, where),
            input_dtype=_DTYPES[inp.type],
        )

    def _open_session(self) -> tuple[Any, Any, str]:
        """(session, its image input, "model 'name' at uri"): the model read via FileSystems,
        sha256-checked, opened with this handler's settings, its input type checked."""
        import onnxruntime as ort

        data = read_verified(self.spec, "model")
        try:
            session = ort.InferenceSession(
                data, sess_options=self._session_options(), providers=self._resolve_providers()
            )
        except Exception as e:  # ORT raises its own exception types (InvalidProtobuf, Fail, ...)
            raise ModelFileError(
                f"cannot load model {self.spec.name!r} from {self.spec.uri}: {one_line(e)}"
            ) from e
        where = f"model {self.spec.name!r} at {self.spec.uri}"
        inp = session.get_inputs()[0]
        if inp.type not in _DTYPES:
            raise ModelFileError(
                f"{where}: unsupported input type {inp.type} (expected float or float16)"
            )
        return session, inp, where
