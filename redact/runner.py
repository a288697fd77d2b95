"""Build, run and summarise a redaction job (shared by the CLI and ``pipelines/``)."""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from redact.classes import Decision, ObjectClass, Projection
from redact.config import RedactConfig
from redact.detection import ModelRegistry, describe_models, make_detector_handler
from redact.io.storage import InputSpec, is_under, normalize_dir
from redact.pipeline import NAMESPACE, JobSpec, add_sinks, build_pipeline, run_info

_LOG = logging.getLogger(__name__)


def make_job(args: argparse.Namespace, config: RedactConfig) -> JobSpec:
    from redact.cli import UsageError, new_run_id

    src = InputSpec.parse(args.input)
    out = normalize_dir(args.output)
    if src.base and normalize_dir(src.base) == out:
        raise UsageError(
            "--output must differ from the input folder: originals are never overwritten"
        )
    if src.base and is_under(src.base, out):
        raise UsageError("--output must not contain the input folder")
    manifest = normalize_dir(args.manifest) if args.manifest else FileSystems.join(out, "_manifest")
    quarantine = (
        normalize_dir(args.quarantine) if args.quarantine else FileSystems.join(out, "_quarantine")
    )
    return JobSpec(
        input=src,
        output=out,
        manifest=manifest,
        quarantine=quarantine,
        projection=Projection(args.projection),
        run_id=args.run_id or new_run_id(),
        config=config,
    )


def run_job(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from redact.cli import load_config

    config = load_config(args.config, args.set)
    job = make_job(args, config)
    registry = ModelRegistry.load(args.registry)
    handler = make_detector_handler(config, registry)
    run = run_info(job, describe_models(config, registry))
    options = PipelineOptions(list(beam_args), save_main_session=False)
    _LOG.info(
        "run %s: %s -> %s (config %s)",
        job.run_id,
        job.input.pattern,
        job.output,
        run.config_hash[:12],
    )
    t0 = time.perf_counter()
    p = beam.Pipeline(options=options)
    outs = build_pipeline(p, job, run, handler)
    add_sinks(outs["rows"], outs["quarantine"], job)
    result = p.run()
    result.wait_until_finish()
    elapsed = time.perf_counter() - t0
    print(summarize(result, job, elapsed))
    return 0


def _counter(result: beam.runners.runner.PipelineResult, name: str) -> int:
    try:
        res = result.metrics().query(
            beam.metrics.MetricsFilter().with_namespace(NAMESPACE).with_name(name)
        )
    except Exception:  # some runners report no metrics; the manifest holds the truth
        return 0
    return int(sum(c.committed or 0 for c in res["counters"]))


def summarize(result: beam.runners.runner.PipelineResult, job: JobSpec, elapsed_s: float) -> str:
    read = _counter(result, "images_read")
    published = _counter(result, "images_published")
    failed = _counter(result, "images_failed")
    tiles = _counter(result, "tiles")
    lines = [
        f"redact run {job.run_id}: {read} image(s) read, {published} published, {failed} quarantined "
        f"in {elapsed_s:.1f} s"
        + (f" ({elapsed_s / read:.1f} s/image, {tiles} tiles)" if read else ""),
    ]
    for cls in ObjectClass:
        counts = {d: _counter(result, f"detections_{cls.label}_{d.value}") for d in Decision}
        lines.append(
            f"  {cls.label:>13}: {counts[Decision.BLUR] + counts[Decision.REVIEW]} blurred "
            f"({counts[Decision.REVIEW]} in the review band), {counts[Decision.DROPPED]} below threshold"
        )
    lines.append(f"  published copies: {job.output}")
    lines.append(f"  manifest: {FileSystems.join(job.manifest, f'run-{job.run_id}')}*.parquet")
    if failed:
        lines.append(
            f"  quarantine: {FileSystems.join(job.quarantine, f'run-{job.run_id}')}*.jsonl"
        )
        for rec in _quarantine_records(job)[:20]:
            lines.append(
                f"    {rec['relative_path']}: {rec['error_reason']} ({rec['error_message'][:120]})"
            )
    return "\n".join(lines)


def _quarantine_records(job: JobSpec) -> list[dict]:
    pattern = FileSystems.join(job.quarantine, f"run-{job.run_id}*.jsonl")
    out: list[dict] = []
    for m in FileSystems.match([pattern])[0].metadata_list:
        with FileSystems.open(m.path) as f:
            out.extend(json.loads(line) for line in f.read().decode().splitlines() if line.strip())
    return out
