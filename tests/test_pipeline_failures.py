"""DAG-level failure handling with fake model handlers (TestPipeline + assert_that)."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import cv2
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from redact.pipeline import build_pipeline
from tests.conftest import FakeHandler

pytestmark = pytest.mark.slow


def test_inference_failure_quarantines_only_that_image(tmp_path: Path, make_job):
    src, dst = tmp_path / "src", tmp_path / "dst"
    good = np.full((64, 128, 3), 100, np.uint8)
    bad = good.copy()
    bad[:, :, 2] = FakeHandler.POISON  # every tile of this image poisons its batch (BGR on disk)
    cv2.imwrite(str(src / "good.png"), good)
    cv2.imwrite(str(src / "bad.png"), bad)
    job, run = make_job()
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
