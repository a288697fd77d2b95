"""Small picklable records that travel between pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass

from redact.classes import Projection
from redact.detections import Detections
from redact.tiling import Tile


@dataclass(frozen=True)
class TileKey:
    """Key of one tile element in RunInference: which image, which tile, how to map back."""

    image_uri: str
    index: int
    tile: Tile
    width: int  # image width, px (upright)
    height: int
    wrap: bool  # equirectangular: boxes may cross the 0/360 seam


@dataclass(frozen=True)
class ImageRecord:
    """An image that decoded and was tiled; joined with its tiles' detections later.

    It does not carry the original's bytes: publication re-reads the original and checks its
    sha256 against this one (the run's detections must be complete before anything is
    published, see :mod:`redact.pipeline.breaker`).
    """

    uri: str
    relative_path: str
    output_uri: str
    sha256: str
    width: int
    height: int
    format: str
    projection: Projection
    n_tiles: int
    timings_s: dict[str, float]
    size_bytes: int = -1  # the listing's size of the source (marker fingerprint)
    last_updated: float | None = None  # seconds since the epoch; None = unknown


@dataclass(frozen=True)
class TileResult:
    """Detections of one tile, already mapped to image pixels."""

    index: int
    detections: Detections
    seconds: float


@dataclass(frozen=True)
class TileFailure:
    index: int
    message: str
