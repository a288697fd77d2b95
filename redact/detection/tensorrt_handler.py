"""YOLOv8 detector on TensorRT 10 (serialized ``.engine`` files), as a Beam ModelHandler.

GPU memory and streams go through **cuda-python** (``cuda.bindings.runtime``, or the older
``cuda.cudart`` module of cuda-python < 12.6); torch is not used. ``tensorrt`` and the CUDA
binding are imported inside :meth:`TensorRTModelHandler.load_model` only, so this module
imports, and a Beam job graph using it builds and submits, on machines without a GPU.

The pure parts (ultralytics header stripping, I/O tensor planning, batch splitting) are
plain functions, tested without TensorRT.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from redact.classes import ObjectClass
from redact.config import ModelConfig
from redact.detection.base import (
    TENSORRT_ERROR,
    BackendUnavailableError,
    DetectorHandler,
    InferenceFn,
    read_verified,
)
from redact.detection.registry import ModelFileError, ModelSpec

_CUDA_MODULES = ("cuda.bindings.runtime", "cuda.cudart")
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


# --- pure logic ------------------------------------------------------------------------------


def strip_ultralytics_header(data: bytes) -> tuple[bytes, dict[str, Any] | None]:
    """Split an ultralytics-exported engine into (serialized engine, metadata).

    Ultralytics writes a 4-byte little-endian length N, N bytes of UTF-8 JSON (a mapping),
    then the serialized engine. Data without such a header is returned unchanged with None.
    """
    if len(data) < 6:
        return data, None
    n = int.from_bytes(data[:4], "little")
    if n < 2 or 4 + n >= len(data):
        return data, None
    try:
        meta = json.loads(data[4 : 4 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return data, None  # not a header: a plain TensorRT plan
    if not isinstance(meta, dict):
        return data, None
    return data[4 + n :], meta


@dataclass(frozen=True)
class TensorInfo:
    """One engine I/O tensor.

    Attributes:
        name: tensor name.
        is_input: True for an input, False for an output.
        dtype: numpy dtype of the tensor.
        shape: engine shape, -1 for dynamic dims.
        profile_max: optimization profile 0 max shape (inputs only; None for outputs).
    """

    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int, ...]
    profile_max: tuple[int, ...] | None = None


@dataclass(frozen=True)
class IOPlan:
    """How the handler binds an engine.

    Attributes:
        input: the image input (B, 3, S, S).
        outputs: all outputs in engine order; ``outputs[0]`` is the YOLO head.
        max_batch: largest batch per ``execute_async_v3`` call (profile max, or the static
            batch dim).
        max_input_shape: input shape the device buffer is allocated for.
        input_size: static square input size in pixels, None if spatially dynamic.
    """

    input: TensorInfo
    outputs: tuple[TensorInfo, ...]
    max_batch: int
    max_input_shape: tuple[int, int, int, int]
    input_size: int | None

    @property
    def head(self) -> TensorInfo:
        return self.outputs[0]


def plan_io(tensors: Sequence[TensorInfo]) -> IOPlan:
    """Check an engine's I/O tensors and decide the bindings.

    Raises:
        ModelFileError: not exactly one input, no output, input not 4-D (B, 3, H, W) float,
            non-square input, or a dynamic input without a profile max shape.
    """
    inputs = [t for t in tensors if t.is_input]
    outputs = tuple(t for t in tensors if not t.is_input)
    if len(inputs) != 1:
        raise ModelFileError(f"engine must have exactly one input, got {[t.name for t in inputs]}")
    if not outputs:
        raise ModelFileError("engine has no output tensor")
    inp = inputs[0]
    if len(inp.shape) != 4 or inp.shape[1] not in (3, -1):
        raise ModelFileError(f"engine input {inp.name!r} must be (B, 3, H, W), got {inp.shape}")
    for t in (inp, outputs[0]):
        if t.dtype not in _FLOAT_DTYPES:
            raise ModelFileError(f"engine tensor {t.name!r}: unsupported dtype {t.dtype}")
    if any(d < 0 for d in inp.shape):
        mx = inp.profile_max
        if mx is None or len(mx) != 4 or any(d < 1 for d in mx):
            raise ModelFileError(
                f"engine input {inp.name!r} is dynamic {inp.shape} but profile 0 max is {mx}"
            )
    else:
        mx = inp.shape
    h, w = inp.shape[2], inp.shape[3]
    if h > 0 and w > 0 and h != w:
        raise ModelFileError(f"engine input must be square, got {h}x{w}")
    size = h if h > 0 and h == w else None
    max_shape = (int(mx[0]), 3, int(mx[2]), int(mx[3]))
    return IOPlan(inp, outputs, max_shape[0], max_shape, size)


def check_engine_head(head: TensorInfo, spec: ModelSpec) -> None:
    """Refuse an engine whose head is not (B, C, A) with the registered C (exactly).

    Raises:
        ModelFileError: one line naming the engine, the head shape and the expected one.
    """
    shape = head.shape
    channels = shape[1] if len(shape) == 3 else None
    if len(shape) != 3 or (
        channels is not None and channels > 0 and channels != spec.head_channels
    ):
        got = f"{channels} channels" if channels is not None else f"{len(shape)} dims"
        raise ModelFileError(
            f"engine {spec.name!r} at {spec.uri}: head {head.name!r} {shape} has {got}, "
            f"expected (B, {spec.head_channels}, A) = 4 box + {spec.num_classes} class + "
            f"{spec.extra_channels} extra channels"
        )


def split_batch(n: int, max_batch: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges covering ``n`` items in chunks of at most ``max_batch``."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [(s, min(s + max_batch, n)) for s in range(0, n, max_batch)]


# --- CUDA runtime adapter (cuda-python) --------------------------------------------------------


class _Cuda:
    """The few cuda-python runtime calls the handler needs, with error checks."""

    def __init__(self, cudart: Any) -> None:
        self.rt = cudart

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        res = fn(*args)
        err, rest = (res[0], res[1:]) if isinstance(res, tuple) else (res, ())
        if err != self.rt.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA {fn.__name__} failed: {err}")
        return rest[0] if len(rest) == 1 else None

    def set_device(self, device: int) -> None:
        self._call(self.rt.cudaSetDevice, device)

    def malloc(self, nbytes: int) -> int:
        return int(self._call(self.rt.cudaMalloc, nbytes))

    def free(self, ptr: int) -> None:
        self._call(self.rt.cudaFree, ptr)

    def stream_create(self) -> Any:
        return self._call(self.rt.cudaStreamCreate)

    def synchronize(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamSynchronize, stream)

    def h2d(self, dst: int, src: np.ndarray, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync, dst, src.ctypes.data, src.nbytes, kind, stream)

    def d2h(self, dst: np.ndarray, src: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync, dst.ctypes.data, src, dst.nbytes, kind, stream)


def _import_backend() -> tuple[Any, Any]:
    """(tensorrt module, cuda-python runtime module), or BackendUnavailableError."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as e:
        raise BackendUnavailableError(f"{TENSORRT_ERROR}: cannot import tensorrt ({e})") from e
    errors = []
    for name in _CUDA_MODULES:
        try:
            return trt, importlib.import_module(name)
        except ImportError as e:
            errors.append(f"{name}: {e}")
    raise BackendUnavailableError(
        f"{TENSORRT_ERROR}: cannot import cuda-python ({'; '.join(errors)})"
    )


# --- the model ---------------------------------------------------------------------------------


class TensorRTDetectorModel:
    """A deserialized engine, one execution context, device buffers for the max batch.

    A :class:`~redact.detection.base.DetectorModel`. ``forward`` is serialized by a lock (one
    context, one set of buffers), so Beam threads may share the model.

    Attributes:
        input_size: static square input size in pixels, None if spatially dynamic.
        input_dtype: float32 or float16, from the engine input tensor.
        plan: the I/O plan.
        metadata: ultralytics metadata from the engine header, or None.
    """

    def __init__(
        self,
        engine: Any,
        context: Any,
        cuda: _Cuda,
        plan: IOPlan,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.engine = engine
        self.context = context
        self.plan = plan
        self.metadata = metadata
        self.input_size = plan.input_size
        self.input_dtype = plan.input.dtype
        self._cuda = cuda
        self._lock = threading.Lock()
        self._stream = cuda.stream_create()
        self._buffers: dict[str, int] = {}
        # Resolve every output shape at the max input shape, allocate once, bind once.
        self._set_input_shape(plan.max_input_shape)
        try:
            for t in (plan.input, *plan.outputs):
                shape = (
                    plan.max_input_shape if t.is_input else tuple(context.get_tensor_shape(t.name))
                )
                if any(d < 0 for d in shape):
                    raise ModelFileError(f"engine tensor {t.name!r}: unresolved shape {shape}")
                nbytes = int(np.prod(shape)) * t.dtype.itemsize
                self._buffers[t.name] = cuda.malloc(max(nbytes, 1))
                if not context.set_tensor_address(t.name, self._buffers[t.name]):
                    raise RuntimeError(f"TensorRT set_tensor_address({t.name!r}) failed")
        except Exception:
            self.close()
            raise

    def _set_input_shape(self, shape: tuple[int, ...]) -> None:
        if not self.context.set_input_shape(self.plan.input.name, shape):
            raise RuntimeError(
                f"TensorRT rejected input shape {shape} for {self.plan.input.name!r} "
                f"(profile max {self.plan.max_input_shape})"
            )

    def close(self) -> None:
        """Free the device buffers (the model is unusable afterwards)."""
        buffers, self._buffers = self._buffers, {}
        for ptr in buffers.values():
            self._cuda.free(ptr)

    def forward(self, images: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float in [0, 1] -> raw head (B, 4 + nc + extra, A) float32.

        Batches larger than the profile max are run in chunks and concatenated in order.
        """
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
            raise ValueError(f"images must be (B, 3, S, S), got {images.shape}")
        _, _, hmax, wmax = self.plan.max_input_shape
        if images.shape[2] > hmax or images.shape[3] > wmax:
            raise ValueError(f"images {images.shape} exceed the engine max {hmax}x{wmax}")
        if self.input_size is not None and images.shape[2] != self.input_size:
            raise ValueError(f"images {images.shape} do not match engine size {self.input_size}")
        head = self.plan.head
        chunks = []
        with self._lock:
            for start, stop in split_batch(images.shape[0], self.plan.max_batch):
                x = np.ascontiguousarray(images[start:stop], dtype=self.input_dtype)
                self._set_input_shape(x.shape)
                out = np.empty(tuple(self.context.get_tensor_shape(head.name)), head.dtype)
                self._cuda.h2d(self._buffers[self.plan.input.name], x, self._stream)
                if not self.context.execute_async_v3(self._stream_handle()):
                    raise RuntimeError("TensorRT execute_async_v3 failed")
                self._cuda.d2h(out, self._buffers[head.name], self._stream)
                self._cuda.synchronize(self._stream)
                chunks.append(out.astype(np.float32, copy=False))
        if not chunks:
            raise ValueError("images is an empty batch")
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=0)

    def _stream_handle(self) -> int:
        s = self._stream
        return int(s.getPtr()) if hasattr(s, "getPtr") else int(s)


def _tensor_infos(trt: Any, engine: Any) -> list[TensorInfo]:
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        profile_max = None
        if is_input and any(d < 0 for d in shape):
            profile_max = tuple(int(d) for d in engine.get_tensor_profile_shape(name, 0)[2])
        out.append(TensorInfo(name, is_input, dtype, shape, profile_max))
    return out


class TensorRTModelHandler(DetectorHandler[TensorRTDetectorModel]):
    """TensorRT 10 YOLOv8 detector; ``spec.uri`` names a serialized ``.engine``.

    Engines are specific to the GPU model and TensorRT version they were built with
    (see ``scripts/export_engine.py`` and ``docs/tensorrt.md``).

    Args:
        spec: the registry entry (uri of the .engine, sha256 of the whole file, class map).
        model_config: batch size, score floor, tile NMS IoU.
        model_index: index of this model in the ensemble.
        device: CUDA device ordinal.
        inference_fn: ``fn(model, images, inference_args) -> raw head`` override.
        blur_thresholds: per-class blur thresholds the canary must reach (see
            :class:`~redact.detection.base.DetectorHandler`).
        canary: canary folder; None = the packaged ``models/canary``.

    :meth:`load_model` opens the engine and runs the canary before any inference; every
    batch's head is checked against the output contract (shape, finite, scores in [0, 1]).
    """

    def __init__(
        self,
        spec: ModelSpec,
        model_config: ModelConfig,
        model_index: int = 0,
        *,
        device: int = 0,
        inference_fn: InferenceFn | None = None,
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
        if device < 0:
            raise ValueError(f"device must be >= 0, got {device}")
        self.device = device

    def open_model(self) -> TensorRTDetectorModel:
        """Import TensorRT, read + sha256-check the engine, deserialize, check the head,
        bind buffers (no canary: see load_model)."""
        trt, cudart = _import_backend()
        cuda = _Cuda(cudart)
        try:
            cuda.set_device(self.device)
        except RuntimeError as e:
            raise BackendUnavailableError(f"{TENSORRT_ERROR}: CUDA init failed ({e})") from e
        data = read_verified(self.spec, "engine")
        plan_bytes, metadata = strip_ultralytics_header(data)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(plan_bytes)
        if engine is None:
            raise ModelFileError(
                f"TensorRT {getattr(trt, '__version__', '?')} cannot deserialize engine "
                f"{self.spec.uri} (built for another TensorRT version or GPU?)"
            )
        plan = plan_io(_tensor_infos(trt, engine))
        check_engine_head(plan.head, self.spec)
        context = engine.create_execution_context()
        if context is None:
            raise RuntimeError(
                f"TensorRT could not create an execution context for {self.spec.uri}"
            )
        return TensorRTDetectorModel(engine, context, cuda, plan, metadata)
