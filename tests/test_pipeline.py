"""End-to-end: the real Beam DAG on DirectRunner with a tiny real ONNX "colour detector".

Red squares are "faces" and blue squares "plates" for the tiny model, so the tests can check
that exactly the right pixels were destroyed, that bad input is quarantined and never
published, and that the manifest records it all.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow.compute as pc
import pytest

from redact.cli import main
from redact.manifest import read_manifest
from tests.tiny_models import write_tiny_config

pytestmark = pytest.mark.slow

TILE = 64
RED = (255, 0, 0)
BLUE = (0, 0, 255)


def _textured(h: int, w: int, seed: int) -> np.ndarray:
    """A grey, textured background (RGB) the colour detector ignores."""
    rng = np.random.default_rng(seed)
    g = rng.integers(60, 200, (h, w), dtype=np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


def _square(img: np.ndarray, x: int, y: int, s: int, color: tuple[int, int, int]) -> None:
    """Draw an s x s square at (x, y); x may run past the right edge (wraps: a seam crossing)."""
    w = img.shape[1]
    cols = np.arange(x, x + s) % w
    img[y : y + s][:, cols] = color


def _write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Run one job over a small shard; return (src, dst, manifest table, originals)."""
    root = tmp_path_factory.mktemp("job")
    write_tiny_config(root, tile=TILE, blur={"dilate": 0.1, "feather_px": 2})
    src = root / "src"
    originals = {}
    pano = _textured(256, 512, 1)
    _square(pano, 100, 110, 16, RED)  # a face
    _square(pano, 300, 120, 14, BLUE)  # a plate
    _square(pano, 504, 100, 16, RED)  # a face across the 0/360 seam
    originals["pano/p1.png"] = pano
    photo = _textured(120, 200, 2)
    _square(photo, 40, 50, 18, RED)
    originals["photos/ph.png"] = photo
    empty = _textured(256, 512, 3)
    originals["pano/empty.png"] = empty
    for rel, img in originals.items():
        _write_png(src / rel, img)
    # Bad input: truncated PNG, garbage with a .jpg name, a non-image: all quarantined, each
    # with its own row (images are recognised by content, every matched path is accounted for).
    good = (src / "pano/p1.png").read_bytes()
    (src / "bad").mkdir()
    (src / "bad/truncated.png").write_bytes(good[: len(good) // 2])
    (src / "bad/garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (src / "notes.txt").write_text("not an image")
    dst = root / "dst"
    rc = main(
        [
            "run",
            "--input",
            str(src),
            "--output",
            str(dst),
            "--config",
            str(root / "cfg.yaml"),
            "--run-id",
            "t1",
        ]
    )
    assert rc == 0
    return src, dst, read_manifest(str(dst / "_manifest")), originals


def _row(table, rel):
    rows = table.filter(pc.equal(table["relative_path"], rel)).to_pylist()
    assert len(rows) == 1, rel
    return rows[0]


def test_every_image_has_one_manifest_row(job):
    _, _, table, _ = job
    assert sorted(table["relative_path"].to_pylist()) == [
        "bad/garbage.jpg",
        "bad/truncated.png",
        "notes.txt",
        "pano/empty.png",
        "pano/p1.png",
        "photos/ph.png",
    ]
    assert set(table["run_id"].to_pylist()) == {"t1"}


def test_bad_input_is_quarantined_never_published(job):
    _, dst, table, _ = job
    for rel, reason in (
        ("bad/truncated.png", "truncated"),
        ("bad/garbage.jpg", None),
        ("notes.txt", "unknown_format"),
    ):
        row = _row(table, rel)
        assert row["status"] == "failed"
        assert row["output_uri"] == ""
        if reason:
            assert row["error_reason"] == reason
        assert not (dst / rel).exists()
    lines = [
        json.loads(line)
        for f in (dst / "_quarantine").glob("run-t1*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert sorted(q["relative_path"] for q in lines) == [
        "bad/garbage.jpg",
        "bad/truncated.png",
        "notes.txt",
    ]


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=2)


def test_faces_and_plates_blurred_everything_else_identical(job):
    _, dst, table, originals = job
    orig = originals["pano/p1.png"]
    out = _read_rgb(dst / "pano/p1.png")
    assert out.shape == orig.shape
    changed = _changed(orig, out)
    # Every pixel of each square is destroyed (PNG: lossless, so exact comparisons hold).
    for x, y, s in ((100, 110, 16), (300, 120, 14)):
        assert changed[y : y + s, x : x + s].all(), (x, y)
        colour = orig[y + s // 2, x + s // 2]
        assert not np.any(np.all(out[y : y + s, x : x + s] == colour, axis=2))
    # The seam-crossing face is blurred on both edges.
    assert changed[100:116, 504:512].all() and changed[100:116, 0:8].all()
    # Far from the squares nothing changed. The colour detector's boxes reach 8 px past a
    # square; a face ellipse passes through its box corners (sqrt(2) x the half-size), then
    # dilation and feathering: 0.5 * (s + 16) * (sqrt(2) - 1) + 8 + feather <= 28 px here.
    far = np.ones(changed.shape, bool)
    m = 28
    for x, y, s in ((100, 110, 16), (300, 120, 14), (504, 100, 16)):
        cols = np.arange(x - m, x + s + m) % orig.shape[1]
        far[max(0, y - m) : y + s + m][:, cols] = False
    assert not changed[far].any()
    row = _row(table, "pano/p1.png")
    assert row["status"] == "published" and row["projection"] == "equirectangular"
    assert row["n_faces_blurred"] == 2 and row["n_plates_blurred"] == 1
    seam = [d for d in row["detections"] if d["class"] == "face" and d["x2"] > orig.shape[1]]
    assert len(seam) == 1, row["detections"]
    assert 0 < row["blurred_fraction"] < 0.05
    assert row["sha256"] and row["output_sha256"] and row["sha256"] != row["output_sha256"]
    assert set(row["timings_s"] and dict(row["timings_s"])) >= {
        "decode",
        "tile",
        "infer",
        "merge",
        "blur",
        "encode",
        "write",
    }


def test_photo_is_perspective_and_blurred(job):
    _, dst, table, originals = job
    row = _row(table, "photos/ph.png")
    assert row["projection"] == "perspective" and row["n_faces_blurred"] == 1
    changed = _changed(originals["photos/ph.png"], _read_rgb(dst / "photos/ph.png"))
    assert changed[50:68, 40:58].all()
    assert not changed[:, 100:].any()


def test_image_without_objects_is_published_unchanged(job):
    _, dst, table, originals = job
    row = _row(table, "pano/empty.png")
    assert row["status"] == "published" and row["n_blurred"] == 0 and row["detections"] == []
    assert np.array_equal(_read_rgb(dst / "pano/empty.png"), originals["pano/empty.png"])


def test_manifest_records_models_config_and_thresholds(job):
    _, _, table, _ = job
    row = _row(table, "pano/p1.png")
    assert row["models"][0]["name"] and len(row["models"][0]["sha256"]) == 64
    assert len(row["config_hash"]) == 64
    assert {t["class"] for t in row["thresholds"]} == {"face", "license_plate"}
