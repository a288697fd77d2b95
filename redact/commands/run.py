"""``redact run``: redact a folder or bucket of images with the Beam pipeline."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from redact.classes import Projection


def add_config_args(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``--set``, shared by every command that loads a config."""
    p.add_argument(
        "--config",
        metavar="YAML",
        help="config file (default: the packaged default.yaml)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. thresholds.face.blur=0.3",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="redact a folder/bucket of images (a Beam job)",
        description="Redact images with an Apache Beam pipeline. Extra --options go to Beam "
        "(e.g. --runner DataflowRunner --project P --region R --temp_location gs://...).",
        allow_abbrev=False,
    )
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
    add_config_args(p)
    p.add_argument(
        "--projection",
        default="auto",
        choices=[x.value for x in Projection],
        help="auto: 2:1 images are equirectangular panoramas",
    )
    p.add_argument(
        "--run-id", help="identifier stored in every manifest row (default: UTC time + random)"
    )
    p.add_argument(
        "--registry",
        help="model registry YAML (default: $REDACT_REGISTRY or the packaged registry.yaml)",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="run even when --input matches no file (default: exit 2: a mistyped path or glob)",
    )
    add_season_args(p)
    p.set_defaults(func=_run, accepts_beam_args=True)


def add_season_args(p: argparse.ArgumentParser) -> None:
    """Location catalog, re-run and Dataflow options shared by the season commands."""
    p.add_argument(
        "--catalog",
        metavar="FILE",
        help="sidecar location catalog, CSV or Parquet: uri or relative_path, lat, lng "
        "[, captured_at, camera] (wins over EXIF GPS)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="re-do images already published with the same models and config "
        "(default: skip them, decided from DST/_markers before reading)",
    )
    p.add_argument(
        "--accelerator",
        metavar="HINT",
        help="Dataflow resource hint of the inference step (default: season.accelerator, "
        "'type:nvidia-l4;count:1;install-nvidia-driver'; '' for none)",
    )


def _run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from redact.runner import run_job

    return run_job(args, beam_args)
