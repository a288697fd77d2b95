"""``redact explain IMAGE --manifest M``: why each candidate of an image was blurred or not.

Finds the image's latest published manifest row (``IMAGE`` is its relative path, original uri
or published uri; ``--run`` restricts to one run) and prints one line per candidate: class,
box (pixels), the detector's (stage-1) score, the verifier's (stage-2) score when there is
one, the final score, the class thresholds recorded in the row (blur / review / floor), the
decision and its reason in words, and the mode and strength it was blurred with. ``--json``
prints the same as one JSON object. Rows of manifests written before reasons were recorded
get a reason derived from the decision and the thresholds (marked ``derived``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from redact.classes import Decision, Reason


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="why each candidate of an image was blurred or not (from the manifest)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("image", metavar="IMAGE", help="relative path, original uri or published uri")
    p.add_argument("--manifest", required=True, metavar="DIR", help="manifest folder or file")
    p.add_argument("--run", metavar="RUN_ID", help="only this run's row")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_explain)


def find_row(manifest: str, image: str, run_id: str | None = None) -> dict[str, Any]:
    """The latest published row (by processed_at, run_id) of ``image`` (relative path,
    original or published uri) in the manifest folder/file ``manifest``.

    Raises:
        UsageError: no manifest there, or no published row of the image.
    """
    import pyarrow.dataset as ds

    from redact.errors import UsageError
    from redact.manifest import SCHEMA, Status
    from redact.season.republish import absolute_uri

    if "://" not in manifest and not os.path.exists(manifest):
        raise UsageError(f"manifest {manifest!r} not found")
    try:
        dataset = ds.dataset(manifest, format="parquet", schema=SCHEMA)
    except (OSError, ValueError) as e:
        raise UsageError(f"manifest {manifest!r} cannot be read: {' '.join(str(e).split())}") from e
    key = absolute_uri(image)
    match = (
        (ds.field("relative_path") == image)
        | (ds.field("image_uri") == key)
        | (ds.field("output_uri") == key)
    )
    if run_id:
        match = match & (ds.field("run_id") == run_id)
    rows = dataset.to_table(filter=match).to_pylist()
    published = [r for r in rows if r["status"] == Status.PUBLISHED.value]
    if not published:
        run = f" of run {run_id}" if run_id else ""
        if rows:
            last = max(rows, key=lambda r: (r["processed_at"], r["run_id"]))
            raise UsageError(
                f"{image!r} has no published row{run} in {manifest} (latest: {last['status']}"
                f"{', ' + last['error_reason'] if last['error_reason'] else ''})"
            )
        raise UsageError(f"{image!r} is not in the manifest {manifest}{run}")
    return max(published, key=lambda r: (r["processed_at"], r["run_id"]))


def _f(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def derived_reason(det: Mapping[str, Any], thresholds: Mapping[str, Any] | None) -> Reason:
    """The reason of a detection of a manifest written before reasons were recorded."""
    decision = Decision(det["decision"])
    if decision is Decision.MANUAL:
        return Reason.MANUAL_REGION
    if decision is Decision.BLUR:
        return Reason.ABOVE_BLUR
    if decision is Decision.REVIEW:
        return Reason.REVIEW_BAND
    if thresholds is not None and det["score"] >= thresholds["review"]:
        return Reason.SIZE_PRIOR  # would have been blurred: only the size prior drops those
    return Reason.BELOW_REVIEW


def _manual_entry(det: Mapping[str, Any], regions: Sequence[Mapping[str, Any]]) -> Any:
    """The manual_regions entry nearest to a manual detection's box (same class)."""
    same = [r for r in regions if r["class"] == det["class"]]
    if not same:
        return None

    def dist(r: Mapping[str, Any]) -> float:
        return sum(abs(float(r[k]) - float(det[k])) for k in ("x1", "y1", "x2", "y2"))

    return min(same, key=dist)


def reason_text(
    det: Mapping[str, Any],
    reason: Reason,
    thresholds: Mapping[str, Any] | None,
    image_height: int,
    manual: Mapping[str, Any] | None = None,
) -> str:
    """One detection's decision in words (``thresholds``: its class's row entry)."""
    cls = det["class"]
    score = float(det["score"])
    s2 = det.get("stage2_score")
    which = "final score" if s2 is not None else "score"
    verifier = (
        f" (verifier score {s2:.3g}, detector {_f(det.get('stage1_score'))})"
        if s2 is not None
        else ""
    )
    t = thresholds or {}
    blur, review = t.get("blur"), t.get("review")
    if reason is Reason.MANUAL_REGION:
        if manual is None:
            return "blurred: manual region (a person reported it)"
        by = f" reported by {manual['created_by']}" if manual.get("created_by") else ""
        why = f": {manual['reason']}" if manual.get("reason") else ""
        return f"blurred: manual region {manual['region_id']}{by}{why}"
    if reason is Reason.ABOVE_BLUR:
        return f"blurred: {which} {score:.3g} >= {cls} blur threshold {_f(blur)}{verifier}"
    if reason is Reason.REVIEW_BAND:
        return (
            f"blurred and queued for review: {which} {score:.3g} in the {cls} review band "
            f"[{_f(review)}, {_f(blur)}){verifier}"
        )
    if reason is Reason.BELOW_REVIEW:
        return (
            f"not blurred: {which} {score:.3g} < {cls} review threshold {_f(review)} "
            f"(kept in the manifest only){verifier}"
        )
    h = float(det["y2"]) - float(det["y1"])
    share = f" = {h / image_height:.2f} x the image height" if image_height else ""
    return (
        f"dropped by the size prior: {h:.0f} px tall{share}, above the class's "
        f"review_max_height, and detector score {_f(score if det.get('stage1_score') is None else det['stage1_score'])} below "
        "its giant_min_score"
    )


def explain_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The explanation of one manifest row, as plain data (what ``--json`` prints)."""
    thresholds = {t["class"]: t for t in row.get("thresholds") or []}
    regions = list(row.get("manual_regions") or [])
    out = []
    for det in row.get("detections") or []:
        t = thresholds.get(det["class"])
        recorded = det.get("reason")
        reason = Reason(recorded) if recorded else derived_reason(det, t)
        manual = _manual_entry(det, regions) if reason is Reason.MANUAL_REGION else None
        out.append(
            {
                "class": det["class"],
                "box": [round(float(det[k]), 1) for k in ("x1", "y1", "x2", "y2")],
                "stage1_score": det.get("stage1_score"),
                "stage2_score": det.get("stage2_score"),
                "score": det["score"],
                "thresholds": {k: t[k] for k in ("blur", "review", "floor")} if t else None,
                "decision": det["decision"],
                "reason": reason.value,
                "reason_derived": not recorded,
                "reason_text": reason_text(det, reason, t, int(row.get("height") or 0), manual),
                "mode": det.get("mode") or "",
                "strength": det.get("strength") or "",
                "manual_region": manual["region_id"] if manual else None,
            }
        )
    return {
        "image_uri": row["image_uri"],
        "relative_path": row["relative_path"],
        "output_uri": row["output_uri"],
        "run_id": row["run_id"],
        "processed_at": str(row["processed_at"]),
        "width": row["width"],
        "height": row["height"],
        "projection": row["projection"],
        "candidates": out,
    }


def format_explanation(e: Mapping[str, Any]) -> str:
    """Human-readable lines of :func:`explain_row`'s output."""
    lines = [
        f"{e['relative_path']} ({e['width']}x{e['height']} {e['projection']}), run {e['run_id']} "
        f"at {e['processed_at']}: {len(e['candidates'])} candidate(s); published {e['output_uri']}"
    ]
    for i, c in enumerate(e["candidates"]):
        x1, y1, x2, y2 = c["box"]
        t = c["thresholds"]
        th = f"blur {_f(t['blur'])} review {_f(t['review'])} floor {_f(t['floor'])}" if t else "-"
        style = f"{c['mode']}/{c['strength']}" if c["mode"] else "not blurred"
        derived = (
            " (derived: the manifest predates recorded reasons)" if c["reason_derived"] else ""
        )
        lines.append(
            f"{i:3d} {c['class']:<13} box {x1:g},{y1:g},{x2:g},{y2:g} "
            f"({x2 - x1:.0f}x{y2 - y1:.0f} px)  stage1 {_f(c['stage1_score'])}  "
            f"stage2 {_f(c['stage2_score'])}  score {_f(c['score'])}  [{th}]  "
            f"{c['decision']} ({c['reason']}): {c['reason_text']}{derived}  mode {style}"
        )
    return "\n".join(lines)


def _explain(args: argparse.Namespace, extra: Sequence[str]) -> int:
    row = find_row(args.manifest, args.image, args.run)
    e = explain_row(row)
    print(json.dumps(e, indent=1) if args.json else format_explanation(e))
    return 0
