"""Read, hash, decode and tile one image (the first stage after the listing)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from redact.classes import Projection
from redact.io.codec import decode_image
from redact.io.storage import output_uri, read_bytes
from redact.io.xmp import gpano_projection
from redact.manifest import RunInfo
from redact.pipeline.job import NAMESPACE, JobSpec, failed_row, progress
from redact.pipeline.sources import Candidate
from redact.records import ImageRecord, TileKey
from redact.tiling import RemapCache, Tile, plan_panorama_tiles, plan_perspective_tiles, render_tile

_LOG = logging.getLogger(__name__)
EQUIRECT_ASPECT_TOLERANCE = 0.01  # |W/H - 2| / 2


def resolve_projection(
    requested: Projection,
    width: int,
    height: int,
    xmp: bytes | None,
    min_width: int,
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


def _new_remap_cache() -> RemapCache:
    return RemapCache()


class PrepareImage(beam.DoFn):
    """Read, hash, decode and tile one image.

    Input: a :class:`Candidate`. Main output: ``(uri, ImageRecord)``; tagged ``tiles``:
    ``(TileKey, (S,S,3) uint8)``; tagged ``failed``: manifest rows of images that could not be
    read or decoded.

    The remap maps (about 220 MB for the 68 tiles of an 8000x4000 layout, ~2 s to build) live
    in one :class:`RemapCache` per worker process, shared by every thread's DoFn instance
    through :class:`apache_beam.utils.shared.Shared`: built once per worker, not once per
    DoFn instance (Dataflow runs one instance per harness thread).
    """

    TILES = "tiles"
    FAILED = "failed"

    def __init__(self, job: JobSpec, run: RunInfo) -> None:
        self._job = job
        self._run = run
        self._cache: RemapCache | None = None
        self._shared_cache = shared.Shared()
        self._images = Metrics.counter(NAMESPACE, "images_read")
        self._tiles = Metrics.counter(NAMESPACE, "tiles")
        self._failed = Metrics.counter(NAMESPACE, "images_failed")
        self._decode_ms = Metrics.distribution(NAMESPACE, "decode_ms")
        self._tile_ms = Metrics.distribution(NAMESPACE, "tile_ms")

    def setup(self) -> None:
        self._cache = self._shared_cache.acquire(_new_remap_cache)

    def process(self, cand: Candidate) -> Iterator[Any]:
        uri = cand.uri
        cfg = self._job.config
        timings: dict[str, float] = {}
        self._images.inc()
        try:
            t0 = time.perf_counter()
            data = read_bytes(uri, retries=cfg.io.read_retries, backoff_s=cfg.io.retry_backoff_s)
            sha = hashlib.sha256(data).hexdigest()
            t1 = time.perf_counter()
            decoded = decode_image(data, max_pixels=cfg.io.max_pixels, metadata=cfg.metadata)
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
            if self._cache is None:  # setup() normally made it
                self._cache = RemapCache()
            t_maps = time.perf_counter()
            if wrap:  # a new layout: worker threads split its map build, not each build all
                self._cache.prefetch_maps(tiles, w, h)
            maps_s = time.perf_counter() - t_maps
        except Exception as e:  # any failure: quarantined with its reason, never published
            self._failed.inc()
            progress(self._job).tick("failed")
            _LOG.warning("quarantined %s: %s", uri, e)
            yield beam.pvalue.TaggedOutput(
                self.FAILED, failed_row(self._run, self._job, uri, e, stage="read")
            )
            return
        self._decode_ms.update(int(timings["decode"] * 1000))
        # Tiles are rendered lazily (one at a time) to keep memory flat; a failure here leaves the
        # image with fewer tiles than announced, which publication quarantines. Only rendering
        # is timed: in a fused stage each yield runs the downstream inference inline.
        render_s = maps_s  # the "tile" stage includes building a new layout's maps
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
                sha256=sha,
                width=w,
                height=h,
                format=decoded.format.value,
                projection=projection,
                n_tiles=len(tiles),
                timings_s=timings,
                size_bytes=cand.size_bytes if cand.size_bytes >= 0 else len(data),
                last_updated=cand.last_updated,
            ),
        )
