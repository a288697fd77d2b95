"""The redaction DAG (same graph on DirectRunner and Dataflow).

::

    MatchFiles -> ReadMatches -> PrepareImage --tiles--> RunInference(Keyed(detector))
                                      |                        |            \\--failed--> TileErrors
                                      |--images--------------- | -------------------------\\
                                      |                     ToImageSpace                     CoGroupByKey(uri)
                                      \\--failed--> rows                                      -> FinalizeImage
                                                                            (merge, decide, blur, encode, write)
                                                                            -> manifest rows + quarantine records

An image is published only if every one of its tiles was detected successfully; any failure
sends it to quarantine (never an unblurred copy) and the job goes on.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference

from redact import __version__
from redact.blur import blur_regions
from redact.classes import Decision, ObjectClass, Projection
from redact.config import RedactConfig
from redact.decision import decide
from redact.detections import Detections
from redact.errors import ImageError, Stage
from redact.io.codec import decode_image, encode_image
from redact.io.storage import InputSpec, is_under, output_uri, read_bytes, write_atomic
from redact.manifest import SCHEMA, ImageOutcome, RunInfo, Status, make_row
from redact.merge import merge_detections
from redact.records import ImageRecord, TileFailure, TileKey, TileResult
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


def resolve_projection(requested: Projection, width: int, height: int) -> Projection:
    """``auto``: a 2:1 image is an equirectangular panorama, anything else a perspective photo."""
    if requested is not Projection.AUTO:
        return requested
    ratio = width / max(height, 1)
    return (
        Projection.EQUIRECTANGULAR
        if abs(ratio - 2.0) / 2.0 <= EQUIRECT_ASPECT_TOLERANCE
        else Projection.PERSPECTIVE
    )


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
        uri = element if isinstance(element, str) else element.metadata.path
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
            projection = resolve_projection(self._job.projection, w, h)
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
            ImageRecord(
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
    """Merge, decide, blur, encode and publish one image; emit its manifest row.

    Tagged output ``quarantine``: JSON lines for images that were not published.
    """

    QUARANTINE = "quarantine"

    def __init__(self, job: JobSpec, run: RunInfo) -> None:
        self._job = job
        self._run = run
        self._published = Metrics.counter(NAMESPACE, "images_published")
        self._failed = Metrics.counter(NAMESPACE, "images_failed")
        self._review = Metrics.counter(NAMESPACE, "review_band_detections")
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
            return  # failed before tiling: its row came from PrepareImage
        rec = records[0]
        results: list[TileResult | TileFailure] = list(groups["tiles"])
        try:
            row = self._publish(rec, results)
        except Exception as e:  # quarantine; never publish an image that was not fully processed
            self._failed.inc()
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

    def _publish(self, rec: ImageRecord, results: list[TileResult | TileFailure]) -> dict:
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
        raw = Detections.merge([r.detections for r in ok])
        raw = raw[raw.confidence >= cfg.score_floor]
        merged = merge_detections(raw, cfg.merge, float(rec.width) if wrap else None)
        kept, decisions = decide(merged, cfg.thresholds)
        t1 = time.perf_counter()
        to_blur = kept[np.array([d.blurs for d in decisions], dtype=bool)] if len(kept) else kept

        decoded = decode_image(rec.data, max_pixels=cfg.io.max_pixels)
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
            "published %s: %d face(s), %d plate(s) blurred, %d tiles, %.2fs",
            rec.relative_path,
            n_faces,
            n_plates,
            rec.n_tiles,
            sum(timings.values()),
        )
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
        )
        return make_row(self._run, outcome, _now())


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
    # Never re-ingest what this tool writes (output, manifest, quarantine) if they sit under SRC.
    name = path.rsplit("/", 1)[-1]
    if ".redact-tmp-" in name:
        return False
    return not any(is_under(path, d) for d in (job.output, job.manifest, job.quarantine))


def build_pipeline(
    p: beam.Pipeline, job: JobSpec, run: RunInfo, handler: ModelHandler
) -> dict[str, beam.PCollection]:
    """Add the redaction DAG to ``p``. Returns the manifest-row and quarantine PCollections."""
    files = (
        p
        | "Match"
        >> fileio.MatchFiles(
            job.input.pattern, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW
        )
        | "KeepImages" >> beam.Filter(lambda m: _wanted(job, m.path))
        | "Paths" >> beam.Map(lambda m: m.path)
        | "Spread" >> beam.Reshuffle()
    )
    prepared = files | "Prepare" >> beam.ParDo(PrepareImage(job, run)).with_outputs(
        PrepareImage.TILES, PrepareImage.FAILED, main="images"
    )
    inferred, dlq = (
        prepared[PrepareImage.TILES]
        | "Detect" >> RunInference(KeyedModelHandler(handler)).with_exception_handling()
    )
    tile_results = inferred | "ToImageSpace" >> beam.Map(to_image_space)
    tile_errors = dlq.failed_inferences | "FailedBatches" >> beam.FlatMap(failed_batch_to_tiles)
    all_tiles = (tile_results, tile_errors) | "AllTiles" >> beam.Flatten()
    finalized = (
        {"image": prepared["images"], "tiles": all_tiles}
        | "JoinByImage" >> beam.CoGroupByKey()
        | "Finalize"
        >> beam.ParDo(FinalizeImage(job, run)).with_outputs(FinalizeImage.QUARANTINE, main="rows")
    )
    rows = (finalized["rows"], prepared[PrepareImage.FAILED]) | "AllRows" >> beam.Flatten()
    failed_lines = prepared[PrepareImage.FAILED] | "FailedLines" >> beam.Map(_quarantine_line)
    quarantine = (
        finalized[FinalizeImage.QUARANTINE],
        failed_lines,
    ) | "AllQuarantine" >> beam.Flatten()
    return {"rows": rows, "quarantine": quarantine}


def add_sinks(rows: beam.PCollection, quarantine: beam.PCollection, job: JobSpec) -> None:
    """Write the manifest (Parquet, one file set per run: never overwrites) and quarantine list."""
    from apache_beam.io.filesystems import FileSystems

    rows | "WriteManifest" >> beam.io.WriteToParquet(
        FileSystems.join(job.manifest, f"run-{job.run_id}"),
        SCHEMA,
        file_name_suffix=".parquet",
    )
    quarantine | "WriteQuarantine" >> beam.io.WriteToText(
        FileSystems.join(job.quarantine, f"run-{job.run_id}"), file_name_suffix=".jsonl"
    )


def run_info(job: JobSpec, models: Iterable[dict[str, str]]) -> RunInfo:
    cfg = job.config
    return RunInfo(
        run_id=job.run_id,
        models=list(models),
        config_hash=cfg.hash(),
        thresholds=[
            {"class": c.label, "blur": t.blur, "review": t.review, "floor": t.floor}
            for c, t in sorted(cfg.thresholds.items())
        ],
        redact_version=__version__,
    )
