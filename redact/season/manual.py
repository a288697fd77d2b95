"""Manual regions: boxes a person reported, blurred by every later run whatever the detector says.

The table lives beside the manifest (default ``DST/_manual/``) as append-only Parquet files,
one per ``redact report add`` / ``redact review decide`` call (object stores cannot append).
Boxes are in upright image pixels of the original; a panorama box crossing the 0/360 seam is
stored unwrapped (``0 <= x1 < W``, ``x2`` may exceed ``W``). Regions are joined to images by
relative path, so they survive a reprocess from another originals prefix.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import io
import logging
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from redact.classes import ObjectClass
from redact.config import BlurMode, BlurStrength
from redact.detections import Detections
from redact.io.storage import write_atomic

_LOG = logging.getLogger(__name__)

MANUAL_SCHEMA = pa.schema(
    [
        ("region_id", pa.string()),
        ("image_uri", pa.string()),
        ("relative_path", pa.string()),
        ("class", pa.string()),
        ("x1", pa.float64()),
        ("y1", pa.float64()),
        ("x2", pa.float64()),
        ("y2", pa.float64()),
        ("reason", pa.string()),
        ("created_at", pa.timestamp("ms", tz="UTC")),
        ("created_by", pa.string()),
        ("source", pa.string()),
        ("review_id", pa.string()),
        # appended: the blur mode / strength of this region ("" or absent = its class's)
        ("mode", pa.string()),
        ("strength", pa.string()),
    ]
)

# The manifest's ``manual_regions`` column entries.
MANIFEST_REGION_TYPE = pa.struct(
    [
        ("region_id", pa.string()),
        ("class", pa.string()),
        ("x1", pa.float32()),
        ("y1", pa.float32()),
        ("x2", pa.float32()),
        ("y2", pa.float32()),
        ("reason", pa.string()),
        ("created_by", pa.string()),
        ("source", pa.string()),
        # appended: the mode / strength it was blurred with (null in older manifests)
        ("mode", pa.string()),
        ("strength", pa.string()),
    ]
)


def _now_ms() -> datetime.datetime:
    """UTC now at the table's (millisecond) precision, so a region round-trips unchanged."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class RegionSource(enum.Enum):
    REPORT = "report"  # redact report add
    REVIEW = "review"  # a review decision "missed"


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"x1,y1,x2,y2"`` (pixels) -> floats; raises ValueError unless finite, x1<x2, y1<y2."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise ValueError(f"box {text!r}: expected x1,y1,x2,y2")
    try:
        x1, y1, x2, y2 = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"box {text!r}: coordinates must be numbers") from None
    _check_box(x1, y1, x2, y2)
    return x1, y1, x2, y2


def _check_box(x1: float, y1: float, x2: float, y2: float) -> None:
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError("box coordinates must be finite")
    if x1 < 0 or y1 < 0:
        raise ValueError(f"box ({x1}, {y1}, {x2}, {y2}): x1 and y1 must be >= 0")
    if not (x1 < x2 and y1 < y2):
        raise ValueError(f"box ({x1}, {y1}, {x2}, {y2}): need x1 < x2 and y1 < y2")


def check_box_in_image(
    box: tuple[float, float, float, float], width: int, height: int, *, wrap: bool
) -> None:
    """Raise ValueError unless the box lies in a ``width`` x ``height`` image (seam-unwrapped
    for panoramas: ``x1 < W`` and ``x2 <= x1 + W``)."""
    x1, y1, x2, y2 = box
    _check_box(x1, y1, x2, y2)
    x_ok = x1 < width and (x2 <= x1 + width if wrap else x2 <= width)
    if not x_ok or y2 > height:
        raise ValueError(f"box {box} lies outside the {width}x{height} image")


@dataclass(frozen=True)
class ManualRegion:
    """One reported region (see the module docstring for the box convention)."""

    region_id: str
    image_uri: str
    relative_path: str
    cls: ObjectClass
    x1: float
    y1: float
    x2: float
    y2: float
    reason: str
    created_at: datetime.datetime
    created_by: str
    source: RegionSource
    review_id: str = ""
    mode: str = ""  # a BlurMode value; "" = the class's (BlurConfig.mode)
    strength: str = ""  # a BlurStrength value; "" = the class's (BlurConfig.strength)

    def __post_init__(self) -> None:
        if not self.relative_path:
            raise ValueError("a manual region needs the image's relative path")
        _check_box(self.x1, self.y1, self.x2, self.y2)
        check_style(self.mode, self.strength)

    @classmethod
    def new(
        cls,
        *,
        image_uri: str,
        relative_path: str,
        box: tuple[float, float, float, float],
        object_class: ObjectClass,
        reason: str,
        created_by: str,
        source: RegionSource = RegionSource.REPORT,
        review_id: str = "",
        mode: str = "",
        strength: str = "",
    ) -> ManualRegion:
        return cls(
            uuid.uuid4().hex,
            image_uri,
            relative_path,
            object_class,
            *box,
            reason,
            _now_ms(),
            created_by,
            source,
            review_id,
            mode,
            strength,
        )

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    def to_row(self) -> dict:
        return {
            "region_id": self.region_id,
            "image_uri": self.image_uri,
            "relative_path": self.relative_path,
            "class": self.cls.label,
            "x1": self.x1,
            "y1": self.y1,
            "x2": self.x2,
            "y2": self.y2,
            "reason": self.reason,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "source": self.source.value,
            "review_id": self.review_id,
            "mode": self.mode,
            "strength": self.strength,
        }

    @classmethod
    def from_row(cls, row: dict) -> ManualRegion:
        created = row["created_at"]
        if isinstance(created, datetime.datetime):
            created = created.astimezone(datetime.timezone.utc)
        return cls(
            str(row["region_id"]),
            str(row.get("image_uri") or ""),
            str(row["relative_path"]),
            ObjectClass.parse(str(row["class"])),
            float(row["x1"]),
            float(row["y1"]),
            float(row["x2"]),
            float(row["y2"]),
            str(row.get("reason") or ""),
            created,
            str(row.get("created_by") or ""),
            RegionSource(str(row["source"])),
            str(row.get("review_id") or ""),
            str(row.get("mode") or ""),  # absent from tables written before modes
            str(row.get("strength") or ""),
        )

    def manifest_entry(self, applied: tuple[str, str] | None = None) -> dict:
        """The manifest's ``manual_regions`` entry; ``applied``: the (mode, strength) values
        it was blurred with (default: the region's own, "" = its class's)."""
        mode, strength = applied if applied is not None else (self.mode, self.strength)
        return {
            "region_id": self.region_id,
            "class": self.cls.label,
            "x1": self.x1,
            "y1": self.y1,
            "x2": self.x2,
            "y2": self.y2,
            "reason": self.reason,
            "created_by": self.created_by,
            "source": self.source.value,
            "mode": mode,
            "strength": strength,
        }


def check_style(mode: str, strength: str) -> None:
    """Raise ValueError unless ``mode`` / ``strength`` are "" or a BlurMode / BlurStrength
    value."""
    for value, kind in ((mode, BlurMode), (strength, BlurStrength)):
        if value and value not in {m.value for m in kind}:
            valid = ", ".join(m.value for m in kind)
            raise ValueError(f"{kind.__name__} {value!r} is not one of: {valid}")


def regions_table(regions: Sequence[ManualRegion]) -> pa.Table:
    return pa.Table.from_pylist([r.to_row() for r in regions], schema=MANUAL_SCHEMA)


def write_regions(manual_dir: str, regions: Sequence[ManualRegion]) -> str:
    """Append regions as a new Parquet file of the table; returns its uri."""
    if not regions:
        raise ValueError("no manual regions to write")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    uri = FileSystems.join(manual_dir, f"manual-{stamp}-{uuid.uuid4().hex[:8]}.parquet")
    buf = io.BytesIO()
    pq.write_table(regions_table(regions), buf)
    write_atomic(uri, buf.getvalue())
    return uri


def regions_from_parquet(data: bytes) -> list[ManualRegion]:
    """Regions of one table file (bytes)."""
    table = pq.read_table(io.BytesIO(data))
    return [ManualRegion.from_row(r) for r in table.to_pylist()]


def table_pattern(manual_dir: str) -> str:
    return FileSystems.join(manual_dir, "*.parquet")


def read_regions(manual_dir: str) -> list[ManualRegion]:
    """Every region of the table (empty when the folder has none), oldest first."""
    out: list[ManualRegion] = []
    for m in FileSystems.match([table_pattern(manual_dir)])[0].metadata_list:
        with FileSystems.open(m.path, compression_type="uncompressed") as f:
            out.extend(regions_from_parquet(f.read()))
    return sorted(out, key=lambda r: (r.created_at, r.region_id))


def regions_hash(regions: Iterable[ManualRegion]) -> str:
    """sha256 of the sorted region ids ("" for no regions): what a marker remembers."""
    ids = sorted(r.region_id for r in regions)
    return hashlib.sha256(",".join(ids).encode()).hexdigest() if ids else ""


def to_detections(
    regions: Sequence[ManualRegion], width: int, height: int, *, wrap: bool
) -> Detections:
    """Regions as Detections in image pixels (confidence 1, source -1), clipped to the image.

    Panorama boxes keep the unwrapped seam convention (x1 wrapped into [0, W), width at most
    W); a region wholly outside the image is left out with a warning.
    """
    if not regions:
        return Detections.empty()
    xyxy, ok = _clipped(regions, width, height, wrap=wrap)
    for r in (r for r, good in zip(regions, ok, strict=True) if not good):
        _LOG.warning(
            "manual region %s of %s lies outside the %dx%d image; not blurred",
            r.region_id,
            r.relative_path,
            width,
            height,
        )
    n = int(ok.sum())
    return Detections(
        xyxy[ok].astype(np.float32),
        np.ones(n, np.float32),
        np.array([int(r.cls) for r, good in zip(regions, ok, strict=True) if good], np.int32),
        np.full(n, -1, np.int16),
    )


def in_image(
    regions: Sequence[ManualRegion], width: int, height: int, *, wrap: bool
) -> list[ManualRegion]:
    """The regions :func:`to_detections` keeps (same order): those overlapping the image."""
    if not regions:
        return []
    _, ok = _clipped(regions, width, height, wrap=wrap)
    return [r for r, good in zip(regions, ok, strict=True) if good]


def _clipped(
    regions: Sequence[ManualRegion], width: int, height: int, *, wrap: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) float64 boxes clipped to the image (seam-unwrapped for panoramas) and the (N,)
    bool mask of those with an area left."""
    xyxy = np.array([r.box for r in regions], np.float64)
    if wrap:
        shift = np.floor(xyxy[:, 0] / width) * width
        xyxy[:, [0, 2]] -= shift[:, None]
        xyxy[:, 2] = np.minimum(xyxy[:, 2], xyxy[:, 0] + width)
    else:
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, width)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, height)
    ok = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    return xyxy, ok
