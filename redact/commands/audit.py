"""``redact audit``: a stratified sample of published images for human review."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence

from redact.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="draw a stratified sample of published images and write a review sheet",
        description="Sample published images stratified by place (S2 cell or folder), "
        "blurred-detection count and review-band presence; write review_sheet.csv and "
        "links.html into --out.",
        allow_abbrev=False,
    )
    p.add_argument("--manifest", required=True, metavar="DIR", help="manifest folder of the run")
    p.add_argument("--n", type=int, default=200, help="sample size (default 200)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the sheet and links")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same sample)")
    p.add_argument(
        "--folder-depth",
        type=int,
        default=1,
        help="leading folder components that define a place stratum (0: none; default 1)",
    )
    p.add_argument(
        "--place",
        default="auto",
        choices=["auto", "s2", "folder"],
        help="place strata: the S2 cell of the capture location, or the folder (auto: the cell "
        "where the row has a location, else the folder)",
    )
    p.add_argument(
        "--s2-level", type=int, help="coarsen the manifest's S2 cells to this level (0-30)"
    )
    p.add_argument("--min-per-stratum", type=int, default=1, help="minimum draws per stratum")
    p.add_argument("--run-id", help="use this run's rows when the manifest holds several")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from redact.evaluation.audit import PlaceKey, draw_sample, write_review_sheet
    from redact.evaluation.dataset import load_manifest_images

    if args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    if args.folder_depth < 0 or args.min_per_stratum < 0:
        raise UsageError("--folder-depth and --min-per-stratum must be >= 0")
    if args.s2_level is not None and not 0 <= args.s2_level <= 30:
        raise UsageError(f"--s2-level must be in [0, 30], got {args.s2_level}")
    rows = load_manifest_images(args.manifest, args.run_id)
    samples = draw_sample(
        rows,
        args.n,
        seed=args.seed,
        folder_depth=args.folder_depth,
        min_per_stratum=args.min_per_stratum,
        place_key=PlaceKey(args.place),
        s2_level=args.s2_level,
    )
    if not samples:
        raise UsageError(f"manifest {args.manifest}: no published images to sample")
    sheet, page = write_review_sheet(samples, args.out)
    strata = Counter(s.stratum.name for s in samples)
    print(
        f"redact audit: {len(samples)} of {sum(r.status.value == 'published' for r in rows)} "
        f"published image(s) in {len(strata)} strata (seed {args.seed})"
    )
    for name, k in sorted(strata.items()):
        print(f"  {name}: {k}")
    print(f"  review sheet: {sheet}\n  links: {page}")
    return 0
