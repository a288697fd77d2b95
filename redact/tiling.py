"""Tile plans: which views of an image the detector sees, and how boxes map back.

* Equirectangular panoramas get rings of :class:`GnomonicTile` per :class:`TileLevel`
  (:func:`plan_panorama_tiles`), rendered with cached remap maps.
* Ordinary photos get native-resolution :class:`CropTile` windows (magnified for photos
  smaller than a tile) plus an optional global view (:func:`plan_perspective_tiles`).

Everything here is pure geometry; see :func:`plan_panorama_tiles` for the coverage guarantee.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

import cv2
import numpy as np
import numpy.typing as npt

from redact.config import ConfigError, TileLevel, TilingConfig
from redact.geometry.boxes import round_out, split_at_seam
from redact.geometry.gnomonic import (
    GnomonicTile,
    remap_maps,
    remap_row_base,
    tile_boxes_to_pano,
)
from redact.geometry.gnomonic import render_tile as render_gnomonic

#: Panorama tiles never get a wider field of view than this (degrees). Where the native
#: resolution rule asks for more (small panoramas, low ``scale``), the tile is rendered at a
#: higher resolution than asked instead, which only helps detection.
MAX_FOV_DEG = 90.0

_Maps = TypeVar("_Maps", bound=tuple[np.ndarray, ...])

_MAX_YAW_STEPS = 4096  # per row; far above anything a sane config needs
_EXTRA_ROW_COUNTS = 8  # row counts tried beyond the minimum when minimising the tile count


# --- crop tiles (ordinary photos) ---------------------------------------------------------


@dataclass(frozen=True)
class CropTile:
    """The source rectangle ``[x0, x0 + width) x [y0, y0 + height)`` shown in a square tile.

    Letterboxed, never distorted: the rectangle is scaled by ``scale`` (both axes; ``None`` =
    fit, ``size / max(width, height)``) to :attr:`content_size` pixels, placed at the tile's
    top-left corner, and the rest of the tile is zero padding. Because the content size is
    rounded to whole pixels the exact per-axis factors are :attr:`scale_xy`; boxes map back
    with them exactly.
    """

    x0: int
    y0: int
    width: int
    height: int
    size: int
    scale: float | None = None

    def __post_init__(self) -> None:
        for name, lo in (("x0", 0), ("y0", 0), ("width", 1), ("height", 1), ("size", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < lo:
                raise ValueError(f"CropTile.{name} must be an integer >= {lo}, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.scale is not None:
            s = float(self.scale)
            if not (math.isfinite(s) and s > 0):
                raise ValueError(f"CropTile.scale must be positive, got {self.scale!r}")
            if max(self.width, self.height) * s > self.size + 1e-9:
                raise ValueError(
                    f"CropTile {self.width}x{self.height} at scale {s} does not fit a "
                    f"{self.size} px tile"
                )
            object.__setattr__(self, "scale", s)

    @property
    def effective_scale(self) -> float:
        """Requested scale (``scale``, or the fit scale when None)."""
        if self.scale is not None:
            return self.scale
        return self.size / max(self.width, self.height)

    @property
    def content_size(self) -> tuple[int, int]:
        """``(width, height)`` in tile pixels of the image content (the rest is padding)."""
        s = self.effective_scale
        cw = min(self.size, max(1, round(self.width * s)))
        ch = min(self.size, max(1, round(self.height * s)))
        return cw, ch

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Exact tile pixels per source pixel along x and y."""
        cw, ch = self.content_size
        return cw / self.width, ch / self.height

    @property
    def tile_id(self) -> str:
        """Stable identifier, e.g. ``"c:x0=0,y0=0,w=640,h=480,s=640,k=1"``."""
        base = f"c:x0={self.x0},y0={self.y0},w={self.width},h={self.height},s={self.size}"
        return base if self.scale is None else f"{base},k={self.scale:.6g}"


Tile = GnomonicTile | CropTile


def render_crop(image: np.ndarray, tile: CropTile) -> np.ndarray:
    """Render a :class:`CropTile` from ``image`` (H, W[, C]) -> new (size, size[, C]) array."""
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    H, W = image.shape[:2]
    if tile.x0 + tile.width > W or tile.y0 + tile.height > H:
        raise ValueError(f"{tile.tile_id} lies outside the {W}x{H} image")
    crop = image[tile.y0 : tile.y0 + tile.height, tile.x0 : tile.x0 + tile.width]
    cw, ch = tile.content_size
    if (cw, ch) != (tile.width, tile.height):
        shrink = cw < tile.width or ch < tile.height
        crop = cv2.resize(
            crop, (cw, ch), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
    out = np.zeros((tile.size, tile.size, *image.shape[2:]), image.dtype)
    out[:ch, :cw] = crop
    return out


def crop_boxes_to_image(
    tile: CropTile, xyxy: npt.ArrayLike
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Tile boxes (N, 4) -> ``(boxes (M, 4) float32 image pixels, src_index (M,) int64)``.

    Boxes are clipped to the crop rectangle; boxes lying wholly in the padding (no overlap
    with the content area) are dropped.
    """
    b = np.asarray(xyxy, np.float64)
    if b.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {b.shape}")
    cw, ch = tile.content_size
    keep = (b[:, 0] < cw) & (b[:, 2] > 0) & (b[:, 1] < ch) & (b[:, 3] > 0)
    src = np.flatnonzero(keep).astype(np.int64)
    b = b[keep]
    sx, sy = tile.scale_xy
    x1 = np.clip(tile.x0 + b[:, 0] / sx, tile.x0, tile.x0 + tile.width)
    x2 = np.clip(tile.x0 + b[:, 2] / sx, tile.x0, tile.x0 + tile.width)
    y1 = np.clip(tile.y0 + b[:, 1] / sy, tile.y0, tile.y0 + tile.height)
    y2 = np.clip(tile.y0 + b[:, 3] / sy, tile.y0, tile.y0 + tile.height)
    ox1, ox2 = round_out(x1, x2)
    oy1, oy2 = round_out(y1, y2)
    return np.stack([ox1, oy1, ox2, oy2], axis=1).astype(np.float32), src


def _axis_starts(length: int, window: int, overlap: int) -> list[int]:
    """Window starts along one axis: evenly spread, consecutive windows overlap >= ``overlap``,
    the first starts at 0 and the last ends at ``length``."""
    if length <= window:
        return [0]
    n = math.ceil((length - overlap) / (window - overlap))
    n = max(n, 2)
    return [(k * (length - window)) // (n - 1) for k in range(n)]


MIN_UPSCALE = 1.25
"""Smallest magnification worth a second view of a small photo (not measured: a 1.07x window
over a 600 px photo would nearly repeat its native view, for one more inference)."""
MAX_UPSCALE = 8.0
"""Largest magnification: a thumbnail's windows stay at least ``tile_size / 8`` source pixels."""


def upscale_factor(W: int, H: int, tiling: TilingConfig) -> float:
    """How much a ``W x H`` photo's windows magnify it: ``target / max(W, H)`` where the target
    is ``perspective.upscale_below_px`` (if > 0) else ``upscale_below_tiles * tile_size``, when
    the photo is smaller; 1.0 below :data:`MIN_UPSCALE` (the magnified view would nearly
    repeat the native one), at most :data:`MAX_UPSCALE`."""
    persp = tiling.perspective
    target = persp.upscale_below_px or persp.upscale_below_tiles * tiling.tile_size
    factor = target / max(W, H) if target > max(W, H) else 1.0
    return 1.0 if factor < MIN_UPSCALE else min(factor, MAX_UPSCALE)


def plan_perspective_tiles(W: int, H: int, tiling: TilingConfig) -> tuple[CropTile, ...]:
    """Windows over a ``W x H`` photo, row-major, then the global view.

    * Native resolution: square windows of ``tile_size`` source pixels (scale 1), consecutive
      windows overlapping by at least ``perspective.overlap_px`` so that any object up to that
      size lies whole in one window; evenly spread, the last ending at the border. A side
      shorter than a tile gets one window over it (letterboxed).
    * A photo smaller than the upscale target (:func:`upscale_factor`, by default one tile) is
      viewed magnified instead: windows are ``tile_size / factor`` source pixels, the overlap
      (source pixels) at most half a window; larger objects are whole in the global view.
    * ``perspective.global_view``: one more tile with the whole photo fitted into it and
      never magnified (a photo smaller than the tile sits in it at native scale), added when
      the windows are more than one or magnified (otherwise it would repeat them).
    """
    if W < 1 or H < 1:
        raise ValueError(f"image size must be positive, got {W}x{H}")
    size = tiling.tile_size
    persp = tiling.perspective
    factor = upscale_factor(W, H, tiling)
    window = max(1, math.floor(size / factor + 1e-9))
    overlap = persp.overlap_px
    if factor > 1.0:
        overlap = min(overlap, window // 2)
    if (W > window or H > window) and overlap >= window:
        raise ConfigError(
            f"tiling.perspective.overlap_px ({overlap}) must be smaller than the window "
            f"({window} source px for tile_size {size})"
        )
    xs = _axis_starts(W, window, overlap)
    ys = _axis_starts(H, window, overlap)
    tw, th = min(window, W), min(window, H)
    tiles = [CropTile(x0, y0, tw, th, size, scale=factor) for y0 in ys for x0 in xs]
    if persp.global_view and (len(tiles) > 1 or factor > 1.0):
        tiles.append(CropTile(0, 0, W, H, size, scale=1.0 if max(W, H) <= size else None))
    return tuple(tiles)


# --- gnomonic tiles (panoramas) ------------------------------------------------------------


def level_fov_deg(W: int, tile_size: int, level: TileLevel) -> float:
    """Field of view (degrees) of ``level``'s tiles for a panorama ``W`` pixels wide.

    Chosen so that pixels per degree at the tile centre, ``f * pi / 180``, equal
    ``level.scale * W / 360`` (the panorama's own resolution on the equator and along every
    meridian, times ``scale``); capped at :data:`MAX_FOV_DEG`.
    """
    if W < 1:
        raise ValueError(f"panorama width must be positive, got {W}")
    focal = level.scale * W / (2.0 * math.pi)
    fov = math.degrees(2.0 * math.atan(tile_size / (2.0 * focal)))
    return min(fov, MAX_FOV_DEG)


def _side_normals(pitch_deg: float, fov_deg: float) -> npt.NDArray[np.float64]:
    """(4, 3) inward unit normals (world) of the side planes of a yaw-0 tile's view pyramid."""
    t = math.tan(math.radians(fov_deg) / 2.0)
    cam = np.array([[1.0, 0.0, t], [-1.0, 0.0, t], [0.0, 1.0, t], [0.0, -1.0, t]])
    cam /= math.sqrt(1.0 + t * t)
    basis = GnomonicTile(0.0, pitch_deg, fov_deg, 1).basis()
    return cam @ basis


def _min_cos(lo: npt.NDArray[np.float64], hi: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Minimum of cos over ``[lo, hi]`` (radians, ``hi - lo < 2 pi``), elementwise."""
    k = np.ceil((lo - math.pi) / (2.0 * math.pi))  # first trough pi + 2 pi k >= lo
    has_trough = math.pi + 2.0 * math.pi * k <= hi
    return np.where(has_trough, -1.0, np.minimum(np.cos(lo), np.cos(hi)))


def rect_in_footprint(
    pitch_deg: float,
    fov_deg: float,
    radius_deg: float,
    half_width_deg: npt.ArrayLike,
    lat_lo_deg: float,
    lat_hi_deg: float,
) -> npt.NDArray[np.bool_]:
    """Exact test: is every cap of angular radius ``radius_deg`` centred in the lon/lat
    rectangle ``[-h, h] x [lat_lo, lat_hi]`` wholly inside the tile (yaw 0, ``pitch_deg``,
    ``fov_deg``)? Vectorized over ``h = half_width_deg`` (degrees, <= 180) -> bool array.

    A cap of radius r centred at c is inside the tile iff ``c . n >= sin r`` for the inward
    normal n of each of the 4 side planes. Over the rectangle
    ``c . n = cos(lat) m cos(lon - lon_n) + n_y sin(lat)``; its minimum is found in closed form
    (first over lon, then over lat, each a sinusoid on an interval).
    """
    h = np.radians(np.asarray(half_width_deg, np.float64))
    a, b = math.radians(lat_lo_deg), math.radians(lat_hi_deg)
    need = math.sin(math.radians(radius_deg)) + 1e-12  # margin against rounding
    ok = np.ones(h.shape, bool)
    for n in _side_normals(pitch_deg, fov_deg):
        m = math.hypot(n[0], n[2])
        lon_n = math.atan2(n[0], n[2])
        k = m * _min_cos(-h - lon_n, h - lon_n)  # min over lon of m cos(lon - lon_n)
        amp = np.hypot(k, n[1])
        phase = np.arctan2(n[1], k)  # k cos(lat) + n_y sin(lat) = amp cos(lat - phase)
        low = _min_cos(np.full_like(h, a) - phase, np.full_like(h, b) - phase) * amp
        ok &= low >= need
    return ok


@dataclass(frozen=True)
class RowPlan:
    """One ring of tiles: ``count`` tiles at ``pitch_deg``, covering ``[lat_lo, lat_hi]``."""

    pitch_deg: float
    count: int
    lat_lo_deg: float
    lat_hi_deg: float


def _row_count(pitch: float, fov: float, radius: float, lo: float, hi: float) -> int | None:
    """Fewest equally spaced yaws at ``pitch`` covering the latitude slice, or None."""
    counts = np.arange(1, _MAX_YAW_STEPS + 1)
    ok = rect_in_footprint(pitch, fov, radius, 180.0 / counts, lo, hi)
    idx = np.flatnonzero(ok)
    return int(counts[idx[0]]) if idx.size else None


def plan_level_rows(fov_deg: float, level: TileLevel) -> tuple[RowPlan, ...]:
    """Rows for one level: the band split into equal latitude slices, one ring per slice
    (centred on it), each ring with the fewest yaws that keeps every object of the level's
    size whole in a tile; the row count minimising the total tile count wins (ties: fewer
    rows). Rows are ordered from north to south.
    """
    if level.max_object_deg >= fov_deg:
        raise ConfigError(
            f"tiling level {level.name!r}: max_object_deg ({level.max_object_deg}) must be "
            f"smaller than the tile field of view ({fov_deg:.3f} deg); lower max_object_deg, "
            f"lower the level's scale or raise tile_size"
        )
    band = level.pitch_max_deg - level.pitch_min_deg
    radius = level.max_object_deg / 2.0
    first = math.floor(band / (fov_deg - level.max_object_deg)) + 1
    best: tuple[RowPlan, ...] | None = None
    tried_feasible = 0
    for rows in range(first, first + 10_000):
        step = band / rows
        plan: list[RowPlan] = []
        for j in range(rows):
            hi = level.pitch_max_deg - j * step
            lo = level.pitch_max_deg - (j + 1) * step if j < rows - 1 else level.pitch_min_deg
            pitch = (lo + hi) / 2.0
            count = _row_count(pitch, fov_deg, radius, lo, hi)
            if count is None:
                break
            plan.append(RowPlan(pitch, count, lo, hi))
        else:
            if best is None or sum(r.count for r in plan) < sum(r.count for r in best):
                best = tuple(plan)
            tried_feasible += 1
            if tried_feasible > _EXTRA_ROW_COUNTS:
                break
    if best is None:  # pragma: no cover - some row count always works when max_object < fov
        raise ConfigError(f"tiling level {level.name!r}: no tile layout covers the band")
    return best


def plan_panorama_tiles(W: int, H: int, tiling: TilingConfig) -> tuple[GnomonicTile, ...]:
    """Gnomonic tiles for a ``W x H`` equirectangular panorama, ordered (level, row N->S, yaw).

    Per level: tile size ``tiling.tile_size``, fov from :func:`level_fov_deg` (native
    resolution rule). Guarantee: every object that fits in a spherical cap of angular diameter
    ``level.max_object_deg`` (a disc; a square of side d needs a cap of diameter d * sqrt 2)
    and is centred at a latitude in ``[pitch_min_deg, pitch_max_deg]`` lies wholly inside at
    least one tile of the level. Proof by construction: each row covers a latitude slice and
    its yaw step is chosen with :func:`rect_in_footprint` (exact) so that the half-step x slice
    rectangle around each tile centre is inside that tile's eroded footprint.

    Yaws are ``k * 360 / count`` reduced into ``[-180, 180)``, sorted ascending.

    Plans are memoised per ``(W, H, tiling)`` (planning takes ~0.12 s at 8000x4000; every
    panorama of a size has the same plan).
    """
    if W < 1 or H < 1:
        raise ValueError(f"panorama size must be positive, got {W}x{H}")
    return _plan_panorama_tiles(int(W), int(H), tiling)


@functools.lru_cache(maxsize=64)
def _plan_panorama_tiles(W: int, H: int, tiling: TilingConfig) -> tuple[GnomonicTile, ...]:
    tiles: list[GnomonicTile] = []
    for level in tiling.levels:
        fov = level_fov_deg(W, tiling.tile_size, level)
        for row in plan_level_rows(fov, level):
            step = 360.0 / row.count
            yaws = sorted(((k * step + 180.0) % 360.0) - 180.0 for k in range(row.count))
            tiles.extend(GnomonicTile(y, row.pitch_deg, fov, tiling.tile_size) for y in yaws)
    return tuple(tiles)


# --- rendering and mapping back --------------------------------------------------------------


class MapCache:
    """Thread-safe LRU cache of maps (tuples of read-only arrays) under any hashable key,
    each built once by a callable (:meth:`get`). Bounded by ``maxsize`` entries and, when set,
    ``max_bytes`` (the arrays' total ``nbytes``; an entry larger than ``max_bytes`` on its own
    is returned but never held). Maps are built outside the lock; a key another thread is
    building is waited for, not built twice.
    """

    def __init__(self, maxsize: int = 256, max_bytes: int | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[Hashable, tuple[np.ndarray, ...]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._building: dict[Hashable, threading.Event] = {}

    def __len__(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        """Total ``nbytes`` of the arrays held."""
        return self._bytes

    def get(self, key: Hashable, build: Callable[[], _Maps]) -> _Maps:
        """The maps stored under ``key``; on a miss ``build()`` makes them (made read-only).

        A key another thread is building is waited for, not built twice; if that build fails
        (or its result is too large to hold) the waiting thread builds it itself.
        """
        return self._get(key, build)[0]

    def _get(self, key: Hashable, build: Callable[[], _Maps]) -> tuple[_Maps, bool]:
        """:meth:`get`, and whether this call built the maps."""
        while True:
            with self._lock:
                found = self._data.get(key)
                if found is not None:
                    self._data.move_to_end(key)
                    self.hits += 1
                    return cast(_Maps, found), False
                waiting = self._building.get(key)
                if waiting is None:
                    event = self._building[key] = threading.Event()
                    self.misses += 1
                    break
            waiting.wait()
        try:
            maps = build()
            for m in maps:
                m.setflags(write=False)
            self._store(key, maps)
        finally:
            with self._lock:
                self._building.pop(key, None)
            event.set()
        return maps, True

    def _store(self, key: Hashable, maps: _Maps) -> None:
        size = sum(m.nbytes for m in maps)
        with self._lock:
            if self.max_bytes is not None and size > self.max_bytes:
                return
            self._data[key] = maps
            self._bytes += size
            while len(self._data) > self.maxsize or (
                self.max_bytes is not None and self._bytes > self.max_bytes
            ):
                _, old = self._data.popitem(last=False)
                self._bytes -= sum(m.nbytes for m in old)

    def prefetch(self, items: Sequence[tuple[Hashable, Callable[[], _Maps]]]) -> int:
        """Make sure every ``(key, build)`` item is stored: first build the missing keys no
        other thread is building (threads prefetching the same layout split the work instead
        of each building all of it), then wait for the rest. Returns how many this call built.
        """
        built, later = 0, []
        for key, build in items:
            with self._lock:
                if key in self._data:
                    continue
                if key in self._building:
                    later.append((key, build))
                    continue
            built += self._get(key, build)[1]
        for key, build in later:
            built += self._get(key, build)[1]
        return built


class RemapCache(MapCache):
    """:class:`MapCache` of the tiler's remap maps, built once per layout and reused across
    images of the same size: :meth:`maps` / :meth:`prefetch_maps` hold
    :func:`redact.geometry.gnomonic.remap_maps` under ``(W, H, tile)``, each built from its
    ring's :func:`~redact.geometry.gnomonic.remap_row_base` (rays and arctan2, ~90 % of a
    tile's cost), which a second, small cache keeps (at most :attr:`RINGS` rings and
    :attr:`RING_BYTES`, ~4.9 MB per 640 px ring: a rebuilt tile then costs a shift); the tiles of
    a ring share one ``map_y`` array (entries that share an array each count its bytes).
    :meth:`get` also serves other maps (the renditions' fixed-point cube-face maps).
    ``max_bytes`` bounds the tile maps; :attr:`nbytes` counts both caches.
    """

    RINGS = 16  # ring bases kept: a layout has a few rings (6 for 8000x4000 by default)
    RING_BYTES = 64 * 2**20

    def __init__(self, maxsize: int = 256, max_bytes: int | None = None) -> None:
        super().__init__(maxsize, max_bytes)
        self._rings = MapCache(maxsize=self.RINGS, max_bytes=self.RING_BYTES)

    @property
    def nbytes(self) -> int:
        """Total ``nbytes`` of the arrays held, tile maps and ring bases."""
        return super().nbytes + self._rings.nbytes

    def prefetch_maps(self, tiles: Sequence[Tile], W: int, H: int) -> int:
        """:meth:`prefetch` the remap maps of the gnomonic ``tiles`` of a ``W x H`` panorama.
        Returns how many tiles' maps this call built."""
        W, H = int(W), int(H)
        return self.prefetch(
            [((W, H, t), self._builder(t, W, H)) for t in tiles if isinstance(t, GnomonicTile)]
        )

    def maps(self, tile: GnomonicTile, W: int, H: int) -> tuple[np.ndarray, np.ndarray]:
        """float32 ``(map_x, map_y)`` of :func:`~redact.geometry.gnomonic.remap_maps`."""
        W, H = int(W), int(H)
        return self.get((W, H, tile), self._builder(tile, W, H))

    def _builder(
        self, tile: GnomonicTile, W: int, H: int
    ) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        """Builds ``tile``'s maps from its ring's :func:`remap_row_base` (the ring cache's
        ``(W, H, pitch, fov, size)``)."""

        def build() -> tuple[np.ndarray, np.ndarray]:
            ring = (W, H, tile.pitch_deg, tile.fov_deg, tile.size)
            base = self._rings.get(ring, lambda: remap_row_base(tile, W, H))
            return remap_maps(tile, W, H, base=(base[0], base[1]))

        return build


def render_tile(
    image: np.ndarray,
    tile: Tile,
    cache: RemapCache | None = None,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Render any tile from ``image`` (H, W[, C]) -> new (size, size[, C]) array."""
    if isinstance(tile, CropTile):
        return render_crop(image, tile)
    if isinstance(tile, GnomonicTile):
        H, W = image.shape[:2]
        maps = cache.maps(tile, W, H) if cache is not None else None
        return render_gnomonic(image, tile, maps, interpolation)
    raise TypeError(f"unknown tile type {type(tile).__name__}")


def tile_boxes_to_image(
    tile: Tile, xyxy: npt.ArrayLike, W: int, H: int, wrap: bool
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Tile boxes (N, 4) -> ``(boxes (M, 4) float32 image pixels, src_index (M,) int64)``.

    Gnomonic tiles: enclosing boxes of the projected outlines
    (:func:`redact.geometry.gnomonic.tile_boxes_to_pano`). With ``wrap=True`` they stay
    unwrapped (``x2`` may exceed ``W``); with ``wrap=False`` a box across the seam is split
    into two boxes inside ``[0, W]`` with the same ``src_index``. Crop tiles:
    :func:`crop_boxes_to_image` (``wrap`` has no effect).
    """
    if isinstance(tile, CropTile):
        return crop_boxes_to_image(tile, xyxy)
    if isinstance(tile, GnomonicTile):
        boxes, src = tile_boxes_to_pano(tile, xyxy, W, H)
        if wrap:
            return boxes, src
        pieces, idx = split_at_seam(boxes, W)
        return pieces, src[idx]
    raise TypeError(f"unknown tile type {type(tile).__name__}")
