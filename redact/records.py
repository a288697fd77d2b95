"""Small picklable records that travel between pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    """An image that decoded and was tiled; joined with its tiles' detections later."""

    uri: str
    relative_path: str
    output_uri: str
    data: bytes = field(repr=False)  # the original file, re-decoded for the blur
    sha256: str
    width: int
    height: int
    format: str
    projection: Projection
    n_tiles: int
    timings_s: dict[str, float]


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
