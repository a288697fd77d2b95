"""``redact eval``: compare originals with published copies against ground-truth labels."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redact.errors import UsageError

if TYPE_CHECKING:
    from redact.evaluation.irreversibility import CohortCalibration

_LOG = logging.getLogger(__name__)


def add_label_args(p: argparse.ArgumentParser) -> None:
    """``--labels``, ``--label-format``, ``--class-map``, ``--manifest``, ``--run-id``."""
    from redact.evaluation.labels import LabelFormat

    p.add_argument(
        "--labels",
        required=True,
        metavar="PATH",
        help="COCO/dev_labels .json, or a folder of VOC .xml / YOLO or openalpr .txt",
    )
    p.add_argument(
        "--label-format",
        default=LabelFormat.AUTO.value,
        choices=[f.value for f in LabelFormat],
        help="label format (default: guessed from the content)",
    )
    p.add_argument(
        "--class-map",
        action="append",
        default=[],
        metavar="NAME=CLASS",
        help="map a label class name/id to face|license_plate|ignore ('*' = every other name)",
    )
    p.add_argument("--run-id", help="use this run's rows when the manifest holds several")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="measure recall, blur sufficiency and false-positive area against labels",
        description="Compare the originals with the published copies against ground-truth "
        "boxes: box recall (IoU 0.3/0.5), pixel recall, sufficiently-blurred recall and "
        "false-positive area, per class and by size, latitude band, flag and image.",
        allow_abbrev=False,
    )
    add_label_args(p)
    p.add_argument(
        "--originals", metavar="DIR", help="input folder of the run (default: image_uri)"
    )
    p.add_argument("--published", metavar="DIR", help="output folder of the run")
    p.add_argument(
        "--manifest", metavar="DIR", help="manifest folder (default: PUBLISHED/_manifest)"
    )
    p.add_argument("--json", metavar="FILE", help="write every number (and per-object results)")
    p.add_argument("--html", metavar="FILE", help="write the CONFIDENTIAL HTML report")
    p.add_argument(
        "--sweep",
        action="store_true",
        help="print precision/recall vs score threshold per class (from the manifest's scores)",
    )
    p.add_argument(
        "--boxes-only",
        action="store_true",
        help="skip reading images: box recall and precision only",
    )
    p.add_argument(
        "--irreversibility",
        action="store_true",
        help="face-embedding (SFace) and plate OCR checks (needs the [eval] extra)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if any irreversibility check fails (implies --irreversibility)",
    )
    p.add_argument(
        "--min-face-px", type=float, default=30.0, help="faces checked for irreversibility"
    )
    p.add_argument(
        "--diff-threshold",
        type=float,
        default=4.5,
        metavar="LEVELS",
        help="local RMS difference counted as blurred (8-bit levels; default 4.5)",
    )
    p.add_argument("--per-image", action="store_true", help="also print the per-image slices")
    p.set_defaults(func=_run)


def _cohort_line(cal: CohortCalibration) -> str:
    """One line on how the faces were judged beyond the documented SFace threshold."""
    if not cal.used:
        return (
            f"irreversibility: {cal.n_faces} face(s): too few for cohort normalisation; judged "
            "at the documented SFace threshold 0.363 and the face-erased control"
        )
    doc = ""
    if cal.fmr_at_documented_original is not None and cal.fmr_at_documented_probe is not None:
        doc = (
            f"; the documented 0.363 false-matches {100 * cal.fmr_at_documented_original:.1f}% "
            f"of pairs of different people's originals here, "
            f"{100 * cal.fmr_at_documented_probe:.1f}% of published-vs-other originals"
        )
    return (
        f"irreversibility: {cal.n_normalised}/{cal.n_faces} faces cohort-normalised (pass "
        f"below z {cal.z_limit:.2f} = false-match rate {100 * cal.fmr:g}%{doc})"
    )


def _run(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from redact.evaluation import metrics, report, sweep, tables
    from redact.evaluation.dataset import (
        load_labelled,
        load_rgb,
        original_uri,
        published_uri,
    )
    from redact.evaluation.irreversibility import (
        Checker,
        IrreversibilityConfig,
        MissingDependency,
        any_failed,
        cohort_normalise,
        summarize_checks,
    )
    from redact.evaluation.labels import GtFlag, LabelFormat, parse_class_map
    from redact.evaluation.pixels import DiffConfig

    if args.strict:
        args.irreversibility = True
    if args.boxes_only and (args.irreversibility or args.html):
        raise UsageError("--boxes-only cannot be combined with --irreversibility/--strict/--html")
    if not args.manifest and not args.published:
        raise UsageError("give --published (its _manifest folder is read) or --manifest")
    manifest = args.manifest or os.path.join(args.published, "_manifest")
    labels, _rows, pairing = load_labelled(
        args.labels,
        manifest,
        fmt=LabelFormat(args.label_format),
        class_map=parse_class_map(args.class_map),
        run_id=args.run_id,
    )
    diff = DiffConfig(threshold=args.diff_threshold)
    checker = Checker(IrreversibilityConfig(min_face_height_px=args.min_face_px))
    evals = []
    checks: list[Any] = []
    gallery: list[report.GalleryItem] = []
    for lab, row in pairing.pairs:
        if args.boxes_only:
            evals.append(metrics.evaluate_boxes_only(lab, row))
            continue
        orig = load_rgb(original_uri(row, args.originals))
        pub = load_rgb(published_uri(row, args.published))
        ev = metrics.evaluate_pixels(lab, row, orig, pub, diff)
        evals.append(ev)
        if args.irreversibility:
            try:
                checks += checker.check(
                    row.relative_path,
                    orig,
                    pub,
                    ev.labels.objects,
                    row.wrap,
                    skip=lambda o: GtFlag.UNCERTAIN in o.flags,
                    coverage=ev.coverage.tolist(),
                )
            except MissingDependency as e:
                raise UsageError(str(e)) from None
        if args.html:
            for cls in labels.classes:
                objs, _ = metrics.image_results(ev, cls, metrics.PRIMARY)
                gallery += [
                    report.GalleryItem(o, report.gallery_crop(orig, o, row.wrap))
                    for o in objs
                    if not o.ignored and report.is_problem(o)
                ]
            gallery = report.select_gallery(gallery)
        del orig, pub
    classes = sorted(labels.classes)
    results = [metrics.evaluate(evals, classes, p) for p in metrics.protocols_for(labels)]
    primary = results[0]
    curves = []
    if args.sweep or args.html or args.json:
        curves = [
            sweep.pr_curve(evals, c, iou, metrics.PRIMARY) for c in classes for iou in metrics.IOUS
        ]
    run_ids = sorted({row.run_id for _, row in pairing.pairs})
    header = (
        f"redact eval: {len(pairing.pairs)} labelled image(s) of run {', '.join(run_ids)} "
        f"(labels {labels.format.value}: {labels.source}"
        + (
            ""
            if labels.exhaustive
            else "; NOT exhaustive: precision and FP area are not meaningful"
        )
        + ")"
    )
    skipped = (
        f"  skipped: {len(pairing.labels_without_row)} labelled image(s) not in the manifest, "
        f"{len(pairing.failed)} quarantined, {len(pairing.rows_without_labels)} unlabelled row(s)"
    )
    print(header)
    print(skipped)
    print(tables.summary_table(primary, with_images=args.per_image))
    for r in results[1:]:
        print(tables.overall_line(r))
    marks = {c: [t.review, t.blur] for c, t in pairing.pairs[0][1].thresholds.items()}
    if args.sweep:
        print(tables.curve_table(curves, marks))
    irr_summary = None
    if args.irreversibility:
        checks, cohort = cohort_normalise(checks, checker.cfg)
        irr_summary = summarize_checks(checks, cohort)
        print(_cohort_line(cohort))
    if irr_summary is not None:
        for label, s in irr_summary.items():
            print(
                f"irreversibility {label}: {s['n_passed']}/{s['n_judged']} passed"
                + (f" ({100 * s['pass_share']:.1f}%)" if s["pass_share"] is not None else "")
                + f"; of those the run blurred: {s['n_blurred_judged'] - s['n_failed_blurred']}"
                f"/{s['n_blurred_judged']} passed; failed: {s['n_failed_not_blurred']} not "
                f"blurred (missed), {s['n_failed_blurred']} blurred but still recognised/read; "
                f"{s['n_unverifiable']} unverifiable"
            )
            g = s.get("gallery_reidentification")
            if g and g["n"]:
                print(
                    f"  gallery attack: {g['n_reidentified']}/{g['n']} published faces "
                    f"re-identified among all {g['n']} originals (chance {g['chance']:.3f})"
                )
    meta = {
        "run": ", ".join(run_ids),
        "manifest": manifest,
        "labels": f"{labels.format.value}: {labels.source}",
        "labelled images": len(pairing.pairs),
        "labels exhaustive": labels.exhaustive,
        "config hash": pairing.pairs[0][1].config_hash[:12],
        "models": ", ".join(pairing.pairs[0][1].models),
    }
    if args.json:
        doc = {
            "meta": meta,
            "skipped": {
                "labels_without_row": list(pairing.labels_without_row),
                "quarantined": list(pairing.failed),
                "rows_without_labels": list(pairing.rows_without_labels),
            },
            "results": [r.as_dict() for r in results],
            "objects": [o.as_dict() for c in classes for o in primary.objects[c]],
            "images": [
                {
                    "image": e.image.relative_path,
                    "blurred_measured": e.blurred_measured,
                    "blurred_manifest": e.image.blurred_fraction,
                    "fp_area": e.fp_area,
                    "fp_area_far": e.fp_area_far,
                }
                for e in evals
            ],
            "curves": [c.as_dict() for c in curves],
            "irreversibility": {
                "summary": irr_summary,
                "checks": [c.as_dict() for c in checks],
            }
            if irr_summary is not None
            else None,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=_json_default)
        print(f"  json: {args.json}")
    if args.html:
        text = report.render_html(primary, curves, gallery, meta, irr_summary)
        with open(args.html, "w") as f:
            f.write(text)
        print(f"  html (CONFIDENTIAL: holds crops of the originals): {args.html}")
    if args.strict and any_failed(checks):
        n = sum(c.passed is False for c in checks)
        print(
            f"redact: IRREVERSIBILITY FAILED for {n} object(s): a published face is still "
            "recognised or a plate still read (see --json for which)",
            file=sys.stderr,
        )
        return 1
    return 0


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
