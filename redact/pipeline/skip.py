"""Skip what is already published (decided from the marker alone, before the original is read)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from redact.core import PIXEL_VERSION
from redact.io.storage import output_uri
from redact.manifest import ImageOutcome, RunInfo, Status, make_row
from redact.pipeline.job import NAMESPACE, JobSpec, now, progress
from redact.pipeline.sources import Candidate
from redact.renditions import renditions_folder
from redact.season.markers import (
    Verdict,
    fingerprint,
    marker_uri,
    read_marker,
    reattributed,
    renditions_present,
    row_from_json,
    verdict,
    write_marker,
)

_LOG = logging.getLogger(__name__)


class CheckMarker(beam.DoFn):
    """Skip candidates already published from the same source, models, config, manual regions
    and pixel algorithm, whose published copy (and, with renditions on, every rendition its
    marker lists) still exists.

    Side input ``manual``: ``{image uri: regions_hash}`` of the manual regions table as this
    run reads it. Main output: the candidates to process. Tagged ``rows``: manifest rows
    of skipped images: a ``skipped`` row naming the marker's run, or, when the publishing
    run never wrote its manifest (it was killed), the marker's own row re-emitted into this
    run's manifest (and the marker re-attributed).
    """

    ROWS = "rows"

    def __init__(self, job: JobSpec, run: RunInfo) -> None:
        self._job = job
        self._run = run
        self._skipped = Metrics.counter(NAMESPACE, "images_skipped")
        self._recovered = Metrics.counter(NAMESPACE, "rows_recovered")
        self._check_ms = Metrics.distribution(NAMESPACE, "skip_check_ms")
        self._has_manifest: dict[str, bool] = {}

    def _manifest_written(self, run_id: str) -> bool:
        """Whether the manifest holds run ``run_id``'s files (cached per worker)."""
        if run_id == self._job.run_id:
            return False  # this run's manifest is written at its end
        if run_id not in self._has_manifest:
            pattern = FileSystems.join(self._job.manifest, f"run-{run_id}-*.parquet")
            self._has_manifest[run_id] = bool(FileSystems.match([pattern])[0].metadata_list)
        return self._has_manifest[run_id]

    def process(self, cand: Candidate, manual: Mapping[str, str]) -> Iterator[Any]:
        # (a plain function does the routing: Beam warns about a process method that both
        # yields and returns, and one output per candidate needs no generator)
        yield from self._route(cand, manual)

    def _route(self, cand: Candidate, manual: Mapping[str, str]) -> list[Any]:
        """The one output of ``cand``: itself (to process) or a tagged manifest row."""
        t0 = time.perf_counter()
        try:
            rel = self._job.input.relative(cand.uri)
            uri = marker_uri(self._job.markers, rel)
            marker = read_marker(uri)
            out = output_uri(self._job.output, rel)
            exists = marker is not None and FileSystems.exists(out)

            def judge(renditions_exist: bool) -> Verdict:
                return verdict(
                    marker,
                    fingerprint(cand.size_bytes, cand.last_updated),
                    models=self._run.models_hash,
                    config=self._run.current_config_hashes(),
                    manual=manual.get(cand.uri, ""),
                    pixel_version=PIXEL_VERSION,
                    output_exists=exists,
                    force=self._job.force,
                    run_id=self._job.run_id,
                    renditions_exist=renditions_exist,
                )

            v = judge(True)
            # Listing the renditions folder (one storage LIST) only matters for an image that
            # would otherwise be skipped.
            if (
                v.skip
                and marker is not None
                and self._job.config.renditions.enabled
                and not renditions_present(marker, renditions_folder(out))
            ):
                v = judge(False)
        except Exception as e:  # cannot tell: process the image (the safe direction)
            _LOG.warning("marker check of %s failed, processing it: %s", cand.uri, e)
            return [cand]
        self._check_ms.update(int((time.perf_counter() - t0) * 1000))
        if not v.skip or marker is None:
            _LOG.debug("%s: %s", rel, v.value)
            return [cand]
        self._skipped.inc()
        progress(self._job).tick("skipped")
        if marker.row and not self._manifest_written(marker.run_id):
            moved = reattributed(marker, self._job.run_id)
            write_marker(uri, moved)
            self._recovered.inc()
            return [beam.pvalue.TaggedOutput(self.ROWS, row_from_json(moved.row, self._job.run_id))]
        outcome = ImageOutcome(
            image_uri=cand.uri,
            relative_path=rel,
            output_uri="",
            status=Status.SKIPPED,
            sha256=marker.sha256,
            output_sha256=marker.output_sha256,
            error_reason=v.value,
            error_message=f"published by run {marker.run_id} at {marker.published_at}; source, "
            "models, config, manual regions and pixel version unchanged",
            projection=str(marker.row.get("projection") or ""),
            config_hash=marker.config_hash,  # the standing copy's, not this run's
        )
        return [beam.pvalue.TaggedOutput(self.ROWS, make_row(self._run, outcome, now()))]
