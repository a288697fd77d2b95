"""What happens to one image: the pure redaction core.

:func:`redact_image` takes the original bytes, the detections of its tiles (already in image
pixels), the manual regions and the config, and returns the bytes to publish and the image's
manifest row. Everything that can fail (decode, merge, decide, blur, encode, location, row)
happens here, before the caller writes anything: a caller that gets a :class:`Redacted`
back only has to write ``data`` and then its marker. The Beam DoFn
(:mod:`redact.pipeline.publish`), the benchmark and the scripts all call this one function.

Bump :data:`PIXEL_VERSION` whenever a change to merging, deciding, blurring or encoding can
change a published pixel or byte: markers and manifest rows record it, so a re-run re-does
images published by older code.
"""

from __future__ import annotations

import datetime
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from redact.blur import blur_regions
from redact.classes import Decision, ObjectClass, Projection, Reason
from redact.config import RedactConfig
from redact.decision import select_candidates
from redact.detections import Detections
from redact.errors import ImageError, Stage
from redact.io.codec import decode_image, encode_image
from redact.manifest import ImageOutcome, RunInfo, Status, make_row
from redact.records import ImageRecord
from redact.renditions import Rendition, make_renditions, renditions_folder
from redact.season.location import Location, LocationSource, cell_token, location_from_exif
from redact.season.manual import ManualRegion, in_image, to_detections

if TYPE_CHECKING:
    from redact.postprocess import Rescorer

PIXEL_VERSION = 4  # 4: blur modes and strengths, no noise (redact.blur.STRENGTHS)
"""Version of the pixel algorithm (merge, decide, blur, encode): bumped by any change to them."""


@dataclass(frozen=True)
class Redacted:
    """The result of :func:`redact_image`.

    Attributes:
        data: the bytes to publish at ``row["output_uri"]`` (``row["output_sha256"]`` is
            their sha256).
        row: the image's manifest row (:data:`redact.manifest.SCHEMA`), status published.
        n_faces, n_plates: regions blurred by class (detector and manual).
        n_manual: manual regions blurred.
        decisions: one per row detection.
        blurred: the detections that were blurred (image pixels; manual regions included).
        mask: (H, W) bool, the pixels that were replaced or feathered (upright).
        stage1, stage2: (N,) float32 per row detection, the detector's and the
            post-processor's score (NaN = none: manual regions, no post-processor, giants).
        reasons: one per row detection, why it got its decision.
        modes, strengths: one per row detection, the blur mode / strength values it was
            blurred with ("" when not blurred).
    """

    data: bytes
    row: dict
    n_faces: int
    n_plates: int
    n_manual: int
    decisions: tuple[Decision, ...]
    blurred: Detections
    mask: np.ndarray = field(repr=False)
    stage1: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    stage2: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    reasons: tuple[Reason, ...] = ()
    modes: tuple[str, ...] = ()
    strengths: tuple[str, ...] = ()
    # The files made from ``data`` (config.renditions; empty when off), written before it.
    renditions: tuple[Rendition, ...] = ()


def redact_image(
    original: bytes,
    tile_detections: Sequence[Detections],
    config: RedactConfig,
    record: ImageRecord,
    run: RunInfo,
    *,
    manual: Sequence[ManualRegion] = (),
    catalog_location: Location | None = None,
    processed_at: datetime.datetime | None = None,
    rescorer: Rescorer | None = None,
) -> Redacted:
    """Decode, merge, rescore, decide, blur, encode: the published bytes and manifest row.

    Args:
        original: the original file's bytes; their sha256 must equal ``record.sha256`` (the
            bytes the detector saw), else ``ImageError("source_changed")``.
        tile_detections: every tile's detections in image pixels (upright, xyxy).
        config: the run's config.
        record: what was learnt about the image when it was tiled (size, projection, ...).
        run: what every manifest row of the run shares.
        manual: manual regions, blurred whatever the detector says.
        catalog_location: the sidecar catalog's location (wins over EXIF GPS).
        processed_at: the row's timestamp (default: now, UTC).
        rescorer: stage 2 (:class:`redact.postprocess.Rescorer`, loaded from
            ``config.postprocess``): rescores the merged candidates on the decoded pixels
            before the thresholds, which then apply to its final scores; None = stage 1 alone.

    Raises:
        ImageError: the image cannot be published (it must be quarantined); also when the
            rescorer fails or returns a wrong shape, non-finite or out-of-range scores.
    """
    t0 = time.perf_counter()
    sha = hashlib.sha256(original).hexdigest()
    if sha != record.sha256:
        raise ImageError(
            "source_changed", "the original changed between detection and publication", Stage.READ
        )
    # Plain (not fancy) chroma upsampling re-encodes closer to the original (docs/performance.md).
    decoded = decode_image(
        original, max_pixels=config.io.max_pixels, fast_upsample=True, metadata=config.metadata
    )
    if (decoded.width, decoded.height) != (record.width, record.height):
        raise ImageError("corrupt", "the image decodes to a different size than it was tiled at")
    t1 = time.perf_counter()
    wrap = record.projection is Projection.EQUIRECTANGULAR
    rescore_s = 0.0

    def rescore(cands: Detections) -> tuple[np.ndarray, np.ndarray]:
        nonlocal rescore_s
        if rescorer is None:  # pragma: no cover - only passed when a rescorer is given
            raise ValueError("no rescorer")
        r0 = time.perf_counter()
        try:
            out = rescorer.rescore(decoded.pixels, cands, record.projection)
        except ImageError:
            raise
        except Exception as e:  # quarantine the image: never publish with fewer blurs
            raise ImageError(
                "postprocess_failed",
                f"post-processor failed: {' '.join(str(e).split())}",
                Stage.MERGE,
            ) from e
        rescore_s += time.perf_counter() - r0
        return out.stage2, out.final

    selection = select_candidates(
        tile_detections,
        config,
        record.width,
        record.height,
        wrap=wrap,
        rescore=rescore if rescorer is not None else None,
    )
    found, found_decisions = selection.detections, selection.decisions
    pinned = to_detections(manual, record.width, record.height, wrap=wrap)
    kept = Detections.merge([found, pinned])
    decisions = (*found_decisions, *([Decision.MANUAL] * len(pinned)))
    reasons = (*selection.reasons, *([Reason.MANUAL_REGION] * len(pinned)))
    bc = config.blur
    styles = [(bc.mode_for(c).value, bc.strength_for(c).value) for c in found.class_id]
    applied = {
        r.region_id: (
            r.mode or bc.mode_for(r.cls).value,
            r.strength or bc.strength_for(r.cls).value,
        )
        for r in manual
    }
    styles += [
        applied[r.region_id] for r in in_image(manual, record.width, record.height, wrap=wrap)
    ]
    nan = np.full(len(pinned), np.nan, np.float32)
    stage1 = np.concatenate([selection.stage1, nan]).astype(np.float32)
    stage2 = np.concatenate([selection.stage2, nan]).astype(np.float32)
    blurs = np.array([d.blurs for d in decisions], dtype=bool)
    to_blur = kept[blurs] if len(kept) else kept
    modes = tuple(m if b else "" for (m, _), b in zip(styles, blurs, strict=True))
    strengths = tuple(st if b else "" for (_, st), b in zip(styles, blurs, strict=True))
    t2 = time.perf_counter()
    pixels, mask = blur_regions(
        decoded.pixels,
        to_blur.xyxy,
        config.blur,
        wrap=wrap,
        classes=to_blur.class_id,
        modes=[m for m in modes if m],
        strengths=[st for st in strengths if st],
    )
    t3 = time.perf_counter()
    data = encode_image(
        decoded,
        pixels,
        jpeg_quality=config.output.jpeg_quality,
        keep_metadata=config.output.keep_metadata,
    )
    t4 = time.perf_counter()
    renditions: tuple[Rendition, ...] = ()
    if config.renditions.enabled:  # from the published bytes only; ImageError quarantines
        renditions = make_renditions(
            data,
            record.projection,
            config.renditions,
            renditions_folder(record.output_uri),
            max_pixels=config.io.max_pixels,
        )
    t5 = time.perf_counter()
    location = catalog_location or location_from_exif(decoded)
    level = config.season.s2_level
    faces = int(np.count_nonzero(blurs & (kept.class_id == ObjectClass.FACE)))
    timings = dict(record.timings_s)
    timings.update(
        merge=t2 - t1 - rescore_s,
        decode=timings.get("decode", 0.0) + (t1 - t0),
        blur=t3 - t2,
        encode=t4 - t3,
    )
    if rescorer is not None:
        timings["postprocess"] = rescore_s
    if config.renditions.enabled:
        timings["renditions"] = t5 - t4
    outcome = ImageOutcome(
        image_uri=record.uri,
        relative_path=record.relative_path,
        output_uri=record.output_uri,
        status=Status.PUBLISHED,
        sha256=sha,
        output_sha256=hashlib.sha256(data).hexdigest(),
        width=record.width,
        height=record.height,
        format=record.format,
        projection=record.projection.value,
        tiles=record.n_tiles,
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
        manual_regions=[r.manifest_entry(applied[r.region_id]) for r in manual],
        stage1_scores=stage1.tolist(),
        stage2_scores=stage2.tolist(),
        reasons=reasons,
        modes=modes,
        strengths=strengths,
        renditions=[r.manifest_entry() for r in renditions],
    )
    when = processed_at or datetime.datetime.now(datetime.timezone.utc)
    return Redacted(
        data=data,
        row=make_row(run, outcome, when),
        n_faces=faces,
        n_plates=int(np.count_nonzero(blurs)) - faces,
        n_manual=len(pinned),
        decisions=decisions,
        blurred=to_blur,
        mask=mask,
        stage1=stage1,
        stage2=stage2,
        reasons=reasons,
        modes=modes,
        strengths=strengths,
        renditions=renditions,
    )
