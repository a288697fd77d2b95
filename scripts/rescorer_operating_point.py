#!/usr/bin/env python3
"""Operating points of the stage-2 post-processor on its VALIDATION split (never on dev).

For every ``stage1_keep`` (candidates at or above it keep ``max(stage 1, stage 2)``, see
``redact.postprocess.fuse``) and every final-score threshold (what is blurred: the config's
``review`` band, since everything >= review is blurred), counts per set and class the
validation positives that would no longer be blurred (count and box-area weight) and the share
of validation negatives' weight (area-weighted) removed. Pseudo positives (teacher-confirmed,
``scripts/mine_candidates.py``) are a row of their own: they are the only real street faces
outside the dev sets. ``--veto-min-area`` adds the area rule (``postprocess.veto_min_area``:
stage 2 may not lower a candidate whose box covers less than that share of its image; needs
the ``xyxy`` and ``image_px`` columns that ``scripts/mine_candidates.py`` writes).

    .venv/bin/python scripts/rescorer_operating_point.py --data /tmp/mine8/candidates.npz \\
        --train-dir /tmp/pp8 [--json /tmp/pp8/operating.json]

Reads TRAIN_DIR/val_scores.npy and val_mask.npy (written by ``scripts/train_postprocess.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from redact.classes import ObjectClass

CLASSES = ("face", "license_plate")
KEEPS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
THRESHOLDS = (0.03, 0.04, 0.05, 0.1)


def operating_table(
    d: dict[str, np.ndarray],
    stage2: np.ndarray,
    keeps: tuple[float, ...] = KEEPS,
    thresholds: tuple[float, ...] = THRESHOLDS,
    veto_min_areas: tuple[float, ...] = (0.0,),
    veto_belows: tuple[float, ...] = (1.0,),
    veto_classes: tuple[int, ...] = (0, 1),
    veto_min_elevation: Mapping[ObjectClass, float] | None = None,
) -> list[dict[str, object]]:
    """One row per (keep, veto_min_area, veto_below, threshold, group, class) over the
    candidates of ``stage2``.

    Args:
        d: the candidates (``label`` 1/0, ``cls`` 0/1, ``stage1``, ``weight``, ``set`` and,
            optionally, ``pseudo``; with a non-zero veto_min_area also ``xyxy`` and
            ``image_px``), (M,) each, already restricted to the validation split.
        stage2: (M,) stage-2 scores of those candidates.
        veto_classes: class indices ``veto_below`` applies to; the others are never vetoed
            (``postprocess.veto_below`` without an entry for them).
        veto_min_elevation: ``postprocess.veto_min_elevation`` (None or empty: no elevation
            rule); a rule needs the ``xyxy``, ``image_h`` and ``equirect`` columns.

    Groups: every set, "pseudo" (teacher-confirmed positives, any set), "near" (the
    near-plate composites, when ``image_name`` is given) and "all".
    """
    # the runtime's rules (float32, as the job compares)
    from redact.postprocess import FusionRules

    label, cls, s1 = d["label"], d["cls"].astype(np.int64), d["stage1"]
    w, sets = d["weight"].astype(np.float64), d["set"]
    pseudo = d["pseudo"].astype(bool) if "pseudo" in d else np.zeros(len(label), bool)
    groups = {str(s): sets == s for s in sorted(set(sets.tolist()))}
    groups["pseudo"] = pseudo
    if "image_name" in d:  # mine_candidates --near-composites: plates close to the capture car
        groups["near"] = np.char.startswith(d["image_name"].astype(str), "comp/near_")
    groups["all"] = np.ones(len(label), bool)
    elevation = dict(veto_min_elevation or {})
    need = (["xyxy", "image_px"] if any(veto_min_areas) else []) + (
        ["xyxy", "image_h", "equirect"] if elevation else []
    )
    missing = sorted({c for c in need if c not in d})
    if missing:
        raise ValueError(
            f"the candidates lack column(s) {missing} that the fusion rules need "
            "(re-mine with scripts/mine_candidates.py)"
        )
    boxes = d["xyxy"] if need else np.zeros((len(label), 4))
    image_px = d["image_px"] if "image_px" in need else 1.0
    image_h = d["image_h"] if elevation else 1.0
    equirect = d["equirect"].astype(bool) if elevation else False
    rows: list[dict[str, object]] = []
    for keep, vma, vb in ((k, a, b) for k in keeps for a in veto_min_areas for b in veto_belows):
        rules = FusionRules(keep, vma, {ObjectClass(c): vb for c in veto_classes}, elevation)
        final = rules.final(
            s1, stage2, boxes, cls, image_px=image_px, image_height=image_h, equirect=equirect
        )
        for t in thresholds:
            blurred = final >= np.float32(t)
            base = s1.astype(np.float32) >= np.float32(t)  # stage 1 alone, same threshold
            for g, gm in groups.items():
                for k, name in enumerate(CLASSES):
                    m = gm & (cls == k)
                    pos, neg = m & (label == 1), m & (label == 0)
                    if not pos.any() and not neg.any():
                        continue
                    lost = pos & base & ~blurred
                    rows.append(
                        {
                            "keep": keep,
                            "veto_min_area": vma,
                            "veto_below": vb,
                            "threshold": t,
                            "group": g,
                            "class": name,
                            "positives": int(pos.sum()),
                            "lost": int(lost.sum()),
                            "lost_weight_share": float(w[lost].sum() / max(w[pos].sum(), 1e-9)),
                            "negatives": int(neg.sum()),
                            "neg_weight_removed": float(
                                w[neg & base & ~blurred].sum() / max(w[neg & base].sum(), 1e-9)
                            ),
                        }
                    )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="candidates.npz (mine_candidates)")
    ap.add_argument("--train-dir", type=Path, required=True, help="train_postprocess --out-dir")
    ap.add_argument("--json", type=Path, help="write every row here")
    ap.add_argument("--groups", default="all,pseudo,comp,bg", help="groups printed")
    ap.add_argument(
        "--veto-min-area",
        default="0",
        help="comma-separated postprocess.veto_min_area values (share of the image; 0 = off)",
    )
    ap.add_argument(
        "--veto-below", default="1", help="comma-separated postprocess.veto_below values"
    )
    ap.add_argument(
        "--veto-classes",
        default="face,license_plate",
        help="classes --veto-below applies to; the others are never vetoed (default: both)",
    )
    ap.add_argument("--thresholds", default=",".join(map(str, THRESHOLDS)))
    ap.add_argument(
        "--config",
        help="config whose postprocess.veto_min_elevation rule applies (default: the packaged "
        "default); --no-elevation-rule leaves it out",
    )
    ap.add_argument("--no-elevation-rule", action="store_true")
    args = ap.parse_args(argv)
    from redact.cli import load_config

    elevation = (
        {} if args.no_elevation_rule else load_config(args.config).postprocess.veto_min_elevation
    )
    raw = dict(np.load(args.data, allow_pickle=False))
    mask = np.load(args.train_dir / "val_mask.npy")
    stage2 = np.load(args.train_dir / "val_scores.npy")
    d = {k: v[mask] for k, v in raw.items() if k not in ("crops", "features")}
    if len(stage2) != int(mask.sum()):
        raise SystemExit(f"val_scores has {len(stage2)} rows, the mask selects {int(mask.sum())}")
    areas = tuple(float(a) for a in args.veto_min_area.split(","))
    rows = operating_table(
        d,
        stage2,
        thresholds=tuple(float(t) for t in args.thresholds.split(",")),
        veto_min_areas=areas,
        veto_belows=tuple(float(b) for b in args.veto_below.split(",")),
        veto_classes=tuple(CLASSES.index(c) for c in args.veto_classes.split(",")),
        veto_min_elevation=elevation,
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    show = set(args.groups.split(","))
    print(
        "| keep | veto_min_area | veto_below | thr | group | class "
        "| positives lost (count, weight) | negatives removed |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["group"] in show:
            print(
                f"| {r['keep']} | {r['veto_min_area']:g} | {r['veto_below']:g} | {r['threshold']} "
                f"| {r['group']} "
                f"| {r['class']} | "
                f"{r['lost']}/{r['positives']} ({r['lost_weight_share']:.3f}) | "
                f"{r['neg_weight_removed']:.3f} of {r['negatives']} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
