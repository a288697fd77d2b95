#!/usr/bin/env python3
"""Per-object comparison of two ``scripts/eval_dev.py`` work folders (same sets, same labels).

    .venv/bin/python scripts/compare_evals.py /tmp/ev_fp32 /tmp/ev_int8 [--sets pano,maskon]
    .venv/bin/python scripts/compare_evals.py /tmp/syn/A/eval.json /tmp/syn/B/eval.json

For every labelled object (image, class, box; don't-care objects left out) of every set in
both ``WORK/eval/<set>.json``, it prints per set how many objects the second run loses and
gains on each criterion (box match at IoU 0.3 and 0.5, "sufficiently blurred") and lists the
lost ones. Two ``redact eval --json`` files (e.g. ``scripts/synth_pano_recall.py``'s
``WORK/eval.json``) are compared as one set. A speed-up ships only with nothing in the
"lost" columns (issue #13's rule). Exit status 0 either way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

CRITERIA = ("matched_iou0.3", "matched_iou0.5", "sufficiently_blurred")
SETS = ("pano", "maskon", "openalpr", "uc3m", "dutch")


def _key(obj: dict[str, Any]) -> tuple[str, str, tuple[float, ...]]:
    return Path(obj["image"]).name, obj["class"], tuple(obj["box"])


def _judged(obj: dict[str, Any]) -> bool:
    dc = obj.get("dont_care")
    return not (any(dc.values()) if isinstance(dc, dict) else bool(dc))


def compare_objects(
    base: list[dict[str, Any]], other: list[dict[str, Any]]
) -> dict[str, dict[str, list[tuple[str, str, tuple[float, ...]]]]]:
    """{criterion: {"lost": keys, "gained": keys}} over objects judged in both runs.

    ValueError when the two runs do not hold the same judged objects (different labels)."""
    a = {_key(o): o for o in base if _judged(o)}
    b = {_key(o): o for o in other if _judged(o)}
    if a.keys() != b.keys():
        raise ValueError(
            f"the runs label different objects: {len(a.keys() - b.keys())} only in the first, "
            f"{len(b.keys() - a.keys())} only in the second"
        )
    out: dict[str, dict[str, list[tuple[str, str, tuple[float, ...]]]]] = {}
    for c in CRITERIA:
        lost = sorted(k for k in a if bool(a[k][c]) and not bool(b[k][c]))
        gained = sorted(k for k in a if not bool(a[k][c]) and bool(b[k][c]))
        out[c] = {"lost": lost, "gained": gained}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("other", type=Path)
    ap.add_argument("--sets", default=",".join(SETS))
    args = ap.parse_args(argv)
    if args.base.is_file() and args.other.is_file():
        pairs = [("file", args.base, args.other)]
    else:
        pairs = [
            (name, args.base / "eval" / f"{name}.json", args.other / "eval" / f"{name}.json")
            for name in args.sets.split(",")
        ]
    for name, fa, fb in pairs:
        if not (fa.is_file() and fb.is_file()):
            print(f"{name}: missing in one run, skipped")
            continue
        res = compare_objects(
            json.loads(fa.read_text())["objects"], json.loads(fb.read_text())["objects"]
        )
        counts = ", ".join(
            f"{c}: lost {len(r['lost'])} gained {len(r['gained'])}" for c, r in res.items()
        )
        print(f"{name}: {counts}")
        for c, r in res.items():
            for k in r["lost"]:
                print(f"  lost   {c:22s} {k[0]} {k[1]} {list(k[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
