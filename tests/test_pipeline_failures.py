"""DAG-level failure handling with fake model handlers (TestPipeline + assert_that)."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import cv2
import numpy as np
import pytest
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from redact.classes import Projection
from redact.config import RedactConfig
from redact.detection.base import TileInference
from redact.detections import Detections
from redact.io.storage import InputSpec
from redact.pipeline import JobSpec, build_pipeline, run_info

pytestmark = pytest.mark.slow


class _Model:
    """Beam's Shared model cache needs a weak-referenceable object."""


class FakeHandler(ModelHandler[np.ndarray, PredictionResult, _Model]):
    """Finds nothing; raises on tiles whose top-left pixel is the poison value."""

    POISON = 7

    def load_model(self) -> _Model:
        return _Model()

    def run_inference(self, batch, model, inference_args=None):
        if any(int(t[0, 0, 0]) == self.POISON for t in batch):
            raise RuntimeError("GPU fell off the bus")
        return [PredictionResult(None, TileInference(Detections.empty(), 0.001)) for _ in batch]

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": 1}


def _config() -> RedactConfig:
    return RedactConfig.from_dict(
        {
            "models": [{"path": "unused.onnx", "classes": ["face"]}],
            "tiling": {
                "tile_size": 32,
                "levels": [
                    {"scale": 0.5, "pitch_min_deg": -30, "pitch_max_deg": 30, "max_object_deg": 5}
                ],
                "perspective": {"overlap_px": 8, "global_view": False},
            },
        }
    )


def test_inference_failure_quarantines_only_that_image(tmp_path: Path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    good = np.full((64, 128, 3), 100, np.uint8)
    bad = good.copy()
    bad[:, :, 2] = FakeHandler.POISON  # every tile of this image poisons its batch (BGR on disk)
    cv2.imwrite(str(src / "good.png"), good)
    cv2.imwrite(str(src / "bad.png"), bad)
    job = JobSpec(
        input=InputSpec.parse(str(src)),
        output=str(dst),
        manifest=str(dst / "_manifest"),
        quarantine=str(dst / "_quarantine"),
        projection=Projection.AUTO,
        run_id="r",
        config=_config(),
    )
    run = run_info(job, [{"name": "fake", "version": "0", "sha256": "", "backend": "onnx"}])
    with BeamTestPipeline() as p:
        outs = build_pipeline(p, job, run, FakeHandler())
        statuses = outs["rows"] | beam.Map(
            lambda r: (r["relative_path"], r["status"], r["error_reason"])
        )
        assert_that(
            statuses,
            equal_to([("good.png", "published", ""), ("bad.png", "failed", "inference_failed")]),
        )
        reasons = outs["quarantine"] | beam.Map(
            lambda line: "bad.png" in line and "GPU fell off" in line
        )
        assert_that(reasons, equal_to([True]), label="quarantine")
    assert (dst / "good.png").exists()
    assert not (dst / "bad.png").exists()
