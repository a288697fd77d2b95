"""Publication: join an image's tiles, wait for the run's breaker, then redact and write.

``Collect`` checks that every tile of an image was detected (else the image is quarantined)
and counts its raw candidates for the breaker. ``Publish`` runs only once the whole run's
detection is complete (the breaker's state is its side input): it re-reads the original
(checking its sha256 against the one the detector saw), calls :func:`redact.core.redact_image`
(everything that can fail; with the stage-2 post-processor of ``config.postprocess``, loaded
once per worker in ``setup``), writes the renditions (each atomically), removes stale files from
the renditions folder, writes the published copy atomically as the LAST step that can fail for
the image, and only then writes the marker: a copy is never published without its renditions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from redact.classes import Decision, ObjectClass
from redact.core import PIXEL_VERSION, Redacted, redact_image
from redact.detections import Detections
from redact.errors import ImageError, Stage
from redact.io.storage import read_bytes, write_atomic
from redact.manifest import RunInfo
from redact.pipeline.breaker import BreakerState
from redact.pipeline.job import NAMESPACE, JobSpec, failed_row, progress
from redact.records import ImageRecord, TileFailure, TileResult
from redact.renditions import Rendition, renditions_folder
from redact.season.location import Location
from redact.season.manual import ManualRegion, regions_hash
from redact.season.markers import Marker, marker_uri, row_to_json, write_marker

if TYPE_CHECKING:
    from redact.postprocess import Rescorer

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detected:
    """An image whose every tile was detected, waiting for publication."""

    record: ImageRecord
    tiles: tuple[Detections, ...]  # per tile, image pixels
    infer_s: float
    location: Location | None
    manual: tuple[ManualRegion, ...]

    @property
    def n_candidates(self) -> int:
        return sum(len(d) for d in self.tiles)


def _record_fields(rec: ImageRecord) -> dict[str, Any]:
    return {
        "sha256": rec.sha256,
        "width": rec.width,
        "height": rec.height,
        "format": rec.format,
        "projection": rec.projection.value,
        "tiles": rec.n_tiles,
        "timings_s": dict(rec.timings_s),
    }


class Collect(beam.DoFn):
    """``(uri, {image, tiles, [location], [manual]})`` -> :class:`Detected`; tagged
    ``failed``: manifest rows of images with a failed or missing tile."""

    FAILED = "failed"

    def __init__(self, job: JobSpec, run: RunInfo) -> None:
        self._job = job
        self._run = run
        self._failed = Metrics.counter(NAMESPACE, "images_failed")

    def process(self, element: tuple[str, dict[str, list[Any]]]) -> Iterator[Any]:
        # An image without a record failed before tiling (its row came from PrepareImage).
        for rec in list(element[1]["image"])[:1]:
            yield self._collect(element[0], rec, element[1])

    def _collect(self, uri: str, rec: ImageRecord, groups: dict[str, list[Any]]) -> Any:
        results: list[TileResult | TileFailure] = list(groups["tiles"])
        try:
            ok = self._check_tiles(rec, results)
        except ImageError as e:
            self._failed.inc()
            progress(self._job).tick("failed")
            _LOG.warning("quarantined %s: %s", uri, e)
            return beam.pvalue.TaggedOutput(
                self.FAILED, failed_row(self._run, self._job, uri, e, **_record_fields(rec))
            )
        locations: list[Location] = list(groups.get("location", ()))
        if len(locations) > 1:
            _LOG.warning("%s is %d times in the catalog; using the first", uri, len(locations))
        manual = tuple({r.region_id: r for r in groups.get("manual", ())}.values())
        ordered = sorted(ok, key=lambda r: r.index)
        return Detected(
            record=rec,
            tiles=tuple(r.detections for r in ordered),
            infer_s=float(sum(r.seconds for r in ordered)),
            location=locations[0] if locations else None,
            manual=manual,
        )

    @staticmethod
    def _check_tiles(rec: ImageRecord, results: list[TileResult | TileFailure]) -> list[TileResult]:
        failures = [r for r in results if isinstance(r, TileFailure)]
        if failures:
            raise ImageError(
                "inference_failed",
                f"{len(failures)} tile(s) failed: {failures[0].message}",
                Stage.INFER,
            )
        ok = [r for r in results if isinstance(r, TileResult)]
        if len({r.index for r in ok}) != rec.n_tiles:
            raise ImageError(
                "missing_tiles", f"got detections for {len(ok)} of {rec.n_tiles} tiles", Stage.INFER
            )
        return ok


class Publish(beam.DoFn):
    """:class:`Detected` + the run's :class:`BreakerState` (side input) -> manifest row;
    tagged ``quarantine``-worthy failures come out as ``failed`` rows too (one stream)."""

    def __init__(self, job: JobSpec, run: RunInfo) -> None:
        self._job = job
        self._run = run
        self._rescorer: Rescorer | None = None
        self._rescorer_error = ""
        self._published = Metrics.counter(NAMESPACE, "images_published")
        self._failed = Metrics.counter(NAMESPACE, "images_failed")
        self._stopped = Metrics.counter(NAMESPACE, "images_stopped_by_breaker")
        self._review = Metrics.counter(NAMESPACE, "review_band_detections")
        self._located = Metrics.counter(NAMESPACE, "images_located")
        self._markers = Metrics.counter(NAMESPACE, "markers_written")
        self._marker_failures = Metrics.counter(NAMESPACE, "marker_failures")
        self._stage_ms = {
            s: Metrics.distribution(NAMESPACE, f"{s}_ms")
            for s in ("infer", "merge", "blur", "encode", "write")
        }
        self._by_class = {
            (c, d): Metrics.counter(NAMESPACE, f"detections_{c.label}_{d.value}")
            for c in ObjectClass
            for d in Decision
        }

    def setup(self) -> None:
        """Load the stage-2 post-processor once per worker (registry, sha256, canary). If it
        cannot be used, every image of this worker is quarantined (never published with
        fewer blurs), with the reason."""
        if not self._job.config.postprocess.enabled:
            return
        from redact.postprocess import load_rescorer

        try:
            self._rescorer = load_rescorer(self._job.config)
        except Exception as e:  # kept and raised per image: each one is quarantined
            self._rescorer_error = " ".join(str(e).split()) or type(e).__name__
            _LOG.error("post-processor unavailable, quarantining: %s", self._rescorer_error)

    def _stage2(self) -> Rescorer | None:
        if self._rescorer_error:
            raise ImageError(
                "postprocess_unavailable",
                f"post-processor unavailable: {self._rescorer_error}",
                Stage.MERGE,
            )
        if self._job.config.postprocess.enabled and self._rescorer is None:
            raise ImageError("postprocess_unavailable", "post-processor not loaded", Stage.MERGE)
        return self._rescorer

    def process(self, item: Detected, breaker: BreakerState) -> Iterator[dict]:
        rec = item.record
        if breaker.open:
            self._stopped.inc()
            self._failed.inc()
            err = ImageError("breaker_open", f"publication stopped: {breaker.reason}", Stage.WRITE)
            yield failed_row(self._run, self._job, rec.uri, err, **_record_fields(rec))
            return
        cfg = self._job.config
        try:
            rescorer = self._stage2()
            original = read_bytes(
                rec.uri, retries=cfg.io.read_retries, backoff_s=cfg.io.retry_backoff_s
            )
            record = _with_infer_time(rec, item.infer_s)
            out = redact_image(
                original,
                item.tiles,
                cfg,
                record,
                self._run,
                manual=item.manual,
                catalog_location=item.location,
                rescorer=rescorer,
            )
            write_s = self._write(rec.output_uri, out.data, out.renditions)
        except Exception as e:  # quarantine; nothing was published for this image
            self._failed.inc()
            progress(self._job).tick("failed")
            _LOG.warning("quarantined %s: %s", rec.uri, e)
            yield failed_row(self._run, self._job, rec.uri, e, **_record_fields(rec))
            return
        row = {**out.row, "timings_s": [*out.row["timings_s"], ("write", write_s)]}
        self._count(out, row)
        if self._job.markers:
            self._write_marker(rec, row, item.manual)
        yield row

    def _write(self, uri: str, data: bytes, renditions: tuple[Rendition, ...] = ()) -> float:
        """Renditions first, then stale renditions removed, then the copy itself."""
        cfg = self._job.config
        t0 = time.perf_counter()
        for r in renditions:
            write_atomic(
                r.uri, r.data, retries=cfg.io.read_retries, backoff_s=cfg.io.retry_backoff_s
            )
        remove_stale_renditions(renditions_folder(uri), {r.uri for r in renditions})
        write_atomic(uri, data, retries=cfg.io.read_retries, backoff_s=cfg.io.retry_backoff_s)
        return time.perf_counter() - t0

    def _count(self, out: Redacted, row: dict) -> None:
        timings = dict(row["timings_s"])
        for stage, dist in self._stage_ms.items():
            dist.update(int(timings.get(stage, 0.0) * 1000))
        for d in row["detections"]:
            self._by_class[(ObjectClass.parse(d["class"]), Decision(d["decision"]))].inc()
        self._review.inc(sum(d is Decision.REVIEW for d in out.decisions))
        self._published.inc()
        if row["location_source"] != "none":
            self._located.inc()
        progress(self._job).tick("published")
        _LOG.info(
            "published %s: %d face(s), %d plate(s) blurred (%d manual), %d tiles, %.2fs",
            row["relative_path"],
            out.n_faces,
            out.n_plates,
            out.n_manual,
            row["tiles"],
            sum(timings.values()),
        )

    def _write_marker(self, rec: ImageRecord, row: dict, manual: tuple[ManualRegion, ...]) -> None:
        """Written after the published copy. A failure is logged and counted, not fatal: the
        copy is correct, and without a marker the next run simply re-does the image."""
        cfg = self._job.config
        marker = Marker(
            source_uri=rec.uri,
            relative_path=rec.relative_path,
            size_bytes=rec.size_bytes,
            last_updated=rec.last_updated,
            sha256=rec.sha256,
            models_hash=self._run.models_hash,
            config_hash=self._run.config_hash_for(rec.projection.value),
            run_id=self._run.run_id,
            output_uri=rec.output_uri,
            output_sha256=row["output_sha256"],
            manual_hash=regions_hash(manual),
            published_at=row["processed_at"].isoformat(),
            pixel_version=PIXEL_VERSION,
            row=row_to_json(row),
        )
        try:
            write_marker(
                marker_uri(self._job.markers, rec.relative_path),
                marker,
                retries=cfg.io.read_retries,
                backoff_s=cfg.io.retry_backoff_s,
            )
            self._markers.inc()
        except Exception as e:  # see the docstring: re-done next run
            self._marker_failures.inc()
            _LOG.warning("published %s but could not write its marker: %s", rec.relative_path, e)


def remove_stale_renditions(folder: str, keep: set[str]) -> int:
    """Delete every file under ``folder`` that is not in ``keep`` (uris); returns how many.

    Older runs' renditions (another tile size, an older, less blurred copy: a face found
    since by a person) must not stay reachable next to the new ones. Runs also when renditions
    are off (``keep`` empty): the folder of a copy re-published without renditions is emptied.
    Raises ImageError (stage WRITE) when the folder cannot be listed or a file deleted.
    """
    try:
        found = FileSystems.match([FileSystems.join(folder, "**")])[0].metadata_list
        stale = sorted(m.path for m in found if m.path not in keep)
        if stale:
            FileSystems.delete(stale)
    except Exception as e:  # the image is quarantined: stale tiles would stay reachable
        raise ImageError(
            "renditions_failed", f"cannot remove stale renditions in {folder}: {e}", Stage.WRITE
        ) from e
    return len(stale)


def _with_infer_time(rec: ImageRecord, infer_s: float) -> ImageRecord:
    return replace(rec, timings_s={**rec.timings_s, "infer": infer_s})
