"""``redact explain``: per-candidate reasons from a manifest written by a real (fake-detector)
run of the pipeline, and the words for every reason."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import cv2
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from redact.classes import Projection
from redact.cli import main
from redact.commands.explain import explain_row, format_explanation
from redact.io.storage import InputSpec
from redact.manifest import read_manifest
from redact.pipeline import JobSpec, build_pipeline, run_info
from redact.pipeline.sinks import add_sinks
from tests.conftest import FakeHandler, tiny_config


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """A run over one image the fake detector finds a face in (score 0.9) and one where it
    finds nothing; face blur threshold 0.95, review 0.5: the face is in the review band."""
    tmp = tmp_path_factory.mktemp("explain")
    src = tmp / "src"
    src.mkdir()
    cv2.imwrite(str(src / "face.png"), np.full((64, 96, 3), FakeHandler.FACE, np.uint8))
    cv2.imwrite(str(src / "empty.png"), np.full((64, 96, 3), 100, np.uint8))
    cfg = tiny_config(
        thresholds={"face": {"blur": 0.95, "review": 0.5, "floor": 0.1}},
        blur={"mode": {"face": "pixelate"}, "strength": "high"},
    )
    dst = tmp / "dst"
    job = JobSpec(
        input=InputSpec.parse(str(src)),
        output=str(dst),
        manifest=str(dst / "_manifest"),
        quarantine=str(dst / "_quarantine"),
        projection=Projection.AUTO,
        run_id="ex1",
        config=cfg,
    )
    run = run_info(job, [{"name": "fake", "version": "0", "sha256": "", "backend": "onnx"}])
    with BeamTestPipeline() as p:
        outs = build_pipeline(p, job, run, FakeHandler())
        add_sinks(outs["rows"], outs["quarantine"], job)
    return dst / "_manifest"


def test_manifest_records_reason_mode_and_strength(manifest):
    rows = {r["relative_path"]: r for r in read_manifest(str(manifest)).to_pylist()}
    dets = rows["face.png"]["detections"]
    assert dets, "the fake detector found the face"
    assert {d["reason"] for d in dets} == {"review_band"}
    assert {(d["mode"], d["strength"]) for d in dets} == {("pixelate", "high")}
    assert rows["empty.png"]["detections"] == []


def test_explain_prints_one_line_per_candidate(manifest):
    rc, out, _ = _cli("explain", "face.png", "--manifest", str(manifest))
    assert rc == 0
    lines = out.strip().splitlines()
    rows = {r["relative_path"]: r for r in read_manifest(str(manifest)).to_pylist()}
    assert len(lines) == 1 + len(rows["face.png"]["detections"])
    assert "run ex1" in lines[0]
    for line in lines[1:]:
        assert "face" in line and "review_band" in line
        assert (
            "blurred and queued for review: score 0.9 in the face review band [0.5, 0.95)" in line
        )
        assert "mode pixelate/high" in line
        assert "[blur 0.95 review 0.5 floor 0.1]" in line


def test_explain_json_and_by_uri(manifest, tmp_path):
    rows = {r["relative_path"]: r for r in read_manifest(str(manifest)).to_pylist()}
    rc, out, _ = _cli(
        "explain", rows["face.png"]["output_uri"], "--manifest", str(manifest), "--json"
    )
    assert rc == 0
    e = json.loads(out)
    assert e["relative_path"] == "face.png" and e["run_id"] == "ex1"
    c = e["candidates"][0]
    assert c["reason"] == "review_band" and c["reason_derived"] is False
    assert c["thresholds"] == pytest.approx({"blur": 0.95, "review": 0.5, "floor": 0.1})
    assert (c["mode"], c["strength"], c["decision"]) == ("pixelate", "high", "review")
    rc, out, _ = _cli("explain", "empty.png", "--manifest", str(manifest), "--json")
    assert rc == 0 and json.loads(out)["candidates"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.png"], "is not in the manifest"),
        (["face.png", "--run", "other"], "is not in the manifest"),
    ],
)
def test_explain_unknown_image_exits_2_with_one_line(manifest, args, message):
    rc, out, err = _cli("explain", *args, "--manifest", str(manifest))
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_explain_missing_manifest_exits_2(tmp_path):
    rc, _, err = _cli("explain", "a.png", "--manifest", str(tmp_path / "none"))
    assert rc == 2 and "not found" in err and len(err.strip().splitlines()) == 1


def _row(dets, regions=()):
    return {
        "image_uri": "/s/a.jpg",
        "relative_path": "a.jpg",
        "output_uri": "/d/a.jpg",
        "run_id": "r",
        "processed_at": "t",
        "width": 8000,
        "height": 4000,
        "projection": "equirectangular",
        "thresholds": [
            {"class": "face", "blur": 0.034, "review": 0.02, "floor": 0.01},
            {"class": "license_plate", "blur": 0.04, "review": 0.03, "floor": 0.01},
        ],
        "detections": dets,
        "manual_regions": list(regions),
    }


def _det(score, decision, reason=None, cls="face", y1=10.0, y2=50.0, s1=None, s2=None, mode=""):
    return {
        "class": cls,
        "score": score,
        "x1": 100.0,
        "y1": y1,
        "x2": 140.0,
        "y2": y2,
        "decision": decision,
        "model": "m",
        "stage1_score": score if s1 is None else s1,
        "stage2_score": s2,
        "reason": reason,
        "mode": mode,
        "strength": "medium" if mode else "",
    }


def test_reason_words_for_every_reason():
    region = {
        "region_id": "r-123", "class": "face", "x1": 100.0, "y1": 10.0, "x2": 140.0,
        "y2": 50.0, "reason": "missed face", "created_by": "qa", "source": "report",
    }  # fmt: skip
    row = _row(
        [
            _det(0.41, "blur", "above_blur", mode="blur"),
            _det(0.025, "review", "review_band", mode="solid"),
            _det(0.012, "dropped", "below_review"),
            _det(0.3, "dropped", "size_prior", y1=0.0, y2=1900.0),
            _det(1.0, "manual", "manual_region", s1=float("nan"), mode="pixelate"),
            _det(0.6, "blur", "above_blur", cls="license_plate", s1=0.2, s2=0.9, mode="blur"),
        ],
        [region],
    )
    e = explain_row(row)
    texts = [c["reason_text"] for c in e["candidates"]]
    assert texts[0] == "blurred: score 0.41 >= face blur threshold 0.034"
    assert texts[1] == (
        "blurred and queued for review: score 0.025 in the face review band [0.02, 0.034)"
    )
    assert texts[2] == (
        "not blurred: score 0.012 < face review threshold 0.02 (kept in the manifest only)"
    )
    assert texts[3].startswith("dropped by the size prior: 1900 px tall = 0.47 x the image height")
    assert texts[4] == "blurred: manual region r-123 reported by qa: missed face"
    assert texts[5] == (
        "blurred: final score 0.6 >= license_plate blur threshold 0.04 "
        "(verifier score 0.9, detector 0.2)"
    )
    lines = format_explanation(e).splitlines()
    assert len(lines) == 7 and "mode not blurred" in lines[3] and "mode blur/medium" in lines[1]


def test_old_manifest_rows_get_a_derived_reason():
    dets = [_det(0.41, "blur"), _det(0.025, "review"), _det(0.012, "dropped")]
    dets.append(_det(0.3, "dropped", y1=0.0, y2=1900.0))  # dropped above review: size prior
    for d in dets:
        del d["reason"], d["mode"], d["strength"]
    e = explain_row(_row(dets))
    assert [c["reason"] for c in e["candidates"]] == [
        "above_blur",
        "review_band",
        "below_review",
        "size_prior",
    ]
    assert all(c["reason_derived"] for c in e["candidates"])
    assert "derived" in format_explanation(e)


def test_report_add_records_mode_and_strength(manifest):
    from redact.season.manual import read_regions

    dst = manifest.parent
    rc, _, err = _cli(
        "report", "add", "--output", str(dst), "--image", "face.png", "--box", "1,1,20,20",
        "--reason", "missed", "--by", "qa", "--mode", "solid", "--strength", "high",
    )  # fmt: skip
    assert rc == 0, err
    (r,) = read_regions(str(dst / "_manual"))
    assert (r.mode, r.strength) == ("solid", "high")
    rc, _, err = _cli(
        "report", "add", "--output", str(dst), "--image", "face.png", "--box", "1,1,20,20",
        "--reason", "missed", "--mode", "smudge",
    )  # fmt: skip
    assert rc == 2 and "smudge" in err
