"""OpenVINO handler (the [openvino] extra) with tiny real ONNX models; skips without it, except
the checks that the backend fails cleanly when the extra is missing."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from redact.classes import ObjectClass
from redact.config import Backend, ConfigError, ModelConfig, Precision, RedactConfig
from redact.detection import ModelFileError, ModelSpec, YoloOnnxModelHandler
from redact.detection.base import BackendUnavailableError
from redact.detection.canary import CanaryError
from redact.detection.ensemble import make_member_handler
from redact.detection.openvino_handler import OPENVINO_ERROR, YoloOpenVinoModelHandler
from redact.detection.registry import sha256_of
from tests.tiny_models import (
    build_color_detector,
    build_constant_detector,
    draw_square,
    write_color_canary,
)

FACE, PLATE = ObjectClass.FACE, ObjectClass.LICENSE_PLATE


def _spec(path: Path, sha: str | None = None) -> ModelSpec:
    return ModelSpec(
        name="tiny",
        version="1",
        uri=str(path),
        sha256=sha256_of(str(path)) if sha is None else sha,
        classes=(FACE, PLATE),
        num_classes=2,
        extra_channels=0,
    )


def _config(path: Path, backend: Backend, precision: Precision = Precision.FP32) -> ModelConfig:
    return ModelConfig(
        path=str(path),
        classes=(FACE, PLATE),
        batch_size=4,
        intra_op_threads=1,
        backend=backend,
        precision=precision,
    )


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_color_canary(tmp_path_factory.mktemp("canary"))


@pytest.fixture(scope="module")
def color64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_color_detector(tmp_path_factory.mktemp("m") / "color64.onnx", size=64)


def _tiles() -> list[np.ndarray]:
    grey = np.full((64, 64, 3), 90, np.uint8)
    both = draw_square(draw_square(grey, 16, 16, 24, "red"), 40, 0, 24, "blue")
    return [both, grey, draw_square(grey, 0, 30, 30, "blue")]


def _detect(handler, tiles):  # type: ignore[no-untyped-def]
    model = handler.load_model()
    return model, [r.inference.detections for r in handler.run_inference(tiles, model)]


def test_config_precision_needs_openvino() -> None:
    cfg = RedactConfig.from_dict(
        {"models": [{"name": "m", "backend": "openvino", "precision": "bf16"}]}
    )
    assert cfg.models[0].backend is Backend.OPENVINO
    assert cfg.models[0].precision is Precision.BF16
    auto = RedactConfig.from_dict(
        {"models": [{"name": "m", "backend": "auto", "precision": "bf16"}]}
    )
    assert auto.models[0].backend is Backend.AUTO
    for backend in ("onnx", "tensorrt"):
        with pytest.raises(ConfigError, match="needs backend 'openvino' or 'auto'"):
            RedactConfig.from_dict(
                {"models": [{"name": "m", "backend": backend, "precision": "bf16"}]}
            )
    # fp32 is the default and any backend's
    assert RedactConfig.from_dict({"models": [{"name": "m"}]}).models[0].precision is Precision.FP32


def test_missing_extra_is_one_clear_error(
    color64: Path, canary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails as if not installed
    h = make_member_handler(_spec(color64), _config(color64, Backend.OPENVINO), 0, canary=canary)
    assert isinstance(h, YoloOpenVinoModelHandler)
    with pytest.raises(BackendUnavailableError, match=r"\[openvino\] extra") as e:
        h.load_model()
    assert str(e.value) == OPENVINO_ERROR


def test_fp32_matches_onnx_runtime(color64: Path, canary: Path) -> None:
    pytest.importorskip("openvino")
    ov_model, ov = _detect(
        YoloOpenVinoModelHandler(
            _spec(color64), _config(color64, Backend.OPENVINO), 0, canary=canary
        ),
        _tiles(),
    )
    _, ort = _detect(
        YoloOnnxModelHandler(_spec(color64), _config(color64, Backend.ONNX), 0, canary=canary),
        _tiles(),
    )
    assert ov_model.input_size == 64 and ov_model.precision == "f32"
    assert ov_model.make_full is not None and ov_model.full_batch == 4
    h = YoloOpenVinoModelHandler(
        _spec(color64), _config(color64, Backend.OPENVINO), 0, canary=canary
    )
    four = [*_tiles(), _tiles()[0]]  # a full batch runs on the static copy
    full = [r.inference.detections for r in h.run_inference(four, ov_model)]
    assert ov_model.full_ready  # the static copy was built, proven and used
    for a, b in zip(full[:3], ov, strict=True):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-4)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-6)
    assert [len(d) for d in ov] == [len(d) for d in ort] and len(ov[0]) > 0 and len(ov[1]) == 0
    for a, b in zip(ov, ort, strict=True):
        np.testing.assert_array_equal(a.class_id, b.class_id)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)


def test_bf16_finds_the_same_objects(color64: Path, canary: Path) -> None:
    pytest.importorskip("openvino")
    h = YoloOpenVinoModelHandler(
        _spec(color64), _config(color64, Backend.OPENVINO, Precision.BF16), 0, canary=canary
    )
    assert h.compile_config()["INFERENCE_PRECISION_HINT"] == "bf16"
    model, got = _detect(h, _tiles())
    assert model.precision in ("bf16", "f32")  # f32 on a CPU without bfloat16 units
    assert set(got[0].class_id.tolist()) == {FACE, PLATE} and len(got[1]) == 0
    assert float(got[0].confidence.max()) > 0.9


def test_threads_share_the_model_with_their_own_requests(color64: Path, canary: Path) -> None:
    pytest.importorskip("openvino")
    h = YoloOpenVinoModelHandler(
        _spec(color64), _config(color64, Backend.OPENVINO), 0, canary=canary
    )
    model, serial = _detect(h, _tiles())
    out: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for _ in range(5):
                out[k] = [r.inference.detections for r in h.run_inference(_tiles(), model)]
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads) and not errors and len(out) == 3
    for dets in out.values():
        for a, b in zip(dets, serial, strict=True):
            np.testing.assert_array_equal(a.xyxy, b.xyxy)


def test_bad_files_and_failed_canary_raise(tmp_path: Path, color64: Path, canary: Path) -> None:
    pytest.importorskip("openvino")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an onnx model")
    with pytest.raises(ModelFileError, match="cannot load model") as e:
        YoloOpenVinoModelHandler(
            _spec(bad), _config(bad, Backend.OPENVINO), 0, canary=canary
        ).load_model()
    assert "\n" not in str(e.value)
    wrong_sha = YoloOpenVinoModelHandler(
        _spec(color64, sha="0" * 64), _config(color64, Backend.OPENVINO), 0, canary=canary
    )
    with pytest.raises(ModelFileError, match="sha256"):
        wrong_sha.load_model()
    blind = build_constant_detector(  # one zero-score anchor: finds nothing
        tmp_path / "const.onnx", np.array([[32.0, 32.0, 8.0, 8.0]]), np.zeros((1, 2)), size=64
    )
    with pytest.raises(CanaryError):
        YoloOpenVinoModelHandler(
            _spec(blind), _config(blind, Backend.OPENVINO), 0, canary=canary
        ).load_model()


def test_manifest_backend_label_names_the_precision() -> None:
    from redact.detection.ensemble import backend_label

    assert backend_label(ModelConfig(name="m")) == "onnx"
    assert backend_label(ModelConfig(name="m", backend=Backend.OPENVINO)) == "openvino"
    bf16 = ModelConfig(name="m", backend=Backend.OPENVINO, precision=Precision.BF16)
    assert backend_label(bf16) == "openvino/bf16"


def test_auto_resolves_to_openvino_where_importable_else_onnx_runtime_fp32() -> None:
    from redact.detection.auto_handler import resolve_auto

    auto = ModelConfig(name="m", backend=Backend.AUTO, precision=Precision.BF16, batch_size=3)
    ov = resolve_auto(auto, have_openvino=True)
    assert (ov.backend, ov.precision, ov.batch_size) == (Backend.OPENVINO, Precision.BF16, 3)
    ort = resolve_auto(auto, have_openvino=False)
    assert (ort.backend, ort.precision, ort.batch_size) == (Backend.ONNX, Precision.FP32, 3)
    onnx = ModelConfig(name="m")
    assert resolve_auto(onnx, have_openvino=True) is onnx  # only auto is resolved


def test_auto_handler_runs_onnx_runtime_without_the_extra(
    color64: Path, canary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redact.detection.auto_handler import AutoCpuModelHandler
    from redact.detection.onnx_handler import OnnxDetectorModel

    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.setattr("redact.detection.auto_handler.openvino_available", lambda: False)
    h = make_member_handler(
        _spec(color64), _config(color64, Backend.AUTO, Precision.BF16), 0, canary=canary
    )
    assert isinstance(h, AutoCpuModelHandler)
    model, got = _detect(h, _tiles())
    assert isinstance(model, OnnxDetectorModel)
    assert set(got[0].class_id.tolist()) == {FACE, PLATE} and len(got[1]) == 0


def test_auto_handler_runs_openvino_where_installed(color64: Path, canary: Path) -> None:
    pytest.importorskip("openvino")
    from redact.detection.openvino_handler import OpenVinoDetectorModel

    h = make_member_handler(_spec(color64), _config(color64, Backend.AUTO), 0, canary=canary)
    model, got = _detect(h, _tiles())
    assert isinstance(model, OpenVinoDetectorModel) and model.precision == "f32"
    assert set(got[0].class_id.tolist()) == {FACE, PLATE}
    # a canary miss is still a miss on the backend auto picked
    blind = build_constant_detector(
        color64.parent / "blind.onnx", np.array([[32.0, 32.0, 8.0, 8.0]]), np.zeros((1, 2)), size=64
    )
    with pytest.raises(CanaryError):
        make_member_handler(
            _spec(blind), _config(blind, Backend.AUTO), 0, canary=canary
        ).load_model()


def test_backend_parity_match_pairs_same_class_boxes() -> None:
    from redact.detections import Detections
    from tests.fixtures.scripts import load_script

    bp = load_script("backend_parity")

    def dets(boxes, scores, classes):  # type: ignore[no-untyped-def]
        return Detections(
            np.array(boxes, np.float32).reshape(-1, 4),
            np.array(scores, np.float32),
            np.array(classes, np.int32),
        )

    a = [
        dets([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0.5, 0.04, 0.01], [0, 1, 0]),
        dets([[0, 0, 10, 10]], [0.9], [0]),
    ]
    b = [
        dets([[0, 0, 10, 11], [20, 20, 30, 30]], [0.52, 0.05], [0, 0]),  # the plate came out a face
        dets([[40, 40, 50, 50]], [0.9], [0]),  # elsewhere: no IoU
    ]
    out = bp.match(a, b, min_score=0.03)
    # only the 0.5 face matches (IoU 100/110); the plate has no plate; 0.01 is below min_score
    assert out["matched"] == 1 and out["unmatched"] == 2
    assert abs(out["min_iou"] - 100 / 110) < 1e-6
    assert abs(out["max_score_diff"] - 0.02) < 1e-6
    assert bp.match(a, a)["unmatched"] == 0 and bp.match(a, a)["max_score_diff"] == 0.0


class _FakeRequest:
    def __init__(self, out: np.ndarray) -> None:
        self.out = out

    def infer(self, inputs: dict) -> None:
        images = inputs[0]
        assert images.dtype == np.float32 and images.flags.c_contiguous
        self.tensor = self.out[: images.shape[0]]

    def get_output_tensor(self, index: int):  # type: ignore[no-untyped-def]
        return type("T", (), {"data": self.tensor})()


class _FakeCompiled:
    def __init__(self, out: np.ndarray) -> None:
        self.out = out

    def create_infer_request(self) -> _FakeRequest:
        return _FakeRequest(self.out)


def test_outputs_agree_within_tolerance_only() -> None:
    from redact.detection.openvino_handler import outputs_agree

    head = np.random.default_rng(1).uniform(0, 1, (4, 6, 10)).astype(np.float32)
    assert outputs_agree(head, head + 1e-4)
    off = head.copy()
    off[2, 4, 7] += 0.01  # one score of one tile
    assert not outputs_agree(head, off)
    assert not outputs_agree(head, head[:, :5])
    nan = head.copy()
    nan[0, 0, 0] = np.nan
    assert not outputs_agree(head, nan)


def _fake_model(head: np.ndarray, make_full) -> object:  # type: ignore[no-untyped-def]
    from redact.detection.openvino_handler import OpenVinoDetectorModel

    return OpenVinoDetectorModel(
        compiled=_FakeCompiled(head),
        input_size=32,
        input_dtype=np.dtype(np.float32),
        precision="f32",
        make_full=make_full,
        full_batch=4,
    )


def test_the_full_batch_copy_is_used_only_after_agreeing_on_a_real_batch() -> None:
    head = np.random.default_rng(3).uniform(0, 1, (4, 6, 10)).astype(np.float32)
    x = np.zeros((4, 3, 32, 32), np.float32)
    good = _fake_model(head, lambda: _FakeCompiled(head + 1e-5))
    np.testing.assert_array_equal(good.forward(x), head)  # the first: the proven model's
    assert good.full_ready
    np.testing.assert_allclose(good.forward(x), head + 1e-5)  # later: the copy
    np.testing.assert_array_equal(good.forward(x[:3]), head[:3])  # partial: the proven model
    wrong = _fake_model(head, lambda: _FakeCompiled(head + 0.5))
    for _ in range(3):
        np.testing.assert_array_equal(wrong.forward(x), head)
    assert not wrong.full_ready


def test_a_failed_full_batch_copy_falls_back_to_the_proven_model() -> None:
    head = np.random.default_rng(2).uniform(0, 1, (4, 6, 10)).astype(np.float32)
    calls: list[int] = []

    def broken() -> object:
        calls.append(1)
        raise ModelFileError("static copy disagrees")

    model = _fake_model(head, broken)
    x = np.zeros((4, 3, 32, 32), np.float32)
    np.testing.assert_array_equal(model.forward(x), head)  # the dynamic model's output
    np.testing.assert_array_equal(model.forward(x), head)
    assert calls == [1] and not model.full_ready  # tried once, never used
