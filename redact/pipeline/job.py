"""What a run is: its spec (where it reads and writes, with which config), the rows every image
shares, progress logging, and the manifest/quarantine rows of images that are not published."""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from apache_beam.io.filesystems import FileSystems

from redact import __version__
from redact.classes import Projection
from redact.config import RedactConfig
from redact.core import PIXEL_VERSION
from redact.errors import ImageError, Stage
from redact.io.inputs import RejectedName, safe_text
from redact.io.storage import InputSpec
from redact.manifest import ImageOutcome, RunInfo, Status, make_row
from redact.season.markers import models_hash

_LOG = logging.getLogger(__name__)
NAMESPACE = "redact"


@dataclass(frozen=True)
class JobSpec:
    """Where a run reads and writes, and with which config."""

    input: InputSpec
    output: str
    manifest: str
    quarantine: str
    projection: Projection
    run_id: str
    config: RedactConfig
    # Capture-season features; "" / False / 0 disables each (tests build bare JobSpecs).
    markers: str = ""  # marker folder (DST/_markers): skip published images, write markers
    manual: str = ""  # manual regions table folder (DST/_manual)
    review: str = ""  # review table folder (DST/_review)
    alerts: str = ""  # alert records folder (DST/_alerts)
    catalog: str = ""  # sidecar location catalog (CSV or Parquet)
    files: str = ""  # a text file listing the image uris to process instead of input.pattern
    force: bool = False  # re-do images whose marker is current (except this run's own)
    accelerator: str = ""  # Dataflow resource hint of the inference step ("" = none)
    expected_images: int = 0  # for the progress line (0 = unknown)

    def uri_for(self, relative_path: str) -> str:
        """The input uri of an image from its path relative to the input base."""
        base = self.input.base
        if not base:
            return relative_path
        return (
            FileSystems.join(base, relative_path)
            if "://" in base
            else os.path.join(base, relative_path)
        )

    @property
    def own_folders(self) -> tuple[str, ...]:
        """The folders this tool writes (never read back as inputs)."""
        own = (
            self.output,
            self.manifest,
            self.quarantine,
            self.markers,
            self.manual,
            self.review,
            self.alerts,
        )
        return tuple(d for d in own if d)


class _Progress:
    """Process-wide progress of one run: a log line at most every ``interval_s`` seconds.

    On the DirectRunner (one process) it is the run's progress; on Dataflow each worker logs
    its own share.
    """

    def __init__(self, run_id: str, total: int, interval_s: float) -> None:
        self._run_id, self._total, self._interval = run_id, total, interval_s
        self._counts = {"published": 0, "skipped": 0, "failed": 0}
        self._t0 = time.monotonic()
        self._last = self._t0
        self._lock = threading.Lock()

    def tick(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1
            now = time.monotonic()
            if now - self._last < self._interval:
                return
            self._last = now
            done = sum(self._counts.values())
            elapsed = now - self._t0
            of = f"/{self._total}" if self._total else ""
            eta = ""
            if self._total and done:
                eta = f", ETA {max(self._total - done, 0) * elapsed / done:.0f} s"
            _LOG.info(
                "progress %s: %d%s image(s) done (%d published, %d skipped, %d quarantined) "
                "in %.0f s%s",
                self._run_id,
                done,
                of,
                self._counts["published"],
                self._counts["skipped"],
                self._counts["failed"],
                elapsed,
                eta,
            )


_PROGRESS: dict[str, _Progress] = {}
_PROGRESS_LOCK = threading.Lock()


def progress(job: JobSpec) -> _Progress:
    """The process-wide progress logger of ``job``'s run."""
    with _PROGRESS_LOCK:
        if job.run_id not in _PROGRESS:
            _PROGRESS[job.run_id] = _Progress(
                job.run_id, job.expected_images, job.config.season.progress_interval_s
            )
        return _PROGRESS[job.run_id]


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def failed_row(
    run: RunInfo, job: JobSpec, uri: str, err: ImageError | Exception, **kw: Any
) -> dict:
    """The manifest row of an image that is not published (status ``failed``)."""
    fallback_stage = kw.pop("stage", "unknown")
    if isinstance(err, RejectedName):  # an unsafe name caught by output_uri
        err = ImageError(err.reason, str(err), Stage.READ)
    reason = err.reason if isinstance(err, ImageError) else "internal_error"
    stage = err.stage.value if isinstance(err, ImageError) else fallback_stage
    try:
        rel = job.input.relative(uri)
    except ValueError:
        rel = uri
    outcome = ImageOutcome(  # names of failed inputs may be anything: printable text only
        image_uri=safe_text(uri),
        relative_path=safe_text(rel),
        output_uri="",
        status=Status.FAILED,
        error_reason=reason,
        error_stage=stage,
        error_message=str(err)[:2000],
        **kw,
    )
    return make_row(run, outcome, now())


def quarantine_line(row: dict) -> str:
    """The quarantine record (JSON line) of a failed manifest row."""
    keys = (
        "run_id",
        "image_uri",
        "relative_path",
        "sha256",
        "error_stage",
        "error_reason",
        "error_message",
    )
    return json.dumps({k: row[k] for k in keys}, sort_keys=True)


def run_info(job: JobSpec, models: Iterable[dict[str, str]]) -> RunInfo:
    """What every manifest row of ``job`` shares."""
    cfg = job.config
    model_list = list(models)
    return RunInfo(
        run_id=job.run_id,
        models=model_list,
        config_hash=cfg.hash(),
        thresholds=[
            {"class": c.label, "blur": t.blur, "review": t.review, "floor": t.floor}
            for c, t in sorted(cfg.thresholds.items())
        ],
        redact_version=__version__,
        models_hash=models_hash(model_list),
        pixel_version=PIXEL_VERSION,
        config_hashes=cfg.projection_hashes(),
    )
