"""Build, run and summarise a redaction job (shared by the CLI and ``pipelines/``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TextIO

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from redact.classes import Decision, ObjectClass, Projection
from redact.config import Backend, RedactConfig
from redact.detection import ModelRegistry, describe_models, make_detector_handler
from redact.detection.auto_handler import resolve_auto
from redact.detection.canary import check_detectors
from redact.detection.canary import summarize as summarize_canary
from redact.errors import UsageError
from redact.io.inputs import check_output_location
from redact.io.storage import InputSpec, normalize_dir
from redact.manifest import RunInfo
from redact.pipeline import NAMESPACE, JobSpec, add_sinks, build_pipeline, run_info
from redact.pipeline.detect import runner_key
from redact.pipeline.sources import Candidate, local_candidates
from redact.postprocess import load_rescorer

_LOG = logging.getLogger(__name__)
EXIT_BREAKER = 3  # the job ran, but the breaker stopped publication (nothing was published)


@dataclass(frozen=True)
class Layout:
    """The folders of one published tree. Defaults: ``DST/_manifest``, ``DST/_quarantine``,
    ``DST/_markers``, ``DST/_manual`` (manual regions), ``DST/_review``, ``DST/_alerts``."""

    output: str
    manifest: str
    quarantine: str
    markers: str
    manual: str
    review: str
    alerts: str

    @classmethod
    def resolve(
        cls, output: str | None, manifest: str | None = None, quarantine: str | None = None
    ) -> Layout:
        """From ``--output`` (or, without it, a ``--manifest`` folder named ``_manifest``)."""
        if not output:
            if manifest and FileSystems.split(normalize_dir(manifest))[1] == "_manifest":
                output = FileSystems.split(normalize_dir(manifest))[0]
            else:
                raise UsageError("give --output DST (the published tree)")
        out = normalize_dir(output)

        def sub(name: str) -> str:
            return FileSystems.join(out, name)

        return cls(
            output=out,
            manifest=normalize_dir(manifest) if manifest else sub("_manifest"),
            quarantine=normalize_dir(quarantine) if quarantine else sub("_quarantine"),
            markers=sub("_markers"),
            manual=sub("_manual"),
            review=sub("_review"),
            alerts=sub("_alerts"),
        )


def make_job(
    args: argparse.Namespace,
    config: RedactConfig,
    *,
    files: str = "",
    force: bool | None = None,
    run_id: str | None = None,
) -> JobSpec:
    """The JobSpec of ``redact run`` (and of the reprocess/apply jobs: ``files`` lists the
    images to process, ``force`` re-does them even if their markers are current)."""
    from redact.cli import new_run_id

    src = InputSpec.parse(args.input)
    layout = Layout.resolve(args.output, args.manifest, getattr(args, "quarantine", None))
    out = layout.output
    problem = check_output_location(src.base or os.getcwd(), out)
    if problem:
        raise UsageError(problem)
    catalog = getattr(args, "catalog", None) or ""
    if catalog and "://" not in catalog:
        if not os.path.isfile(catalog):
            raise UsageError(f"--catalog {catalog!r}: no such file")
        catalog = os.path.abspath(catalog)
    accelerator = getattr(args, "accelerator", None)
    job = JobSpec(
        input=src,
        output=out,
        manifest=layout.manifest,
        quarantine=layout.quarantine,
        projection=Projection(getattr(args, "projection", "auto")),
        run_id=run_id or getattr(args, "run_id", None) or new_run_id(),
        config=config,
        markers=layout.markers,
        manual=layout.manual,
        review=layout.review,
        alerts=layout.alerts,
        catalog=catalog,
        files=files,
        force=bool(getattr(args, "force", False)) if force is None else force,
        accelerator=config.season.accelerator if accelerator is None else accelerator,
    )
    if job.files and "://" not in job.files:
        with open(job.files) as f:
            job = replace(job, expected_images=sum(1 for line in f if line.strip()))
    return job


def list_job(job: JobSpec, *, allow_empty: bool) -> tuple[JobSpec, list[Candidate] | None]:
    """List a local job's inputs once, on the launcher (None for remote or selection jobs): the
    job with its expected image count, and the listing for :func:`execute`. A local input that
    matches nothing is an error (exit 2) unless ``allow_empty``."""
    if job.files or "://" in job.input.pattern:
        return job, None
    try:
        listed = local_candidates(job)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    if not listed and not allow_empty:
        raise UsageError(
            f"--input {job.input.pattern!r} matches no file (pass --allow-empty to run anyway)"
        )
    return replace(job, expected_images=len(listed)), listed


# Runners that honour --direct_num_workers / --direct_running_mode (Beam's DirectRunner runs
# a batch pipeline on the FnApiRunner), by runner_key.
_DIRECT_RUNNERS = frozenset({"direct", "switchingdirect", "fnapi"})


def local_parallelism(
    config: RedactConfig, beam_args: Sequence[str], cores: int
) -> tuple[list[str], RedactConfig]:
    """Beam arguments and detector config for a job on ``cores`` CPU cores.

    A DirectRunner job (no ``--runner``, or the DirectRunner / FnApiRunner by any of Beam's
    spellings) that names neither ``--direct_num_workers`` nor ``--direct_running_mode`` gets
    ``season.local_workers`` worker threads (``--direct_running_mode=multi_threading``). In a
    multi-threaded or multi-process job of W workers (``--direct_num_workers=0``: one per
    core), every detector whose ``intra_op_threads`` is 0 gets ``max(1, cores // W)`` ONNX
    Runtime threads: RunInference shares one session per process between its threads
    (``apache_beam.utils.shared``), so W concurrent ``Run`` calls share that pool instead of
    each spreading over every core. OpenVINO detectors (``auto`` where this process can
    import it: a local job's workers are this process) keep 0 (every core): their one stream
    runs one request at a time, and the other threads decode, render and encode meanwhile.
    Measured on 2 cores only (docs/performance.md). Other
    runners: unchanged. The returned config is only for the detectors: nothing here changes a
    published pixel, and the job's config (and its hash) stays as given.
    """
    args = list(beam_args)
    options = PipelineOptions(args)
    runner = options.view_as(StandardOptions).runner
    if runner is not None and runner_key(runner) not in _DIRECT_RUNNERS:
        return args, config
    direct = options.view_as(DirectOptions)
    given = {a.split("=", 1)[0] for a in args} & {"--direct_num_workers", "--direct_running_mode"}
    if not given and config.season.local_workers > 1:
        args += [
            f"--direct_num_workers={config.season.local_workers}",
            "--direct_running_mode=multi_threading",
        ]
        workers = config.season.local_workers
    elif direct.direct_running_mode in ("multi_threading", "multi_processing"):
        n = int(direct.direct_num_workers if direct.direct_num_workers is not None else 1)
        workers = cores if n == 0 else max(1, n)
    else:
        workers = 1
    if workers == 1:
        return args, config
    threads = max(1, cores // workers)
    models = tuple(
        replace(m, intra_op_threads=threads)
        if m.intra_op_threads == 0 and resolve_auto(m).backend is not Backend.OPENVINO
        else m
        for m in config.models
    )
    return args, replace(config, models=models)


class _OwnThreadStderr:
    """``sys.stderr`` that passes on only the writes of the thread that made it."""

    def __init__(self, real: TextIO) -> None:
        self._real = real
        self._thread = threading.get_ident()

    def write(self, text: str) -> int:
        if threading.get_ident() == self._thread:
            return self._real.write(text)
        return len(text)

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


@contextlib.contextmanager
def worker_prints_muted() -> Iterator[None]:
    """While a pipeline runs, drop what other threads print straight to ``sys.stderr`` when
    the SDK worker's logger is silenced (the CLI's default without ``-v``/``--debug``).

    Beam's multi-threaded SDK worker ``print``s a failed bundle's traceback there (not through
    logging) before the pipeline re-raises the error, which the CLI then reports in one line.
    Log records are not affected (handlers hold the real stream), nor is anything when the
    logger is not silenced (library use, ``-v``).
    """
    sdk = logging.getLogger("apache_beam.runners.worker.sdk_worker")
    if sdk.getEffectiveLevel() < logging.CRITICAL:
        yield
        return
    real = sys.stderr
    sys.stderr = _OwnThreadStderr(real)
    try:
        yield
    finally:
        sys.stderr = real


def execute(
    job: JobSpec,
    registry_path: str | None,
    beam_args: Sequence[str],
    listed: Sequence[Candidate] | None = None,
) -> tuple[beam.runners.runner.PipelineResult, RunInfo, float]:
    """Build and run one job to completion (``listed``: its local listing, from
    :func:`list_job`); returns (result, run info, seconds)."""
    config = job.config
    registry = ModelRegistry.load(registry_path)
    # Every detector proves itself on the canary here, before anything is built (each worker
    # proves it again when it loads the model): a broken detector stops the job unpublished.
    t_canary = time.perf_counter()
    reports = check_detectors(config, registry)
    _LOG.info(
        "canary passed in %.2f s: %s",
        time.perf_counter() - t_canary,
        summarize_canary(reports),
    )
    if config.postprocess.enabled:  # stage 2 proves itself here too (and in every worker)
        load_rescorer(config, registry)
    beam_args, detector_config = local_parallelism(config, beam_args, os.cpu_count() or 1)
    handler = make_detector_handler(detector_config, registry)
    run = run_info(job, describe_models(config, registry))
    options = PipelineOptions(beam_args, save_main_session=False)
    _LOG.info(
        "run %s: %s -> %s (config %s; panoramas %s, photos %s; models %s%s)",
        job.run_id,
        job.files or job.input.pattern,
        job.output,
        run.config_hash[:12],
        run.config_hash_for(Projection.EQUIRECTANGULAR.value)[:12],
        run.config_hash_for(Projection.PERSPECTIVE.value)[:12],
        run.models_hash[:12],
        ", forced" if job.force else "",
    )
    t0 = time.perf_counter()
    p = beam.Pipeline(options=options)
    outs = build_pipeline(p, job, run, handler, listed=listed)
    add_sinks(
        outs["rows"], outs["quarantine"], job, outs["review"], outs["alerts"], outs["breaker"]
    )
    with worker_prints_muted():
        result = p.run()
        result.wait_until_finish()
    return result, run, time.perf_counter() - t0


def run_job(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from redact.cli import load_config

    config = load_config(args.config, args.set)
    job, listed = list_job(make_job(args, config), allow_empty=bool(args.allow_empty))
    result, _, elapsed = execute(job, args.registry, beam_args, listed)
    print(summarize(result, job, elapsed))
    breaker = read_breaker(job)
    return EXIT_BREAKER if breaker is not None and breaker["open"] else 0


def read_breaker(job: JobSpec) -> dict | None:
    """The run's breaker record (``QUARANTINE/run-<id>-breaker.json``), None if absent."""
    recs = _jsonl_records(job.quarantine, f"{job.run_id}-breaker", suffix=".json")
    return recs[0] if recs else None


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
    skipped = _counter(result, "images_skipped")
    tiles = _counter(result, "tiles")
    lines = [
        f"redact run {job.run_id}: {read} image(s) read, {published} published, {failed} quarantined "
        f"in {elapsed_s:.1f} s"
        + (f" ({elapsed_s / read:.1f} s/image, {tiles} tiles)" if read else ""),
    ]
    if job.markers:
        recovered = _counter(result, "rows_recovered")
        lines.append(
            f"  skipped: {skipped} already published with these models and config"
            + (" (--force: only this run's own)" if job.force else "")
            + (f"; {recovered} manifest row(s) recovered from a killed run" if recovered else "")
        )
    for cls in ObjectClass:
        counts = {d: _counter(result, f"detections_{cls.label}_{d.value}") for d in Decision}
        lines.append(
            f"  {cls.label:>13}: {counts[Decision.BLUR] + counts[Decision.REVIEW]} blurred "
            f"({counts[Decision.REVIEW]} in the review band), {counts[Decision.DROPPED]} below threshold"
        )
    manual = sum(_counter(result, f"detections_{c.label}_manual") for c in ObjectClass)
    if manual:
        lines.append(f"  manual regions blurred: {manual}")
    if job.catalog or published:
        located = _counter(result, "images_located")
        lines.append(f"  located (catalog or EXIF GPS): {located} of {published} published")
    lines.append(f"  published copies: {job.output}")
    lines.append(f"  manifest: {FileSystems.join(job.manifest, f'run-{job.run_id}')}*.parquet")
    if job.review:
        review = _counter(result, "review_band_detections")
        lines.append(
            f"  review table: {FileSystems.join(job.review, f'run-{job.run_id}')}*.parquet "
            f"({review} item(s))"
        )
    n_alerts = _counter(result, "alerts")
    if n_alerts and job.alerts:
        lines.append(f"  ALERTS: {n_alerts} (also logged at WARNING)")
        for rec in _jsonl_records(job.alerts, job.run_id)[:20]:
            lines.append(f"    {rec['kind']}: {rec['message']}")
    breaker = read_breaker(job)
    if breaker is not None and breaker["open"]:
        stopped = _counter(result, "images_stopped_by_breaker")
        lines.append(
            f"  BREAKER OPEN: publication stopped, {stopped} image(s) not published: "
            f"{breaker['reason']} (exit {EXIT_BREAKER})"
        )
    elif breaker is not None:
        lines.append(f"  breaker {breaker['reason']}")
    if failed:
        lines.append(
            f"  quarantine: {FileSystems.join(job.quarantine, f'run-{job.run_id}')}*.jsonl"
        )
        for rec in _jsonl_records(job.quarantine, job.run_id)[:20]:
            lines.append(
                f"    {rec['relative_path']}: {rec['error_reason']} ({rec['error_message'][:120]})"
            )
    return "\n".join(lines)


def _jsonl_records(folder: str, run_id: str, suffix: str = ".jsonl") -> list[dict]:
    pattern = FileSystems.join(folder, f"run-{run_id}*{suffix}")
    out: list[dict] = []
    for m in FileSystems.match([pattern])[0].metadata_list:
        with FileSystems.open(m.path) as f:
            out.extend(json.loads(line) for line in f.read().decode().splitlines() if line.strip())
    return out
