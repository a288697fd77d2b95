"""TensorRT handler: pure logic, and the forward path against fake tensorrt / cuda modules.

Nothing here needs TensorRT or a GPU except the ``gpu``-marked test, which is skipped
without them. The fakes copy real bytes through ctypes buffers, so the data path
(host -> "device" -> "engine" -> host) is exercised, not only the call sequence. The fake
"engine" is the colour detector (``tests.tiny_models.color_head``: red squares are faces, blue
ones plates) plus one extra channel carrying a per-image fingerprint, so handlers prove
themselves on the colour canary at load like real ones.
"""

from __future__ import annotations

import ctypes
import enum
import hashlib
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from redact.classes import ObjectClass
from redact.config import Backend, ModelConfig, RedactConfig
from redact.detection import (
    CanaryError,
    DetectorOutputError,
    ModelFileError,
    ModelRegistry,
    ModelSpec,
    make_detector_handler,
)
from redact.detection.tensorrt_handler import (
    TensorInfo,
    TensorRTModelHandler,
    plan_io,
    split_batch,
    strip_ultralytics_header,
)
from tests.tiny_models import color_head, draw_square, write_color_canary

FACE, PLATE = ObjectClass.FACE, ObjectClass.LICENSE_PLATE
SIZE = 64
NC = 2
EXTRA = 1  # the fake head's fingerprint channel (registered as extra_channels)
C = 4 + NC + EXTRA
ANCHORS = (SIZE // 8) ** 2


# --- pure functions ----------------------------------------------------------------------


def _with_header(meta: dict, engine: bytes) -> bytes:
    js = json.dumps(meta).encode()
    return len(js).to_bytes(4, "little") + js + engine


def test_strip_ultralytics_header():
    engine = b"ftrt\x00\x01\x02binary-plan"
    data, meta = strip_ultralytics_header(_with_header({"imgsz": [640, 640], "names": {}}, engine))
    assert data == engine and meta == {"imgsz": [640, 640], "names": {}}
    # a plain plan: unchanged, no metadata
    assert strip_ultralytics_header(engine) == (engine, None)
    # a length prefix whose payload is not JSON / not a mapping / too long: unchanged
    junk = (5).to_bytes(4, "little") + b"\xff\xfe\x00\x01\x02rest"
    assert strip_ultralytics_header(junk) == (junk, None)
    arr = _with_header([1, 2], engine)  # type: ignore[arg-type]
    assert strip_ultralytics_header(arr) == (arr, None)
    big = (10**6).to_bytes(4, "little") + b"{}"
    assert strip_ultralytics_header(big) == (big, None)
    assert strip_ultralytics_header(b"") == (b"", None)


def test_split_batch():
    assert split_batch(0, 8) == []
    assert split_batch(5, 8) == [(0, 5)]
    assert split_batch(8, 8) == [(0, 8)]
    assert split_batch(17, 8) == [(0, 8), (8, 16), (16, 17)]
    with pytest.raises(ValueError):
        split_batch(3, 0)


F32, F16 = np.dtype(np.float32), np.dtype(np.float16)


def test_plan_io_dynamic_batch():
    plan = plan_io(
        [
            TensorInfo("output0", False, F32, (-1, 6, ANCHORS)),
            TensorInfo("images", True, F16, (-1, 3, 640, 640), (32, 3, 640, 640)),
            TensorInfo("extra", False, F32, (-1, 4)),
        ]
    )
    assert plan.input.name == "images" and plan.input.dtype == F16
    assert [t.name for t in plan.outputs] == ["output0", "extra"]
    assert plan.head.name == "output0"
    assert plan.max_batch == 32 and plan.max_input_shape == (32, 3, 640, 640)
    assert plan.input_size == 640


def test_plan_io_static_and_dynamic_spatial():
    static = plan_io(
        [TensorInfo("x", True, F32, (4, 3, 64, 64)), TensorInfo("y", False, F32, (4, 6, 9))]
    )
    assert static.max_batch == 4 and static.input_size == 64
    dyn = plan_io(
        [
            TensorInfo("x", True, F32, (-1, 3, -1, -1), (8, 3, 1280, 1280)),
            TensorInfo("y", False, F32, (-1, 6, -1)),
        ]
    )
    assert dyn.input_size is None and dyn.max_input_shape == (8, 3, 1280, 1280)


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        ([TensorInfo("y", False, F32, (1, 6, 9))], "exactly one input"),
        ([TensorInfo("x", True, F32, (1, 3, 8, 8))], "no output"),
        (
            [TensorInfo("x", True, F32, (1, 3, 8)), TensorInfo("y", False, F32, (1, 6, 9))],
            r"\(B, 3, H, W\)",
        ),
        (
            [TensorInfo("x", True, F32, (1, 3, 8, 16)), TensorInfo("y", False, F32, (1, 6, 9))],
            "square",
        ),
        (
            [TensorInfo("x", True, F32, (-1, 3, 8, 8)), TensorInfo("y", False, F32, (1, 6, 9))],
            "profile 0 max",
        ),
        (
            [
                TensorInfo("x", True, np.dtype(np.int8), (1, 3, 8, 8)),
                TensorInfo("y", False, F32, (1, 6, 9)),
            ],
            "dtype",
        ),
    ],
)
def test_plan_io_rejects(tensors, match):
    with pytest.raises(ModelFileError, match=match):
        plan_io(tensors)


# --- fakes ---------------------------------------------------------------------------------


class _Mode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class _DT(enum.Enum):
    FLOAT = np.float32
    HALF = np.float16


class FakeCudart(types.ModuleType):
    """cuda-python runtime look-alike: 'device' memory is ctypes buffers in host RAM."""

    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorNoDevice = 100

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self, *, no_device: bool = False) -> None:
        super().__init__("cuda.bindings.runtime")
        self.no_device = no_device
        self.buffers: dict[int, ctypes.Array] = {}
        self.freed: list[int] = []
        self.copies: list[tuple[int, int]] = []  # (kind, nbytes)
        self.syncs = 0
        ok = self.cudaError_t.cudaSuccess

        def cudaSetDevice(dev):
            return (self.cudaError_t.cudaErrorNoDevice if self.no_device else ok,)

        def cudaMalloc(n):
            buf = (ctypes.c_char * n)()
            self.buffers[ctypes.addressof(buf)] = buf
            return ok, ctypes.addressof(buf)

        def cudaFree(ptr):
            self.freed.append(ptr)
            return (ok,)

        def cudaStreamCreate():
            return ok, 7

        def cudaStreamSynchronize(stream):
            assert stream == 7
            self.syncs += 1
            return (ok,)

        def cudaMemcpyAsync(dst, src, n, kind, stream):
            assert stream == 7
            ctypes.memmove(dst, src, n)
            self.copies.append((int(kind), n))
            return (ok,)

        for fn in (
            cudaSetDevice,
            cudaMalloc,
            cudaFree,
            cudaStreamCreate,
            cudaStreamSynchronize,
            cudaMemcpyAsync,
        ):
            setattr(self, fn.__name__, fn)

    def view(self, ptr: int, dtype, shape) -> np.ndarray:
        """numpy view of 'device' memory at ``ptr``."""
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.frombuffer((ctypes.c_char * n).from_address(ptr), dtype=dtype).reshape(shape)


def fake_head(images: np.ndarray, *, nan: bool = False) -> np.ndarray:
    """What the fake engine computes: the colour detector's (B, 4 + NC, A) head, then one extra
    channel ``mean(image b) + a / 100`` (a fingerprint of the bytes that reached the engine).
    ``nan``: a broken engine whose class scores are NaN."""
    x = images.astype(np.float32)
    head = color_head(x, NC)
    if nan:
        head[:, 4:, :] = np.nan
    mean = x.mean(axis=(1, 2, 3))
    extra = mean[:, None, None] + np.arange(ANCHORS)[None, None, :] / 100
    return np.concatenate([head, extra.astype(np.float32)], axis=1)


class FakeContext:
    """Execution context: the 'engine' writes :func:`fake_head` of its input."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.calls: list[tuple] = []

    def set_input_shape(self, name, shape):
        self.calls.append(("set_input_shape", name, tuple(shape)))
        if name != "images" or shape[0] > self.engine.max_batch or shape[0] < 1:
            return False
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        b = self.shapes["images"][0]
        return {"images": self.shapes["images"], "output0": (b, C, ANCHORS), "aux": (b, 5)}[name]

    def set_tensor_address(self, name, ptr):
        self.calls.append(("set_tensor_address", name, ptr))
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream):
        self.calls.append(("execute_async_v3", stream, self.shapes["images"]))
        cuda = self.engine.cuda
        x = cuda.view(self.addresses["images"], self.engine.in_dtype, self.shapes["images"])
        b = x.shape[0]
        out = cuda.view(self.addresses["output0"], self.engine.out_dtype, (b, C, ANCHORS))
        out[...] = fake_head(x, nan=self.engine.nan).astype(self.engine.out_dtype)
        return True


class FakeEngine:
    def __init__(
        self,
        cuda: FakeCudart,
        in_dtype,
        out_dtype,
        max_batch: int,
        *,
        nan: bool = False,
        transposed: bool = False,
    ) -> None:
        self.cuda, self.in_dtype, self.out_dtype, self.max_batch = (
            cuda,
            in_dtype,
            out_dtype,
            max_batch,
        )
        self.nan = nan
        self.contexts: list[FakeContext] = []
        head = (-1, ANCHORS, C) if transposed else (-1, C, ANCHORS)
        self._t = [  # name, mode, dtype, shape
            ("images", _Mode.INPUT, in_dtype, (-1, 3, SIZE, SIZE)),
            ("output0", _Mode.OUTPUT, out_dtype, head),
            ("aux", _Mode.OUTPUT, np.float32, (-1, 5)),
        ]

    @property
    def num_io_tensors(self):
        return len(self._t)

    def get_tensor_name(self, i):
        return self._t[i][0]

    def _get(self, name):
        return next(t for t in self._t if t[0] == name)

    def get_tensor_mode(self, name):
        return self._get(name)[1]

    def get_tensor_dtype(self, name):
        return _DT(self._get(name)[2])

    def get_tensor_shape(self, name):
        return self._get(name)[3]

    def get_tensor_profile_shape(self, name, profile):
        assert name == "images" and profile == 0
        return [(1, 3, SIZE, SIZE), (2, 3, SIZE, SIZE), (self.max_batch, 3, SIZE, SIZE)]

    def create_execution_context(self):
        self.contexts.append(FakeContext(self))
        return self.contexts[-1]


def _fake_trt(
    cuda: FakeCudart,
    in_dtype=np.float32,
    out_dtype=np.float32,
    max_batch=4,
    nan: bool = False,
    transposed: bool = False,
):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.fake"  # type: ignore[attr-defined]
    trt.TensorIOMode = _Mode  # type: ignore[attr-defined]
    trt.nptype = lambda dt: dt.value  # type: ignore[attr-defined]
    trt.deserialized: list[bytes] = []  # type: ignore[attr-defined,misc]
    trt.engines: list[FakeEngine] = []  # type: ignore[attr-defined,misc]

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class Runtime:
        def __init__(self, logger):
            assert isinstance(logger, Logger)

        def deserialize_cuda_engine(self, data):
            trt.deserialized.append(bytes(data))
            if not bytes(data).startswith(b"PLAN"):
                return None
            trt.engines.append(
                FakeEngine(cuda, in_dtype, out_dtype, max_batch, nan=nan, transposed=transposed)
            )
            return trt.engines[-1]

    trt.Logger = Logger  # type: ignore[attr-defined]
    trt.Runtime = Runtime  # type: ignore[attr-defined]
    return trt


@pytest.fixture
def fake_backend(monkeypatch):
    """Install fake ``tensorrt`` + ``cuda.bindings.runtime``; returns a factory(**kw)."""

    def install(**kw):
        no_device = kw.pop("no_device", False)
        cuda = FakeCudart(no_device=no_device)
        trt = _fake_trt(cuda, **kw)
        pkg, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setitem(sys.modules, "cuda", pkg)
        monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cuda)
        return trt, cuda

    return install


def _engine_file(tmp_path: Path, header: bool = True) -> Path:
    plan = b"PLAN" + bytes(range(64))
    p = tmp_path / "m.engine"
    p.write_bytes(_with_header({"imgsz": [SIZE, SIZE]}, plan) if header else plan)
    return p


@pytest.fixture
def canary(tmp_path) -> Path:
    """The colour canary (a red face square, a blue plate square) the fake engine passes."""
    return write_color_canary(tmp_path / "canary")


def _handler(
    path: Path,
    batch: int = 4,
    sha: str | None = None,
    classes=(FACE, PLATE),
    *,
    canary: Path | None,
    score_floor: float = 0.02,
    extra_channels: int = EXTRA,
):
    spec = ModelSpec(
        name="trt",
        version="1",
        uri=str(path),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest() if sha is None else sha,
        classes=tuple(classes),
        num_classes=len(classes),
        extra_channels=extra_channels,
    )
    mc = ModelConfig(
        path=str(path),
        classes=tuple(classes),
        backend=Backend.TENSORRT,
        batch_size=batch,
        score_floor=score_floor,
    )
    return TensorRTModelHandler(spec, mc, canary=canary)


# --- handler with fakes --------------------------------------------------------------------


def _expected(images: np.ndarray, dtype) -> np.ndarray:
    return fake_head(images.astype(dtype))


def test_load_binds_all_tensors_at_max_batch(fake_backend, tmp_path, canary):
    trt, cuda = fake_backend(max_batch=4)
    model = _handler(_engine_file(tmp_path), canary=canary).load_model()
    assert trt.deserialized == [b"PLAN" + bytes(range(64))]  # header stripped
    assert model.metadata == {"imgsz": [SIZE, SIZE]}
    assert model.input_size == SIZE and model.input_dtype == np.float32
    ctx = trt.engines[0].contexts[0]
    assert ctx.calls[0] == ("set_input_shape", "images", (4, 3, SIZE, SIZE))
    bound = {c[1]: c[2] for c in ctx.calls if c[0] == "set_tensor_address"}
    assert set(bound) == {"images", "output0", "aux"}
    sizes = {name: len(cuda.buffers[ptr]) for name, ptr in bound.items()}
    assert sizes == {
        "images": 4 * 3 * SIZE * SIZE * 4,
        "output0": 4 * C * ANCHORS * 4,
        "aux": 4 * 5 * 4,
    }
    model.close()
    assert sorted(cuda.freed) == sorted(bound.values())


def test_forward_splits_batches_and_keeps_order(fake_backend, tmp_path, canary):
    trt, cuda = fake_backend(max_batch=4)
    model = _handler(_engine_file(tmp_path), canary=canary).load_model()
    ctx = trt.engines[0].contexts[0]
    n_bound = len(cuda.buffers)
    ctx.calls.clear()
    rng = np.random.default_rng(0)
    cuda.copies.clear()
    cuda.syncs = 0
    images = rng.random((10, 3, SIZE, SIZE), dtype=np.float32)
    out = model.forward(images)
    assert out.shape == (10, C, ANCHORS) and out.dtype == np.float32
    np.testing.assert_allclose(out, _expected(images, np.float32), rtol=1e-5)
    assert [c for c in ctx.calls if c[0] != "execute_async_v3"] == [
        ("set_input_shape", "images", (4, 3, SIZE, SIZE)),
        ("set_input_shape", "images", (4, 3, SIZE, SIZE)),
        ("set_input_shape", "images", (2, 3, SIZE, SIZE)),
    ]  # addresses were bound once at load, not per call
    assert [c[2][0] for c in ctx.calls if c[0] == "execute_async_v3"] == [4, 4, 2]
    assert all(c[1] == 7 for c in ctx.calls if c[0] == "execute_async_v3")
    assert len(cuda.buffers) == n_bound  # no allocation per forward
    assert cuda.syncs == 3
    assert [k for k, _ in cuda.copies] == [1, 2] * 3
    assert cuda.copies[-1] == (2, 2 * C * ANCHORS * 4)


def test_forward_fp16_engine(fake_backend, tmp_path, canary):
    _trt, cuda = fake_backend(in_dtype=np.float16, out_dtype=np.float16, max_batch=8)
    model = _handler(_engine_file(tmp_path, header=False), canary=canary).load_model()
    assert model.input_dtype == np.float16 and model.metadata is None
    cuda.copies.clear()
    images = np.random.default_rng(1).random((3, 3, SIZE, SIZE)).astype(np.float32)
    out = model.forward(images)  # float32 in: cast to the engine's fp16
    assert out.dtype == np.float32
    assert cuda.copies[0] == (1, 3 * 3 * SIZE * SIZE * 2)
    np.testing.assert_allclose(out, _expected(images, np.float16), rtol=2e-3, atol=2e-2)
    with pytest.raises(ValueError, match="engine size"):
        model.forward(np.zeros((1, 3, 16, 16), np.float16))


def test_run_inference_decodes_through_base(fake_backend, tmp_path, canary):
    fake_backend(max_batch=2)
    h = _handler(_engine_file(tmp_path), batch=3, canary=canary)
    model = h.load_model()
    grey = np.full((SIZE, SIZE, 3), 90, np.uint8)
    tiles = [draw_square(grey, 16, 16, 16, "red"), grey, draw_square(grey, 40, 8, 16, "blue")]
    results = list(h.run_inference(tiles, model))
    assert [r.model_id for r in results] == ["trt@1"] * 3
    classes = [set(r.inference.detections.class_id.tolist()) for r in results]
    assert classes == [{FACE}, set(), {PLATE}]
    det = results[0].inference.detections
    centres = (det.xyxy[:, :2] + det.xyxy[:, 2:]) / 2
    assert np.all((centres > 16) & (centres < 32))


def test_sha_mismatch_and_bad_engine(fake_backend, tmp_path, canary):
    fake_backend()
    path = _engine_file(tmp_path)
    with pytest.raises(ModelFileError, match="sha256"):
        _handler(path, sha="0" * 64, canary=canary).load_model()
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"not an engine at all")
    with pytest.raises(ModelFileError, match="cannot deserialize"):
        _handler(bad, canary=canary).load_model()
    missing = ModelSpec("x", "1", str(tmp_path / "missing.engine"), "", (FACE,), 1)
    mc = ModelConfig(path="x", classes=(FACE,), backend=Backend.TENSORRT)
    with pytest.raises(ModelFileError, match="cannot read engine"):
        TensorRTModelHandler(missing, mc).load_model()


def test_too_few_head_channels(fake_backend, tmp_path, canary):
    fake_backend()
    # the fake head is (-1, 7, A): 7 channels, but 4 + 3 classes + 1 extra = 8 are registered
    h = _handler(_engine_file(tmp_path), classes=(FACE, PLATE, None), canary=canary)
    with pytest.raises(ModelFileError, match=r"has 7 channels, expected \(B, 8, A\)"):
        h.load_model()


def test_transposed_engine_head_is_refused_at_load(fake_backend, tmp_path, canary):
    trt, _ = fake_backend(transposed=True)  # head (-1, A, C): anchors first
    with pytest.raises(ModelFileError) as e:
        _handler(_engine_file(tmp_path), canary=canary).load_model()
    msg = str(e.value)
    assert "'trt'" in msg and f"(-1, {ANCHORS}, {C})" in msg and f"(B, {C}, A)" in msg
    assert "\n" not in msg
    assert not trt.engines[0].contexts  # refused before any context or buffer


def test_load_runs_the_canary_and_a_miss_frees_the_buffers(fake_backend, tmp_path, canary):
    _trt, cuda = fake_backend()
    # the colour head's best score is sigmoid(8) < 1: a score floor of 1.0 finds nothing
    h = _handler(_engine_file(tmp_path), canary=canary, score_floor=1.0)
    with pytest.raises(CanaryError, match=r"model 'trt@1'.*missed face #0 .* of red.png"):
        h.load_model()
    assert cuda.buffers and sorted(cuda.freed) == sorted(cuda.buffers)


def test_nan_engine_output_raises_on_load_and_on_every_batch(fake_backend, tmp_path, canary):
    _trt, cuda = fake_backend(nan=True)
    h = _handler(_engine_file(tmp_path), canary=canary)
    with pytest.raises(DetectorOutputError, match=r"'trt@1'.*non-finite"):
        h.load_model()  # the canary batch already trips the output contract
    assert sorted(cuda.freed) == sorted(cuda.buffers)
    model = h.open_model()  # without the canary: every batch is checked too
    with pytest.raises(DetectorOutputError, match="non-finite"):
        h.run_inference([np.full((SIZE, SIZE, 3), 90, np.uint8)], model)


def test_no_gpu_is_a_clear_error(fake_backend, tmp_path, canary):
    fake_backend(no_device=True)
    with pytest.raises(RuntimeError, match=r"requires the \[tensorrt\] extra and a GPU: CUDA init"):
        _handler(_engine_file(tmp_path), canary=canary).load_model()


def test_without_tensorrt_graph_builds_and_load_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    path = _engine_file(tmp_path)
    mc = ModelConfig(path=str(path), classes=(FACE, PLATE), backend=Backend.TENSORRT)
    handler = make_detector_handler(RedactConfig(models=(mc,)), ModelRegistry({}))
    assert isinstance(handler, TensorRTModelHandler)  # graph construction needs no TensorRT
    with pytest.raises(
        RuntimeError,
        match=r"requires the \[tensorrt\] extra and a GPU: "
        r"cannot import tensorrt",
    ):
        handler.load_model()


def test_missing_cuda_python_is_a_clear_error(fake_backend, monkeypatch, tmp_path, canary):
    fake_backend()
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    monkeypatch.setitem(sys.modules, "cuda.cudart", None)
    with pytest.raises(RuntimeError, match="cannot import cuda-python"):
        _handler(_engine_file(tmp_path), canary=canary).load_model()


@pytest.mark.gpu
def test_real_engine_on_gpu():
    """Needs ``REDACT_TRT_ENGINE`` (a built .engine, see docs/tensorrt.md), TensorRT and a GPU."""
    pytest.importorskip("tensorrt", reason="TensorRT not installed (needs the [tensorrt] extra)")
    engine = os.environ.get("REDACT_TRT_ENGINE")
    if not engine:
        pytest.skip("set REDACT_TRT_ENGINE to a built .engine to run this test")
    # the shipped face + plate model's engine: its load proves it on the packaged canary
    h = _handler(Path(engine), batch=8, canary=None, extra_channels=0)
    model = h.load_model()
    size = model.input_size or 640
    out = model.forward(np.zeros((9, 3, size, size), model.input_dtype))
    assert out.shape[0] == 9 and out.ndim == 3 and np.isfinite(out).all()
