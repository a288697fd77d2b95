"""The per-image Parquet manifest: what was done to each image, by which model and config.

One row per input image and run. Detections include sub-threshold candidates down to the
configured floor (decision ``dropped``) so thresholds can be re-tuned without re-detecting.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from redact.classes import Decision, ObjectClass, Reason
from redact.detections import Detections
from redact.season.manual import MANIFEST_REGION_TYPE


class Status(enum.Enum):
    PUBLISHED = "published"
    FAILED = "failed"  # quarantined: nothing was published
    SKIPPED = "skipped"  # already published by an earlier run (error_reason says why)


STAGES = ("read", "decode", "tile", "infer", "merge", "blur", "encode", "write")

DETECTION_TYPE = pa.struct(
    [
        ("class", pa.string()),
        ("score", pa.float32()),
        ("x1", pa.float32()),
        ("y1", pa.float32()),
        ("x2", pa.float32()),
        ("y2", pa.float32()),
        ("decision", pa.string()),
        ("model", pa.string()),
        # appended (stage 2, redact.postprocess): the detector's merged score and the
        # post-processor's; ``score`` is the one the decision used (the final score). Null in
        # manifests written before them, for manual regions, and stage2 where stage 2 did
        # not score the candidate (no post-processor; a giant of the size prior).
        ("stage1_score", pa.float32()),
        ("stage2_score", pa.float32()),
        # appended (anonymisation modes, reasons): why the candidate got its decision
        # (redact.classes.Reason value), and the mode ("blur" | "pixelate" | "solid") and
        # strength ("low" | "medium" | "high") it was blurred with ("" when not blurred).
        # Null in manifests written before them.
        ("reason", pa.string()),
        ("mode", pa.string()),
        ("strength", pa.string()),
    ]
)
MODEL_TYPE = pa.struct(
    [
        ("name", pa.string()),
        ("version", pa.string()),
        ("sha256", pa.string()),
        ("backend", pa.string()),
    ]
)
THRESHOLD_TYPE = pa.struct(
    [
        ("class", pa.string()),
        ("blur", pa.float32()),
        ("review", pa.float32()),
        ("floor", pa.float32()),
    ]
)

# One file made from the published copy (redact.renditions.Rendition.manifest_entry).
RENDITION_TYPE = pa.struct(
    [
        # thumbnail | preview | equirect_tile | cube_face | cube_tile | viewer_config
        ("kind", pa.string()),
        ("uri", pa.string()),  # absolute, like output_uri
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("level", pa.int32()),  # null outside a pyramid; 0 = the one-tile level
        ("level_width", pa.int32()),  # size of the level's whole image (or of the cube face)
        ("level_height", pa.int32()),
        ("face", pa.string()),  # "" or one of f r b l u d
        ("x", pa.int32()),  # the item's pixel rectangle in its level image / face
        ("y", pa.int32()),
        ("w", pa.int32()),
        ("h", pa.int32()),
        ("sha256", pa.string()),
    ]
)

SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("image_uri", pa.string()),
        ("relative_path", pa.string()),
        ("output_uri", pa.string()),
        ("status", pa.string()),
        ("error_reason", pa.string()),
        ("error_stage", pa.string()),
        ("error_message", pa.string()),
        ("sha256", pa.string()),
        ("output_sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
        ("projection", pa.string()),
        ("tiles", pa.int32()),
        ("models", pa.list_(MODEL_TYPE)),
        ("config_hash", pa.string()),
        ("thresholds", pa.list_(THRESHOLD_TYPE)),
        ("detections", pa.list_(DETECTION_TYPE)),
        ("n_blurred", pa.int32()),
        ("n_review", pa.int32()),
        ("n_dropped", pa.int32()),
        ("n_faces_blurred", pa.int32()),
        ("n_plates_blurred", pa.int32()),
        ("blurred_fraction", pa.float32()),
        ("timings_s", pa.map_(pa.string(), pa.float64())),
        ("processed_at", pa.timestamp("ms", tz="UTC")),
        ("redact_version", pa.string()),
        # --- capture seasons (appended; see docs/season.md) ---
        ("latitude", pa.float64()),  # WGS84 degrees; null when the image has no location
        ("longitude", pa.float64()),
        ("captured_at", pa.string()),  # ISO 8601 as the catalog/EXIF gives it
        ("camera", pa.string()),
        ("location_source", pa.string()),  # catalog | exif | none
        ("s2_cell", pa.string()),  # S2 cell token at s2_level ("" without location)
        ("s2_level", pa.int32()),
        ("models_hash", pa.string()),  # redact.season.markers.models_hash of the model set
        ("manual_regions", pa.list_(MANIFEST_REGION_TYPE)),  # reported regions blurred
        ("n_manual", pa.int32()),
        # redact.core.PIXEL_VERSION of the code that produced the published copy
        ("pixel_version", pa.int32()),
        # --- renditions (appended; docs/publishing.md): every file derived from the
        # published copy (thumbnail, preview, tiles, cube faces, viewer.json); empty when
        # renditions are off or the image was not published
        ("renditions", pa.list_(RENDITION_TYPE)),
    ]
)


@dataclass
class RunInfo:
    """What every row of one run shares."""

    run_id: str
    models: list[dict[str, str]]
    config_hash: str
    thresholds: list[dict[str, Any]]
    redact_version: str
    models_hash: str = ""
    pixel_version: int = 0  # redact.core.PIXEL_VERSION
    # RedactConfig.hash(projection) by projection value; config_hash (the whole config's) is
    # what an image of another or unknown projection (failed before decoding) records.
    config_hashes: dict[str, str] = field(default_factory=dict)

    def config_hash_for(self, projection: str) -> str:
        """The config hash an image of ``projection`` (a Projection value, or "") records."""
        return self.config_hashes.get(projection, self.config_hash)

    def current_config_hashes(self) -> frozenset[str]:
        """Hashes under which a marker or row counts as produced with this run's config."""
        return frozenset({self.config_hash, *self.config_hashes.values()})


@dataclass
class ImageOutcome:
    """The result for one image, turned into a manifest row by :func:`make_row`."""

    image_uri: str
    relative_path: str
    output_uri: str
    status: Status
    sha256: str = ""
    output_sha256: str = ""
    width: int = 0
    height: int = 0
    format: str = ""
    projection: str = ""
    tiles: int = 0
    detections: Detections = field(default_factory=Detections.empty)
    decisions: Sequence[Decision] = ()
    blurred_fraction: float = 0.0
    timings_s: dict[str, float] = field(default_factory=dict)
    error_reason: str = ""
    error_stage: str = ""
    error_message: str = ""
    latitude: float | None = None
    longitude: float | None = None
    captured_at: str = ""
    camera: str = ""
    location_source: str = "none"
    s2_cell: str = ""
    s2_level: int | None = None
    manual_regions: list[dict[str, Any]] = field(default_factory=list)
    # (N,) per detection: the detector's score and the post-processor's (NaN = none). None:
    # stage 1 alone, the stage-1 score is ``detections.confidence`` (manual: none).
    stage1_scores: Sequence[float] | None = None
    stage2_scores: Sequence[float] | None = None
    # (N,) per detection: why (redact.classes.Reason), and the blur mode / strength values
    # ("" = not blurred). None: not recorded (the fields are null).
    reasons: Sequence[Reason] | None = None
    modes: Sequence[str] | None = None
    strengths: Sequence[str] | None = None
    # RENDITION_TYPE entries of the files made from the published copy (redact.renditions)
    renditions: list[dict[str, Any]] = field(default_factory=list)
    # The config hash of the copy this row describes, when another run made it (a skipped
    # image: its marker's); "" = this run's hash for the image's projection.
    config_hash: str = ""


def _opt(v: float) -> float | None:
    f = float(v)
    return None if math.isnan(f) else f


def detection_records(
    dets: Detections,
    decisions: Sequence[Decision],
    model_names: Sequence[str],
    stage1: Sequence[float] | None = None,
    stage2: Sequence[float] | None = None,
    reasons: Sequence[Reason] | None = None,
    modes: Sequence[str] | None = None,
    strengths: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Manifest ``detections`` entries (panorama pixel boxes; unwrapped across the seam).

    ``stage1`` / ``stage2``: (N,) per-stage scores (NaN = none); by default the stage-1 score
    is the detection's score (stage 1 alone) and there is no stage-2 score. Manual regions
    have neither. ``reasons``, ``modes``, ``strengths``: (N,) each, or None (null fields).
    """
    n = len(dets)
    for name, arr in (
        ("stage1", stage1),
        ("stage2", stage2),
        ("reasons", reasons),
        ("modes", modes),
        ("strengths", strengths),
    ):
        if arr is not None and len(arr) != n:
            what = "scores" if name.startswith("stage") else "entries"
            raise ValueError(f"{name} has {len(arr)} {what} for {n} detections")
    out = []
    for i in range(n):
        x1, y1, x2, y2 = (float(v) for v in dets.xyxy[i])
        src = int(dets.source[i])
        manual = decisions[i] is Decision.MANUAL
        s1 = (
            None if manual else _opt(stage1[i]) if stage1 is not None else float(dets.confidence[i])
        )
        s2 = None if manual or stage2 is None else _opt(stage2[i])
        out.append(
            {
                "class": ObjectClass(int(dets.class_id[i])).label,
                "score": float(dets.confidence[i]),
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
                "decision": decisions[i].value,
                "model": "manual"
                if decisions[i] is Decision.MANUAL
                else model_names[src]
                if 0 <= src < len(model_names)
                else "",
                "stage1_score": s1,
                "stage2_score": s2,
                "reason": reasons[i].value if reasons is not None else None,
                "mode": modes[i] if modes is not None else None,
                "strength": strengths[i] if strengths is not None else None,
            }
        )
    return out


def make_row(run: RunInfo, o: ImageOutcome, processed_at: Any) -> dict[str, Any]:
    """A dict matching :data:`SCHEMA` (for ``beam.io.WriteToParquet`` or ``pa.Table.from_pylist``)."""
    names = [m["name"] for m in run.models]
    dec = list(o.decisions)
    blurred = [d.blurs for d in dec]
    cls = o.detections.class_id
    return {
        "run_id": run.run_id,
        "image_uri": o.image_uri,
        "relative_path": o.relative_path,
        "output_uri": o.output_uri if o.status is Status.PUBLISHED else "",
        "status": o.status.value,
        "error_reason": o.error_reason,
        "error_stage": o.error_stage,
        "error_message": o.error_message,
        "sha256": o.sha256,
        "output_sha256": o.output_sha256,
        "width": o.width,
        "height": o.height,
        "format": o.format,
        "projection": o.projection,
        "tiles": o.tiles,
        "models": run.models,
        "config_hash": o.config_hash or run.config_hash_for(o.projection),
        "thresholds": run.thresholds,
        "detections": detection_records(
            o.detections,
            dec,
            names,
            o.stage1_scores,
            o.stage2_scores,
            o.reasons,
            o.modes,
            o.strengths,
        ),
        "n_blurred": sum(blurred),
        "n_review": sum(d is Decision.REVIEW for d in dec),
        "n_dropped": sum(d is Decision.DROPPED for d in dec),
        "n_faces_blurred": sum(
            b and c == ObjectClass.FACE for b, c in zip(blurred, cls, strict=True)
        ),
        "n_plates_blurred": sum(
            b and c == ObjectClass.LICENSE_PLATE for b, c in zip(blurred, cls, strict=True)
        ),
        "blurred_fraction": float(o.blurred_fraction),
        "timings_s": list(o.timings_s.items()),
        "processed_at": processed_at,
        "redact_version": run.redact_version,
        "latitude": o.latitude,
        "longitude": o.longitude,
        "captured_at": o.captured_at,
        "camera": o.camera,
        "location_source": o.location_source,
        "s2_cell": o.s2_cell,
        "s2_level": o.s2_level,
        "models_hash": run.models_hash,
        "manual_regions": list(o.manual_regions),
        "n_manual": sum(d is Decision.MANUAL for d in dec),
        "pixel_version": run.pixel_version,
        "renditions": list(o.renditions) if o.status is Status.PUBLISHED else [],
    }


def read_manifest(path_or_dir: str) -> pa.Table:
    """Read every Parquet file of a manifest folder (or one file) as one table."""
    import pyarrow.dataset as ds

    return ds.dataset(path_or_dir, format="parquet", schema=SCHEMA).to_table()
