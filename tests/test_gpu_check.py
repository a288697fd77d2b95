"""scripts/gpu_check.py / gpu_check.sh against fakes: fake ``tensorrt`` + ``cuda`` modules (from
tests/test_tensorrt_handler.py), a fake engine builder and a fake ``nvidia-smi`` on PATH, so
that the first real run on a GPU machine is not spent on plumbing bugs. No GPU is needed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from tests.test_tensorrt_handler import EXTRA, SIZE, fake_backend  # noqa: F401 (fixture)
from tests.tiny_models import build_color_detector, draw_square, write_tiny_config

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

import gpu_check  # noqa: E402

FAKE_SMI = """#!/bin/sh
case "$1" in
  -L) echo "GPU 0: Fake H200 (UUID: GPU-fake)";;
  --query-gpu=*) echo "37, 2048";;
  *) echo "fake nvidia-smi";;
esac
"""


@pytest.fixture
def fake_smi(tmp_path, monkeypatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return smi


def _setup(tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    """A tiny colour-detector config + registry (head with EXTRA channels, like the fake
    engine), and images with red (face) and blue (plate) squares."""
    root = tmp_path / "cfg"
    cfg_path = write_tiny_config(root, tile=SIZE)
    model = build_color_detector(root / "tiny_extra.onnx", size=SIZE, extra_channels=EXTRA)
    registry = root / "registry.yaml"
    registry.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "models": {
                    "tiny": {
                        "version": "1",
                        "uri": str(model),
                        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
                        "classes": ["face", "license_plate"],
                        "num_classes": 2,
                        "input_size": SIZE,
                        "extra_channels": EXTRA,
                        "provenance": "test",
                        "license": "test",
                        "shipped": False,
                    }
                },
            }
        )
    )
    cfg = yaml.safe_load(cfg_path.read_text())
    canary = cfg["models"][0]["canary"]
    cfg["models"] = [{"name": "tiny", "batch_size": 4, "canary": canary}]
    cfg_path.write_text(yaml.safe_dump(cfg))
    images = []
    pano = np.full((128, 256, 3), 90, np.uint8)
    pano = draw_square(draw_square(pano, 40, 60, 16, "red"), 150, 62, 16, "blue")
    photo = draw_square(np.full((100, 120, 3), 90, np.uint8), 20, 20, 16, "red")
    for name, img in (("pano.jpg", pano), ("photo.jpg", photo)):
        p = tmp_path / "img" / name
        p.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 98])
        images.append(p)
    return cfg_path, registry, images


def _fake_build(calls: list):
    """Stands in for export_engine.build: writes a fake plan + sidecar like the real one."""

    def build(args):
        calls.append(args)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        path = args.out_dir / f"{args.name}-{args.version}-{args.precision}.engine"
        data = b"PLAN" + args.precision.encode()
        path.write_bytes(data)
        sidecar = {
            "engine": path.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "precision": args.precision,
            "profile": {"min": [args.min_batch], "opt": [args.opt_batch], "max": [args.max_batch]},
        }
        path.with_suffix(".json").write_text(json.dumps(sidecar))
        return path

    return build


def test_gpu_check_end_to_end_with_fakes(tmp_path, fake_backend, fake_smi, monkeypatch):  # noqa: F811
    import export_engine

    fake_backend(max_batch=4)
    calls: list = []
    monkeypatch.setattr(export_engine, "build", _fake_build(calls))
    cfg, registry, images = _setup(tmp_path)
    calib = tmp_path / "calib"
    calib.mkdir()
    (calib / "a.jpg").write_bytes(images[0].read_bytes())
    (calib / "dev.jpg").write_bytes(images[0].read_bytes())
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"dev.jpg": {}}))
    out = tmp_path / "out"
    rc = gpu_check.main(
        [
            "--out", str(out), "--config", str(cfg), "--registry", str(registry),
            "--calib-dir", str(calib), "--labels", str(labels), "--calib-tiles", "500",
            "--images", *map(str, images), "--pano", str(images[0]),
            "--batches", "1,2,4", "--repeat", "2", "--parity-tiles", "40",
        ]
    )  # fmt: skip
    report = json.loads((out / "gpu_check.json").read_text())
    assert rc == 0, report
    assert report["env"]["status"] == "ok"
    assert "Fake H200" in report["env"]["gpus"]
    # engines: INT8 calibrated on the non-dev images only, FP16 without calibration
    assert [a.precision for a in calls] == ["int8", "fp16"]
    assert (calls[0].min_batch, calls[0].opt_batch, calls[0].max_batch) == (1, 4, 4)
    assert sorted(p.name for p in (out / "calib").iterdir()) == ["a.jpg"]
    engines = report["engines"]["engines"]
    assert {k: v["status"] for k, v in engines.items()} == {"int8": "ok", "fp16": "ok"}
    # parity: the fake engine computes the same head as the ONNX colour detector
    par = report["parity"]
    assert par["status"] == "ok" and par["tiles"] > 0
    for precision in ("int8", "fp16"):
        assert par[precision]["raw_score_max_abs"] < 1e-4
        dets = par[precision]["detections"]
        assert dets["face"]["reference_at_blur"] >= 1
        assert dets["face"]["recall_vs_reference"] == 1.0
        assert dets["license_plate"]["recall_vs_reference"] == 1.0
    thr = report["throughput"]
    assert thr["status"] == "ok"
    assert set(thr["int8"]["tiles_per_s"]) == {"1", "2", "4"} and thr["int8"]["max_batch"] == 4
    assert thr["onnxruntime"]["tiles_per_s"]["8"] > 0
    e2e = report["e2e_cpu"]
    assert e2e["status"] == "ok" and e2e["engine"] == "int8" and e2e["panoramas_per_s"] > 0
    assert e2e["size"] == [256, 128] and e2e["tiles"] > 0
    # no torch here: the nvJPEG step says why it did not run
    assert report["e2e_nvjpeg"]["status"] == "skipped"
    # nvidia-smi was sampled, per step
    assert any(
        v.get("gpu", {}).get("samples", 0) > 0 for v in report.values() if isinstance(v, dict)
    )


def test_gpu_check_records_a_failed_build_and_goes_on(
    tmp_path,
    fake_backend,  # noqa: F811 (the fixture imported above)
    fake_smi,
    monkeypatch,
):
    import export_engine

    fake_backend(max_batch=4)
    monkeypatch.setattr(
        export_engine, "build", lambda args: (_ for _ in ()).throw(SystemExit("parser failed"))
    )
    cfg, registry, images = _setup(tmp_path)
    out = tmp_path / "out"
    rc = gpu_check.main(
        ["--out", str(out), "--config", str(cfg), "--registry", str(registry),
         "--images", str(images[0]), "--pano", str(images[0])]
    )  # fmt: skip
    report = json.loads((out / "gpu_check.json").read_text())
    engines = report["engines"]["engines"]
    assert engines["fp16"]["status"] == "failed" and "parser failed" in engines["fp16"]["error"]
    assert report["parity"]["status"] == "skipped"  # no engine: nothing to compare
    assert report["e2e_cpu"]["status"] == "skipped"
    assert rc == 0  # no step itself failed; the build failure is in the engines entry


def test_compare_detections_counts_misses_and_score_change():
    from redact.classes import ObjectClass
    from redact.detections import Detections

    ref = Detections(
        np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], np.float32),
        np.array([0.9, 0.6, 0.1], np.float32),
        np.array([int(ObjectClass.FACE)] * 3, np.int32),
    )
    other = Detections(
        np.array([[1, 1, 10, 10]], np.float32),
        np.array([0.8], np.float32),
        np.array([int(ObjectClass.FACE)], np.int32),
    )
    res = gpu_check.compare_detections([ref], [other], {ObjectClass.FACE: 0.5})
    assert res["face"] == {
        "reference_at_blur": 2,
        "found": 1,
        "recall_vs_reference": 0.5,
        "max_score_change": pytest.approx(0.1, abs=1e-6),
    }


def test_gpu_check_sh_writes_json_without_tensorrt(tmp_path, fake_smi):
    """The wrapper on a machine without TensorRT: exit status, JSON, log, nvidia-smi dump."""
    cfg, registry, images = _setup(tmp_path)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_BUDGET_S": "120"}
    res = subprocess.run(
        [str(SCRIPTS / "gpu_check.sh"), str(out), "--config", str(cfg), "--registry",
         str(registry), "--images", str(images[0]), "--pano", str(images[0]), "--calib-dir",
         str(tmp_path / "none")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode in (0, 1), res.stderr
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["env"]["status"] == "ok"
    engines = report["engines"]["engines"]
    assert engines["int8"]["status"] == "skipped"  # no calibration folder
    assert engines["fp16"]["status"] == "failed"  # no tensorrt here
    assert "Fake H200" in (out / "nvidia-smi.txt").read_text() or (out / "nvidia-smi.txt").exists()
    assert (out / "gpu_check.log").read_text()


def test_gpu_check_sh_usage():
    res = subprocess.run(
        [str(SCRIPTS / "gpu_check.sh")], capture_output=True, text=True, check=False
    )
    assert res.returncode == 2 and "usage" in res.stderr
