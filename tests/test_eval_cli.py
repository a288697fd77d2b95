"""End to end: ``redact run`` with the tiny colour detector, then ``redact eval``, ``tune``
and ``audit`` from the command line, with expectations computed by hand."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import math
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from redact.blur import blur_mask
from redact.classes import ObjectClass
from redact.cli import DEFAULT_CONFIG, main
from redact.config import RedactConfig
from redact.manifest import read_manifest
from tests.tiny_models import write_tiny_config

pytestmark = pytest.mark.slow

TILE = 64
S = 16  # red/blue squares, px
PAD = 4  # labelled boxes are the squares grown by PAD (the detector's boxes reach 8 px out)


def _tex(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.repeat(rng.integers(60, 200, (h, w), dtype=np.uint8)[:, :, None], 3, axis=2)


def _square(img: np.ndarray, x: int, y: int, color: tuple[int, int, int], seed: int) -> None:
    """A textured coloured square (detail to destroy); x may run past the right edge."""
    rng = np.random.default_rng(seed)
    cols = np.arange(x, x + S) % img.shape[1]
    patch = np.zeros((S, S, 3), np.uint8)
    ch = int(np.argmax(color))
    patch[:, :, ch] = rng.integers(200, 256, (S, S)) if max(color) else 0
    if not max(color):  # a grey textured "face" the colour detector cannot see
        patch[:] = rng.integers(0, 256, (S, S, 1))
    img[y : y + S][:, cols] = patch


def _box(x: int, y: int) -> list[int]:
    return [x - PAD, y - PAD, x + S + PAD, y + S + PAD]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaljob")
    write_tiny_config(root, tile=TILE, blur={"dilate": 0.1, "feather_px": 2})
    src = root / "src"
    pano = _tex(256, 512, 1)
    _square(pano, 96, 112, (255, 0, 0), 1)  # face
    _square(pano, 504, 96, (255, 0, 0), 2)  # face across the seam
    _square(pano, 200, 104, (0, 0, 0), 3)  # grey face: always missed
    _square(pano, 304, 120, (0, 0, 255), 4)  # plate
    photo = _tex(120, 200, 2)
    _square(photo, 40, 48, (255, 0, 0), 5)
    for rel, img in (("pano/p1.png", pano), ("photos/ph.png", photo)):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(src / rel), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    labels = {
        "pano/p1.png": {
            "width": 512,
            "height": 256,
            "faces": [
                {"box": _box(96, 112), "flags": []},
                {"box": [500, 92, 512, 116], "flags": []},  # seam face, labelled in two halves
                {"box": [0, 92, 12, 116], "flags": []},
                {"box": _box(200, 104), "flags": []},
            ],
            "plates": [{"box": _box(304, 120), "flags": []}],
        },
        "photos/ph.png": {
            "width": 200,
            "height": 120,
            "faces": [{"box": _box(40, 48), "flags": []}],
            "plates": [],
        },
    }
    (root / "labels.json").write_text(json.dumps(labels))
    dst = root / "dst"
    args = ["run", "--input", str(src), "--output", str(dst), "--config", str(root / "cfg.yaml")]
    assert main([*args, "--run-id", "e1"]) == 0
    return root, src, dst


def _eval(root: Path, src: Path, dst: Path, *extra: str) -> dict:
    out = root / f"eval{len(extra)}.json"
    rc = main(
        [
            "eval",
            "--labels",
            str(root / "labels.json"),
            "--originals",
            str(src),
            "--published",
            str(dst),
            "--json",
            str(out),
            *extra,
        ]
    )
    assert rc == 0
    return json.loads(out.read_text())


def test_eval_numbers(job, capsys):
    root, src, dst = job
    doc = _eval(root, src, dst, "--sweep")
    printed = capsys.readouterr().out
    assert "face (protocol primary" in printed and "precision/recall vs threshold" in printed
    (primary,) = doc["results"]  # no preblurred plates: one protocol
    face = primary["classes"]["face"]["slices"]
    # 4 labelled faces (the seam halves joined), 3 found; the grey one is missed.
    assert face["all"]["n"] == 4
    assert face["all"]["box_recall_iou0.3"] == 0.75
    # Every pixel of the 3 found faces' boxes is blurred, none of the missed one's.
    assert face["all"]["pixel_recall"] == pytest.approx(0.75, abs=0.01)
    assert face["all"]["sufficiently_blurred_recall"] == 0.75
    assert face["image:pano/p1.png"]["n"] == 3 and face["image:photos/ph.png"]["n"] == 1
    # Latitude 90 - y / 256 * 180 of the box centres: y 124 -> 2.8 deg (found), seam y 104 ->
    # 16.9 deg (found), grey y 112 -> 11.25 deg (missed).
    assert face["lat:+10..-10"]["n"] == 1 and face["lat:+10..-10"]["box_recall_iou0.3"] == 1.0
    assert face["lat:+30..+10"]["n"] == 2 and face["lat:+30..+10"]["box_recall_iou0.3"] == 0.5
    plate = primary["classes"]["license_plate"]
    assert plate["slices"]["all"]["box_recall_iou0.3"] == 1.0
    assert plate["detections"]["precision_iou0.3"] == 1.0
    assert primary["classes"]["face"]["detections"]["precision_iou0.3"] == 1.0
    missed = [o for o in doc["objects"] if o["class"] == "face" and not o["matched_iou0.3"]]
    assert [o["box"] for o in missed] == [[196, 100, 220, 124]]


def test_fp_area_matches_the_pipeline_mask(job):
    """Cross-check of the diff-based FP area with blur_mask of the manifest's detections."""
    root, src, dst = job
    doc = _eval(root, src, dst)
    rows = {r["relative_path"]: r for r in read_manifest(str(dst / "_manifest")).to_pylist()}
    cfg = RedactConfig.load(root / "cfg.yaml")
    labels = json.loads((root / "labels.json").read_text())
    for img in doc["images"]:
        row = rows[img["image"]]
        blurred = [d for d in row["detections"] if d["decision"] != "dropped"]
        wrap = row["projection"] == "equirectangular"
        mask = blur_mask(
            (row["height"], row["width"]),
            [[d["x1"], d["y1"], d["x2"], d["y2"]] for d in blurred],
            cfg.blur,
            wrap=wrap,
            classes=[0 if d["class"] == "face" else 1 for d in blurred],
        )
        inside = np.zeros_like(mask)
        lab = labels[img["image"]]
        for o in lab["faces"] + lab["plates"]:
            x1, y1, x2, y2 = o["box"]
            inside[y1:y2, x1:x2] = True
        # The diff mask may miss the faintest feather pixel or spill one pixel past the edge.
        k = np.ones((3, 3), np.uint8)
        lo = cv2.erode(mask.astype(np.uint8), k).astype(bool)
        hi = cv2.dilate(mask.astype(np.uint8), k).astype(bool)
        assert np.count_nonzero(lo & ~inside) <= img["fp_area"] * mask.size
        assert img["fp_area"] * mask.size <= np.count_nonzero(hi & ~inside)
        assert np.count_nonzero(lo) <= img["blurred_measured"] * mask.size <= np.count_nonzero(hi)


def test_tune_writes_a_config_and_never_touches_default(job, capsys):
    root, _, dst = job
    before = hashlib.sha256(DEFAULT_CONFIG.read_bytes()).hexdigest()
    out = root / "tuned" / "t.yaml"
    base = root / "cfg.yaml"
    rc = main(
        [
            "tune",
            "--labels",
            str(root / "labels.json"),
            "--manifest",
            str(dst / "_manifest"),
            "--config",
            str(base),
            "--target-recall",
            "0.75",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "curve points used" in printed and "per 1,000 images" in printed
    # Expected blur threshold: the 3rd best score among the faces' matched detections
    # (recall 3/4), rounded down to 4 decimals. Matched = the face detection holding the
    # square's centre.
    rows = read_manifest(str(dst / "_manifest")).to_pylist()
    centres = {"pano/p1.png": [(104, 120), (512, 104)], "photos/ph.png": [(48, 56)]}
    scores = []
    for r in rows:
        for cx, cy in centres[r["relative_path"]]:
            hits = [
                d["score"]
                for d in r["detections"]
                if d["class"] == "face"
                and d["y1"] <= cy <= d["y2"]
                and (d["x1"] <= cx <= d["x2"] or d["x1"] <= cx + 512 <= d["x2"])
            ]
            scores.append(max(hits))
    third = sorted(scores, reverse=True)[2]
    cfg = RedactConfig.load(out)
    face = cfg.thresholds[ObjectClass.FACE]
    assert face.blur == pytest.approx(math.floor(third * 1e4) / 1e4)
    assert face.floor == 0.1 and face.review <= face.blur / 2 + 1e-9
    text = out.read_text()
    assert text.startswith("# Thresholds written by `redact tune")
    assert "extends: ../cfg.yaml" in text
    tune = ["tune", "--labels", str(root / "labels.json"), "--manifest", str(dst / "_manifest")]
    # --in-place needs an explicit --config: the default config is never edited by accident.
    assert main([*tune, "--in-place"]) == 2
    assert hashlib.sha256(DEFAULT_CONFIG.read_bytes()).hexdigest() == before
    # In place on a copy: only the thresholds lines change, comments stay.
    copy = root / "copy.yaml"
    rest = {k: v for k, v in yaml.safe_load(base.read_text()).items() if k != "thresholds"}
    copy.write_text(
        yaml.safe_dump(rest) + "# keep me\nthresholds:\n"
        "  face: {blur: 0.5, review: 0.3, floor: 0.1}  # face line\n"
        "  license_plate: {blur: 0.5, review: 0.3, floor: 0.1}\n"
    )
    assert main([*tune, "--config", str(copy), "--in-place", "--target-recall", "0.75"]) == 0
    edited = copy.read_text()
    assert "# keep me" in edited and "# face line" in edited
    assert RedactConfig.load(copy).thresholds[ObjectClass.FACE].blur == face.blur


def test_audit_sample_sheet(job, capsys):
    root, _, dst = job
    out = root / "audit"
    rc = main(["audit", "--manifest", str(dst / "_manifest"), "--n", "5", "--out", str(out)])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "review_sheet.csv")))
    # 2 published images, each its own stratum (folders differ): both drawn, weight 1.
    assert sorted(r["relative_path"] for r in rows) == ["pano/p1.png", "photos/ph.png"]
    assert [float(r["weight"]) for r in rows] == [1.0, 1.0]
    pano = next(r for r in rows if r["relative_path"] == "pano/p1.png")
    assert pano["n_faces_blurred"] == "2" and pano["n_plates_blurred"] == "1"
    assert pano["detections_bin"] == "3-9" and pano["published_link"].startswith("file://")
    assert set(rows[0]) >= {"missed_faces", "missed_plates", "insufficient_blur", "notes"}
    assert "links.html" in capsys.readouterr().out


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium installed")
def test_html_report_renders_in_chromium(job, tmp_path):
    root, src, dst = job
    html_path = tmp_path / "report.html"
    _eval(root, src, dst, "--html", str(html_path))
    text = html_path.read_text()
    assert "CONFIDENTIAL" in text.split("<h1>")[0]  # in the header, before anything else
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", html_path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "CONFIDENTIAL" in dom and "box recall@0.3" in dom
    assert dom.count("data:image/png;base64") >= 1  # the missed grey face, at least
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,900", html_path.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    img = cv2.imread(str(shot))
    assert img is not None and img.std() > 10  # rendered, not blank
    # The red confidential banner is at the top.
    top = img[: img.shape[0] // 6].reshape(-1, 3).astype(int)
    assert np.any((top[:, 2] > 150) & (top[:, 1] < 60) & (top[:, 0] < 60))


@pytest.mark.skipif(
    importlib.util.find_spec("rapidocr_onnxruntime") is None,
    reason="rapidocr-onnxruntime ([eval] extra) not installed",
)
def test_strict_fails_loudly_when_a_plate_is_still_readable(tmp_path, capsys):
    """A run that missed a plate: --strict exits 1; once the plate is blurred, 0."""
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    from redact.blur import blur_regions
    from redact.manifest import SCHEMA, ImageOutcome, RunInfo, Status, make_row

    img = np.full((160, 320, 3), 90, np.uint8)
    img[50:110, 40:280] = 255
    cv2.putText(img, "KX42ZT", (52, 98), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 4)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    cv2.imwrite(str(src / "car.png"), img)
    cv2.imwrite(str(dst / "car.png"), img)  # published unblurred: the plate was missed
    run = RunInfo(
        "s1", [{"name": "m", "version": "1", "sha256": "0", "backend": "onnx"}], "0", [], "0"
    )
    out = ImageOutcome(
        str(src / "car.png"),
        "car.png",
        str(dst / "car.png"),
        Status.PUBLISHED,
        width=320,
        height=160,
        format="png",
        projection="perspective",
    )
    row = make_row(run, out, datetime.datetime.now(datetime.timezone.utc))
    (dst / "_manifest").mkdir()
    pq.write_table(pa.Table.from_pylist([row], schema=SCHEMA), dst / "_manifest" / "m.parquet")
    coco = {
        "images": [{"id": 1, "file_name": "car.png", "width": 320, "height": 160}],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [40, 50, 240, 60], "text": "KX-42-ZT"}
        ],
        "categories": [{"id": 1, "name": "license_plate"}],
    }
    (tmp_path / "labels.json").write_text(json.dumps(coco))
    args = [
        "eval",
        "--labels",
        str(tmp_path / "labels.json"),
        "--originals",
        str(src),
        "--published",
        str(dst),
        "--strict",
    ]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "IRREVERSIBILITY FAILED for 1 object" in captured.err
    assert "1 not blurred (missed)" in captured.out
    blurred, _ = blur_regions(
        img, [(40, 50, 280, 110)], RedactConfig.load(DEFAULT_CONFIG).blur, wrap=False, classes=[1]
    )
    cv2.imwrite(str(dst / "car.png"), blurred)
    assert main(args) == 0
    assert "license_plate: 1/1 passed" in capsys.readouterr().out


def test_manifest_with_two_runs_uses_latest_row_or_run_id(tmp_path):
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    from redact.evaluation.dataset import load_manifest_images
    from redact.manifest import SCHEMA, ImageOutcome, RunInfo, Status, make_row

    t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    rows = []
    for run_id, minutes, status in (("old", 0, Status.FAILED), ("new", 5, Status.PUBLISHED)):
        run = RunInfo(run_id, [], "0", [], "0")
        o = ImageOutcome("/s/a.jpg", "a.jpg", "/d/a.jpg", status, width=4, height=2)
        rows.append(make_row(run, o, t0 + datetime.timedelta(minutes=minutes)))
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp_path / "m.parquet")
    (latest,) = load_manifest_images(str(tmp_path))
    assert latest.run_id == "new" and latest.status is Status.PUBLISHED
    (old,) = load_manifest_images(str(tmp_path), run_id="old")
    assert old.status is Status.FAILED
    with pytest.raises(ValueError, match="no rows of run"):
        load_manifest_images(str(tmp_path), run_id="nope")
