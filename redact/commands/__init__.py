"""``redact`` subcommands. Each module defines ``register(subparsers)``, which adds its parser
and sets ``func`` (called with ``(args, extra_args)``, returning the exit status)."""

from __future__ import annotations

import argparse
import importlib

# One line per subcommand module; order is the order in ``redact --help``.
MODULES = (
    "redact.commands.run",
    "redact.commands.reprocess",
    "redact.commands.report",
    "redact.commands.review",
    "redact.commands.eval",
    "redact.commands.tune",
    "redact.commands.audit",
    "redact.commands.explain",
)


def register_all(sub: argparse._SubParsersAction) -> None:
    for name in MODULES:
        importlib.import_module(name).register(sub)
