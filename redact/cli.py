"""``redact`` command line. ``redact run --input SRC --output DST`` is the main job.

Unknown ``--options`` of commands that run a Beam job are passed to Beam (``--runner``,
``--direct_num_workers``, ``--project``, ``--region``, ``--temp_location``, ...), so the same
command submits to Dataflow. Subcommands live in :mod:`redact.commands`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from redact import __version__
from redact.config import RedactConfig
from redact.errors import ConfigError, UsageError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``--set a.b=1`` -> ``{"a": {"b": 1}}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE (e.g. thresholds.face.blur=0.3)")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def load_config(path: str | None, overrides: Sequence[str] = ()) -> RedactConfig:
    cfg_path = Path(path) if path else DEFAULT_CONFIG
    return RedactConfig.load(cfg_path, _parse_set(overrides))


def build_parser() -> argparse.ArgumentParser:
    from redact.commands import register_all

    parser = argparse.ArgumentParser(
        prog="redact",
        description="Find and irreversibly blur faces and licence plates in street imagery.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"redact {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register_all(sub)
    return parser


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    if extra and not getattr(args, "accepts_beam_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    bad = [
        a for i, a in enumerate(extra) if not a.startswith("-") and not _is_option_value(extra, i)
    ]
    if bad:
        parser.error(f"unexpected argument(s): {' '.join(bad)}")
    try:
        return int(args.func(args, extra))
    except (UsageError, ConfigError, ValueError, FileNotFoundError) as e:
        print(f"redact: error: {e}", file=sys.stderr)
        return 2


def _is_option_value(args: Sequence[str], i: int) -> bool:
    return i > 0 and args[i - 1].startswith("--") and "=" not in args[i - 1]


if __name__ == "__main__":
    sys.exit(main())
