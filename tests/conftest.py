"""Shared fixtures: a fake detector handler and a tiny Beam job over a folder of PNGs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from redact.classes import ObjectClass, Projection
from redact.config import RedactConfig
from redact.detection.base import TileInference
from redact.detections import Detections
from redact.io.storage import InputSpec
from redact.pipeline import JobSpec, run_info


class _Model:
    """Beam's Shared model cache needs a weak-referenceable object."""


class FakeHandler(ModelHandler[np.ndarray, PredictionResult, _Model]):
    """Finds a face box on every tile whose top-left pixel is ``FACE`` (else nothing); raises
    on tiles whose top-left pixel is ``POISON``. One tile per batch."""

    POISON = 7
    FACE = 200

    def load_model(self) -> _Model:
        return _Model()

    def run_inference(self, batch, model, inference_args=None):
        if any(int(t[0, 0, 0]) == self.POISON for t in batch):
            raise RuntimeError("GPU fell off the bus")
        out = []
        for t in batch:
            if int(t[0, 0, 0]) == self.FACE:
                dets = Detections(
                    xyxy=np.array([[4, 4, 12, 12]], np.float32),
                    confidence=np.array([0.9], np.float32),
                    class_id=np.array([ObjectClass.FACE], np.int32),
                )
            else:
                dets = Detections.empty()
            out.append(PredictionResult(None, TileInference(dets, 0.001)))
        return out

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": 1}


def tiny_config(**sections: Any) -> RedactConfig:
    """32 px tiles, one ring, photo windows without a global view; ``sections`` override."""
    data: dict[str, Any] = {
        "models": [{"path": "unused.onnx", "classes": ["face"]}],
        "tiling": {
            "tile_size": 32,
            "levels": [
                {"scale": 0.5, "pitch_min_deg": -30, "pitch_max_deg": 30, "max_object_deg": 5}
            ],
            "perspective": {"overlap_px": 8, "global_view": False},
        },
        **sections,
    }
    return RedactConfig.from_dict(data)


@pytest.fixture
def make_job(tmp_path: Path) -> Callable[..., tuple[JobSpec, Any]]:
    """``make_job(config=None, **jobspec_fields) -> (job, run)`` over ``tmp_path/src`` ->
    ``tmp_path/dst`` (the folders are created; the caller fills src)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(exist_ok=True)

    def make(config: RedactConfig | None = None, **kw: Any) -> tuple[JobSpec, Any]:
        job = JobSpec(
            input=InputSpec.parse(str(src)),
            output=str(dst),
            manifest=str(dst / "_manifest"),
            quarantine=str(dst / "_quarantine"),
            projection=Projection.AUTO,
            run_id=kw.pop("run_id", "r"),
            config=config or tiny_config(),
            **kw,
        )
        run = run_info(job, [{"name": "fake", "version": "0", "sha256": "", "backend": "onnx"}])
        return job, run

    return make
