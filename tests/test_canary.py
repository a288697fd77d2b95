"""The detector canary: the packaged crops, loading, matching, per-member checks, check_detectors."""

from __future__ import annotations

import dataclasses
import pickle
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from redact.classes import ObjectClass
from redact.config import Backend, ModelConfig, RedactConfig
from redact.detection import (
    CanaryError,
    EnsembleModelHandler,
    ModelRegistry,
    YoloOnnxModelHandler,
    check_detectors,
    load_canary,
    make_detector_handler,
    run_canary,
)
from redact.detection.canary import canary_tile, default_canary_folder
from redact.detection.registry import default_registry_path
from tests.tiny_models import build_color_detector, build_raw_head_detector, write_color_canary

FACE, PLATE = ObjectClass.FACE, ObjectClass.LICENSE_PLATE
SHIPPED = "redact-faceplate-yolov8n"


@pytest.fixture(scope="module")
def color_canary(tmp_path_factory) -> Path:
    return write_color_canary(tmp_path_factory.mktemp("canary"))


@pytest.fixture(scope="module")
def color_model(tmp_path_factory) -> Path:
    return build_color_detector(tmp_path_factory.mktemp("m") / "color.onnx", size=64)


@pytest.fixture(scope="module")
def zeros_model(tmp_path_factory) -> Path:
    return build_raw_head_detector(tmp_path_factory.mktemp("z") / "zeros.onnx", np.zeros((6, 64)))


def _config(*models: ModelConfig, **thresholds: float) -> RedactConfig:
    cfg = RedactConfig(models=models)
    if not thresholds:
        return cfg
    return RedactConfig(
        models=models,
        thresholds={
            c: dataclasses.replace(t, blur=thresholds.get(c.label, t.blur))
            for c, t in cfg.thresholds.items()
        },
    )


def _path_model(path: Path, classes=(FACE, PLATE), **kw) -> ModelConfig:
    return ModelConfig(
        path=str(path), classes=tuple(classes), batch_size=2, intra_op_threads=1, **kw
    )


# --- the packaged canary ---------------------------------------------------------------------


def test_packaged_canary_is_small_and_covers_both_classes():
    folder = default_canary_folder()
    assert folder == default_registry_path().parent / "canary"
    canary = load_canary()
    assert canary.where == str(folder)
    assert canary.required_classes() == {FACE, PLATE}
    assert len(canary.crops) >= 3
    total = sum(p.stat().st_size for p in folder.iterdir())
    assert total < 150_000, total
    assert (folder / "NOTICE.md").is_file()
    for crop in canary.crops:
        h, w = crop.image.shape[:2]
        assert crop.image.dtype == np.uint8 and crop.image.shape[2] == 3
        assert max(h, w) <= 640  # fed at native scale into a 640 px tile
        for o in crop.objects:
            assert 0 <= o.box[0] < o.box[2] <= w and 0 <= o.box[1] < o.box[3] <= h


def test_canary_follows_the_registry_location(tmp_path, monkeypatch, color_canary):
    registry = tmp_path / "registry.yaml"
    registry.write_text("models: {}\n")
    monkeypatch.setenv("REDACT_REGISTRY", str(registry))
    assert default_canary_folder() == tmp_path / "canary"
    with pytest.raises(CanaryError, match=r"cannot read detector canary .*canary\.yaml"):
        load_canary()


def test_shipped_model_passes_the_packaged_canary_at_the_default_thresholds():
    cfg = _config(ModelConfig(name=SHIPPED, batch_size=8))
    (report,) = check_detectors(cfg, ModelRegistry.load())
    assert report.passed and report.model_id.startswith(SHIPPED + "@")
    assert set(report.classes) == {FACE, PLATE}
    required = [o for o in report.objects if o.must]
    assert {o.cls for o in required} == {FACE, PLATE} and all(o.found for o in required)
    # margin: every required object scores far above the shipped blur thresholds (~0.04)
    assert min(o.best_score for o in required) > 0.45
    assert all(o.best_iou > 0.7 for o in required)
    assert "canary passed" in report.message()


def test_shipped_model_with_score_floor_one_stops_before_the_pipeline():
    cfg = _config(ModelConfig(name=SHIPPED, batch_size=8, score_floor=1.0))
    with pytest.raises(CanaryError) as e:
        check_detectors(cfg, ModelRegistry.load())
    msg = str(e.value)
    assert "\n" not in msg
    assert f"model '{SHIPPED}@" in msg and "missed face #0" in msg and "score_floor 1" in msg


def test_shipped_model_load_model_runs_the_canary():
    cfg = _config(ModelConfig(name=SHIPPED, batch_size=8, score_floor=1.0))
    handler = make_detector_handler(cfg, ModelRegistry.load())
    with pytest.raises(CanaryError, match="canary failed"):
        handler.load_model()


# --- matching --------------------------------------------------------------------------------


def test_colour_model_results_per_object(color_canary, color_model):
    cfg = _config(_path_model(color_model))
    handler = make_detector_handler(cfg, ModelRegistry({}), canary=color_canary)
    assert isinstance(handler, YoloOnnxModelHandler)
    canary = load_canary(color_canary)
    report = run_canary(handler, handler.open_model(), canary, handler.blur_thresholds)
    assert [(o.crop, o.cls) for o in report.objects] == [("red.png", FACE), ("blue.png", PLATE)]
    assert all(o.found and o.best_score > 0.99 for o in report.objects)
    assert report.objects[0].threshold == cfg.thresholds[FACE].blur


def test_member_is_checked_only_on_the_classes_it_claims(color_canary, color_model, zeros_model):
    # a face-only colour member passes without the plate; a plate-only zeros member fails
    face_only = _config(_path_model(color_model, (FACE, None)))
    (report,) = check_detectors(face_only, ModelRegistry({}), canary=color_canary)
    assert report.classes == (FACE,) and [o.cls for o in report.objects] == [FACE]
    plate_only = _config(_path_model(zeros_model, (None, PLATE)))
    with pytest.raises(CanaryError, match=r"missed license_plate #0 \[32, 8, 48, 24\] of blue"):
        check_detectors(plate_only, ModelRegistry({}), canary=color_canary)


def test_every_ensemble_member_proves_itself(color_canary, color_model, zeros_model):
    cfg = _config(_path_model(color_model), _path_model(zeros_model))
    handler = make_detector_handler(cfg, ModelRegistry({}), canary=color_canary)
    assert isinstance(handler, EnsembleModelHandler)
    with pytest.raises(CanaryError, match="model 'zeros'"):
        handler.load_model()
    with pytest.raises(CanaryError, match="model 'zeros'"):
        check_detectors(cfg, ModelRegistry({}), canary=color_canary)
    good = _config(_path_model(color_model), _path_model(color_model, (None, PLATE)))
    reports = check_detectors(good, ModelRegistry({}), canary=color_canary)
    assert [r.passed for r in reports] == [True, True]
    assert (
        len(make_detector_handler(good, ModelRegistry({}), canary=color_canary).load_model()) == 2
    )


def test_configured_blur_threshold_is_what_must_be_reached(color_canary, color_model):
    # the colour model scores sigmoid(8) = 0.99966 on a pure square
    ok = _config(_path_model(color_model), face=0.999, license_plate=0.999)
    assert check_detectors(ok, ModelRegistry({}), canary=color_canary)[0].passed
    too_high = _config(_path_model(color_model), face=0.9999, license_plate=0.5)
    with pytest.raises(CanaryError, match=r"face #0 .*best matching score 0.9997.*>= 0.9999 "):
        check_detectors(too_high, ModelRegistry({}), canary=color_canary)


def test_optional_object_is_reported_not_required(tmp_path, color_model):
    root = write_color_canary(tmp_path / "c")
    spec = yaml.safe_load((root / "canary.yaml").read_text())
    spec["crops"][0]["objects"].append({"class": "face", "box": [30, 28, 40, 38], "must": False})
    (root / "canary.yaml").write_text(yaml.safe_dump(spec))
    (report,) = check_detectors(_config(_path_model(color_model)), ModelRegistry({}), canary=root)
    assert report.passed
    optional = [o for o in report.objects if not o.must]
    assert len(optional) == 1 and not optional[0].found


def test_canary_without_a_claimed_class_fails(tmp_path, color_model):
    root = write_color_canary(tmp_path / "c")
    spec = yaml.safe_load((root / "canary.yaml").read_text())
    spec["crops"] = spec["crops"][:1]  # faces only
    (root / "canary.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(CanaryError, match="no required object of class license_plate"):
        check_detectors(_config(_path_model(color_model)), ModelRegistry({}), canary=root)


def test_canary_tile_letterboxes_like_a_photo_window():
    crop = np.full((30, 50, 3), 200, np.uint8)
    tile, ct = canary_tile(crop, 64)
    assert tile.shape == (64, 64, 3)
    np.testing.assert_array_equal(tile[:30, :50], crop)  # native scale, top-left
    assert not tile[30:].any() and not tile[:, 50:].any()  # zero padding
    big = np.full((100, 200, 3), 200, np.uint8)
    tile, ct = canary_tile(big, 64)  # shrunk to fit
    assert ct.content_size == (64, 32) and tile[:32, :64].min() == 200 and not tile[32:].any()


# --- wiring ----------------------------------------------------------------------------------


def test_handlers_carry_thresholds_and_canary_and_stay_cheap(color_canary, color_model):
    cfg = _config(_path_model(color_model), face=0.4, license_plate=0.3)
    handler = make_detector_handler(cfg, ModelRegistry({}), canary=color_canary)
    assert handler.blur_thresholds == {FACE: 0.4, PLATE: 0.3}
    assert handler.canary == str(color_canary)
    data = pickle.dumps(handler)
    assert len(data) < 10_000  # no model, no images in the pickled handler
    clone = pickle.loads(data)
    assert clone.blur_thresholds == handler.blur_thresholds and clone.canary == handler.canary
    assert make_detector_handler(cfg, ModelRegistry({})).canary is None  # packaged, on the worker


def test_tensorrt_member_is_skipped_on_a_launcher_without_tensorrt(
    monkeypatch, tmp_path, color_canary
):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"PLAN")
    mc = ModelConfig(path=str(engine), classes=(FACE, PLATE), backend=Backend.TENSORRT)
    (report,) = check_detectors(_config(mc), ModelRegistry({}), canary=color_canary)
    assert report.skipped and "cannot import tensorrt" in report.skipped
    assert not report.passed and "canary not run" in report.message()
    report.raise_if_failed()  # a skip is not a failure: the workers check at load


# --- loading errors --------------------------------------------------------------------------


def _write(root: Path, body: dict, image: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if image:
        cv2.imwrite(str(root / "a.png"), np.full((20, 30, 3), 90, np.uint8))
    (root / "canary.yaml").write_text(yaml.safe_dump(body))
    return root


_OBJ = {"class": "face", "box": [1, 1, 10, 10]}


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"crops": []}, "'crops' must be a non-empty list"),
        ({"crops": [{"file": "a.png", "objects": [_OBJ]}], "extra": 1}, "unknown key"),
        ({"crops": [{"file": "a.png"}]}, "'objects' must be a non-empty list"),
        ({"crops": [{"file": "nope.png", "objects": [_OBJ]}]}, "cannot read nope.png"),
        (
            {"crops": [{"file": "a.png", "objects": [{"class": "cat", "box": [1, 1, 2, 2]}]}]},
            "unknown object class",
        ),
        (
            {"crops": [{"file": "a.png", "objects": [{"class": "face", "box": [1, 1, 40, 2]}]}]},
            r"not a box inside the 30x20 crop",
        ),
        (
            {"crops": [{"file": "a.png", "objects": [{**_OBJ, "must": "yes"}]}]},
            "must: expected true or false",
        ),
        ({"min_iou": 0, "crops": [{"file": "a.png", "objects": [_OBJ]}]}, "min_iou"),
    ],
)
def test_invalid_canary(tmp_path, body, match):
    root = _write(tmp_path / "c", body)
    with pytest.raises(CanaryError, match=match) as e:
        load_canary(root)
    assert "\n" not in str(e.value)


def test_unreadable_crop_and_yaml(tmp_path):
    root = _write(tmp_path / "c", {"crops": [{"file": "a.png", "objects": [_OBJ]}]})
    (root / "a.png").write_bytes(b"not an image")
    with pytest.raises(CanaryError, match="not a readable image"):
        load_canary(root)
    (root / "canary.yaml").write_text("crops: [\n")
    with pytest.raises(CanaryError, match="invalid YAML") as e:
        load_canary(root)
    assert "\n" not in str(e.value)
