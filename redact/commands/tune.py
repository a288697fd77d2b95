"""``redact tune``: choose per-class ``blur``/``review`` thresholds for a target recall."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from redact.errors import UsageError
from redact.resources import config_path


def register(sub: argparse._SubParsersAction) -> None:
    from redact.commands.eval import add_label_args

    p = sub.add_parser(
        "tune",
        help="choose per-class thresholds reaching a target recall on labelled images",
        description="From a manifest's raw scores (every candidate down to the floor) and "
        "ground truth, pick per class the highest 'blur' threshold whose box recall reaches "
        "--target-recall and a lower 'review' threshold, and write them into a config file.",
        allow_abbrev=False,
    )
    add_label_args(p)
    p.add_argument("--manifest", required=True, metavar="DIR", help="manifest folder of the run")
    p.add_argument("--target-recall", type=float, default=0.99, help="box recall for 'blur'")
    p.add_argument(
        "--review-recall",
        type=float,
        help="box recall for 'review' (default: half the misses of --target-recall)",
    )
    p.add_argument(
        "--review-ratio",
        type=float,
        default=0.5,
        help="'review' is at most this share of 'blur' (default 0.5)",
    )
    p.add_argument("--iou", type=float, default=0.3, help="IoU of a match (default 0.3)")
    p.add_argument(
        "--score",
        choices=("final", "stage1", "stage2"),
        default="final",
        help="tune on this score of the manifest: final (what the run decided on; with the "
        "post-processor its final score), stage1 (the detector's: thresholds for stage 1 "
        "alone) or stage2 (the post-processor's raw score)",
    )
    p.add_argument(
        "--config",
        metavar="YAML",
        help="config the result extends (default: the packaged default.yaml); edited with "
        "--in-place",
    )
    dest = p.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", metavar="YAML", help="write a new config that extends --config")
    dest.add_argument(
        "--in-place",
        action="store_true",
        help="rewrite the thresholds lines of --config itself (must be given explicitly)",
    )
    p.add_argument(
        "--rate-manifest",
        metavar="DIR",
        help="count the expected review band per 1,000 images over this manifest's published "
        "rows (e.g. a production run) instead of the labelled images",
    )
    p.add_argument("--json", metavar="FILE", help="also write the choices and curves as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from redact.config import RedactConfig
    from redact.evaluation import metrics, sweep, tables
    from redact.evaluation.dataset import load_labelled, load_manifest_images
    from redact.evaluation.labels import LabelFormat, parse_class_map

    if args.in_place and not args.config:
        raise UsageError("--in-place needs an explicit --config (the file to rewrite)")
    target = sweep.TuneTarget(args.target_recall, args.review_recall, args.review_ratio)
    if not 0.0 < args.iou <= 1.0:
        raise UsageError(f"--iou must be in (0, 1], got {args.iou}")
    base = Path(args.config) if args.config else config_path()
    base_cfg = RedactConfig.load(base)  # validate before any work
    labels, _rows, pairing = load_labelled(
        args.labels,
        args.manifest,
        fmt=LabelFormat(args.label_format),
        class_map=parse_class_map(args.class_map),
        run_id=args.run_id,
    )
    evals = [
        metrics.evaluate_boxes_only(lab, sweep.with_score(row, args.score))
        for lab, row in pairing.pairs
    ]
    rate_rows = (
        load_manifest_images(args.rate_manifest)
        if args.rate_manifest
        else [row for _, row in pairing.pairs]
    )
    choices = {}
    curves = []
    for cls in sorted(labels.classes):
        curve = sweep.pr_curve(evals, cls, args.iou, metrics.PRIMARY)
        curves.append(curve)
        if curve.n_gt == 0:
            print(f"{cls.label}: no labelled objects; thresholds left as they are")
            continue
        choices[cls] = sweep.choose_thresholds(
            curve, target, rate_rows, floor=base_cfg.thresholds[cls].floor
        )
    if not choices:
        raise UsageError("no class has labelled objects: nothing to tune")
    run_ids = sorted({row.run_id for _, row in pairing.pairs})
    print(
        f"redact tune: target box recall {target.recall} (review {target.review:.4f}, ratio "
        f"{target.review_ratio}) at IoU {args.iou} on the {args.score} score over {len(pairing.pairs)} labelled image(s) "
        f"of run {', '.join(run_ids)}; thresholds below the manifest floor cannot be tuned"
    )
    print(tables.choice_table(choices, target))
    command = "redact tune " + " ".join(
        f"{k} {v}"
        for k, v in (
            ("--labels", args.labels),
            ("--manifest", args.manifest),
            ("--target-recall", args.target_recall),
            ("--iou", args.iou),
            ("--score", args.score),
        )
    )
    header = [
        f"Thresholds written by `{command}`",
        f"on {time.strftime('%Y-%m-%d', time.gmtime())}, run(s) {', '.join(run_ids)}, "
        f"{len(pairing.pairs)} labelled images ({labels.format.value}: {labels.source}).",
    ]
    for cls, ch in choices.items():
        header.append(
            f"{cls.label}: blur {ch.blur:.4f} -> recall {ch.at_blur['recall']:.3f}, precision "
            f"{ch.at_blur['precision'] or 0:.3f} ({'reached' if ch.reached else 'NOT reached'}); "
            f"review {ch.review:.4f}; review band {ch.review_band_per_1000:.1f} per 1,000 images"
        )
    if args.in_place:
        text = sweep.edit_thresholds_in_place(base.read_text(), choices)
        target_path = base
    else:
        target_path = Path(args.out)
        text = sweep.render_tuned_config(base, target_path, choices, header)
    _write_validated(target_path, text)
    print(f"  config: {target_path}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "target": {
                        "recall": target.recall,
                        "review_recall": target.review,
                        "review_ratio": target.review_ratio,
                        "iou": args.iou,
                    },
                    "choices": [c.as_dict() for c in choices.values()],
                    "curves": [c.as_dict() for c in curves],
                },
                f,
                indent=1,
            )
    return 0


def _write_validated(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` only if it loads as a valid config (atomic rename)."""
    from redact.config import RedactConfig

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        RedactConfig.load(tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
