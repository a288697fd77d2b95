"""Sinks of a run: manifest (Parquet), quarantine list, review table, alerts, breaker state."""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from redact.manifest import SCHEMA
from redact.pipeline.breaker import BreakerState
from redact.pipeline.job import JobSpec
from redact.season.review import REVIEW_SCHEMA


def breaker_json(state: BreakerState) -> str:
    """One JSON line: the breaker's decision and the run's tally."""
    t = state.tally
    return json.dumps(
        {
            "open": state.open,
            "reason": state.reason,
            "images": t.images,
            "quarantined": t.quarantined,
            "no_candidates": t.no_candidates,
        },
        sort_keys=True,
    )


def add_sinks(
    rows: beam.PCollection,
    quarantine: beam.PCollection,
    job: JobSpec,
    review: beam.PCollection | None = None,
    alerts: beam.PCollection | None = None,
    breaker: beam.PCollection | None = None,
) -> None:
    """Write the manifest (Parquet, one file set per run: never overwrites), the quarantine
    list, and (when given and their folders are set) the review table, the alerts and the
    breaker state (``QUARANTINE/run-<id>-breaker*.json``, read by the run summary)."""
    rows | "WriteManifest" >> beam.io.WriteToParquet(
        FileSystems.join(job.manifest, f"run-{job.run_id}"),
        SCHEMA,
        file_name_suffix=".parquet",
    )
    quarantine | "WriteQuarantine" >> beam.io.WriteToText(
        FileSystems.join(job.quarantine, f"run-{job.run_id}"), file_name_suffix=".jsonl"
    )
    if breaker is not None:
        (
            breaker
            | "BreakerJson" >> beam.Map(breaker_json)
            | "WriteBreaker"
            >> beam.io.WriteToText(
                FileSystems.join(job.quarantine, f"run-{job.run_id}-breaker"),
                file_name_suffix=".json",
                shard_name_template="",
            )
        )
    if review is not None and job.review:
        review | "WriteReview" >> beam.io.WriteToParquet(
            FileSystems.join(job.review, f"run-{job.run_id}"),
            REVIEW_SCHEMA,
            file_name_suffix=".parquet",
        )
    if alerts is not None and job.alerts:
        alerts | "WriteAlerts" >> beam.io.WriteToText(
            FileSystems.join(job.alerts, f"run-{job.run_id}"), file_name_suffix=".jsonl"
        )
