"""ONNX Runtime handler, ensemble and Beam RunInference with tiny real models."""

from __future__ import annotations

import pickle
from pathlib import Path

import apache_beam as beam
import cv2
import numpy as np
import pytest
import yaml
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from redact.classes import ObjectClass
from redact.config import ModelConfig, RedactConfig
from redact.detection import (
    EnsembleModelHandler,
    ModelFileError,
    ModelRegistry,
    ModelSpec,
    TileInference,
    YoloOnnxModelHandler,
    describe_models,
    make_detector_handler,
    preprocess,
)
from redact.detection.registry import sha256_of
from tests.tiny_models import (
    build_color_detector,
    build_constant_detector,
    draw_square,
    write_color_canary,
)

FACE, PLATE = ObjectClass.FACE, ObjectClass.LICENSE_PLATE


def _spec(
    path: Path,
    classes=(FACE, PLATE),
    name: str = "tiny",
    sha: str | None = None,
    extra_channels: int = 0,
):
    return ModelSpec(
        name=name,
        version="1",
        uri=str(path),
        sha256=sha256_of(str(path)) if sha is None else sha,
        classes=tuple(classes),
        num_classes=len(classes),
        extra_channels=extra_channels,
    )


# The colour canary (red face, blue plate squares) that every tiny colour model must pass.
_CANARY: dict[str, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def color_canary(tmp_path_factory) -> Path:
    _CANARY["dir"] = write_color_canary(tmp_path_factory.mktemp("canary"))
    return _CANARY["dir"]


def _handler(
    path: Path,
    *,
    index: int = 0,
    batch: int = 4,
    classes=(FACE, PLATE),
    extra_channels: int = 0,
    **kw,
):
    mc = ModelConfig(path=str(path), classes=tuple(classes), batch_size=batch, intra_op_threads=1)
    kw.setdefault("canary", _CANARY["dir"])
    spec = _spec(path, classes, extra_channels=extra_channels)
    return YoloOnnxModelHandler(spec, mc, index, **kw)


@pytest.fixture(scope="module")
def color64(tmp_path_factory) -> Path:
    return build_color_detector(tmp_path_factory.mktemp("m") / "color64.onnx", size=64)


def _tile(size: int = 64) -> np.ndarray:
    return np.full((size, size, 3), 90, np.uint8)


def _assert_covers(det, cls, square, min_score=0.99):
    """The ``cls`` boxes of ``det`` are centred inside ``square`` (x1, y1, x2, y2) and their
    union covers it; the best score is at least ``min_score``."""
    sel = det[det.class_id == cls]
    assert len(sel), f"no {cls!r} detection"
    assert float(sel.confidence.max()) >= min_score
    x1, y1, x2, y2 = square
    cx = (sel.xyxy[:, 0] + sel.xyxy[:, 2]) / 2
    cy = (sel.xyxy[:, 1] + sel.xyxy[:, 3]) / 2
    assert np.all((cx > x1) & (cx < x2) & (cy > y1) & (cy < y2)), sel.xyxy
    lo = sel.xyxy[:, :2].min(axis=0)
    hi = sel.xyxy[:, 2:].max(axis=0)
    assert lo[0] <= x1 and lo[1] <= y1 and hi[0] >= x2 and hi[1] >= y2, sel.xyxy


def test_preprocess_nchw_scaled_and_input_untouched():
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(2)]
    before = [t.copy() for t in tiles]
    x = preprocess(tiles, 8, np.float32)
    assert x.shape == (2, 3, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x[1, 2], tiles[1][:, :, 2] / 255.0, rtol=1e-6)
    for t, b in zip(tiles, before, strict=True):
        np.testing.assert_array_equal(t, b)
    assert preprocess(tiles, 8, np.float16).dtype == np.float16
    with pytest.raises(ValueError, match="uint8"):
        preprocess([tiles[0].astype(np.float32)], 8, np.float32)


def test_preprocess_into_out_matches_a_fresh_tensor_and_checks_its_shape():
    rng = np.random.default_rng(1)
    tiles = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(3)]
    out = np.full((3, 3, 8, 8), 7.0, np.float32)  # stale values are overwritten whole
    got = preprocess(tiles, 8, np.float32, out=out)
    assert got is out
    np.testing.assert_array_equal(got, preprocess(tiles, 8, np.float32))
    for bad in (np.empty((2, 3, 8, 8), np.float32), np.empty((3, 3, 8, 8), np.float16),
                np.empty((3, 3, 8, 16), np.float32)[..., ::2]):  # fmt: skip
        with pytest.raises(ValueError, match="C-contiguous"):
            preprocess(tiles, 8, np.float32, out=bad)


def test_input_buffer_is_reused_per_thread_and_grows():
    import threading

    from redact.detection.base import input_buffer

    a = input_buffer(4, 16, np.float32)
    b = input_buffer(2, 16, np.float32)
    assert a.shape == (4, 3, 16, 16) and b.shape == (2, 3, 16, 16) and b.flags.c_contiguous
    assert np.shares_memory(a, b)  # the smaller batch is a prefix of the same buffer
    assert not np.shares_memory(a, input_buffer(4, 16, np.float16))  # per dtype
    assert not np.shares_memory(a, input_buffer(4, 8, np.float32))  # per size
    big = input_buffer(6, 16, np.float32)  # grown: a new buffer
    assert not np.shares_memory(a, big)
    assert big.shape[0] == 6 and np.shares_memory(big, input_buffer(1, 16, np.float32))
    other: list[np.ndarray] = []
    t = threading.Thread(target=lambda: other.append(input_buffer(6, 16, np.float32)))
    t.start()
    t.join()
    assert not np.shares_memory(big, other[0])  # another thread never gets this one


def test_run_inference_twice_on_the_reused_buffer_gives_the_same_detections(color64):
    h = _handler(color64)
    model = h.load_model()
    tile = draw_square(draw_square(_tile(), 16, 16, 24, "red"), 40, 0, 24, "blue")
    first = [r.inference.detections for r in h.run_inference([tile, _tile()], model)]
    list(h.run_inference([_tile(), _tile(), _tile()], model))  # other content, bigger batch
    again = [r.inference.detections for r in h.run_inference([tile, _tile()], model)]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        np.testing.assert_array_equal(a.confidence, b.confidence)
    assert len(first[0]) > 0


def test_red_square_is_a_face_blue_square_a_plate(color64):
    h = _handler(color64)
    model = h.load_model()
    assert model.input_size == 64
    tile = draw_square(draw_square(_tile(), 16, 16, 24, "red"), 40, 0, 24, "blue")
    empty = _tile()
    results = list(h.run_inference([tile, empty], model))
    assert len(results) == 2
    r = results[0]
    assert isinstance(r, PredictionResult) and r.example is None
    assert r.model_id == "tiny@1"
    assert isinstance(r.inference, TileInference) and r.inference.seconds > 0
    det = r.inference.detections
    assert set(det.class_id.tolist()) == {FACE, PLATE}
    assert np.all(det.source == 0)
    _assert_covers(det, FACE, (16, 16, 40, 40))
    _assert_covers(det, PLATE, (40, 0, 64, 24))
    # boxes are the 24 px cell boxes (clipped at the tile border)
    w = det.xyxy[:, 2] - det.xyxy[:, 0]
    assert np.all((w <= 24) & (w >= 12))
    assert len(results[1].inference.detections) == 0


def test_tile_of_other_size_is_resized_and_boxes_rescaled(color64):
    h = _handler(color64)
    model = h.load_model()
    tile = draw_square(_tile(128), 32, 64, 48, "red")  # = (16, 32, 24) at 64 px
    (r,) = h.run_inference([tile], model)
    det = r.inference.detections
    _assert_covers(det, FACE, (32, 64, 80, 112))
    # boxes are 24 model px = 48 tile px
    np.testing.assert_allclose(det.xyxy[:, 2] - det.xyxy[:, 0], 48, atol=1e-3)


def test_float16_input_and_extra_channels(tmp_path):
    path = build_color_detector(
        tmp_path / "fp16.onnx", size=64, num_classes=1, extra_channels=15, input_dtype="float16"
    )
    h = _handler(path, classes=(FACE,), extra_channels=15)
    model = h.load_model()
    assert model.input_dtype == np.float16
    (r,) = h.run_inference([draw_square(_tile(), 24, 24, 24)], model)
    _assert_covers(r.inference.detections, FACE, (24, 24, 48, 48))


def test_batching_kwargs_and_pickling(color64):
    h = _handler(color64, batch=5)
    assert h.batch_elements_kwargs() == {"min_batch_size": 5, "max_batch_size": 5}
    assert h.get_metrics_namespace() == "redact_detector"
    assert h.get_num_bytes([_tile(), _tile()]) == 2 * 64 * 64 * 3
    clone = pickle.loads(pickle.dumps(h))
    assert clone.spec == h.spec


def test_inference_fn_is_injectable(color64):
    calls = []

    def fn(model, images, args):
        calls.append((images.shape, args))
        return model.forward(images)

    h = _handler(color64, inference_fn=fn)
    model = h.load_model()
    # load_model ran the 2-crop colour canary through the same inference path
    assert calls == [((2, 3, 64, 64), None)]
    h.run_inference([_tile()], model, {"x": 1})
    assert calls[1:] == [((1, 3, 64, 64), {"x": 1})]


def test_corrupt_model_file_raises(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an onnx model")
    with pytest.raises(ModelFileError, match="cannot load model") as e:
        _handler(bad).load_model()
    assert "\n" not in str(e.value) and str(bad) in str(e.value)


def test_sha_mismatch_raises(color64):
    mc = ModelConfig(path=str(color64), classes=(FACE, PLATE))
    h = YoloOnnxModelHandler(_spec(color64, sha="0" * 64), mc, 0, canary=_CANARY["dir"])
    with pytest.raises(ModelFileError, match="sha256"):
        h.load_model()


def _const_canary(root: Path) -> Path:
    """A canary the constant plate model passes: a plate where it always reports one."""
    root.mkdir()
    cv2.imwrite(str(root / "grey.png"), np.full((64, 64, 3), 90, np.uint8))
    crop = {"file": "grey.png", "objects": [{"class": "plate", "box": [45, 45, 55, 55]}]}
    (root / "canary.yaml").write_text(yaml.safe_dump({"crops": [crop]}))
    return root


def test_ensemble_is_union_of_members(tmp_path, color64):
    # Member 1 always reports one plate at a fixed place.
    const = build_constant_detector(
        tmp_path / "const.onnx", np.array([[50, 50, 10, 10]]), np.array([[0.0, 0.8]]), size=64
    )
    m0 = _handler(color64, index=0, batch=4)
    m1 = _handler(
        const, index=1, batch=2, classes=(None, PLATE), canary=_const_canary(tmp_path / "cc")
    )
    ens = EnsembleModelHandler([m0, m1])
    assert ens.batch_elements_kwargs() == {"min_batch_size": 2, "max_batch_size": 2}
    models = ens.load_model()
    tiles = [draw_square(_tile(), 16, 16, 24), _tile()]
    results = list(ens.run_inference(tiles, models))
    solo = list(m0.run_inference(tiles, models[0]))
    assert results[0].model_id == "tiny@1+tiny@1"
    for r, s in zip(results, solo, strict=True):
        det = r.inference.detections
        assert det[det.source == 0] == s.inference.detections
        other = det[det.source == 1]
        assert len(other) == 1 and other.class_id[0] == PLATE
        np.testing.assert_allclose(other.xyxy, [[45, 45, 55, 55]])
        np.testing.assert_allclose(other.confidence, [0.8])
        assert r.inference.seconds >= s.inference.seconds
    assert len(results[1].inference.detections) == 1


def test_make_detector_handler_and_describe(tmp_path, color64):
    reg = ModelRegistry({})
    mc = ModelConfig(path=str(color64), classes=(FACE, PLATE), batch_size=3)
    single = make_detector_handler(RedactConfig(models=(mc,)), reg)
    assert isinstance(single, YoloOnnxModelHandler)
    assert single.spec.sha256 == sha256_of(str(color64))
    # the canary thresholds are the config's blur thresholds; the default canary is packaged
    assert single.blur_thresholds == {
        c: t.blur for c, t in RedactConfig(models=(mc,)).thresholds.items()
    }
    assert single.canary is None
    cfg = RedactConfig(models=(mc, ModelConfig(path=str(color64), classes=(None, PLATE))))
    ens = make_detector_handler(cfg, reg)
    assert isinstance(ens, EnsembleModelHandler)
    assert [h.model_index for h in ens.handlers] == [0, 1]
    rows = describe_models(cfg, reg)
    assert rows[1]["classes"] == [None, "license_plate"]
    assert rows[0]["sha256"] == single.spec.sha256 and rows[0]["backend"] == "onnx"
    assert set(rows[0]) >= {"name", "version", "sha256", "backend", "uri"}


@pytest.mark.slow
@pytest.mark.parametrize("ensemble", [False, True])
def test_run_inference_in_beam_pipeline(color64, ensemble):
    if ensemble:  # a face-only and a plate-only member: the union must find both
        h = EnsembleModelHandler(
            [
                _handler(color64, batch=2, classes=(FACE, None)),
                _handler(color64, index=1, batch=2, classes=(None, PLATE)),
            ]
        )
    else:
        h = _handler(color64, batch=2)
    tiles = {
        "a": draw_square(_tile(), 16, 16, 24, "red"),
        "b": draw_square(_tile(), 40, 40, 24, "blue"),
        "c": _tile(),
    }

    def summarize(kv):
        key, result = kv
        det = result.inference.detections
        return key, sorted({ObjectClass(int(c)).label for c in det.class_id}), len(det) > 0

    with test_pipeline.TestPipeline() as p:
        out = (
            p
            | beam.Create(sorted(tiles.items()))
            | RunInference(KeyedModelHandler(h))
            | beam.Map(summarize)
        )
        assert_that(
            out,
            equal_to([("a", ["face"], True), ("b", ["license_plate"], True), ("c", [], False)]),
        )


@pytest.mark.parametrize("size", [128, 640])
def test_color_detector_sizes(tmp_path, size):
    h = _handler(build_color_detector(tmp_path / f"c{size}.onnx", size=size), classes=(FACE, PLATE))
    model = h.load_model()
    assert model.input_size == size
    x0 = size - 40
    (r,) = h.run_inference([draw_square(_tile(size), x0, 8, 32, "blue")], model)
    det = r.inference.detections
    assert set(det.class_id.tolist()) == {PLATE}
    _assert_covers(det, PLATE, (x0, 8, x0 + 32, 40))


@pytest.mark.slow
def test_faceghost_teacher_runs_if_fetched():
    reg = ModelRegistry.load()
    mc = ModelConfig(name="faceghost-yolov8n-face", batch_size=2, intra_op_threads=1)
    spec = reg.resolve(mc)
    try:
        reg.verify(spec)
    except ModelFileError as e:
        pytest.skip(str(e))
    h = YoloOnnxModelHandler(spec, mc, 0)
    model = h.load_model()
    assert model.input_size is None  # dynamic: spec.input_size (640) is used
    results = list(h.run_inference([_tile(640), _tile(320)], model))
    assert len(results) == 2
    for r in results:
        det = r.inference.detections
        assert np.all(det.class_id == FACE)
        assert np.all(det.confidence >= mc.score_floor)
