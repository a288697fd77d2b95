"""``redact`` command line. ``redact run --input SRC --output DST`` is the main job.

Unknown ``--options`` are passed to Beam (``--runner``, ``--direct_num_workers``,
``--project``, ``--region``, ``--temp_location``, ...), so the same command submits to Dataflow.
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
from redact.classes import Projection
from redact.config import ConfigError, RedactConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"


class UsageError(Exception):
    """A bad argument: reported in one line, exit status 2."""


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


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input",
        required=True,
        metavar="SRC",
        help="folder, glob, file, or gs://... / s3://... pattern",
    )
    p.add_argument(
        "--output",
        required=True,
        metavar="DST",
        help="where published copies go (same relative paths)",
    )
    p.add_argument("--manifest", metavar="DIR", help="manifest folder (default: DST/_manifest)")
    p.add_argument(
        "--quarantine", metavar="DIR", help="quarantine records folder (default: DST/_quarantine)"
    )
    p.add_argument(
        "--config",
        metavar="YAML",
        help=f"config file (default: {DEFAULT_CONFIG.relative_to(REPO_ROOT)})",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. thresholds.face.blur=0.3",
    )
    p.add_argument(
        "--projection",
        default="auto",
        choices=[x.value for x in Projection],
        help="auto: 2:1 images are equirectangular panoramas",
    )
    p.add_argument(
        "--run-id", help="identifier stored in every manifest row (default: UTC time + random)"
    )
    p.add_argument("--registry", help="model registry YAML (default: models/registry.yaml)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redact",
        description="Find and irreversibly blur faces and licence plates in street imagery.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"redact {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="redact a folder/bucket of images (a Beam job)",
        description="Redact images with an Apache Beam pipeline. Extra --options go to Beam "
        "(e.g. --runner DataflowRunner --project P --region R --temp_location gs://...).",
        allow_abbrev=False,
    )
    _add_run_args(run)
    return parser


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    bad = [a for a in beam_args if not a.startswith("-") and not _is_option_value(beam_args, a)]
    if bad:
        parser.error(f"unexpected argument(s): {' '.join(bad)}")
    try:
        if args.command == "run":
            from redact.runner import run_job

            return run_job(args, beam_args)
    except (UsageError, ConfigError, ValueError, FileNotFoundError) as e:
        print(f"redact: error: {e}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command!r}")
    return 2  # pragma: no cover


def _is_option_value(args: Sequence[str], item: str) -> bool:
    i = list(args).index(item)
    return i > 0 and args[i - 1].startswith("--") and "=" not in args[i - 1]


if __name__ == "__main__":
    sys.exit(main())
