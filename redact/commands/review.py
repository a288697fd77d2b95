"""``redact review``: the review queue of review-band detections.

* ``redact review list --output DST [--run RUN] [--pending] [--csv OUT]`` exports the items
  (review id, image uri, class, score, box) for a reviewer.
* ``redact review decide --output DST --id ID --decision missed|false_positive|confirmed
  [--box x1,y1,x2,y2] [--class C] [--note TEXT]`` (or ``--csv FILE`` with columns
  review_id,decision[,x1,y1,x2,y2][,class][,note]) records decisions: ``missed`` becomes a
  manual region (always blurred from now on; the image's marker is invalidated),
  ``false_positive`` a labelled hard negative for training, ``confirmed`` is only recorded.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence
from typing import Any

ITEM_COLUMNS = (
    "review_id",
    "image_uri",
    "relative_path",
    "output_uri",
    "class",
    "score",
    "x1",
    "y1",
    "x2",
    "y2",
    "model",
    "run_id",
)


def register(sub: argparse._SubParsersAction) -> None:
    from redact.commands.report import add_layout_args

    p = sub.add_parser(
        "review",
        help="the review queue: export review-band detections, record decisions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    rsub = p.add_subparsers(dest="review_command", metavar="ACTION", required=True)
    ls = rsub.add_parser("list", help="export review items as CSV", allow_abbrev=False)
    add_layout_args(ls)
    ls.add_argument("--run", default="", help="one run's items (default: every run)")
    ls.add_argument("--pending", action="store_true", help="only items without a decision")
    ls.add_argument("--csv", metavar="OUT", help="write here instead of stdout")
    ls.set_defaults(func=_list)

    d = rsub.add_parser("decide", help="record review decisions", allow_abbrev=False)
    add_layout_args(d)
    d.add_argument("--id", help="review id")
    d.add_argument("--decision", help="missed | false_positive | confirmed")
    d.add_argument("--box", metavar="X1,Y1,X2,Y2", help="for missed: the region (default: item's)")
    d.add_argument("--class", dest="cls", help="for missed: face | license_plate")
    d.add_argument("--note", default="")
    d.add_argument("--csv", metavar="FILE", help="bulk decisions")
    d.add_argument("--by", default=os.environ.get("USER", ""), help="reviewer")
    d.set_defaults(func=_decide)


def _items(layout: Any, run: str = "") -> dict[str, dict[str, Any]]:
    from redact.season.review import read_review_items

    return {r["review_id"]: r for r in read_review_items(layout.review, run).to_pylist()}


def _list(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from redact.runner import Layout
    from redact.season.review import read_decisions

    layout = Layout.resolve(args.output, args.manifest)
    items = _items(layout, args.run)
    if args.pending:
        done = set(read_decisions(layout.review)["review_id"].to_pylist())
        items = {k: v for k, v in items.items() if k not in done}
    out = open(args.csv, "w", newline="") if args.csv else sys.stdout
    try:
        w = csv.writer(out)
        w.writerow(ITEM_COLUMNS)
        for item in sorted(items.values(), key=lambda r: (r["relative_path"], -r["score"])):
            w.writerow([item[c] for c in ITEM_COLUMNS])
    finally:
        if args.csv:
            out.close()
    if args.csv:
        print(f"{len(items)} review item(s) written to {args.csv}")
    return 0


def _decide(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from redact.classes import ObjectClass
    from redact.errors import UsageError
    from redact.runner import Layout
    from redact.season.manual import parse_box, write_regions
    from redact.season.republish import invalidate
    from redact.season.review import (
        ReviewDecision,
        apply_decisions,
        write_decisions,
        write_hard_negatives,
    )

    layout = Layout.resolve(args.output, args.manifest)
    if args.csv:
        if args.id or args.decision:
            raise UsageError("give either --csv or --id/--decision")
        with open(args.csv, newline="") as f:
            wanted = [dict(r) for r in csv.DictReader(f)]
    elif args.id and args.decision:
        wanted = [
            {
                "review_id": args.id,
                "decision": args.decision,
                "class": args.cls or "",
                "note": args.note,
            }
        ]
        if args.box:
            wanted[0]["box"] = args.box
    else:
        raise UsageError("review decide needs --id and --decision (or --csv)")
    decisions = []
    for i, w in enumerate(wanted):
        where = f"{args.csv}:{i + 2}" if args.csv else "decide"
        try:
            extra_: dict[str, Any] = {"note": w.get("note") or ""}
            box_text = w.get("box") or (
                ",".join(w[k] for k in ("x1", "y1", "x2", "y2")) if w.get("x1") else ""
            )
            if box_text:
                extra_["box"] = parse_box(box_text)
            if w.get("class"):
                extra_["class"] = ObjectClass.parse(w["class"])
            decisions.append(
                (str(w["review_id"]).strip(), ReviewDecision.parse(str(w["decision"])), extra_)
            )
        except KeyError as e:
            raise UsageError(f"{where}: missing column {e}") from None
        except ValueError as e:
            raise UsageError(f"{where}: {e}") from None
    rows, regions, negatives = apply_decisions(_items(layout), decisions, decided_by=args.by)
    write_decisions(layout.review, rows)
    msg = [f"recorded {len(rows)} decision(s)"]
    if regions:
        uri = write_regions(layout.manual, regions)
        n = invalidate(layout.markers, [r.relative_path for r in regions])
        msg.append(f"{len(regions)} manual region(s) in {uri} ({n} marker(s) invalidated)")
    if negatives:
        msg.append(
            f"{len(negatives)} hard negative(s) in {write_hard_negatives(layout.review, negatives)}"
        )
    print("; ".join(msg))
    return 0
