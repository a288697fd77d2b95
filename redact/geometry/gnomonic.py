"""Gnomonic (rectilinear, pinhole) tiles rendered from an equirectangular panorama.

A :class:`GnomonicTile` looks in direction ``(lon=yaw, lat=pitch)`` with no roll. It is
``size x size`` pixels; horizontal and vertical field of view are both ``fov_deg``; the focal
length is ``f = size / (2 tan(fov / 2))`` pixels. Tile pixel ``(u, v)``: ``u`` to the right,
``v`` downwards, continuous coordinates with pixel centres at ``i + 0.5`` (the optical axis
goes through ``(size / 2, size / 2)``).

Camera frame (world vectors, see :mod:`redact.geometry.sphere`): forward ``F`` = the centre
direction, right ``R = (cos yaw, 0, -sin yaw)`` (horizontal, towards increasing longitude),
up ``U = dF / dpitch`` (towards increasing latitude along the central meridian). A tile ray is
``normalize(xc R + yc U + F)`` with ``xc = (u - size/2) / f`` and ``yc = -(v - size/2) / f``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from redact.geometry.boxes import as_boxes, normalize_unwrapped
from redact.geometry.sphere import lonlat_to_vec, vec_to_lonlat, wrap_lon, wrap_x

FloatArray = npt.NDArray[np.float64]

#: cv2.remap needs source images smaller than this in both dimensions.
MAX_REMAP_SOURCE_PX = 32767


def _fmt(v: float) -> str:
    s = f"{v:.4f}"
    return "0.0000" if s == "-0.0000" else s


@dataclass(frozen=True)
class GnomonicTile:
    """A square rectilinear view of the panorama.

    Attributes:
        yaw_deg: longitude of the optical axis, degrees (any value; -180..180 is usual).
        pitch_deg: latitude of the optical axis, degrees in [-90, 90].
        fov_deg: horizontal = vertical field of view, degrees in (0, 180).
        size: tile width = height, pixels.
    """

    yaw_deg: float
    pitch_deg: float
    fov_deg: float
    size: int

    def __post_init__(self) -> None:
        for name in ("yaw_deg", "pitch_deg", "fov_deg"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"GnomonicTile.{name} must be finite, got {value!r}")
            object.__setattr__(self, name, value)
        if isinstance(self.size, bool) or int(self.size) != self.size or self.size < 1:
            raise ValueError(f"GnomonicTile.size must be a positive integer, got {self.size!r}")
        object.__setattr__(self, "size", int(self.size))
        if not 0.0 < self.fov_deg < 180.0:
            raise ValueError(f"GnomonicTile.fov_deg must be in (0, 180), got {self.fov_deg}")
        if not -90.0 <= self.pitch_deg <= 90.0:
            raise ValueError(f"GnomonicTile.pitch_deg must be in [-90, 90], got {self.pitch_deg}")

    @property
    def focal(self) -> float:
        """Focal length in pixels: ``size / (2 tan(fov / 2))``."""
        return self.size / (2.0 * math.tan(math.radians(self.fov_deg) / 2.0))

    @property
    def tile_id(self) -> str:
        """Stable identifier, e.g. ``"g:yaw=-90.0000,pitch=0.0000,fov=28.1000,s=640"``."""
        return (
            f"g:yaw={_fmt(self.yaw_deg)},pitch={_fmt(self.pitch_deg)},"
            f"fov={_fmt(self.fov_deg)},s={self.size}"
        )

    def basis(self) -> FloatArray:
        """(3, 3) rows ``R`` (right), ``U`` (up), ``F`` (forward) as world unit vectors."""
        y, p = math.radians(self.yaw_deg), math.radians(self.pitch_deg)
        sy, cy, sp, cp = math.sin(y), math.cos(y), math.sin(p), math.cos(p)
        return np.array(
            [[cy, 0.0, -sy], [-sp * sy, cp, -sp * cy], [cp * sy, sp, cp * cy]], np.float64
        )


def tile_rays(tile: GnomonicTile, u: npt.ArrayLike, v: npt.ArrayLike) -> FloatArray:
    """Tile pixel coordinates, shape ``S`` -> world unit rays, shape ``S + (3,)``."""
    u = np.asarray(u, np.float64)
    v = np.asarray(v, np.float64)
    u, v = np.broadcast_arrays(u, v)
    f, c = tile.focal, tile.size / 2.0
    cam = np.stack([(u - c) / f, (c - v) / f, np.ones_like(u)], axis=-1)
    cam /= np.linalg.norm(cam, axis=-1, keepdims=True)
    return cam @ tile.basis()


def rays_to_tile(
    tile: GnomonicTile, rays: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """World vectors, shape ``S + (3,)`` -> tile pixel ``(u, v, in_front)``, each shape ``S``.

    ``in_front`` is False for directions at or behind the image plane's horizon (90 degrees
    or more from the optical axis); their ``u`` and ``v`` are NaN. Points in front may
    project outside ``[0, size]``.
    """
    r = np.asarray(rays, np.float64)
    if r.shape[-1:] != (3,):
        raise ValueError(f"rays must have a last axis of length 3, got shape {r.shape}")
    cam = r @ tile.basis().T
    xc, yc, zc = cam[..., 0], cam[..., 1], cam[..., 2]
    norm = np.linalg.norm(r, axis=-1)
    in_front = zc > 1e-12 * np.maximum(norm, 1e-300)
    safe = np.where(in_front, zc, 1.0)
    f, c = tile.focal, tile.size / 2.0
    u = np.where(in_front, c + f * xc / safe, np.nan)
    v = np.where(in_front, c - f * yc / safe, np.nan)
    return u, v, in_front


RowBase = tuple[FloatArray, npt.NDArray[np.float32]]
"""``(x0, map_y)`` of one ring of tiles (same pitch, fov and size): see :func:`remap_row_base`."""


def remap_row_base(
    tile: GnomonicTile, W: int, H: int, rows: tuple[int, int] | None = None
) -> RowBase:
    """What every tile of ``tile``'s ring shares (same pitch, fov and size, any yaw).

    ``x0``: float64 ``(size, size)`` panorama x (pixel-centre units, NOT wrapped) of each tile
    pixel's ray at yaw 0; a tile at yaw ``y`` sees ``x0 + y * W / 360`` (a yaw turns about the
    vertical axis, which adds ``y`` to every ray's longitude). ``map_y``: float32, as in
    :func:`remap_maps`, the same at every yaw. ``rows``: as in :func:`remap_maps`. Building it
    is ~90 % of a tile's maps (rays, arctan2); the rest of a ring costs a shift and a wrap.
    """
    if W < 1 or H < 1:
        raise ValueError(f"panorama size must be positive, got W={W}, H={H}")
    r0, r1 = (0, tile.size) if rows is None else rows
    if not 0 <= r0 < r1 <= tile.size:
        raise ValueError(f"rows must satisfy 0 <= r0 < r1 <= {tile.size}, got {rows}")
    at_zero = GnomonicTile(0.0, tile.pitch_deg, tile.fov_deg, tile.size)
    centres = np.arange(tile.size, dtype=np.float64) + 0.5
    rays = tile_rays(at_zero, centres[None, :], centres[r0:r1, None])
    lon, lat = vec_to_lonlat(rays)
    x0 = (lon + 180.0) * (W / 360.0)
    y = (90.0 - lat) * (H / 180.0)
    map_y = np.clip(y - 0.5, 0.0, H - 1.0).astype(np.float32)
    return x0, map_y


def remap_maps(
    tile: GnomonicTile,
    W: int,
    H: int,
    rows: tuple[int, int] | None = None,
    base: RowBase | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """``(map_x, map_y)``, each float32 ``(size, size)``, for :func:`cv2.remap` from a ``W x H``
    panorama (cv2 index coordinates: panorama pixel ``i`` has its centre at ``i``).

    ``map_x`` lies in ``[-0.5, W - 0.5)``: sampling across the seam relies on
    ``cv2.BORDER_WRAP`` (used by :func:`render_tile`). ``map_y`` is clamped to ``[0, H - 1]``
    so the rows next to the poles are replicated rather than wrapped.
    ``rows``: ``(r0, r1)``, only tile rows ``r0 <= v < r1`` (maps of shape ``(r1 - r0, size)``;
    a large view rendered in strips keeps its float64 rays small). ``base``: the ring's
    :func:`remap_row_base` (same ``W``, ``H``, ``rows``), computed when None; the returned
    ``map_y`` is then ``base``'s array itself.
    """
    x0, map_y = base if base is not None else remap_row_base(tile, W, H, rows)
    map_x = (wrap_x(x0 + tile.yaw_deg * (W / 360.0), W) - 0.5).astype(np.float32)
    return map_x, map_y


def render_tile(
    pano: np.ndarray,
    tile: GnomonicTile,
    maps: tuple[np.ndarray, np.ndarray] | None = None,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Render ``tile`` from ``pano`` (H, W) or (H, W, C) -> new (size, size[, C]) array.

    ``maps`` are :func:`remap_maps` for this tile and this panorama size (computed when None).
    The panorama is never modified.
    """
    if pano.ndim not in (2, 3):
        raise ValueError(f"panorama must be (H, W) or (H, W, C), got shape {pano.shape}")
    H, W = pano.shape[:2]
    if W >= MAX_REMAP_SOURCE_PX or H >= MAX_REMAP_SOURCE_PX:
        raise ValueError(
            f"panorama {W}x{H} is too large for cv2.remap "
            f"(each side must be < {MAX_REMAP_SOURCE_PX} px)"
        )
    if maps is None:
        maps = remap_maps(tile, W, H)
    map_x, map_y = maps
    if map_x.shape != (tile.size, tile.size) or map_y.shape != (tile.size, tile.size):
        raise ValueError(
            f"remap maps have shapes {map_x.shape}, {map_y.shape}; "
            f"expected ({tile.size}, {tile.size})"
        )
    return cv2.remap(pano, map_x, map_y, interpolation, borderMode=cv2.BORDER_WRAP)


def _arc_lat_extremes(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Highest / lowest latitude (degrees) on the minor great-circle arcs ``a -> b``.

    ``a``, ``b``: (..., 3) unit vectors less than 180 degrees apart. Latitude along a great
    circle peaks at one point (and bottoms at its antipode); the extreme of the arc is that
    point when it lies on the arc, else an endpoint.
    """
    lat_a = np.degrees(np.arcsin(np.clip(a[..., 1], -1.0, 1.0)))
    lat_b = np.degrees(np.arcsin(np.clip(b[..., 1], -1.0, 1.0)))
    hi, lo = np.maximum(lat_a, lat_b), np.minimum(lat_a, lat_b)
    n = np.cross(a, b)
    n_len = np.linalg.norm(n, axis=-1)
    ok = n_len > 1e-15
    n_hat = n / np.where(ok, n_len, 1.0)[..., None]
    # Top of the great circle: the up axis projected onto its plane.
    p = -n_hat[..., 1:2] * n_hat
    p[..., 1] += 1.0
    p_len = np.linalg.norm(p, axis=-1)
    ok &= p_len > 1e-15
    p_hat = p / np.where(ok, p_len, 1.0)[..., None]
    peak = np.degrees(np.arcsin(np.clip(p_len, 0.0, 1.0)))
    for sign in (1.0, -1.0):
        q = sign * p_hat
        on_arc = (
            ok
            & (np.einsum("...i,...i->...", np.cross(a, q), n) >= 0.0)
            & (np.einsum("...i,...i->...", np.cross(q, b), n) >= 0.0)
        )
        if sign > 0:
            hi = np.where(on_arc, np.maximum(hi, peak), hi)
        else:
            lo = np.where(on_arc, np.minimum(lo, -peak), lo)
    return hi, lo


def tile_boxes_to_pano(
    tile: GnomonicTile, xyxy: npt.ArrayLike, W: int, H: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Map tile boxes to the panorama boxes that enclose their projected outlines.

    Args:
        tile: the tile the boxes were detected in.
        xyxy: (N, 4) boxes in tile pixels (may extend past the tile border).
        W, H: panorama size, pixels.

    Returns:
        ``(boxes, src_index)``: (M, 4) float32 unwrapped panorama boxes (``0 <= x1 < W``,
        ``x1 < x2 <= x1 + W``; a box across the seam has ``x2 > W``) and (M,) int64 index of the
        input box each came from. Here M == N and ``src_index == arange(N)``.

    The enclosing box is exact, not sampled: a box's outline is four great-circle arcs, along
    which longitude is monotonic (so its extremes are at corners) and latitude has at most one
    interior extreme per arc (computed in closed form). Longitudes are unwrapped relative to the
    box's own centre, so boxes across the seam come out as one unwrapped box. A box that
    contains a pole (the pole's projection is inside or on the box) spans the full width and
    reaches ``y = 0`` (north) or ``y = H`` (south). Coordinates are rounded outwards to float32,
    so the result is never smaller than the true outline's bounding box.
    """
    b = as_boxes(xyxy, ordered=True)
    n = b.shape[0]
    if n == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    x1, y1, x2, y2 = b.T
    cu = np.stack([x1, x2, x2, x1], axis=1)  # (N, 4) corners, clockwise from top-left
    cv = np.stack([y1, y1, y2, y2], axis=1)
    corners = tile_rays(tile, cu, cv)  # (N, 4, 3)
    nxt = np.roll(corners, -1, axis=1)
    hi, lo = _arc_lat_extremes(corners, nxt)
    lat_max, lat_min = hi.max(axis=1), lo.min(axis=1)

    centre = tile_rays(tile, (x1 + x2) / 2.0, (y1 + y2) / 2.0)
    lon_c, _ = vec_to_lonlat(centre)
    lon_k, _ = vec_to_lonlat(corners)
    rel = wrap_lon(lon_k - lon_c[:, None])
    lon_lo = lon_c + rel.min(axis=1)
    lon_hi = lon_c + rel.max(axis=1)
    bx1 = (lon_lo + 180.0) * (W / 360.0)
    bx2 = (lon_hi + 180.0) * (W / 360.0)
    by1 = (90.0 - lat_max) * (H / 180.0)
    by2 = (90.0 - lat_min) * (H / 180.0)

    tol = 1e-6 * tile.size
    for sign in (1.0, -1.0):
        pu, pv, front = rays_to_tile(tile, np.array([0.0, sign, 0.0]))
        if not bool(front):
            continue
        has = (x1 - tol <= pu) & (pu <= x2 + tol) & (y1 - tol <= pv) & (pv <= y2 + tol)
        bx1 = np.where(has, 0.0, bx1)
        bx2 = np.where(has, float(W), bx2)
        if sign > 0:
            by1 = np.where(has, 0.0, by1)
        else:
            by2 = np.where(has, float(H), by2)

    out = normalize_unwrapped(np.stack([bx1, by1, bx2, by2], axis=1), W, H)
    return out, np.arange(n, dtype=np.int64)


def lonlat_to_tile(
    tile: GnomonicTile, lon: npt.ArrayLike, lat: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """``(lon, lat)`` degrees, shape ``S`` -> tile ``(u, v, in_front)`` (see :func:`rays_to_tile`)."""
    return rays_to_tile(tile, lonlat_to_vec(lon, lat))
