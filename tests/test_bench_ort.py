"""ONNX Runtime session tuning knobs and the settings sweep (tiny real model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from redact.classes import ObjectClass
from redact.config import ModelConfig, RedactConfig
from redact.detection import ModelRegistry, ModelSpec, YoloOnnxModelHandler
from redact.detection.registry import sha256_of
from tests.fixtures.scripts import load_script
from tests.tiny_models import build_color_detector, draw_square, write_color_canary

load_script("benchmark")  # puts scripts/ (the bench package) on sys.path

from bench.ort_sweep import sweep  # noqa: E402

FACE, PLATE = ObjectClass.FACE, ObjectClass.LICENSE_PLATE


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("m")
    write_color_canary(root / "canary")  # next to the model: see _canary
    return build_color_detector(root / "c.onnx", size=64)


def _canary(model: Path) -> str:
    return str(model.parent / "canary")


def _handler(path: Path, **kw) -> YoloOnnxModelHandler:
    mc = ModelConfig(
        path=str(path), classes=(FACE, PLATE), batch_size=2, intra_op_threads=1,
        canary=_canary(path),
    )  # fmt: skip
    spec = ModelSpec(
        name="c",
        version="1",
        uri=str(path),
        sha256=sha256_of(str(path)),
        classes=(FACE, PLATE),
        num_classes=2,
    )
    return YoloOnnxModelHandler(
        spec, mc, providers=["CPUExecutionProvider"], canary=mc.canary, **kw
    )


def test_session_options_follow_the_knobs(model_path: Path) -> None:
    opts = _handler(model_path, graph_optimization="basic", allow_spinning=False)._session_options()
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    default = _handler(model_path)._session_options()
    assert default.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_unknown_graph_optimization_is_refused(model_path: Path) -> None:
    with pytest.raises(ValueError, match="graph_optimization"):
        _handler(model_path, graph_optimization="max")


@pytest.mark.parametrize("graph", ["disable", "basic", "extended", "all"])
def test_every_level_detects_the_same(model_path: Path, graph: str) -> None:
    h = _handler(model_path, graph_optimization=graph, allow_spinning=False)
    tile = draw_square(np.full((64, 64, 3), 90, np.uint8), 20, 20, 16, "red")
    (res,) = h.run_inference([tile], h.load_model())
    det = res.inference.detections
    assert len(det) and set(det.class_id.tolist()) == {int(FACE)}


def test_sweep_reports_every_setting(model_path: Path) -> None:
    mc = ModelConfig(path=str(model_path), classes=(FACE, PLATE), canary=_canary(model_path))
    cfg = RedactConfig(models=(mc, mc))
    tiles = [np.full((64, 64, 3), 90, np.uint8)] * 4
    res = sweep(cfg, ModelRegistry({}), tiles, threads=(1,), batches=(1, 4), repeat=1)
    # per model: 1 thread x 2 batches + 3 graph levels + spinning off = 6 rows
    assert len(res["rows"]) == 12
    assert all(r["ms_per_tile"] > 0 for r in res["rows"])
    ens = res["ensemble"]
    assert ens["batch"] == 4 and ens["concurrent_ms_per_tile"] > 0
    assert ens["sequential_ms_per_tile"] == pytest.approx(
        sum(
            r["ms_per_tile"]
            for r in res["rows"]
            if r["batch"] == 4 and r["graph"] == "all" and r["spinning"] == "default"
        )
    )
