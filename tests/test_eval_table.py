"""scripts/eval_table.py: per-set Markdown rows from eval_dev summaries."""

from __future__ import annotations

from tests.fixtures.scripts import load_script

t = load_script("eval_table")

SUMMARY = {
    "pano": {
        "fp_area": {"mean": 0.0322},
        "face": {
            "all": {"n": 16, "box03": 15, "box05": 10, "candidate": 15, "sufficient": 16,
                    "n_sufficient_judged": 16},
            "12-24px": {"n": 8, "box03": 7},
        },
    },
    "timing_8000x4000": {"infer_s": 6.34},
}  # fmt: skip


def test_rows_state_ratios_sizes_fp_area_and_seconds() -> None:
    (row,) = t.rows_for("own", SUMMARY, "pano")
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:7] == ["face", "own", "16", "0.938", "0.625", "0.938", "16/16"]
    assert cells[7] == "- / 0.875 (8) / - / - / -"
    assert cells[8:] == ["3.22 %", "6.34"]


def test_missing_set_or_class_gives_no_row() -> None:
    assert t.rows_for("own", SUMMARY, "maskon") == []
    assert t.rows_for("own", {"pano": {"fp_area": {}}}, "pano") == []
