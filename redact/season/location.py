"""Where an image was taken: EXIF GPS or a sidecar catalog, and its S2 cell.

A season's capture system usually writes a *sidecar catalog* (the post-processed trajectory:
CSV or Parquet with ``uri`` or ``relative_path``, ``lat``, ``lng``, ``captured_at``, ``camera``);
when an image is in the catalog that position wins, otherwise the image's own EXIF GPS is used.
The manifest stores latitude/longitude and the S2 cell token at ``season.s2_level``.

S2 cells come from ``s2sphere`` (pure Python, imported lazily). A cell token names a cell at
any level; a coarser (parent) cell *contains* its children: a leaf cell id ``c`` lies in
cell ``t`` iff ``t.range_min() <= c <= t.range_max()``, which is how region selection works.
"""

from __future__ import annotations

import csv
import enum
import io
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from redact.io import jpeg_meta
from redact.io.codec import DecodedImage, JpegMetadata, PngMetadata
from redact.io.exif import exif_capture_info

_LOG = logging.getLogger(__name__)

# Accepted column names of a sidecar catalog (first match wins).
KEY_COLUMNS = ("uri", "relative_path", "path")
LAT_COLUMNS = ("lat", "latitude")
LNG_COLUMNS = ("lng", "lon", "long", "longitude")
_TOKEN_RE = re.compile(r"^[0-9a-f]{1,16}$")


class LocationSource(enum.Enum):
    CATALOG = "catalog"
    EXIF = "exif"
    NONE = "none"


@dataclass(frozen=True)
class Location:
    """Position (signed decimal degrees, WGS84), capture time (ISO 8601) and camera."""

    latitude: float
    longitude: float
    captured_at: str = ""
    camera: str = ""
    source: LocationSource = LocationSource.EXIF

    def __post_init__(self) -> None:
        if not (math.isfinite(self.latitude) and -90.0 <= self.latitude <= 90.0):
            raise ValueError(f"latitude {self.latitude!r} outside [-90, 90]")
        if not (math.isfinite(self.longitude) and -180.0 <= self.longitude <= 180.0):
            raise ValueError(f"longitude {self.longitude!r} outside [-180, 180]")


# --- S2 ----------------------------------------------------------------------------------------


def _s2() -> Any:
    try:
        import s2sphere
    except ImportError as e:  # a runtime dependency; say what to install
        raise ImportError("S2 cells need the 's2sphere' package: pip install s2sphere") from e
    return s2sphere


def leaf_cell_id(lat: float, lng: float) -> int:
    """The level-30 S2 cell id (uint64 as a Python int) of a point."""
    s2 = _s2()
    return int(s2.CellId.from_lat_lng(s2.LatLng.from_degrees(lat, lng)).id())


def cell_token(lat: float, lng: float, level: int) -> str:
    """S2 cell token of the level-``level`` cell containing the point."""
    if not 0 <= level <= 30:
        raise ValueError(f"S2 level must be in [0, 30], got {level}")
    s2 = _s2()
    cell = s2.CellId.from_lat_lng(s2.LatLng.from_degrees(lat, lng))
    return str(cell.parent(level).to_token()) if level < 30 else str(cell.to_token())


@dataclass(frozen=True)
class CellRange:
    """An S2 cell as the inclusive range of leaf cell ids it contains."""

    token: str
    level: int
    lo: int
    hi: int

    @classmethod
    def parse(cls, token: str) -> CellRange:
        """Parse a cell token (e.g. ``47c609``); raises ValueError if it is not a valid cell."""
        t = token.strip().lower()
        if not _TOKEN_RE.match(t) or t == "x":
            raise ValueError(f"{token!r} is not an S2 cell token")
        s2 = _s2()
        cell = s2.CellId.from_token(t)
        if not cell.is_valid():
            raise ValueError(f"{token!r} is not a valid S2 cell token")
        return cls(t, int(cell.level()), int(cell.range_min().id()), int(cell.range_max().id()))

    def contains_leaf(self, leaf_id: int) -> bool:
        return self.lo <= leaf_id <= self.hi

    def contains_token(self, token: str) -> bool:
        """Whether cell ``token`` lies inside this cell (equal or a descendant)."""
        other = CellRange.parse(token)
        return self.lo <= other.lo and other.hi <= self.hi


# --- EXIF --------------------------------------------------------------------------------------


def exif_block(decoded: DecodedImage) -> bytes | None:
    """The (sanitised) TIFF/EXIF block of a decoded JPEG or PNG, if it has one."""
    meta = decoded.metadata
    if isinstance(meta, JpegMetadata):
        for seg in meta.segments:
            if seg[1] == jpeg_meta.APP1 and seg[4:].startswith(jpeg_meta.EXIF_ID):
                return seg[4 + len(jpeg_meta.EXIF_ID) :]
    elif isinstance(meta, PngMetadata):
        for ctype, body in meta.chunks:
            if ctype == b"eXIf":
                return body
    return None


def location_from_exif(decoded: DecodedImage) -> Location | None:
    """The EXIF GPS position (with capture time and camera) of a decoded image, or None."""
    block = exif_block(decoded)
    if block is None:
        return None
    info = exif_capture_info(block)
    if info.latitude is None or info.longitude is None:
        return None
    return Location(
        info.latitude, info.longitude, info.captured_at, info.camera, LocationSource.EXIF
    )


# --- sidecar catalog ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogEntry:
    """One catalog row: ``key`` is an image uri (``is_uri``) or a path relative to the input."""

    key: str
    is_uri: bool
    location: Location


def _pick(columns: list[str], names: tuple[str, ...], what: str, path: str) -> str:
    lower = {c.lower(): c for c in columns}
    for n in names:
        if n in lower:
            return lower[n]
    raise ValueError(f"catalog {path}: no {what} column (one of {list(names)}; has {columns})")


def catalog_columns(columns: list[str], path: str) -> tuple[str, str, str]:
    """(key, lat, lng) column names of a catalog; raises ValueError if one is missing."""
    return (
        _pick(columns, KEY_COLUMNS, "image", path),
        _pick(columns, LAT_COLUMNS, "latitude", path),
        _pick(columns, LNG_COLUMNS, "longitude", path),
    )


def _table_rows(data: bytes, path: str) -> tuple[list[str], Iterator[dict[str, Any]]]:
    if path.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        return table.column_names, iter(table.to_pylist())
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    return list(reader.fieldnames or []), iter(reader)


def parse_catalog(data: bytes, path: str) -> Iterator[CatalogEntry]:
    """Entries of a CSV or Parquet catalog (by extension). Rows with a missing or invalid
    position are skipped with a warning (those images fall back to EXIF GPS)."""
    columns, rows = _table_rows(data, path)
    key_col, lat_col, lng_col = catalog_columns(columns, path)
    lower = {c.lower(): c for c in columns}
    time_col, cam_col = lower.get("captured_at"), lower.get("camera")
    bad = 0
    for i, row in enumerate(rows):
        key = str(row.get(key_col) or "").strip()
        try:
            loc = Location(
                float(row[lat_col]),
                float(row[lng_col]),
                str(row.get(time_col) or "") if time_col else "",
                str(row.get(cam_col) or "") if cam_col else "",
                LocationSource.CATALOG,
            )
        except (TypeError, ValueError) as e:
            bad += 1
            if bad <= 10:
                _LOG.warning("catalog %s row %d (%s): invalid position: %s", path, i + 1, key, e)
            continue
        if key:
            yield CatalogEntry(key, key_col.lower() == "uri", loc)
    if bad:
        _LOG.warning("catalog %s: %d row(s) without a valid position", path, bad)


def catalog_from_manifest(
    rows: Mapping[str, Mapping[str, Any]], relative_paths: Iterable[str]
) -> list[dict[str, Any]]:
    """Catalog entries (``relative_path``, ``lat``, ``lng``, ``captured_at``, ``camera``) that carry
    the known locations of earlier manifest rows (keyed by relative path) into a re-run; images
    without a row or without a location are left out."""
    out: list[dict[str, Any]] = []
    for rel in relative_paths:
        row = rows.get(rel)
        if row is None or row.get("latitude") is None:
            continue
        out.append(
            {
                "relative_path": rel,
                "lat": row["latitude"],
                "lng": row["longitude"],
                "captured_at": row["captured_at"] or "",
                "camera": row["camera"] or "",
            }
        )
    return out
