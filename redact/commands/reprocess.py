"""``redact reprocess``: re-run the originals of chosen S2 cells, highest priority first.

``redact reprocess --manifest DST/_manifest --originals SRC --cells cells.csv`` reads the
newest manifest row of every image, selects those located in the listed cells (a parent cell
selects everything in its children), optionally only those produced by other model versions
or config hashes (``--outdated``, ``--config-hash H``), and runs one forced job per priority,
highest first, publishing atomically over the old copies. The cells file is CSV
``token,priority`` (a header line is optional; priority defaults to 0). Manual regions are
blurred as in every run. Re-running with the same ``--run-id`` resumes a killed reprocess.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from redact.season.cells import read_cells, select


def register(sub: argparse._SubParsersAction) -> None:
    from redact.commands.run import add_config_args

    p = sub.add_parser(
        "reprocess",
        help="re-run the originals in given S2 cells, highest priority first",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("--manifest", required=True, metavar="DIR", help="manifest folder")
    p.add_argument("--originals", required=True, metavar="SRC", help="originals folder/prefix")
    p.add_argument("--cells", required=True, metavar="CSV", help="token,priority per line")
    p.add_argument(
        "--output", metavar="DST", help="published tree (default: the manifest's parent)"
    )
    p.add_argument(
        "--outdated",
        action="store_true",
        help="only images produced by another model set or config than the current one",
    )
    p.add_argument(
        "--config-hash",
        action="append",
        default=[],
        metavar="HASH",
        help="only images whose manifest row records this config hash (the hash for the "
        "image's projection; repeatable)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the selection, run nothing")
    add_config_args(p)
    p.add_argument("--catalog", metavar="FILE", help="location catalog (default: the manifest's)")
    p.add_argument("--accelerator", metavar="HINT", help="Dataflow accelerator hint")
    p.add_argument("--run-id", help="base run id (batches get -p<priority>); reuse to resume")
    p.add_argument("--registry", help="model registry YAML")
    p.set_defaults(func=_reprocess, accepts_beam_args=True)


def _reprocess(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from redact.cli import load_config, new_run_id
    from redact.commands.report import run_selection
    from redact.detection import ModelRegistry, describe_models
    from redact.errors import UsageError
    from redact.runner import Layout
    from redact.season.markers import models_hash
    from redact.season.republish import latest_rows

    layout = Layout.resolve(args.output, args.manifest)
    cells = read_cells(args.cells)
    by_rel = latest_rows(layout.manifest)
    rows = list(by_rel.values())
    if not rows:
        raise UsageError(f"{layout.manifest}: the manifest is empty")
    current_models = current_config = None
    if args.outdated:
        config = load_config(args.config, args.set)
        current_config = config.current_hashes()
        current_models = models_hash(describe_models(config, ModelRegistry.load(args.registry)))
    chosen = select(
        rows,
        cells,
        models_hash=current_models,
        config_hash=current_config,
        config_hashes=args.config_hash,
    )
    batches: dict[int, list[str]] = {}
    for rel, prio in chosen.items():
        batches.setdefault(prio, []).append(rel)
    print(
        f"reprocess: {len(chosen)} of {len(rows)} image(s) selected in {len(cells)} cell(s); "
        f"priorities {sorted(batches, reverse=True)}"
    )
    if args.dry_run:
        for prio in sorted(batches, reverse=True):
            for rel in sorted(batches[prio]):
                print(f"  p{prio}\t{rel}")
        return 0
    from redact.season.location import catalog_from_manifest

    base_id = args.run_id or new_run_id()
    for prio in sorted(batches, reverse=True):
        rels = sorted(batches[prio])
        located = catalog_from_manifest(by_rel, rels)
        _, summary = run_selection(
            args,
            beam_args,
            layout=layout,
            base=args.originals,
            relative_paths=rels,
            run_id=f"{base_id}-p{prio}",
            catalog_rows=located,
        )
        print(summary)
    return 0
