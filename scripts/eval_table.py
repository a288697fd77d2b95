#!/usr/bin/env python3
"""One Markdown table per dev set from several ``scripts/eval_dev.py`` work folders.

    .venv/bin/python scripts/eval_table.py own=/tmp/ev_own faceghost=/tmp/ev_fg ... > table.md

Reads ``WORK/eval/summary.json`` of each run (written by ``eval_dev.py``) and prints, per set
and class: box recall at IoU 0.3 and 0.5, candidate recall, "sufficiently blurred", box
recall at IoU 0.3 by object height, the mean false-positive area and the detection seconds
per 8000x4000 panorama of that run. A class a detector does not have shows as 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

SETS = ("pano", "maskon", "openalpr", "uc3m", "dutch")
BINS = ("0-12px", "12-24px", "24-48px", "48-96px", ">=96px")


def _ratio(num: float, den: float) -> str:
    return f"{num / den:.3f}" if den else "-"


def rows_for(name: str, summary: dict[str, Any], set_name: str) -> list[str]:
    """Markdown rows (one per class) of one run on one set; [] when the set is missing."""
    block = summary.get(set_name)
    if not block:
        return []
    secs = summary.get("timing_8000x4000", {}).get("infer_s")
    fp = block.get("fp_area", {}).get("mean")
    out = []
    for cls in ("face", "license_plate"):
        s = block.get(cls)
        if not s:
            continue
        a = s["all"]
        by_size = " / ".join(
            f"{_ratio(s[b]['box03'], s[b]['n'])} ({s[b]['n']})" if b in s else "-" for b in BINS
        )
        out.append(
            f"| {cls} | {name} | {a['n']} | {_ratio(a['box03'], a['n'])} | "
            f"{_ratio(a['box05'], a['n'])} | {_ratio(a['candidate'], a['n'])} | "
            f"{a['sufficient']}/{a['n_sufficient_judged']} | {by_size} | "
            f"{'-' if fp is None else f'{100 * fp:.2f} %'} | "
            f"{'-' if secs is None else f'{secs:.2f}'} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", metavar="NAME=WORK")
    args = ap.parse_args(argv)
    runs = []
    for item in args.runs:
        name, sep, work = item.partition("=")
        if not sep or not name:
            ap.error(f"{item!r}: expected NAME=WORK")
        f = Path(work) / "eval" / "summary.json"
        if not f.is_file():
            ap.error(f"{f} missing: run scripts/eval_dev.py --work {work} first")
        runs.append((name, json.loads(f.read_text())))
    head = (
        "| class | detector | n | box@0.3 | box@0.5 | candidate | sufficiently blurred | "
        "box@0.3 by height " + " / ".join(BINS) + " | FP area (mean) | s per 8000x4000 |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    for set_name in SETS:
        rows = [r for name, s in runs for r in rows_for(name, s, set_name)]
        if rows:
            print(f"\n**{set_name}**\n\n{head}\n" + "\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
