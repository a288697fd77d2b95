"""The redaction DAG (same graph on DirectRunner and Dataflow).

::

    MatchFiles (or a listed selection) -> Reshuffle -> CheckMarker (skip what is published:
    before any read) -> PrepareImage --tiles--> RunInference(Keyed(detector)) [GPU hint]
                                      |                        |            \\--failed--> TileErrors
                                      |--images--------------- | -------------------------\\
                                      |                     ToImageSpace                     CoGroupByKey(uri)
                                      \\--failed--> rows                                      -> FinalizeImage
                                                                            (merge, decide, blur, encode, write)
                                                                            -> manifest rows + quarantine records

An image is published only if every one of its tiles was detected successfully; any failure
sends it to quarantine (never an unblurred copy) and the job goes on. The CoGroupByKey also
joins the sidecar catalog's locations and the manual regions table (keyed by image uri);
FinalizeImage blurs manual regions whatever the detector says and writes a marker per
published image (:mod:`redact.season.markers`). The manifest rows feed the review table
(:mod:`redact.season.review`) and the per-shard alerts (:mod:`redact.season.alerts`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference

from redact import __version__
from redact.blur import blur_regions
from redact.classes import Decision, ObjectClass, Projection
from redact.config import RedactConfig
from redact.decision import select_regions
from redact.detections import Detections
from redact.errors import ImageError, Stage
from redact.io.codec import decode_image, encode_image
from redact.io.storage import InputSpec, is_under, output_uri, read_bytes, write_atomic
from redact.io.xmp import gpano_projection
from redact.manifest import SCHEMA, ImageOutcome, RunInfo, Status, make_row
from redact.records import ImageRecord, TileFailure, TileKey, TileResult
from redact.season.alerts import Alert, image_alerts, shard_alerts, shard_of, shard_stats
from redact.season.location import (
    CatalogEntry,
    Location,
    LocationSource,
    cell_token,
    location_from_exif,
    parse_catalog,
)
from redact.season.manual import (
    ManualRegion,
    regions_from_parquet,
    regions_hash,
    table_pattern,
    to_detections,
)
from redact.season.markers import (
    Marker,
    fingerprint,
    marker_uri,
    models_hash,
    read_marker,
    reattributed,
    row_from_json,
    row_to_json,
    verdict,
    write_marker,
)
from redact.season.review import REVIEW_SCHEMA, review_items
from redact.tiling import (
    RemapCache,
    Tile,
    plan_panorama_tiles,
    plan_perspective_tiles,
    render_tile,
    tile_boxes_to_image,
)

_LOG = logging.getLogger(__name__)
NAMESPACE = "redact"
EQUIRECT_ASPECT_TOLERANCE = 0.01  # |W/H - 2| / 2
# Default io.equirect_min_width: untagged 2:1 images narrower than this are photos (the
# smallest common 360 deg exports are 2000-2048 px wide).
MIN_EQUIRECT_WIDTH = 2000


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


@dataclass(frozen=True)
class SourceImage(ImageRecord):
    """An ImageRecord that also keeps the listing's fingerprint of its source (for markers)."""

    size_bytes: int = -1
    last_updated: float | None = None  # seconds since the epoch; None = unknown


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


def _progress(job: JobSpec) -> _Progress:
    with _PROGRESS_LOCK:
        if job.run_id not in _PROGRESS:
            _PROGRESS[job.run_id] = _Progress(
                job.run_id, job.expected_images, job.config.season.progress_interval_s
            )
        return _PROGRESS[job.run_id]


def resolve_projection(
    requested: Projection,
    width: int,
    height: int,
    xmp: bytes | None = None,
    min_width: int = MIN_EQUIRECT_WIDTH,
) -> Projection:
    """``auto``: a 2:1 image whose XMP says ``GPano:ProjectionType`` equirectangular is a
    panorama; without that tag, a 2:1 image at least ``min_width`` px wide is one (config
    ``io.equirect_min_width``); anything else is a perspective photo. Small 2:1 photos (e.g.
    a 400x200 crowd shot) are not 360 deg panoramas: tiling them on the sphere and applying
    the panorama size prior would lose faces."""
    if requested is not Projection.AUTO:
        return requested
    two_to_one = abs(width / max(height, 1) - 2.0) / 2.0 <= EQUIRECT_ASPECT_TOLERANCE
    tagged = gpano_projection(xmp)
    if tagged is not None:  # a cropped (not 2:1) panorama is not a full sphere: a photo
        is_pano = tagged == "equirectangular" and two_to_one
    else:
        is_pano = two_to_one and width >= min_width
    return Projection.EQUIRECTANGULAR if is_pano else Projection.PERSPECTIVE


def _failed_row(
    run: RunInfo, job: JobSpec, uri: str, err: ImageError | Exception, **kw: Any
) -> dict:
    fallback_stage = kw.pop("stage", "unknown")
    reason = err.reason if isinstance(err, ImageError) else "internal_error"
    stage = err.stage.value if isinstance(err, ImageError) else fallback_stage
    try:
        rel = job.input.relative(uri)
    except ValueError:
        rel = uri
    outcome = ImageOutcome(
        image_uri=uri,
        relative_path=rel,
        output_uri="",
        status=Status.FAILED,
        error_reason=reason,
        error_stage=stage,
        error_message=str(err)[:2000],
        **kw,
    )
    return make_row(run, outcome, _now())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class CheckMarker(beam.DoFn):
    """Skip matched files already published from the same source with the same model set and
    config (decided from the marker alone, before the original is read).

    Main output: the ``FileMetadata`` of files to process. Tagged ``recovered``: manifest rows
    of skipped images whose publishing run never wrote its manifest (it was killed): they are
    re-emitted from the marker into this run's manifest, and the marker re-attributed.
    """

    RECOVERED = "recovered"

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

    def process(self, meta: FileMetadata) -> Iterator[Any]:
        t0 = time.perf_counter()
        try:
            rel = self._job.input.relative(meta.path)
            uri = marker_uri(self._job.markers, rel)
            marker = read_marker(uri)
        except Exception as e:  # cannot tell: process the image (the safe direction)
            _LOG.warning("marker check of %s failed, processing it: %s", meta.path, e)
            yield meta
            return
        v = verdict(
            marker,
            fingerprint(meta.size_in_bytes, meta.last_updated_in_seconds),
            models=self._run.models_hash,
            config=self._run.config_hash,
            force=self._job.force,
            run_id=self._job.run_id,
        )
        self._check_ms.update(int((time.perf_counter() - t0) * 1000))
        if not v.skip or marker is None:
            _LOG.debug("%s: %s", rel, v.value)
            yield meta
            return
        self._skipped.inc()
        _progress(self._job).tick("skipped")
        if marker.row and not self._manifest_written(marker.run_id):
            moved = reattributed(marker, self._job.run_id)
            write_marker(uri, moved)
            self._recovered.inc()
            yield beam.pvalue.TaggedOutput(
                self.RECOVERED, row_from_json(moved.row, self._job.run_id)
            )


class PrepareImage(beam.DoFn):
    """Read, hash, decode and tile one image.

    Main output: ``(uri, ImageRecord)``; tagged ``tiles``: ``(TileKey, (S,S,3) uint8)``;
    tagged ``failed``: manifest rows of images that could not be read or decoded.
    """

    TILES = "tiles"
    FAILED = "failed"

    def __init__(self, job: JobSpec, run: RunInfo) -> None:
        self._job = job
        self._run = run
        self._cache: RemapCache | None = None
        self._images = Metrics.counter(NAMESPACE, "images_read")
        self._tiles = Metrics.counter(NAMESPACE, "tiles")
        self._failed = Metrics.counter(NAMESPACE, "images_failed")
        self._decode_ms = Metrics.distribution(NAMESPACE, "decode_ms")
        self._tile_ms = Metrics.distribution(NAMESPACE, "tile_ms")

    def setup(self) -> None:
        self._cache = RemapCache()

    def process(self, element: Any) -> Iterator[Any]:
        meta = element if isinstance(element, FileMetadata) else None
        if isinstance(element, str):
            uri = element
        elif meta is not None:
            uri = meta.path
        else:
            uri = element.metadata.path
            meta = element.metadata
        source = fingerprint(meta.size_in_bytes, meta.last_updated_in_seconds) if meta else None
        cfg = self._job.config
        timings: dict[str, float] = {}
        self._images.inc()
        try:
            t0 = time.perf_counter()
            data = read_bytes(uri, retries=cfg.io.read_retries, backoff_s=cfg.io.retry_backoff_s)
            sha = hashlib.sha256(data).hexdigest()
            t1 = time.perf_counter()
            decoded = decode_image(data, max_pixels=cfg.io.max_pixels)
            t2 = time.perf_counter()
            timings["read"], timings["decode"] = t1 - t0, t2 - t1
            w, h = decoded.width, decoded.height
            projection = resolve_projection(
                self._job.projection, w, h, decoded.xmp, cfg.io.equirect_min_width
            )
            wrap = projection is Projection.EQUIRECTANGULAR
            tiles: tuple[Tile, ...] = (
                plan_panorama_tiles(w, h, cfg.tiling)
                if wrap
                else plan_perspective_tiles(w, h, cfg.tiling)
            )
            rel = self._job.input.relative(uri)
            out = output_uri(self._job.output, rel)
        except Exception as e:  # any failure: quarantined with its reason, never published
            self._failed.inc()
            _progress(self._job).tick("failed")
            _LOG.warning("quarantined %s: %s", uri, e)
            yield beam.pvalue.TaggedOutput(
                self.FAILED, _failed_row(self._run, self._job, uri, e, stage="read")
            )
            return
        self._decode_ms.update(int(timings["decode"] * 1000))
        if self._cache is None:  # setup() normally made it
            self._cache = RemapCache()
        # Tiles are rendered lazily (one at a time) to keep memory flat; a failure here leaves the
        # image with fewer tiles than announced, which FinalizeImage quarantines. Only rendering
        # is timed: in a fused stage each yield runs the downstream inference inline.
        render_s = 0.0
        yielded = 0
        for i, tile in enumerate(tiles):
            t3 = time.perf_counter()
            pixels = render_tile(decoded.pixels, tile, self._cache)
            render_s += time.perf_counter() - t3
            yield beam.pvalue.TaggedOutput(self.TILES, (TileKey(uri, i, tile, w, h, wrap), pixels))
            yielded += 1
        timings["tile"] = render_s
        self._tile_ms.update(int(render_s * 1000))
        self._tiles.inc(yielded)
        yield (
            uri,
            SourceImage(
                uri=uri,
                relative_path=rel,
                output_uri=out,
                data=data,
                sha256=sha,
                width=w,
                height=h,
                format=decoded.format.value,
                projection=projection,
                n_tiles=len(tiles),
                timings_s=timings,
                size_bytes=source.size_bytes if source else len(data),
                last_updated=source.last_updated if source else None,
            ),
        )


def to_image_space(element: tuple[TileKey, Any]) -> tuple[str, TileResult | TileFailure]:
    """Map one tile's detections from tile pixels to image pixels (seam-aware)."""
    key, prediction = element
    try:
        inference = prediction.inference
        dets: Detections = inference.detections
        boxes, src = tile_boxes_to_image(key.tile, dets.xyxy, key.width, key.height, key.wrap)
        mapped = dets[src].with_boxes(boxes) if len(src) else Detections.empty()
        return key.image_uri, TileResult(key.index, mapped, float(inference.seconds))
    except Exception as e:  # reported per tile; FinalizeImage quarantines the image
        _LOG.exception("mapping tile %d of %s failed", key.index, key.image_uri)
        return key.image_uri, TileFailure(key.index, f"{type(e).__name__}: {e}")


def failed_batch_to_tiles(failed: tuple[Any, Exception]) -> Iterator[tuple[str, TileFailure]]:
    """RunInference's dead letters are whole batches: fail every tile in them."""
    batch, exc = failed
    for item in batch:
        key = item[0]
        yield (
            key.image_uri,
            TileFailure(key.index, f"inference failed: {type(exc).__name__}: {exc}"),
        )


class FinalizeImage(beam.DoFn):
    """Merge, decide, blur (detections + manual regions), encode and publish one image; write
    its marker; emit its manifest row.

    Groups: ``image`` (ImageRecord), ``tiles`` (TileResult | TileFailure), optional
    ``location`` (catalog Location) and ``manual`` (ManualRegion).
    Tagged output ``quarantine``: JSON lines for images that were not published.
    """

    QUARANTINE = "quarantine"

    def __init__(self, job: JobSpec, run: RunInfo) -> None:
        self._job = job
        self._run = run
        self._published = Metrics.counter(NAMESPACE, "images_published")
        self._failed = Metrics.counter(NAMESPACE, "images_failed")
        self._review = Metrics.counter(NAMESPACE, "review_band_detections")
        self._located = Metrics.counter(NAMESPACE, "images_located")
        self._unlocated = Metrics.counter(NAMESPACE, "images_without_location")
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

    def process(self, element: tuple[str, dict[str, list[Any]]]) -> Iterator[Any]:
        uri, groups = element
        records: list[ImageRecord] = list(groups["image"])
        if not records:
            return  # failed before tiling (its row came from PrepareImage), or not in this run
        rec = records[0]
        results: list[TileResult | TileFailure] = list(groups["tiles"])
        locations: list[Location] = list(groups.get("location", ()))
        if len(locations) > 1:
            _LOG.warning("%s is %d times in the catalog; using the first", uri, len(locations))
        manual = list({r.region_id: r for r in groups.get("manual", ())}.values())
        try:
            row = self._publish(rec, results, locations[0] if locations else None, manual)
        except Exception as e:  # quarantine; never publish an image that was not fully processed
            self._failed.inc()
            _progress(self._job).tick("failed")
            _LOG.warning("quarantined %s: %s", uri, e)
            row = _failed_row(
                self._run,
                self._job,
                uri,
                e,
                sha256=rec.sha256,
                width=rec.width,
                height=rec.height,
                format=rec.format,
                projection=rec.projection.value,
                tiles=rec.n_tiles,
                timings_s=dict(rec.timings_s),
            )
            yield beam.pvalue.TaggedOutput(self.QUARANTINE, _quarantine_line(row))
        yield row

    def _publish(
        self,
        rec: ImageRecord,
        results: list[TileResult | TileFailure],
        catalog_location: Location | None,
        manual: list[ManualRegion],
    ) -> dict:
        cfg = self._job.config
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
        timings = dict(rec.timings_s)
        timings["infer"] = float(sum(r.seconds for r in ok))
        wrap = rec.projection is Projection.EQUIRECTANGULAR

        t0 = time.perf_counter()
        found, found_decisions = select_regions(
            [r.detections for r in ok], cfg, rec.width, rec.height, wrap=wrap
        )
        # Manual regions are blurred whatever the detector says.
        pinned = to_detections(manual, rec.width, rec.height, wrap=wrap)
        kept = Detections.merge([found, pinned])
        decisions = [*found_decisions, *([Decision.MANUAL] * len(pinned))]
        t1 = time.perf_counter()
        to_blur = kept[np.array([d.blurs for d in decisions], dtype=bool)] if len(kept) else kept

        # Plain (not fancy) chroma upsampling re-encodes closer to the original (docs/performance.md).
        decoded = decode_image(rec.data, max_pixels=cfg.io.max_pixels, fast_upsample=True)
        t2 = time.perf_counter()
        pixels, mask = blur_regions(
            decoded.pixels, to_blur.xyxy, cfg.blur, wrap=wrap, classes=to_blur.class_id
        )
        t3 = time.perf_counter()
        encoded = encode_image(
            decoded,
            pixels,
            jpeg_quality=cfg.output.jpeg_quality,
            keep_metadata=cfg.output.keep_metadata,
        )
        t4 = time.perf_counter()
        write_atomic(
            rec.output_uri, encoded, retries=cfg.io.read_retries, backoff_s=cfg.io.retry_backoff_s
        )
        t5 = time.perf_counter()
        timings.update(
            merge=t1 - t0,
            decode=timings.get("decode", 0.0) + (t2 - t1),
            blur=t3 - t2,
            encode=t4 - t3,
            write=t5 - t4,
        )
        for stage in self._stage_ms:
            self._stage_ms[stage].update(int(timings[stage] * 1000))
        for cls_id, d in zip(kept.class_id, decisions, strict=True):
            self._by_class[(ObjectClass(int(cls_id)), d)].inc()
        self._review.inc(sum(d is Decision.REVIEW for d in decisions))
        self._published.inc()
        _progress(self._job).tick("published")
        location = catalog_location or location_from_exif(decoded)
        (self._located if location else self._unlocated).inc()
        n_faces = sum(
            1
            for c, d in zip(kept.class_id, decisions, strict=True)
            if d.blurs and c == ObjectClass.FACE
        )
        n_plates = sum(
            1
            for c, d in zip(kept.class_id, decisions, strict=True)
            if d.blurs and c != ObjectClass.FACE
        )
        _LOG.info(
            "published %s: %d face(s), %d plate(s) blurred (%d manual), %d tiles, %.2fs",
            rec.relative_path,
            n_faces,
            n_plates,
            len(pinned),
            rec.n_tiles,
            sum(timings.values()),
        )
        level = cfg.season.s2_level
        outcome = ImageOutcome(
            image_uri=rec.uri,
            relative_path=rec.relative_path,
            output_uri=rec.output_uri,
            status=Status.PUBLISHED,
            sha256=rec.sha256,
            output_sha256=hashlib.sha256(encoded).hexdigest(),
            width=rec.width,
            height=rec.height,
            format=rec.format,
            projection=rec.projection.value,
            tiles=rec.n_tiles,
            detections=kept,
            decisions=decisions,
            blurred_fraction=float(np.count_nonzero(mask)) / float(mask.size) if mask.size else 0.0,
            timings_s=timings,
            latitude=location.latitude if location else None,
            longitude=location.longitude if location else None,
            captured_at=location.captured_at if location else "",
            camera=location.camera if location else "",
            location_source=(location.source if location else LocationSource.NONE).value,
            s2_cell=cell_token(location.latitude, location.longitude, level) if location else "",
            s2_level=level if location else None,
            manual_regions=[r.manifest_entry() for r in manual],
        )
        row = make_row(self._run, outcome, _now())
        if self._job.markers:
            self._write_marker(rec, row, manual)
        return row

    def _write_marker(self, rec: ImageRecord, row: dict, manual: list[ManualRegion]) -> None:
        """Written after the published copy. A failure is logged and counted, not fatal: the
        copy is correct, and without a marker the next run simply re-does the image."""
        cfg = self._job.config
        marker = Marker(
            source_uri=rec.uri,
            relative_path=rec.relative_path,
            size_bytes=getattr(rec, "size_bytes", len(rec.data)),
            last_updated=getattr(rec, "last_updated", None),
            sha256=rec.sha256,
            models_hash=self._run.models_hash,
            config_hash=self._run.config_hash,
            run_id=self._run.run_id,
            output_uri=rec.output_uri,
            output_sha256=row["output_sha256"],
            manual_hash=regions_hash(manual),
            published_at=row["processed_at"].isoformat(),
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


def _quarantine_line(row: dict) -> str:
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


def _wanted(job: JobSpec, path: str) -> bool:
    lower = path.lower()
    if not any(lower.endswith(ext) for ext in job.config.io.extensions):
        return False
    # Never re-ingest what this tool writes (output, manifest, quarantine, ...) if under SRC.
    name = path.rsplit("/", 1)[-1]
    if ".redact-tmp-" in name:
        return False
    own = (
        job.output,
        job.manifest,
        job.quarantine,
        job.markers,
        job.manual,
        job.review,
        job.alerts,
    )
    return not any(is_under(path, d) for d in own if d)


def _catalog_locations(job: JobSpec, data: bytes, path: str) -> Iterator[tuple[str, Location]]:
    """Catalog entries keyed by image uri (relative paths resolved against the input base)."""
    entry: CatalogEntry
    for entry in parse_catalog(data, path):
        if entry.is_uri:
            key = entry.key if "://" in entry.key else os.path.abspath(entry.key)
        else:
            key = job.uri_for(entry.key)
        yield key, entry.location


def _read_catalog(p: beam.Pipeline, job: JobSpec) -> beam.PCollection:
    return (
        p
        | "MatchCatalog" >> fileio.MatchFiles(job.catalog)
        | "ReadCatalog" >> fileio.ReadMatches()
        | "ParseCatalog"
        >> beam.FlatMap(lambda f: _catalog_locations(job, f.read(), f.metadata.path))
    )


def _read_manual(p: beam.Pipeline, job: JobSpec) -> beam.PCollection:
    return (
        p
        | "MatchManual"
        >> fileio.MatchFiles(
            table_pattern(job.manual), empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW
        )
        | "ReadManual" >> fileio.ReadMatches()
        | "ParseManual" >> beam.FlatMap(lambda f: regions_from_parquet(f.read()))
        | "KeyManual" >> beam.Map(lambda r: (job.uri_for(r.relative_path), r))
    )


def _list_inputs(p: beam.Pipeline, job: JobSpec) -> beam.PCollection:
    """FileMetadata of the candidate images: the input pattern, or the listed selection."""
    if job.files:
        return (
            p
            | "ReadSelection" >> beam.io.ReadFromText(job.files)
            | "Uris" >> beam.Map(str.strip)
            | "NonEmpty" >> beam.Filter(bool)
            | "MatchSelection"
            >> fileio.MatchAll(empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
        )
    return p | "Match" >> fileio.MatchFiles(
        job.input.pattern, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW
    )


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
    p: beam.Pipeline, job: JobSpec, run: RunInfo, handler: ModelHandler
) -> dict[str, beam.PCollection]:
    """Add the redaction DAG to ``p``.

    Returns PCollections: ``rows`` (manifest rows), ``quarantine`` (JSON lines), ``review``
    (review-table rows) and ``alerts`` (JSON lines).
    """
    files = (
        _list_inputs(p, job)
        | "KeepImages" >> beam.Filter(lambda m: _wanted(job, m.path))
        | "Spread" >> beam.Reshuffle()
    )
    if job.markers:
        checked = files | "SkipPublished" >> beam.ParDo(CheckMarker(job, run)).with_outputs(
            CheckMarker.RECOVERED, main="todo"
        )
        todo, recovered = checked["todo"], [checked[CheckMarker.RECOVERED]]
    else:
        todo, recovered = files, []
    prepared = todo | "Prepare" >> beam.ParDo(PrepareImage(job, run)).with_outputs(
        PrepareImage.TILES, PrepareImage.FAILED, main="images"
    )
    detect: RunInference = RunInference(KeyedModelHandler(handler))
    if job.accelerator:
        # Only this step asks for GPU workers (Dataflow right-fitting); a local run ignores it.
        # (with_resource_hints returns the same transform.)
        detect.with_resource_hints(accelerator=job.accelerator)
    inferred, dlq = prepared[PrepareImage.TILES] | "Detect" >> detect.with_exception_handling()
    tile_results = inferred | "ToImageSpace" >> beam.Map(to_image_space)
    tile_errors = dlq.failed_inferences | "FailedBatches" >> beam.FlatMap(failed_batch_to_tiles)
    all_tiles = (tile_results, tile_errors) | "AllTiles" >> beam.Flatten()
    groups: dict[str, beam.PCollection] = {"image": prepared["images"], "tiles": all_tiles}
    if job.catalog:
        groups["location"] = _read_catalog(p, job)
    if job.manual:
        groups["manual"] = _read_manual(p, job)
    finalized = (
        groups
        | "JoinByImage" >> beam.CoGroupByKey()
        | "Finalize"
        >> beam.ParDo(FinalizeImage(job, run)).with_outputs(FinalizeImage.QUARANTINE, main="rows")
    )
    rows = (
        finalized["rows"],
        prepared[PrepareImage.FAILED],
        *recovered,
    ) | "AllRows" >> beam.Flatten()
    failed_lines = prepared[PrepareImage.FAILED] | "FailedLines" >> beam.Map(_quarantine_line)
    quarantine = (
        finalized[FinalizeImage.QUARANTINE],
        failed_lines,
    ) | "AllQuarantine" >> beam.Flatten()
    review = rows | "ReviewItems" >> beam.FlatMap(review_items)
    alerts = (
        rows
        | "SlimRows" >> beam.Map(_slim)
        | "AllSlimRows" >> beam.combiners.ToList()
        | "Alerts" >> beam.FlatMap(lambda rs: [a.to_json() for a in _alerts(rs, job)])
    )
    return {"rows": rows, "quarantine": quarantine, "review": review, "alerts": alerts}


def add_sinks(
    rows: beam.PCollection,
    quarantine: beam.PCollection,
    job: JobSpec,
    review: beam.PCollection | None = None,
    alerts: beam.PCollection | None = None,
) -> None:
    """Write the manifest (Parquet, one file set per run: never overwrites), the quarantine
    list, and (when their folders are set) the review table and the alerts."""
    rows | "WriteManifest" >> beam.io.WriteToParquet(
        FileSystems.join(job.manifest, f"run-{job.run_id}"),
        SCHEMA,
        file_name_suffix=".parquet",
    )
    quarantine | "WriteQuarantine" >> beam.io.WriteToText(
        FileSystems.join(job.quarantine, f"run-{job.run_id}"), file_name_suffix=".jsonl"
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


def run_info(job: JobSpec, models: Iterable[dict[str, str]]) -> RunInfo:
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
    )
