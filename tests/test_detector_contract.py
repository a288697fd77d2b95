"""A broken detector must stop before it publishes: the head output contract and the canary,
end to end through the ONNX handler, with tiny real ONNX models (tests/tiny_models.py)."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from redact.classes import ObjectClass
from redact.config import ModelConfig
from redact.detection import (
    CanaryError,
    DetectorOutputError,
    ModelFileError,
    ModelSpec,
    YoloOnnxModelHandler,
)
from redact.detection.registry import sha256_of
from tests.tiny_models import (
    build_color_detector,
    build_raw_head_detector,
    draw_square,
    write_color_canary,
)

FACE, PLATE = ObjectClass.FACE, ObjectClass.LICENSE_PLATE
SIZE = 64
A = (SIZE // 8) ** 2


@pytest.fixture(scope="module")
def canary(tmp_path_factory) -> Path:
    return write_color_canary(tmp_path_factory.mktemp("canary"))


def _handler(
    path: Path,
    canary: Path,
    *,
    classes=(FACE, PLATE),
    extra_channels: int = 0,
    score_floor: float = 0.02,
    batch: int = 2,
    **kw,
) -> YoloOnnxModelHandler:
    spec = ModelSpec(
        name="tiny",
        version="1",
        uri=str(path),
        sha256=sha256_of(str(path)),
        classes=tuple(classes),
        num_classes=len(classes),
        extra_channels=extra_channels,
    )
    mc = ModelConfig(
        path=str(path),
        classes=tuple(classes),
        batch_size=batch,
        intra_op_threads=1,
        score_floor=score_floor,
    )
    return YoloOnnxModelHandler(spec, mc, canary=canary, **kw)


def _grey() -> np.ndarray:
    return np.full((SIZE, SIZE, 3), 90, np.uint8)


def _one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_working_model_passes_its_canary(tmp_path, canary):
    h = _handler(build_color_detector(tmp_path / "ok.onnx", size=SIZE), canary)
    report = h.prove(h.open_model())
    assert report.passed and {o.cls for o in report.objects} == {FACE, PLATE}
    assert all(o.best_score > 0.99 and o.best_iou >= 0.3 for o in report.objects)
    h.load_model()  # does not raise


def test_all_zero_head_fails_the_canary_at_load(tmp_path, canary):
    h = _handler(build_raw_head_detector(tmp_path / "zeros.onnx", np.zeros((6, A))), canary)
    with pytest.raises(CanaryError) as e:
        h.load_model()
    msg = _one_line(e)
    assert "model 'tiny@1'" in msg and "missed face #0 [8, 8, 24, 24] of red.png" in msg
    assert "best matching score 0.0000" in msg and "(and 1 more)" in msg
    # ... and at inference the zeros are a valid (empty) answer: only the canary can tell
    (r,) = h.run_inference([_grey()], h.open_model())
    assert len(r.inference.detections) == 0


def test_nan_head_raises_at_load_and_on_every_batch(tmp_path, canary):
    head = np.full((6, A), 0.5, np.float32)
    head[4, 10] = np.nan
    h = _handler(build_raw_head_detector(tmp_path / "nan.onnx", head), canary)
    with pytest.raises(DetectorOutputError) as e:
        h.load_model()
    msg = _one_line(e)
    assert "'tiny@1'" in msg and "non-finite" in msg and "channel 4, anchor 10" in msg
    with pytest.raises(DetectorOutputError, match="non-finite"):
        h.run_inference([_grey()], h.open_model())


def test_inf_box_raises(tmp_path, canary):
    head = np.full((6, A), 0.1, np.float32)
    head[2, 0] = np.inf
    h = _handler(build_raw_head_detector(tmp_path / "inf.onnx", head), canary)
    with pytest.raises(DetectorOutputError, match="non-finite"):
        h.run_inference([_grey()], h.open_model())


def test_scores_out_of_range_raise(tmp_path, canary):
    head = np.full((6, A), 0.1, np.float32)
    head[5, 3] = 7.0  # logits, not sigmoid scores
    h = _handler(build_raw_head_detector(tmp_path / "logits.onnx", head), canary)
    with pytest.raises(DetectorOutputError, match=r"class scores span \[0.1, 7\]"):
        h.run_inference([_grey()], h.open_model())


def test_b3a_head_is_refused_at_load_not_transposed(tmp_path, canary):
    # [B, 3, A]: the old code silently transposed it to (B, A, 3) and decoded garbage
    h = _handler(build_raw_head_detector(tmp_path / "b3a.onnx", np.zeros((3, A))), canary)
    with pytest.raises(ModelFileError) as e:
        h.load_model()
    msg = _one_line(e)
    assert "'tiny'" in msg and f"['batch', 3, {A}]" in msg and "(B, 6, A)" in msg


def test_anchor_major_head_is_refused_at_load(tmp_path, canary):
    path = build_color_detector(tmp_path / "t.onnx", size=SIZE, anchors_first=True)
    with pytest.raises(ModelFileError, match=rf"\['batch', {A}, 6\] is not \(B, 6, A\)"):
        _handler(path, canary).load_model()


def test_head_layout_with_dynamic_dims_is_checked_per_batch(tmp_path, canary):
    # a head whose declared shape says nothing: the same contract is enforced on the output
    path = build_color_detector(tmp_path / "ok.onnx", size=SIZE)
    h = _handler(
        path,
        canary,
        inference_fn=lambda m, x, a: np.ascontiguousarray(m.forward(x).transpose(0, 2, 1)),
    )
    with pytest.raises(DetectorOutputError, match=rf"shape \(1, {A}, 6\), expected \(B=1, 6, A\)"):
        h.run_inference([_grey()], h.open_model())


@pytest.mark.parametrize(("model_extra", "registered_extra"), [(15, 0), (0, 15), (15, 14)])
def test_wrong_channel_count_is_refused(tmp_path, canary, model_extra, registered_extra):
    path = build_color_detector(tmp_path / "x.onnx", size=SIZE, extra_channels=model_extra)
    h = _handler(path, canary, extra_channels=registered_extra)
    with pytest.raises(ModelFileError, match=rf"is not \(B, {6 + registered_extra}, A\)"):
        h.load_model()


def test_registered_extra_channels_load_and_detect(tmp_path, canary):
    path = build_color_detector(tmp_path / "lm.onnx", size=SIZE, extra_channels=15)
    h = _handler(path, canary, extra_channels=15)
    model = h.load_model()
    (r,) = h.run_inference([draw_square(_grey(), 16, 16, 24)], model)
    assert set(r.inference.detections.class_id.tolist()) == {FACE}


def test_score_floor_one_fails_the_canary(tmp_path, canary):
    h = _handler(build_color_detector(tmp_path / "ok.onnx", size=SIZE), canary, score_floor=1.0)
    with pytest.raises(CanaryError) as e:
        h.load_model()
    msg = _one_line(e)
    assert "score_floor 1" in msg and "best matching score 0.0000" in msg


def test_blur_threshold_the_model_cannot_reach_fails_the_canary(tmp_path, canary):
    path = build_color_detector(tmp_path / "ok.onnx", size=SIZE)
    h = _handler(path, canary, blur_thresholds={FACE: 0.5, PLATE: 0.99999})
    with pytest.raises(CanaryError, match=r"missed license_plate #0 .* of blue.png.*>= 0.99999"):
        h.load_model()


@pytest.mark.slow
def test_canary_failure_fails_the_beam_job(tmp_path, canary):
    h = _handler(build_raw_head_detector(tmp_path / "zeros.onnx", np.zeros((6, A))), canary)
    with pytest.raises(Exception, match="canary failed for model 'tiny@1'"):
        with BeamTestPipeline() as p:
            _ = p | beam.Create([_grey()]) | RunInference(h)


@pytest.mark.slow
def test_bad_batch_goes_to_the_dead_letter_output(tmp_path, canary):
    """A head that turns NaN at run time fails its batch into RunInference's failed output;
    the other batches still produce results."""
    poison = 7

    def fn(model, images, args):
        out = model.forward(images)
        bad = np.round(images[:, 0, 0, 0] * 255) == poison
        out[bad, 4, :] = np.nan
        return out

    path = build_color_detector(tmp_path / "ok.onnx", size=SIZE)
    h = _handler(path, canary, inference_fn=fn, batch=1)  # one tile per batch
    good = draw_square(_grey(), 16, 16, 24)
    bad = good.copy()
    bad[0, 0] = poison
    with BeamTestPipeline() as p:
        main, dlq = p | beam.Create([good, bad]) | RunInference(h).with_exception_handling()
        found = main | "found" >> beam.Map(lambda r: len(r.inference.detections) > 0)
        assert_that(found, equal_to([True]))
        why = dlq.failed_inferences | "why" >> beam.Map(lambda f: "non-finite" in str(f[1]))
        assert_that(why, equal_to([True]), label="failed")
