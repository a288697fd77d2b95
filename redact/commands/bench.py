"""``redact bench``: time redact per stage and end to end, next to deface."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence


def register(sub: argparse._SubParsersAction) -> None:
    from redact.bench.cli import add_arguments

    p = sub.add_parser(
        "bench",
        help="benchmark per stage and end to end, next to deface",
        description="Time redact per stage (in-process) and end to end (the Beam job), and "
        "deface on the same images; print tables, write JSON/Markdown. See docs/performance.md.",
        allow_abbrev=False,
    )
    add_arguments(p)
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from redact.bench.cli import run

    return run(args, "redact " + shlex.join(sys.argv[1:]))
