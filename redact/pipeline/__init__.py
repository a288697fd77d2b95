"""The redaction job as a Beam graph, by role: :mod:`~redact.pipeline.job` (the run's spec
and shared rows), :mod:`~redact.pipeline.sources` (listing, admission, catalog, manual table),
:mod:`~redact.pipeline.skip` (markers), :mod:`~redact.pipeline.prepare` (read, decode, tile),
:mod:`~redact.pipeline.detect` (RunInference), :mod:`~redact.pipeline.breaker` (run-level
breaker), :mod:`~redact.pipeline.publish` (redact and write, via :func:`redact.core.redact_image`),
:mod:`~redact.pipeline.graph` (the DAG) and :mod:`~redact.pipeline.sinks`."""

from redact.pipeline.graph import build_pipeline
from redact.pipeline.job import NAMESPACE, JobSpec, run_info
from redact.pipeline.prepare import resolve_projection
from redact.pipeline.sinks import add_sinks

__all__ = ["NAMESPACE", "JobSpec", "add_sinks", "build_pipeline", "resolve_projection", "run_info"]
