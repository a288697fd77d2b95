#!/usr/bin/env python
"""Reproduce the DirectRunner memory runaway (docs/performance.md, "an intermittent memory
runaway") without a model: the redaction DAG (``build_pipeline``) with a fake detector that
returns K=40 boxes per tile, over N small random JPEGs, in one Beam running mode.

Run it under the watchdog, with the CPU busy (the runaway is timing-dependent)::

    python scripts/bench/memwatch.py --limit-mb 3000 --log /tmp/rr/mw -- \
        python scripts/bench/direct_runner_runaway.py --n 50 --mode multi_threading --workers 1

``--mode none`` runs Beam's default (in_memory). Exit 0 and "done" = no runaway this time.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import apache_beam as beam
import cv2
import numpy as np
from apache_beam.ml.inference.base import PredictionResult
from apache_beam.options.pipeline_options import PipelineOptions
from conftest import FakeHandler, tiny_config

from redact.classes import ObjectClass, Projection
from redact.detection.base import TileInference
from redact.detections import Detections
from redact.io.storage import InputSpec
from redact.pipeline import JobSpec, run_info
from redact.pipeline.graph import build_pipeline
from redact.pipeline.sinks import add_sinks


class ManyHandler(FakeHandler):
    """K random boxes per tile (a stage-1 run with a low floor records many candidates)."""

    K = 40

    def run_inference(self, batch, model, inference_args=None):
        out = []
        rng = np.random.default_rng(len(batch))
        for _ in batch:
            xy = rng.uniform(0, 20, (self.K, 2)).astype(np.float32)
            dets = Detections(
                np.hstack([xy, xy + 8]),
                rng.uniform(0.01, 1, self.K).astype(np.float32),
                np.full(self.K, ObjectClass.FACE, np.int32),
            )
            out.append(PredictionResult(None, TileInference(dets, 0.001)))
        return out

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": 8}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--work", default="/tmp/redact_runaway")
    ap.add_argument("--size", default="256x192")
    ap.add_argument("--mode", default="multi_threading")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    w, h = map(int, a.size.split("x"))
    src = Path(a.work) / "src"
    dst = Path(a.work) / f"dst{time.time_ns()}"
    src.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(a.n):
        img = src / f"im{i:05d}.jpg"
        if not img.exists():
            cv2.imwrite(str(img), rng.integers(0, 255, (h, w, 3), np.uint8))
    job = JobSpec(
        input=InputSpec.parse(str(src)),
        output=str(dst),
        manifest=str(dst / "_manifest"),
        quarantine=str(dst / "_quarantine"),
        projection=Projection.AUTO,
        run_id="r",
        config=tiny_config(),
    )
    run = run_info(job, [{"name": "fake", "version": "0", "sha256": "", "backend": "onnx"}])
    args = (
        [f"--direct_running_mode={a.mode}", f"--direct_num_workers={a.workers}"]
        if a.mode != "none"
        else []
    )
    p = beam.Pipeline(options=PipelineOptions(args))
    outs = build_pipeline(p, job, run, ManyHandler())
    add_sinks(
        outs["rows"], outs["quarantine"], job, outs["review"], outs["alerts"], outs["breaker"]
    )
    t0 = time.time()
    p.run().wait_until_finish()
    print(f"done {a.n} images in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
