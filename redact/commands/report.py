"""``redact report``: manual regions (the report loop).

* ``redact report add --output DST --image URI --box x1,y1,x2,y2 --reason TEXT`` (or
  ``--csv FILE`` with columns image,x1,y1,x2,y2,reason[,class][,by][,mode][,strength];
  ``--mode``/``--strength`` override the class's blur mode and strength) records regions in the
  manual table (``DST/_manual``) and invalidates those images' markers, so every later run or
  reprocess re-does them and blurs the regions whatever the detector says.
* ``redact report apply --output DST`` republishes the reported images now (a small forced job
  over just the images whose published copy predates their latest regions).
* ``redact report list --output DST`` prints the table.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence
from typing import Any

from redact.classes import ObjectClass, Projection
from redact.season.republish import (
    invalidate,
    latest_rows,
    originals_base,
    pending_images,
    resolve_image,
)


def add_layout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", metavar="DST", help="the published tree (holds _manifest, ...)")
    p.add_argument("--manifest", metavar="DIR", help="manifest folder (default: DST/_manifest)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="manual regions: record missed faces/plates and republish",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    rsub = p.add_subparsers(dest="report_command", metavar="ACTION", required=True)

    add = rsub.add_parser("add", help="record manual region(s)", allow_abbrev=False)
    add_layout_args(add)
    add.add_argument("--image", metavar="URI", help="original or published uri, or relative path")
    add.add_argument("--box", metavar="X1,Y1,X2,Y2", help="image pixels (upright original)")
    add.add_argument("--class", dest="cls", default="face", help="face | license_plate")
    add.add_argument("--reason", help="why (kept in the table and the manifest)")
    add.add_argument(
        "--csv",
        metavar="FILE",
        help="bulk: columns image,x1,y1,x2,y2,reason[,class][,by][,mode][,strength]",
    )
    add.add_argument("--by", default=os.environ.get("USER", ""), help="who reports")
    add.add_argument(
        "--mode", default="", help="blur | pixelate | solid (default: the class's blur.mode)"
    )
    add.add_argument(
        "--strength", default="", help="low | medium | high (default: the class's blur.strength)"
    )
    add.set_defaults(func=_add)

    ls = rsub.add_parser("list", help="print the manual regions table (CSV)", allow_abbrev=False)
    add_layout_args(ls)
    ls.set_defaults(func=_list)

    ap = rsub.add_parser(
        "apply",
        help="republish the reported images now (a small forced job)",
        description="Extra --options go to Beam (e.g. --runner DataflowRunner ...).",
        allow_abbrev=False,
    )
    add_layout_args(ap)
    ap.add_argument(
        "--originals",
        metavar="SRC",
        help="originals folder/prefix (default: from the manifest's image uris)",
    )
    ap.add_argument(
        "--all", action="store_true", help="every reported image, not only the pending ones"
    )
    from redact.commands.run import add_config_args

    add_config_args(ap)
    ap.add_argument("--run-id", help="run id (reuse it to resume a killed apply)")
    ap.add_argument("--registry", help="model registry YAML")
    ap.add_argument("--accelerator", metavar="HINT", help="Dataflow accelerator hint")
    ap.set_defaults(func=_apply, accepts_beam_args=True)


def _add(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from redact.errors import UsageError
    from redact.runner import Layout
    from redact.season.manual import (
        ManualRegion,
        check_box_in_image,
        check_style,
        parse_box,
        write_regions,
    )

    layout = Layout.resolve(args.output, args.manifest)
    rows = latest_rows(layout.manifest)
    wanted: list[dict[str, str]] = []
    if args.csv:
        if args.image or args.box:
            raise UsageError("give either --csv or --image/--box")
        with open(args.csv, newline="") as f:
            wanted = [dict(r) for r in csv.DictReader(f)]
        if not wanted:
            raise UsageError(f"{args.csv}: no rows")
    else:
        if not (args.image and args.box and args.reason):
            raise UsageError("report add needs --image, --box and --reason (or --csv)")
        wanted = [{"image": args.image, "box": args.box, "reason": args.reason}]
    regions = []
    for i, w in enumerate(wanted):
        where = f"{args.csv}:{i + 2}" if args.csv else "--box"
        try:
            box = parse_box(
                w["box"] if "box" in w else ",".join(w[k] for k in "x1 y1 x2 y2".split())
            )
            row = resolve_image(rows, w["image"])
            cls = ObjectClass.parse(w.get("class") or args.cls)
            mode = (w.get("mode") or args.mode).strip().lower()
            strength = (w.get("strength") or args.strength).strip().lower()
            check_style(mode, strength)
            if row["width"] and row["height"]:
                wrap = row["projection"] == Projection.EQUIRECTANGULAR.value
                check_box_in_image(box, row["width"], row["height"], wrap=wrap)
        except KeyError as e:
            raise UsageError(f"{where}: missing column {e}") from None
        except ValueError as e:
            raise UsageError(f"{where}: {e}") from None
        if not (w.get("reason") or "").strip():
            raise UsageError(f"{where}: a reason is required")
        regions.append(
            ManualRegion.new(
                image_uri=row["image_uri"],
                relative_path=row["relative_path"],
                box=box,
                object_class=cls,
                reason=w["reason"].strip(),
                created_by=w.get("by") or args.by,
                mode=mode,
                strength=strength,
            )
        )
    uri = write_regions(layout.manual, regions)
    n = invalidate(layout.markers, [r.relative_path for r in regions])
    images = len({r.relative_path for r in regions})
    print(
        f"recorded {len(regions)} manual region(s) on {images} image(s) in {uri}; "
        f"{n} marker(s) invalidated. Every later run blurs them; `redact report apply "
        f"--output {layout.output}` republishes now."
    )
    return 0


def _list(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from redact.runner import Layout
    from redact.season.manual import read_regions

    layout = Layout.resolve(args.output, args.manifest)
    w = csv.writer(sys.stdout)
    w.writerow(
        [
            "region_id",
            "relative_path",
            "class",
            "x1",
            "y1",
            "x2",
            "y2",
            "reason",
            "by",
            "source",
            "created_at",
        ]
    )
    for r in read_regions(layout.manual):
        w.writerow(
            [
                r.region_id,
                r.relative_path,
                r.cls.label,
                *r.box,
                r.reason,
                r.created_by,
                r.source.value,
                r.created_at.isoformat(),
            ]
        )
    return 0


def run_selection(
    args: argparse.Namespace,
    beam_args: Sequence[str],
    *,
    layout: Any,
    base: str,
    relative_paths: Sequence[str],
    run_id: str,
    catalog_rows: Sequence[dict[str, Any]] = (),
) -> tuple[int, str]:
    """Run one forced job over exactly these images (a list file under ``DST/_reprocess``);
    returns (images published, summary). ``catalog_rows`` keep their known locations."""
    import csv as _csv
    import io

    from apache_beam.io.filesystems import FileSystems

    from redact.cli import load_config
    from redact.io.storage import write_atomic
    from redact.runner import _counter, execute, make_job, summarize

    config = load_config(args.config, args.set)
    work = FileSystems.join(layout.output, "_reprocess")
    if "://" not in work:
        os.makedirs(work, exist_ok=True)
    if "://" in base:
        base = base.rstrip("/")
        uris = [f"{base}/{rel}" for rel in relative_paths]
    else:
        base = os.path.abspath(base)
        uris = [os.path.join(base, rel) for rel in relative_paths]
    listing = FileSystems.join(work, f"{run_id}.txt")
    write_atomic(listing, ("\n".join(uris) + "\n").encode())
    catalog = getattr(args, "catalog", None) or ""
    if not catalog and catalog_rows:
        buf = io.StringIO()
        w = _csv.DictWriter(
            buf, fieldnames=["relative_path", "lat", "lng", "captured_at", "camera"]
        )
        w.writeheader()
        w.writerows(catalog_rows)
        catalog = FileSystems.join(work, f"{run_id}-catalog.csv")
        write_atomic(catalog, buf.getvalue().encode())
    ns = argparse.Namespace(
        input=base,
        output=layout.output,
        manifest=layout.manifest,
        quarantine=None,
        projection=getattr(args, "projection", "auto"),
        catalog=catalog,
        accelerator=getattr(args, "accelerator", None),
    )
    job = make_job(ns, config, files=listing, force=True, run_id=run_id)
    result, _, elapsed = execute(job, args.registry, beam_args)
    return _counter(result, "images_published"), summarize(result, job, elapsed)


def _apply(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from redact.cli import new_run_id
    from redact.runner import Layout

    layout = Layout.resolve(args.output, args.manifest)
    images = pending_images(layout, everything=args.all)
    if not images:
        print("report apply: nothing to republish (every reported image is up to date)")
        return 0
    base = originals_base(images, args.originals)
    rows = latest_rows(layout.manifest)
    from redact.season.location import catalog_from_manifest

    located = catalog_from_manifest(rows, images)
    run_id = args.run_id or new_run_id() + "-report"
    _, summary = run_selection(
        args,
        beam_args,
        layout=layout,
        base=base,
        relative_paths=sorted(images),
        run_id=run_id,
        catalog_rows=located,
    )
    print(summary)
    return 0
