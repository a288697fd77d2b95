"""``redact review``: the review queue of review-band detections.

* ``redact review list --output DST [--run RUN] [--pending] [--csv OUT]`` exports the items
  (review id, image uri, class, score, box) for a reviewer.
* ``redact review decide --output DST --id ID --decision missed|false_positive|confirmed
  [--box x1,y1,x2,y2] [--class C] [--note TEXT]`` (or ``--csv FILE`` with columns
  review_id,decision[,x1,y1,x2,y2][,class][,note]) records decisions: ``missed`` becomes a
  manual region (always blurred from now on; the image's marker is invalidated),
  ``false_positive`` a labelled hard negative for training, ``confirmed`` is only recorded.
* ``redact review serve --output DST [--port P] [--originals]`` opens the queue and every
  image in a browser (published copy in a 360 viewer, candidates drawn with class, score,
  decision and reason; decisions go through the same code as ``decide``).
* ``redact review export --output DST --site DIR [--copy]`` writes the same pages as a static,
  read-only site (decisions downloadable as a CSV for ``decide --csv``). See docs/review.md.
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

    sv = rsub.add_parser(
        "serve",
        help="the review page in a browser (published pixels only by default)",
        allow_abbrev=False,
    )
    add_layout_args(sv)
    sv.add_argument("--review-dir", metavar="D", help="review store (default: DST/_review)")
    sv.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    sv.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other than loopback: anyone who can reach it sees the pages and "
        "can record decisions (no login); refused with --originals",
    )
    sv.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    sv.add_argument(
        "--originals",
        action="store_true",
        help="also serve the ORIGINAL (unblurred) images, under a red warning on every page",
    )
    sv.add_argument("--by", default=os.environ.get("USER", ""), help="reviewer")
    sv.set_defaults(func=_serve)

    ex = rsub.add_parser(
        "export", help="write the review page as a static site (read-only)", allow_abbrev=False
    )
    add_layout_args(ex)
    ex.add_argument("--review-dir", metavar="D", help="review store (default: DST/_review)")
    ex.add_argument("--site", metavar="DIR", required=True, help="folder to write the site to")
    ex.add_argument(
        "--copy",
        action="store_true",
        help="copy the published files into the site (default: link to them where they are)",
    )
    ex.set_defaults(func=_export)


def _layout(args: argparse.Namespace) -> Any:
    import dataclasses

    from redact.runner import Layout

    layout = Layout.resolve(args.output, args.manifest)
    if getattr(args, "review_dir", None):
        from redact.io.storage import normalize_dir

        layout = dataclasses.replace(layout, review=normalize_dir(args.review_dir))
    return layout


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
    from redact.errors import UsageError
    from redact.runner import Layout
    from redact.season.review import parse_decision_rows, record_decisions

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
    where = [f"{args.csv}:{i + 2}" if args.csv else "decide" for i in range(len(wanted))]
    try:
        decisions = parse_decision_rows(wanted, where)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(record_decisions(layout, decisions, decided_by=args.by, items=_items(layout)).summary())
    return 0


def _serve(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from redact.errors import UsageError
    from redact.season.web.server import LOOPBACK, ReviewServer

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: expected 0..65535")
    if args.host not in LOOPBACK:
        if not args.allow_remote:
            raise UsageError(
                f"--host {args.host}: not a loopback address; the page has no login, so "
                "anyone who reaches it could read it and record decisions (--allow-remote)"
            )
        if args.originals:
            raise UsageError("--originals is only served on a loopback --host")
    layout = _layout(args)
    try:
        server = ReviewServer(
            layout, host=args.host, port=args.port, originals=args.originals, decided_by=args.by
        )
    except OSError as e:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {e}") from None
    print(f"review page: {server.url} (Ctrl-C stops it)", flush=True)
    if args.originals:
        print("WARNING: --originals: this server shows UNBLURRED originals", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
    return 0


def _export(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from redact.season.web.export import export_site

    done = export_site(_layout(args), args.site, copy=args.copy)
    print(done.summary())
    return 0
