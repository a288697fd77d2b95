"""Renditions of a published image, made from the PUBLISHED bytes only.

A viewer never loads the one big JPEG: it loads a thumbnail, a preview and tiles. Every one of
them must hold only what the published (blurred) copy holds, so :func:`make_renditions` takes
the published copy's encoded bytes (never the original: the type makes it impossible),
decodes them as a viewer does (:func:`redact.io.codec.decode_image`) and derives everything
from those pixels:

* ``thumbnail.jpg`` (every image): longest side ``thumbnail_px``;
* equirectangular panoramas also get ``preview.jpg`` (width ``preview_px``), the
  equirectangular tile pyramid ``equirect/<level>/<row>_<col>.jpg`` (level 0 fits one tile,
  each level doubles, the last is full resolution: :func:`pyramid_sizes`), the 6 cube faces
  ``cube/<face>.jpg`` (gnomonic remap, 90 degree views, wrap at the seam: :data:`CUBE_FACES`)
  with their tile pyramid ``cube/<level>/<face>/<y>/<x>.jpg`` (pannellum multires levels,
  1 = lowest: :func:`cube_level_sizes`) and ``viewer.json`` (pannellum multires config, with
  the Marzipano levels under ``marzipano``).

Nothing is ever upscaled past the published size. Every file is a plain baseline JPEG
without any metadata (no EXIF, XMP or ICC), checked by :func:`redact.io.leakscan.embedded_images`.
Pure: no I/O; the caller writes each :class:`Rendition` at its ``uri``. The cube faces' remap
maps depend only on the layout (panorama size, face size, face), so they are kept across
images in :data:`FACE_MAPS` (one :class:`~redact.tiling.RemapCache` per worker process, bounded
in bytes, thread-safe), as fixed-point maps (1/32 px); the side faces' are the front's turned
by a quarter of the width where it divides by 4. Same inputs, same outputs, whatever it holds.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import simplejpeg

from redact.classes import Projection
from redact.config import RenditionsConfig
from redact.errors import ImageError, Stage
from redact.geometry.gnomonic import MAX_REMAP_SOURCE_PX, GnomonicTile, remap_maps
from redact.io.codec import decode_image
from redact.io.leakscan import embedded_images
from redact.tiling import RemapCache

RENDITIONS_SUFFIX = ".renditions"
"""The renditions of ``DST/<rel>`` live under ``DST/<rel>.renditions/``."""

VIEWER_CONFIG = "viewer.json"
THUMBNAIL = "thumbnail.jpg"
PREVIEW = "preview.jpg"

#: Cube faces, pannellum/Marzipano letters -> (yaw, pitch) of the face centre, degrees
#: (yaw 0 = the panorama's centre column, +90 = to its right). Each face is a 90 degree
#: gnomonic view with no roll (:class:`~redact.geometry.gnomonic.GnomonicTile`): the side
#: faces upright; ``u`` has the back (yaw 180) at its top, ``d`` the front at its top, as
#: pannellum's generate.py renders them with nona.
CUBE_FACES: dict[str, tuple[float, float]] = {
    "f": (0.0, 0.0),
    "r": (90.0, 0.0),
    "b": (180.0, 0.0),
    "l": (-90.0, 0.0),
    "u": (0.0, 90.0),
    "d": (0.0, -90.0),
}

_STRIP_ROWS = 256  # cube face maps are built this many rows at a time (bounded float64 rays)

#: Side faces: quarter turns of yaw right of the front face (:func:`turn_face_maps`).
_QUARTER_TURNS = {"f": 0, "r": 1, "b": 2, "l": 3}

FaceMaps = tuple[npt.NDArray[np.int16], npt.NDArray[np.uint16]]
"""Fixed-point :func:`cv2.remap` maps of one cube face (:func:`direct_face_maps`)."""

#: Bound of :data:`FACE_MAPS`: the f/u/d maps of one 4096^2 layout (3 x 96 MiB) or of four
#: 2048^2 layouts (an 8000 px wide panorama: 3 x 24 MiB each).
FACE_MAPS_MAX_BYTES = 320 * 2**20

FACE_MAPS = RemapCache(maxsize=16, max_bytes=FACE_MAPS_MAX_BYTES)
"""The cube-face maps of every panorama layout this process has rendered recently, shared by
all its threads (one worker process: one set of maps per layout, not one per image)."""


class RenditionKind(enum.Enum):
    THUMBNAIL = "thumbnail"
    PREVIEW = "preview"
    EQUIRECT_TILE = "equirect_tile"
    CUBE_FACE = "cube_face"
    CUBE_TILE = "cube_tile"
    VIEWER_CONFIG = "viewer_config"


@dataclass(frozen=True)
class Rendition:
    """One file derived from a published copy.

    Attributes:
        kind: what it is.
        name: path relative to the image's renditions folder (``equirect/3/0_1.jpg``).
        uri: where it is written (``base_uri/name``).
        data: its encoded bytes.
        width, height: its size, pixels (0 for ``viewer.json``).
        level: pyramid level (0 = the one-tile level, increasing to the largest); None for
            items outside a pyramid. A cube tile's level is its folder's level minus 1.
        level_width, level_height: size of the whole image the item is cut from: that
            level's equirectangular image, the cube face at that level, or the item itself.
        face: cube face letter (:data:`CUBE_FACES`) or "".
        x, y, w, h: the item's pixel rectangle in that image.
    """

    kind: RenditionKind
    name: str
    uri: str
    data: bytes = field(repr=False)
    width: int = 0
    height: int = 0
    level: int | None = None
    level_width: int = 0
    level_height: int = 0
    face: str = ""
    x: int = 0
    y: int = 0
    w: int = 0
    h: int = 0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def manifest_entry(self) -> dict[str, Any]:
        """The ``renditions`` struct of the manifest (:data:`redact.manifest.RENDITION_TYPE`)."""
        return {
            "kind": self.kind.value,
            "uri": self.uri,
            "width": self.width,
            "height": self.height,
            "level": self.level,
            "level_width": self.level_width,
            "level_height": self.level_height,
            "face": self.face,
            "x": self.x,
            "y": self.y,
            "w": self.w,
            "h": self.h,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class TileRect:
    """One tile of a ``level_width x level_height`` image: row/column and pixel rectangle."""

    row: int
    col: int
    x: int
    y: int
    w: int
    h: int


def renditions_folder(output_uri: str) -> str:
    """The folder of a published copy's renditions: ``<output uri>.renditions``."""
    return output_uri + RENDITIONS_SUFFIX


# --- geometry (sizes and rectangles; no pixels) -----------------------------------------------


def fit_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """``(w, h)`` with the longest side ``min(longest, max(width, height))`` (never upscaled),
    aspect kept, each side at least 1."""
    _check_size(width, height)
    scale = min(1.0, longest / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def pyramid_sizes(width: int, height: int, tile_px: int) -> tuple[tuple[int, int], ...]:
    """Level sizes ``(w, h)`` of a tile pyramid, level 0 first: the last is ``width x height``,
    each lower level is half the next (rounded up), level 0 the first that fits one tile."""
    _check_size(width, height)
    if tile_px < 1:
        raise ValueError(f"tile_px must be positive, got {tile_px}")
    sizes = [(width, height)]
    while max(sizes[-1]) > tile_px:
        w, h = sizes[-1]
        sizes.append(((w + 1) // 2, (h + 1) // 2))
    return tuple(reversed(sizes))


def tile_grid(width: int, height: int, tile_px: int) -> tuple[TileRect, ...]:
    """The tiles of a ``width x height`` image, row-major: ``tile_px`` squares, cut short at the
    right and bottom edges. They cover every pixel exactly once."""
    _check_size(width, height)
    return tuple(
        TileRect(r, c, x, y, min(tile_px, width - x), min(tile_px, height - y))
        for r, y in enumerate(range(0, height, tile_px))
        for c, x in enumerate(range(0, width, tile_px))
    )


def cube_face_size(width: int, tile_px: int, cube_face_px: int = 0) -> int:
    """Cube face size, pixels, of an equirectangular panorama ``width`` pixels wide.

    ``cube_face_px`` > 0 is taken as is. Auto (0): a face pixel at the face centre matches an
    equirectangular pixel at ``width / pi``; that is rounded to ``tile_px`` times the nearest
    power of two (in log scale), so every cube level halves into whole tiles (Marzipano needs
    level sizes that are multiples of the tile size); below ``tile_px`` it is ``width / pi``
    rounded down to a multiple of 8 (at least 8), one tile per face.
    """
    if cube_face_px > 0:
        return cube_face_px
    native = width / math.pi
    if native <= tile_px:
        return max(8, 8 * int(native // 8))
    return tile_px * 2 ** max(0, round(math.log2(native / tile_px)))


def cube_level_sizes(face_px: int, tile_px: int) -> tuple[int, ...]:
    """Face size of each cube pyramid level, pannellum level 1 (lowest) first: ``face_px`` at
    the top (``maxLevel``), halved (rounded down) per level down to the first that fits one
    tile, like pannellum's generate.py."""
    if face_px < 1 or tile_px < 1:
        raise ValueError(f"face_px and tile_px must be positive, got {face_px}, {tile_px}")
    sizes = [face_px]
    while sizes[-1] > tile_px:
        sizes.append(sizes[-1] // 2)
    return tuple(reversed(sizes))


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")


# --- pixels -------------------------------------------------------------------------------------


def encode_jpeg(rgb: npt.NDArray[np.uint8], quality: int) -> bytes:
    """(H, W, 3) uint8 RGB -> a baseline JPEG with no metadata at all (4:2:0).

    Raises ImageError (stage ENCODE) if encoding fails or the leak scan finds a picture in it.
    """
    try:
        out = bytes(
            simplejpeg.encode_jpeg(
                np.ascontiguousarray(rgb), quality=quality, colorspace="RGB", colorsubsampling="420"
            )
        )
    except (ValueError, RuntimeError) as e:
        raise ImageError("renditions_failed", f"JPEG encode failed: {e}", Stage.ENCODE) from e
    found = embedded_images(out)
    if found:
        raise ImageError(
            "renditions_failed", f"a rendition would carry a picture: {found[0]}", Stage.ENCODE
        )
    return out


def resize_area(img: npt.NDArray[np.uint8], size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """``img`` resized to ``size = (w, h)`` with area averaging (the input when already that size)."""
    if (img.shape[1], img.shape[0]) == size:
        return img
    return np.asarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA), np.uint8)


def render_face(
    pano: npt.NDArray[np.uint8], face: str, size: int, cache: RemapCache | None = None
) -> npt.NDArray[np.uint8]:
    """Cube face ``face`` (:data:`CUBE_FACES`), ``size x size``, from an equirectangular
    (H, W, 3) panorama: gnomonic remap, bilinear, wrapping at the 0/360 seam.

    With ``cache``: fixed-point maps (:func:`cube_face_maps`, 1/32 px bilinear weights) kept in
    ``cache`` across calls. Without: the float32 maps of
    :func:`~redact.geometry.gnomonic.remap_maps` built for this call in 256-row strips (the
    reference; the two differ by the 1/32 px rounding of the sample position only).
    """
    H, W = pano.shape[:2]
    if W >= MAX_REMAP_SOURCE_PX or H >= MAX_REMAP_SOURCE_PX:
        raise ValueError(f"panorama {W}x{H} is too large for cv2.remap")
    if cache is not None:
        xy, frac = cube_face_maps(face, size, W, H, cache)
        out = cv2.remap(pano, xy, frac, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        return np.asarray(out, np.uint8).reshape(size, size, -1)
    yaw, pitch = CUBE_FACES[face]
    tile = GnomonicTile(yaw, pitch, 90.0, size)
    result = np.empty((size, size, pano.shape[2]), np.uint8)
    for r0 in range(0, size, _STRIP_ROWS):
        r1 = min(size, r0 + _STRIP_ROWS)
        map_x, map_y = remap_maps(tile, W, H, rows=(r0, r1))
        result[r0:r1] = cv2.remap(
            pano, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP
        ).reshape(r1 - r0, size, -1)
    return result


def direct_face_maps(face: str, size: int, W: int, H: int) -> FaceMaps:
    """Fixed-point :func:`cv2.remap` maps of cube face ``face`` (``size x size``) from a
    ``W x H`` panorama: :func:`~redact.geometry.gnomonic.remap_maps` (float32, built in 256-row
    strips) converted by :func:`cv2.convertMaps` to ``CV_16SC2`` (``(size, size, 2)`` int16:
    the integer x, y of each sample's top-left source pixel) and ``CV_16UC1`` (``(size,
    size)`` uint16: its 1/32 px fraction, as OpenCV's interpolation table index). 6 bytes per
    face pixel (24 MiB at 2048^2) instead of 8 for the float32 pair."""
    yaw, pitch = CUBE_FACES[face]
    tile = GnomonicTile(yaw, pitch, 90.0, size)
    xy = np.empty((size, size, 2), np.int16)
    frac = np.empty((size, size), np.uint16)
    for r0 in range(0, size, _STRIP_ROWS):
        r1 = min(size, r0 + _STRIP_ROWS)
        map_x, map_y = remap_maps(tile, W, H, rows=(r0, r1))
        xy[r0:r1], frac[r0:r1] = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
    return xy, frac


def turn_face_maps(front: FaceMaps, quarters: int, W: int) -> FaceMaps:
    """The maps of the side face ``quarters`` x 90 degrees of yaw right of the front face, from
    the front face's (:func:`direct_face_maps`) of a panorama ``W`` pixels wide, ``W % 4 == 0``:
    the same rays turned about the vertical axis sample the same rows, ``quarters * W / 4``
    columns further (mod ``W``), at the same fraction. New ``xy``; ``frac`` is shared."""
    if W % 4:
        raise ValueError(f"a quarter turn is a whole number of columns only if W % 4 == 0, got {W}")
    xy, frac = front
    turned = np.empty_like(xy)
    turned[..., 1] = xy[..., 1]
    x = xy[..., 0].astype(np.int32) + quarters * (W // 4)
    turned[..., 0] = np.remainder(x, W)  # -1 (left of column 0, cv2.BORDER_WRAP) -> W - 1
    return turned, frac


def cube_face_maps(face: str, size: int, W: int, H: int, cache: RemapCache) -> FaceMaps:
    """Fixed-point maps of cube face ``face`` (``size x size``) from a ``W x H`` panorama,
    through ``cache`` (key ``("cube", W, H, size, face)``).

    ``W % 4 == 0``: only ``f``, ``u`` and ``d`` are built and held; ``r``, ``b`` and ``l`` are
    the front's turned by :func:`turn_face_maps` (made per call, not held). Otherwise each
    face's own :func:`direct_face_maps`. Same values for a given layout whatever the cache
    holds (purity: the cache only saves time)."""
    quarters = _QUARTER_TURNS.get(face)
    if W % 4 == 0 and quarters is not None:
        front = cache.get(("cube", W, H, size, "f"), lambda: direct_face_maps("f", size, W, H))
        return front if quarters == 0 else turn_face_maps(front, quarters, W)
    return cache.get(("cube", W, H, size, face), lambda: direct_face_maps(face, size, W, H))


def _cube_source(pixels: npt.NDArray[np.uint8], face_px: int) -> npt.NDArray[np.uint8]:
    """The panorama at the resolution the faces sample (4 px per face pixel around the
    equator: past the faces' own maximum, 2 x pi / 2 at their edges), never upscaled."""
    H, W = pixels.shape[:2]
    w = min(W, 4 * face_px, MAX_REMAP_SOURCE_PX - 1)
    return resize_area(pixels, (w, max(1, min(H, round(H * w / W)))))


def _equirect_tiles(
    pixels: npt.NDArray[np.uint8], cfg: RenditionsConfig, base: str
) -> Iterator[Rendition]:
    """The equirectangular pyramid, top level first (each level from the one above)."""
    sizes = pyramid_sizes(pixels.shape[1], pixels.shape[0], cfg.tile_px)
    level_img = pixels
    for level in range(len(sizes) - 1, -1, -1):
        lw, lh = sizes[level]
        level_img = resize_area(level_img, (lw, lh))
        for t in tile_grid(lw, lh, cfg.tile_px):
            name = f"equirect/{level}/{t.row}_{t.col}.jpg"
            yield _cut(RenditionKind.EQUIRECT_TILE, name, base, level_img, t, cfg, level=level)


def _cube(
    pixels: npt.NDArray[np.uint8], cfg: RenditionsConfig, base: str, cache: RemapCache
) -> Iterator[Rendition]:
    """Cube faces and their tile pyramid (one face's pixels alive at a time), then viewer.json."""
    face_px = cube_face_size(pixels.shape[1], cfg.tile_px, cfg.cube_face_px)
    tile = min(cfg.tile_px, face_px)
    sizes = cube_level_sizes(face_px, tile)
    source = _cube_source(pixels, face_px)
    for face in CUBE_FACES:
        img = render_face(source, face, face_px, cache)
        yield _whole(RenditionKind.CUBE_FACE, f"cube/{face}.jpg", img, cfg, base, face=face)
        for index in range(len(sizes) - 1, -1, -1):
            size = sizes[index]
            img = resize_area(img, (size, size))
            for t in tile_grid(size, size, tile):
                name = f"cube/{index + 1}/{face}/{t.row}/{t.col}.jpg"
                yield _cut(RenditionKind.CUBE_TILE, name, base, img, t, cfg, index, face)
    data = viewer_config(pixels.shape[1], pixels.shape[0], cfg)
    yield Rendition(RenditionKind.VIEWER_CONFIG, VIEWER_CONFIG, f"{base}/{VIEWER_CONFIG}", data)


def viewer_config(width: int, height: int, cfg: RenditionsConfig) -> bytes:
    """``viewer.json`` of a ``width x height`` panorama: the pannellum multires config (paths
    relative to the renditions folder: set ``basePath`` to the folder's URL + ``/cube``), the
    Marzipano cube levels (``marzipano.levels``: ``tileSize``, ``size`` and the ``level``
    folder of each; Marzipano's level index ``z`` is ``level - 1``) and the equirectangular
    pyramid's levels. Canonical JSON (sorted keys): identical bytes on every run."""
    face_px = cube_face_size(width, cfg.tile_px, cfg.cube_face_px)
    tile = min(cfg.tile_px, face_px)
    sizes = cube_level_sizes(face_px, tile)
    doc: dict[str, Any] = {
        "type": "multires",
        "multiRes": {
            "basePath": "cube",
            "path": "/%l/%s/%y/%x",
            "extension": "jpg",
            "tileResolution": tile,
            "maxLevel": len(sizes),
            "cubeResolution": face_px,
        },
        "marzipano": {
            "levels": [
                {"tileSize": min(tile, s), "size": s, "level": i + 1} for i, s in enumerate(sizes)
            ],
            "path": "cube/{level}/{f}/{y}/{x}.jpg",
            "faceSize": face_px,
        },
    }
    if cfg.pyramid:
        doc["equirect"] = {
            "path": "equirect/{level}/{row}_{col}.jpg",
            "tileSize": cfg.tile_px,
            "levels": [
                {"level": i, "width": w, "height": h}
                for i, (w, h) in enumerate(pyramid_sizes(width, height, cfg.tile_px))
            ],
        }
    if cfg.preview_px:
        doc["preview"] = PREVIEW
    return json.dumps(doc, sort_keys=True, indent=1).encode()


def _cut(
    kind: RenditionKind,
    name: str,
    base: str,
    img: npt.NDArray[np.uint8],
    rect: TileRect,
    cfg: RenditionsConfig,
    level: int | None = None,
    face: str = "",
) -> Rendition:
    """The JPEG of ``rect`` (pixels) of ``img`` (a level image or a face), placed in it."""
    lh, lw = img.shape[:2]
    data = encode_jpeg(img[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w], cfg.jpeg_quality)
    return Rendition(
        kind, name, f"{base}/{name}", data, rect.w, rect.h, level, lw, lh, face,
        rect.x, rect.y, rect.w, rect.h,
    )  # fmt: skip


def _whole(
    kind: RenditionKind,
    name: str,
    img: npt.NDArray[np.uint8],
    cfg: RenditionsConfig,
    base: str,
    face: str = "",
) -> Rendition:
    """The whole of ``img`` as one rendition (thumbnail, preview, cube face)."""
    h, w = img.shape[:2]
    return _cut(kind, name, base, img, TileRect(0, 0, 0, 0, w, h), cfg, face=face)


def make_renditions(
    published: bytes,
    projection: Projection,
    cfg: RenditionsConfig,
    base_uri: str,
    *,
    max_pixels: int,
    face_maps: RemapCache | None = None,
) -> tuple[Rendition, ...]:
    """Every rendition of a published copy (see the module docstring), from its bytes.

    Args:
        published: the published copy's encoded bytes (JPEG or PNG), exactly as written.
        projection: EQUIRECTANGULAR gets the pyramid and the cube; anything else (photos)
            a thumbnail only.
        cfg: the ``renditions`` config section.
        base_uri: the renditions folder (:func:`renditions_folder` of the copy's uri).
        max_pixels: decode limit (``io.max_pixels``).
        face_maps: where the cube faces' remap maps are kept across calls (None: the
            process-wide :data:`FACE_MAPS`). Only time depends on it, never the output.

    Returns the renditions, names unique. Raises ImageError (``renditions_failed``, stage
    ENCODE) for anything that goes wrong: the caller must then publish nothing.
    """
    try:
        pixels = decode_image(published, max_pixels=max_pixels).pixels
        H, W = pixels.shape[:2]
        out = [
            _whole(
                RenditionKind.THUMBNAIL,
                THUMBNAIL,
                resize_area(pixels, fit_size(W, H, cfg.thumbnail_px)),
                cfg,
                base_uri,
            )
        ]
        if projection is Projection.EQUIRECTANGULAR:
            pw = min(W, cfg.preview_px)
            preview = resize_area(pixels, (pw, max(1, round(H * pw / W))))
            out.append(_whole(RenditionKind.PREVIEW, PREVIEW, preview, cfg, base_uri))
            if cfg.pyramid:
                out.extend(_equirect_tiles(pixels, cfg, base_uri))
            if cfg.cube:
                out.extend(
                    _cube(pixels, cfg, base_uri, FACE_MAPS if face_maps is None else face_maps)
                )
    except ImageError as e:
        if e.reason == "renditions_failed":
            raise
        raise ImageError("renditions_failed", f"renditions: {e}", Stage.ENCODE) from e
    except Exception as e:  # any fault: the image is quarantined, never published without them
        raise ImageError(
            "renditions_failed", f"renditions: {' '.join(str(e).split())}", Stage.ENCODE
        ) from e
    return tuple(out)
