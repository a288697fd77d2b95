"""YOLOv8 detector on OpenVINO (CPU), as a Beam RunInference ModelHandler.

The ``[openvino]`` extra. On CPUs with AMX or AVX-512 BF16 (Intel Sapphire Rapids and later:
Dataflow c3/n4, this project's dev machines) OpenVINO runs the shipped ONNX in bfloat16 about
3.5x faster than ONNX Runtime in float32 (docs/performance.md); ``precision: fp32`` keeps
float32. Same ONNX file, same preprocessing, decoding, output contract and canary as every
backend (:class:`redact.detection.base.DetectorHandler`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from redact.config import Precision
from redact.detection.base import (
    BackendUnavailableError,
    DetectorHandler,
    one_line,
    read_verified,
)
from redact.detection.onnx_handler import check_head_declaration, static_input_size
from redact.detection.registry import ModelFileError, ModelSpec

_LOG = logging.getLogger(__name__)
OPENVINO_ERROR = "OpenVINO backend requires the [openvino] extra (pip install 'redact[openvino]')"
#: ``Precision`` -> OpenVINO ``INFERENCE_PRECISION_HINT``.
_HINTS = {Precision.FP32: "f32", Precision.BF16: "bf16"}


@dataclass
class OpenVinoDetectorModel:
    """A model compiled by OpenVINO (a :class:`~redact.detection.base.DetectorModel`).

    Attributes:
        compiled: the ``openvino.CompiledModel`` (thread-safe) with a dynamic batch; the
            canary proves it. Each calling thread keeps its own infer request; the model's
            one stream runs them one at a time, so a worker's threads share the detector while
            the others decode, render and encode (measured faster on 2 cores than a compiled
            model per thread: docs/performance.md).
        input_size: the static square input size (pixels) it was compiled for.
        input_dtype: float32 (OpenVINO converts to its inference precision inside).
        precision: the inference precision OpenVINO reports it uses (``f32``, ``bf16``).
        make_full: ``() -> CompiledModel`` of the same model for exactly ``full_batch`` tiles
            (~10 % faster per tile), or None. Built on the first full batch, which both models
            run: the copy is used for later full batches only if its output on that real batch
            agrees with ``compiled``'s (:func:`outputs_agree`; that batch gets ``compiled``'s
            output). Any failure: ``compiled`` runs every batch.
        full_batch: the batch size ``make_full`` compiles for (0 = none).
    """

    compiled: Any
    input_size: int | None
    input_dtype: np.dtype
    precision: str
    make_full: Callable[[], Any] | None = None
    full_batch: int = 0
    _full: Any = field(default=None, repr=False)
    _full_tried: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def full_ready(self) -> bool:
        """Whether full batches run on the proven static copy (False until the first one)."""
        return self._full is not None

    def _run(self, model: Any, name: str, images: np.ndarray) -> np.ndarray:
        request = getattr(self._local, name, None)
        if request is None:
            request = model.create_infer_request()
            setattr(self._local, name, request)
        request.infer({0: images})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def _try_full(self, images: np.ndarray, reference: np.ndarray) -> None:
        """Build the full-batch copy and adopt it if it agrees with ``reference`` (the proven
        model's output on ``images``); once per model, whatever the outcome."""
        with self._lock:
            if self._full_tried or self.make_full is None:
                return
            self._full_tried = True
            try:
                full = self.make_full()
                out = self._run(full, "full", images)  # this thread's full-batch request
                if outputs_agree(reference, out):
                    self._full = full
                else:
                    _LOG.warning(
                        "OpenVINO full-batch copy disagrees with the proven model: not used"
                    )
            except Exception as e:  # the proven dynamic model runs every batch instead
                _LOG.warning("OpenVINO full-batch copy not used: %s", one_line(e))

    def forward(self, images: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 -> raw head (B, 4 + nc + extra, A) float32 (a copy: the
        request reuses its output buffer)."""
        x = np.ascontiguousarray(images, dtype=np.float32)
        full = self.full_batch > 0 and x.shape[0] == self.full_batch
        if full and self._full is not None:
            return self._run(self._full, "full", x)
        out = self._run(self.compiled, "any", x)
        if full and not self._full_tried:
            self._try_full(x, out)
        return out


def outputs_agree(reference: np.ndarray, other: np.ndarray, atol: float = 1e-3) -> bool:
    """Whether two raw heads of the same batch agree everywhere within ``atol`` (same shape,
    finite). Measured between OpenVINO's static and dynamic copies: identical (2026.4, fp32 and
    bf16)."""
    return (
        reference.shape == other.shape
        and bool(np.all(np.isfinite(other)))
        and bool(np.allclose(reference, other, atol=atol, rtol=0.0))
    )


def _import_openvino() -> Any:
    try:
        import openvino
    except ImportError as e:
        raise BackendUnavailableError(OPENVINO_ERROR) from e
    return openvino


def _spatial_size(shape: Any, spec: ModelSpec, where: str) -> int | None:
    """The square input size to compile for: the file's static one (checked as for ONNX
    Runtime, :func:`~redact.detection.onnx_handler.static_input_size`), else the registry's
    ``input_size``, else None (dynamic: every batch's own size)."""
    dims = [d.get_length() if d.is_static else None for d in shape]
    static = static_input_size(dims, where)
    if static is not None:
        return static
    return int(spec.input_size) if spec.input_size else None


class YoloOpenVinoModelHandler(DetectorHandler[OpenVinoDetectorModel]):
    """OpenVINO YOLOv8 detector (CPU).

    Args:
        spec, model_config, model_index, inference_fn, blur_thresholds, canary: as
            :class:`~redact.detection.onnx_handler.YoloOnnxModelHandler`.

    :meth:`open_model` reads the ONNX through Beam FileSystems, checks its sha256, fixes the
    spatial input (the file's static size, else the registry's ``input_size``; the batch stays
    dynamic; a second copy for exactly ``batch_size`` tiles is compiled on the first full
    batch and used once it agrees with the first on that batch) and compiles it for the CPU
    with ``model_config.intra_op_threads`` threads (0 = OpenVINO's default), one
    stream, and ``model_config.precision`` as the inference precision hint. A CPU without
    bfloat16 units runs a ``bf16`` model in float32 (OpenVINO's choice, logged as
    ``precision``). :meth:`load_model` then runs the canary, as for every backend.
    """

    def compile_config(self) -> dict[str, Any]:
        """The OpenVINO properties this model is compiled with."""
        props: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": _HINTS[self.model_config.precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        if self.model_config.intra_op_threads > 0:
            props["INFERENCE_NUM_THREADS"] = self.model_config.intra_op_threads
        return props

    def open_model(self) -> OpenVinoDetectorModel:
        """Read, verify, reshape and compile the model (no canary: see load_model)."""
        ov = _import_openvino()
        data = read_verified(self.spec, "model")
        where = f"model {self.spec.name!r} at {self.spec.uri}"
        try:
            core = ov.Core()
            model = core.read_model(data, b"")
            if len(model.inputs) != 1:
                raise ModelFileError(f"{where}: expected one input, got {len(model.inputs)}")
            size = _spatial_size(model.inputs[0].get_partial_shape(), self.spec, where)
            side = size if size is not None else -1
            model.reshape({model.inputs[0]: ov.PartialShape([-1, 3, side, side])})
            head = model.outputs[0].get_partial_shape()
            dims = [d.get_length() if d.is_static else "?" for d in head]
            check_head_declaration(dims, self.spec, where)
            props = self.compile_config()
            compiled = core.compile_model(model, "CPU", props)
            hint = compiled.get_property("INFERENCE_PRECISION_HINT")
            precision = str(getattr(hint, "get_type_name", lambda: hint)())
            batch = self.model_config.batch_size
            make_full = None
            if size is not None and batch > 1:  # a static shape runs ~10 % faster
                side, static = size, model.clone()

                def make_full() -> Any:
                    static.reshape({static.inputs[0]: ov.PartialShape([batch, 3, side, side])})
                    return core.compile_model(static, "CPU", props)
        except ModelFileError:
            raise
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own
            raise ModelFileError(f"cannot load {where} with OpenVINO: {one_line(e)}") from e
        _LOG.info("model %s: OpenVINO %s, %s", self.spec.model_id, ov.__version__, precision)
        return OpenVinoDetectorModel(
            compiled=compiled,
            input_size=size,
            input_dtype=np.dtype(np.float32),
            precision=precision,
            make_full=make_full,
            full_batch=batch if make_full is not None else 0,
        )
