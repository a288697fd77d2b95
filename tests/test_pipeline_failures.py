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
from redact.pipeline.detect import failed_batch_to_tiles
from redact.records import TileKey
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
            lambda line: "bad.png" in line and "RuntimeError('GPU fell off the bus')" in line
        )
        assert_that(reasons, equal_to([True]), label="quarantine")
    assert (dst / "good.png").exists()
    assert not (dst / "bad.png").exists()


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("GPU fell off the bus"),  # older Beam: the exception itself
        (RuntimeError, "RuntimeError('GPU fell off the bus')", ["Traceback ...\n"]),  # newer Beam
    ],
)
def test_failed_batch_fails_every_tile_with_the_exception(error):
    keys = [TileKey("a.jpg", i, None, 64, 32, False) for i in (0, 1)]  # type: ignore[arg-type]
    out = list(failed_batch_to_tiles(([(k, None) for k in keys], error)))
    assert [(uri, f.index) for uri, f in out] == [("a.jpg", 0), ("a.jpg", 1)]
    assert {f.message for _, f in out} == {"inference failed: RuntimeError('GPU fell off the bus')"}
