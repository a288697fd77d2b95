"""scripts/export_engine.py: argument handling and the calibration tile generator (no TensorRT)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from redact.config import PerspectiveTiling, TilingConfig
from redact.detection.base import preprocess
from redact.tiling import plan_panorama_tiles, plan_perspective_tiles, render_tile
from tests.fixtures.scripts import SCRIPTS, load_script

SCRIPT = SCRIPTS / "export_engine.py"
ee = load_script("export_engine")

S = 64
TILING = TilingConfig(tile_size=S, perspective=PerspectiveTiling(overlap_px=16))


@pytest.fixture
def calib_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    d = tmp_path / "calib"
    (d / "sub").mkdir(parents=True)
    cv2.imwrite(str(d / "a_pano.png"), rng.integers(0, 256, (128, 256, 3), dtype=np.uint8))
    cv2.imwrite(str(d / "sub" / "b_photo.jpg"), rng.integers(0, 256, (90, 150, 3), dtype=np.uint8))
    (d / "notes.txt").write_text("not an image")
    return d


def _expected_tiles(d: Path) -> list[np.ndarray]:
    tiling = TILING
    out = []
    for p in (d / "a_pano.png", d / "sub" / "b_photo.jpg"):
        rgb = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        plan = (
            plan_panorama_tiles(w, h, tiling)
            if w == 2 * h
            else plan_perspective_tiles(w, h, tiling)
        )
        out.extend(render_tile(rgb, t) for t in plan)
    return out


def test_calibration_batches_match_pipeline_preprocessing(calib_dir):
    expected = _expected_tiles(calib_dir)
    n_pano = len(plan_panorama_tiles(256, 128, TILING))
    assert len(expected) > n_pano > 4  # both images contribute tiles
    stats = ee.CalibrationStats()
    batches = list(
        ee.calibration_batches(
            calib_dir,
            tile_size=S,
            batch_size=4,
            max_tiles=10_000,
            stats=stats,
            tiling=TILING,
            equirect_min_width=S,
        )
    )
    full = len(expected) // 4
    assert len(batches) == full and stats.tiles == 4 * full and stats.images == 2
    for b in batches:
        assert b.shape == (4, 3, S, S) and b.dtype == np.float32
        assert 0.0 <= b.min() and b.max() <= 1.0
    got = np.concatenate(batches)
    np.testing.assert_array_equal(got, preprocess(expected[: 4 * full], S, np.float32))


def test_calibration_batches_stop_after_max_tiles(calib_dir):
    stats = ee.CalibrationStats()
    gen = ee.calibration_batches(
        calib_dir, tile_size=S, batch_size=2, max_tiles=5, stats=stats, tiling=TILING
    )
    batches = list(gen)
    assert len(batches) == 2 and stats.tiles == 4  # 5 rounded down to full batches
    assert stats.images == 1  # the panorama alone had enough tiles


def test_calibration_batches_bad_image(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot decode"):
        list(ee.calibration_batches(tmp_path, tile_size=S, batch_size=1, max_tiles=1))
    with pytest.raises(ValueError, match="bad sizes"):
        list(ee.calibration_batches(tmp_path, tile_size=S, batch_size=0, max_tiles=1))


def test_parse_args_defaults_and_validation(tmp_path):
    a = ee.parse_args(["--calib-dir", str(tmp_path)])
    assert a.precision == "int8" and (a.min_batch, a.opt_batch, a.max_batch) == (1, 8, 32)
    # the default source is the shipped model of the registry, and it exists
    import yaml

    registry = yaml.safe_load((ee.REPO / "models" / "registry.yaml").read_text())["models"]
    shipped = registry["redact-faceplate-yolov8n"]
    assert (a.name, a.version) == ("redact-faceplate-yolov8n", str(shipped["version"]))
    assert a.onnx == ee.DEFAULT_ONNX and ee.DEFAULT_ONNX.is_file()
    assert ee.DEFAULT_ONNX.name == shipped["uri"]
    assert ee.parse_args(["--fp16-only"]).precision == "fp16"
    assert ee.parse_args(["--fp32", "--max-batch", "16"]).precision == "fp32"
    for bad in (
        [],  # int8 without --calib-dir
        ["--calib-dir", str(tmp_path), "--calib-tiles", "100"],
        ["--fp32", "--opt-batch", "64"],
        ["--fp32", "--fp16-only"],
    ):
        with pytest.raises(SystemExit):
            ee.parse_args(bad)
    assert ee.parse_name_version(Path("m/x.onnx")) == ("x", "0")


def test_help_works_without_tensorrt():
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "--calib-dir" in r.stdout and "--fp16-only" in r.stdout
