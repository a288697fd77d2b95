"""scripts/compare_evals.py: per-object lost/gained between two evaluation runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.scripts import load_script

c = load_script("compare_evals")


def _obj(
    image: str,
    box: list[float],
    matched: bool,
    sufficient: bool | None,
    dc: bool = False,
    tight: bool = False,
) -> dict[str, Any]:
    return {
        "image": f"/w/input/pano/{image}",
        "class": "face",
        "box": box,
        "dont_care": dc,  # metrics.ObjectEval.as_dict writes a bool
        "matched_iou0.3": matched,
        "matched_iou0.5": tight,
        "sufficiently_blurred": sufficient,
    }


def test_lost_and_gained_per_criterion() -> None:
    base = [
        _obj("a.jpg", [0, 0, 10, 10], True, True),
        _obj("a.jpg", [20, 0, 30, 10], False, True),
        _obj("b.jpg", [0, 0, 10, 10], True, None),
        _obj("b.jpg", [50, 50, 60, 60], True, True, dc=True),  # don't-care: never judged
    ]
    other = [
        _obj("a.jpg", [0, 0, 10, 10], False, True),
        _obj("a.jpg", [20, 0, 30, 10], True, False),
        _obj("b.jpg", [0, 0, 10, 10], True, True),
        _obj("b.jpg", [50, 50, 60, 60], False, False, dc=True),
    ]
    res = c.compare_objects(base, other)
    assert res["matched_iou0.3"]["lost"] == [("a.jpg", "face", (0, 0, 10, 10))]
    assert res["matched_iou0.3"]["gained"] == [("a.jpg", "face", (20, 0, 30, 10))]
    assert res["sufficiently_blurred"]["lost"] == [("a.jpg", "face", (20, 0, 30, 10))]
    assert res["sufficiently_blurred"]["gained"] == [("b.jpg", "face", (0, 0, 10, 10))]


def test_identical_runs_lose_nothing() -> None:
    objs = [_obj("a.jpg", [0, 0, 10, 10], True, False), _obj("a.jpg", [1, 1, 5, 5], False, True)]
    res = c.compare_objects(objs, [dict(o) for o in objs])
    assert all(not r["lost"] and not r["gained"] for r in res.values())


def test_different_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="different objects"):
        c.compare_objects(
            [_obj("a.jpg", [0, 0, 1, 1], True, True)], [_obj("b.jpg", [0, 0, 1, 1], True, True)]
        )


def test_box_match_at_iou_05_is_its_own_criterion() -> None:
    base = [_obj("a.jpg", [0, 0, 10, 10], True, True, tight=True)]
    other = [_obj("a.jpg", [0, 0, 10, 10], True, True, tight=False)]
    res = c.compare_objects(base, other)
    assert res["matched_iou0.5"]["lost"] == [("a.jpg", "face", (0, 0, 10, 10))]
    assert not res["matched_iou0.3"]["lost"] and not res["sufficiently_blurred"]["lost"]


def test_two_eval_files_are_compared_as_one_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"objects": [_obj("s.jpg", [0, 0, 9, 9], True, True)]}))
    b.write_text(json.dumps({"objects": [_obj("s.jpg", [0, 0, 9, 9], True, False)]}))
    assert c.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "file: matched_iou0.3: lost 0 gained 0" in out
    assert "sufficiently_blurred: lost 1 gained 0" in out
    assert "lost   sufficiently_blurred   s.jpg face [0, 0, 9, 9]" in out
