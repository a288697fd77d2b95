"""The redaction DAG (same graph on DirectRunner and Dataflow).

::

    list candidates -> key by output path -> Admit (names, collisions, listing problems)
      -> CheckMarker (skip what is published: before any read; side input: manual hashes)
      -> PrepareImage --tiles--> RunInference(Keyed(detector)) -> image space
         [PrepareImage and RunInference: the GPU hint on Dataflow, one fused stage]
             |                                           \\--failed batches--> tile failures
             \\--images--- CoGroupByKey(uri) with tiles, catalog locations, manual regions
                               -> Collect (all tiles detected?) --> breaker tally (whole run)
                               -> Publish [side input: breaker state]: re-read, redact_image,
                                  atomic write, marker -> manifest rows

An image is published only if every one of its tiles was detected successfully and the run's
breaker is closed; any failure sends it to quarantine (never an unblurred copy) and the job
goes on. Every listed path ends in exactly one manifest row: published, skipped or failed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler

from redact.manifest import RunInfo
from redact.pipeline.breaker import SumTallies, judge, tally_of_detected, tally_of_failed
from redact.pipeline.detect import detect_tiles, on_accelerator
from redact.pipeline.job import NAMESPACE, JobSpec, failed_row, quarantine_line
from redact.pipeline.prepare import PrepareImage
from redact.pipeline.publish import Collect, Publish
from redact.pipeline.skip import CheckMarker
from redact.pipeline.sources import (
    Admit,
    Candidate,
    list_candidates,
    manual_hashes,
    output_key,
    read_catalog,
    read_manual,
)
from redact.season.alerts import Alert, image_alerts, shard_alerts, shard_of, shard_stats
from redact.season.review import review_items

_LOG = logging.getLogger(__name__)


def _alerts(rows: Iterable[dict], job: JobSpec) -> list[Alert]:
    """Alerts of the run's rows grouped by shard (see :mod:`redact.season.alerts`)."""
    by_shard: dict[str, list[dict]] = {}
    for r in rows:
        by_shard.setdefault(shard_of(r["relative_path"]), []).append(r)
    cfg = job.config.season
    stats = [shard_stats(shard, rs) for shard, rs in sorted(by_shard.items())]
    alerts = [a for s in stats for a in image_alerts(s, cfg)] + shard_alerts(stats, cfg)
    counter = Metrics.counter(NAMESPACE, "alerts")
    for a in alerts:
        _LOG.warning("ALERT %s: %s", a.kind.value, a.message)
        counter.inc()
    return alerts


def _slim(row: dict) -> dict:
    """What the shard alerts need of a manifest row."""
    return {k: row.get(k) for k in ("relative_path", "status", "n_blurred", "n_manual")}


def build_pipeline(
    p: beam.Pipeline,
    job: JobSpec,
    run: RunInfo,
    handler: ModelHandler,
    *,
    listed: Sequence[Candidate] | None = None,
) -> dict[str, beam.PCollection]:
    """Add the redaction DAG to ``p`` (``listed``: the local listing, when already made).

    Returns PCollections: ``rows`` (manifest rows), ``quarantine`` (JSON lines), ``review``
    (review-table rows), ``alerts`` (JSON lines) and ``breaker`` (one BreakerState).
    """
    admitted = (
        list_candidates(p, job, listed)
        | "KeyByOutput" >> beam.Map(lambda c: (output_key(job, c), c))
        | "GroupByOutput" >> beam.GroupByKey()  # also spreads the work
        | "Admit" >> beam.ParDo(Admit(job)).with_outputs(Admit.REJECTED, main="admitted")
    )
    rejected_rows = admitted[Admit.REJECTED] | "RejectedRows" >> beam.MapTuple(
        lambda cand, err: failed_row(run, job, cand.uri, err)
    )
    manual = read_manual(p, job) if job.manual else None
    skipped: list[beam.PCollection] = []  # rows of images a marker says are current
    todo = admitted["admitted"]
    if job.markers:
        hashes = manual_hashes(manual) if manual is not None else p | "NoManual" >> beam.Create([])
        checked = todo | "SkipPublished" >> beam.ParDo(
            CheckMarker(job, run), manual=beam.pvalue.AsDict(hashes)
        ).with_outputs(CheckMarker.ROWS, main="todo")
        todo = checked["todo"]
        skipped.append(checked[CheckMarker.ROWS])
    # PrepareImage renders the tiles on the workers that detect them (same GPU hint: one fused
    # stage): what crosses the shuffle to them is a Candidate (a path), not 68 rendered tiles
    # of 1.2 MB per 8000x4000 panorama.
    prepare = on_accelerator(beam.ParDo(PrepareImage(job, run)), p, job.accelerator)
    prepared = todo | "Prepare" >> prepare.with_outputs(
        PrepareImage.TILES, PrepareImage.FAILED, main="images"
    )
    tiles = detect_tiles(prepared[PrepareImage.TILES], handler, job.accelerator)
    groups: dict[str, beam.PCollection] = {"image": prepared["images"], "tiles": tiles}
    if job.catalog:
        groups["location"] = read_catalog(p, job)
    if manual is not None:
        groups["manual"] = manual
    collected = (
        groups
        | "JoinByImage" >> beam.CoGroupByKey()
        | "Collect" >> beam.ParDo(Collect(job, run)).with_outputs(Collect.FAILED, main="detected")
    )
    detected = collected["detected"]
    failed = (
        rejected_rows,
        prepared[PrepareImage.FAILED],
        collected[Collect.FAILED],
    ) | "FailedBeforePublish" >> beam.Flatten()
    tallies = (
        detected | "TallyDetected" >> beam.Map(lambda d: tally_of_detected(d.n_candidates)),
        failed | "TallyFailed" >> beam.Map(tally_of_failed),
    ) | "AllTallies" >> beam.Flatten()
    breaker = (
        tallies
        | "SumTallies" >> beam.CombineGlobally(SumTallies())
        | "Judge" >> beam.Map(judge, job.config.breaker)
    )
    published = detected | "Publish" >> beam.ParDo(
        Publish(job, run), breaker=beam.pvalue.AsSingleton(breaker)
    )
    rows = (published, failed, *skipped) | "AllRows" >> beam.Flatten()
    quarantine = (
        rows
        | "Quarantined" >> beam.Filter(lambda r: r["status"] == "failed")
        | "QuarantineLines" >> beam.Map(quarantine_line)
    )
    review = rows | "ReviewItems" >> beam.FlatMap(review_items)
    alerts = (
        rows
        | "SlimRows" >> beam.Map(_slim)
        | "AllSlimRows" >> beam.combiners.ToList()
        | "Alerts" >> beam.FlatMap(lambda rs: [a.to_json() for a in _alerts(rs, job)])
    )
    return {
        "rows": rows,
        "quarantine": quarantine,
        "review": review,
        "alerts": alerts,
        "breaker": breaker,
    }
