"""Precision/recall curves and threshold choice on a hand-computed example."""

from __future__ import annotations

import pytest
import yaml

from redact.classes import ObjectClass
from redact.config import RedactConfig
from redact.evaluation.labels import GtObject, ImageLabels
from redact.evaluation.metrics import evaluate_boxes_only
from redact.evaluation.sweep import (
    TuneTarget,
    choose_thresholds,
    edit_thresholds_in_place,
    per_1000,
    pr_curve,
    render_tuned_config,
)
from tests.fixtures.eval_data import manifest_image

FACE, PLATE = ObjectClass.FACE, ObjectClass.LICENSE_PLATE
G = [(0, 0, 10, 10), (20, 0, 30, 10), (40, 0, 50, 10), (60, 0, 70, 10)]


@pytest.fixture()
def setup():
    """4 labelled faces; detections 0.9 (g0), 0.8 (FP), 0.7 (g1), 0.5 (g2), 0.3, 0.1 (FPs)."""
    labels = ImageLabels("a.jpg", 100, 100, tuple(GtObject(b, FACE) for b in G))
    dets = [
        (FACE, 0.9, G[0], True),
        (FACE, 0.8, (0, 50, 10, 60), True),
        (FACE, 0.7, G[1], True),
        (FACE, 0.5, G[2], True),
        (FACE, 0.3, (20, 50, 30, 60), False),
        (FACE, 0.1, (40, 50, 50, 60), False),
        (FACE, 0.02, G[3], False),  # below the manifest floor (0.05): not a candidate
    ]
    row = manifest_image("a.jpg", 100, 100, dets)
    empty = manifest_image("b.jpg", 100, 100, [(FACE, 0.4, (0, 0, 5, 5), False)])
    curve = pr_curve([evaluate_boxes_only(labels, row)], FACE, 0.5)
    return curve, [row, empty]


def test_curve_points(setup):
    c, _ = setup
    assert c.thresholds.tolist() == [0.9, 0.8, 0.7, 0.5, 0.3, 0.1]
    assert c.tp.tolist() == [1, 1, 2, 3, 3, 3] and c.fp.tolist() == [0, 1, 1, 1, 2, 3]
    assert c.n_gt == 4 and c.floor == 0.05
    p = c.at(0.6)  # a, FP, c
    assert (p["tp"], p["fp"], p["recall"], p["precision"]) == (2, 1, 0.5, pytest.approx(2 / 3))
    assert c.at(0.7)["tp"] == 2  # ">= threshold": 0.7 itself counts
    assert c.at(0.95) == {**c.at(0.95), "tp": 0, "fp": 0, "recall": 0.0, "precision": None}
    assert [s["threshold"] for s in c.steps()] == [0.9, 0.7, 0.5]
    assert c.threshold_for_recall(0.5) == 0.7
    assert c.threshold_for_recall(0.75) == 0.5
    assert c.threshold_for_recall(1.0) is None  # g3 only scored 0.02, below the floor


def test_choose_thresholds(setup):
    c, rows = setup
    ch = choose_thresholds(c, TuneTarget(0.5, review_recall=0.75), rows)
    # blur: recall 0.5 first reached at 0.7; review: min(0.5 for recall 0.75, 0.7 * 0.5).
    assert (ch.blur, ch.review, ch.reached, ch.review_reached) == (0.7, 0.35, True, True)
    assert ch.at_blur["recall"] == 0.5 and ch.at_review["recall"] == 0.75
    # Review band [0.35, 0.7): the 0.5 detection and b.jpg's 0.4 -> 2 in 2 images.
    assert ch.review_band_per_1000 == 1000.0
    assert ch.blurred_per_1000 == pytest.approx(1000 * 5 / 2)  # 0.9, 0.8, 0.7, 0.5, 0.4
    wide = choose_thresholds(c, TuneTarget(0.5, review_recall=0.75, review_ratio=0.9), rows)
    assert wide.review == 0.5
    # Default review target: half the misses of 0.7 -> 0.85, never reached: review = 0.5 * 0.5.
    ch = choose_thresholds(c, TuneTarget(0.7), rows)
    assert (ch.blur, ch.review, ch.reached, ch.review_reached) == (0.5, 0.25, True, False)
    # An unreachable target says so and puts blur at the plateau: 3/4 is the best recall above
    # the floor, first reached at 0.5 (0.3 and 0.1 only add false positives).
    ch = choose_thresholds(c, TuneTarget(1.0), rows)
    assert (ch.blur, ch.review, ch.reached) == (0.5, 0.25, False)
    assert ch.at_blur["recall"] == 0.75
    # A config floor above the manifest's limits both.
    low = choose_thresholds(c, TuneTarget(1.0), rows, floor=0.3)
    assert (low.blur, low.review) == (0.5, 0.3)
    # Above a floor of 0.6 the best recall is 1/2, first reached at 0.7; review stops at the floor.
    high = choose_thresholds(c, TuneTarget(1.0), rows, floor=0.6)
    assert (high.blur, high.review) == (0.7, 0.6)
    with pytest.raises(ValueError, match="target recall"):
        TuneTarget(0.0)


def test_per_1000(setup):
    _, rows = setup
    assert per_1000(rows, FACE, 0.3, 0.9) == pytest.approx(1000 * 5 / 2)  # 0.8 0.7 0.5 0.3 0.4
    assert per_1000(rows, PLATE, 0.0, 1.0) == 0.0


BASE = """\
# base config
models:
  - name: faceghost-yolov8n-face
thresholds:               # comment kept
  face: {blur: 0.25, review: 0.10, floor: 0.03}   # face line
  license_plate: {blur: 0.25, review: 0.10, floor: 0.04}
blur:
  dilate: 0.4
"""


def test_render_tuned_config_extends_base(tmp_path, setup):
    c, rows = setup
    (tmp_path / "base.yaml").write_text(BASE)
    ch = choose_thresholds(c, TuneTarget(0.5, review_recall=0.75), rows)
    out = tmp_path / "tuned" / "x.yaml"
    out.parent.mkdir()
    text = render_tuned_config(tmp_path / "base.yaml", out, {FACE: ch}, ["made by a test"])
    out.write_text(text)
    assert text.startswith("# made by a test\nextends: ../base.yaml\n")
    cfg = RedactConfig.load(out)
    t = cfg.thresholds[FACE]
    assert (t.blur, t.review, t.floor) == (0.7, 0.35, 0.03)  # floor from the base
    assert cfg.thresholds[PLATE].blur == 0.25  # untouched class
    assert cfg.blur.dilate == 0.4  # the base's blur section, untouched


def test_edit_in_place_keeps_everything_else(setup):
    c, rows = setup
    ch = choose_thresholds(c, TuneTarget(0.5, review_recall=0.75), rows)
    text = edit_thresholds_in_place(BASE, {FACE: ch})
    assert "# comment kept" in text and "# face line" in text and "dilate: 0.4" in text
    data = yaml.safe_load(text)
    assert data["thresholds"]["face"] == {"blur": 0.7, "review": 0.35, "floor": 0.03}
    assert data["thresholds"]["license_plate"] == {"blur": 0.25, "review": 0.1, "floor": 0.04}
    with pytest.raises(ValueError, match="one-line"):
        edit_thresholds_in_place("thresholds:\n  face:\n    blur: 0.2\n", {FACE: ch})
    with pytest.raises(ValueError, match="thresholds"):
        edit_thresholds_in_place("models: []\n", {FACE: ch})


def test_edit_in_place_keeps_the_other_keys_of_the_line(setup):
    c, rows = setup
    ch = choose_thresholds(c, TuneTarget(0.5, review_recall=0.75), rows)
    base = (
        "thresholds:\n"
        "  face: {blur: 0.25, review: 0.10, floor: 0.03, review_max_height: 0.08}  # note\n"
    )
    text = edit_thresholds_in_place(base, {FACE: ch})
    assert "# note" in text
    face = yaml.safe_load(text)["thresholds"]["face"]
    assert face == {"blur": 0.7, "review": 0.35, "floor": 0.03, "review_max_height": 0.08}


def test_with_score_picks_a_stage_of_a_two_stage_manifest() -> None:
    import dataclasses

    import numpy as np

    from redact.classes import ObjectClass
    from redact.evaluation.sweep import with_score
    from tests.fixtures.eval_data import manifest_image

    img = manifest_image("a.jpg", 100, 80, [(ObjectClass.FACE, 0.9, (0, 0, 10, 10), True)] * 2)
    two = dataclasses.replace(
        img, det_stage1=np.array([0.2, 0.4]), det_stage2=np.array([0.9, np.nan])
    )
    assert with_score(two, "final") is two
    np.testing.assert_allclose(with_score(two, "stage1").det_score, [0.2, 0.4])
    np.testing.assert_allclose(with_score(two, "stage2").det_score, [0.9, 0.0])
    np.testing.assert_allclose(with_score(img, "stage1").det_score, [0.9, 0.9])  # old rows
    with pytest.raises(ValueError, match="score must be"):
        with_score(img, "both")
