"""Equirectangular pixels <-> longitude/latitude <-> unit vectors.

Conventions (fixed; every module depends on them):

* Panorama ``W x H`` pixels, continuous coordinates, pixel ``i`` covers ``[i, i + 1)`` and has
  its centre at ``i + 0.5``.
* ``lon = x / W * 360 - 180`` degrees (``x = 0`` is lon -180; the seam is ``x = 0 == x = W``),
  ``lat = 90 - y / H * 180`` degrees (``y = 0`` is the north pole).
* Unit vector ``X = cos(lat) sin(lon)``, ``Y = sin(lat)``, ``Z = cos(lat) cos(lon)``:
  Z is forward at lon 0, Y is up, X is to the right (towards lon +90).

All functions accept arrays of any (broadcastable) shape and return float64 arrays.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def _check_size(W: float, H: float) -> None:
    if not (W > 0 and H > 0):
        raise ValueError(f"panorama size must be positive, got W={W}, H={H}")


def pixel_to_lonlat(
    x: npt.ArrayLike, y: npt.ArrayLike, W: float, H: float
) -> tuple[FloatArray, FloatArray]:
    """Panorama pixel coordinates -> ``(lon, lat)`` in degrees.

    ``x`` is not wrapped: ``x`` outside ``[0, W)`` gives lon outside ``[-180, 180)``.
    """
    _check_size(W, H)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    return x * (360.0 / W) - 180.0, 90.0 - y * (180.0 / H)


def lonlat_to_pixel(
    lon: npt.ArrayLike, lat: npt.ArrayLike, W: float, H: float, wrap: bool = False
) -> tuple[FloatArray, FloatArray]:
    """``(lon, lat)`` degrees -> panorama pixel coordinates ``(x, y)``.

    With ``wrap=True`` ``x`` is reduced into ``[0, W)``; otherwise it is the plain linear map
    (useful for unwrapped boxes).
    """
    _check_size(W, H)
    lon = np.asarray(lon, np.float64)
    lat = np.asarray(lat, np.float64)
    x = (lon + 180.0) * (W / 360.0)
    if wrap:
        x = wrap_x(x, W)
    return x, (90.0 - lat) * (H / 180.0)


def wrap_x(x: npt.ArrayLike, W: float) -> FloatArray:
    """Reduce panorama x coordinates into ``[0, W)``."""
    x = np.mod(np.asarray(x, np.float64), W)
    # np.mod can return W itself for tiny negative inputs (rounding).
    return np.where(x >= W, 0.0, x)


def wrap_lon(lon: npt.ArrayLike) -> FloatArray:
    """Reduce longitudes (degrees) into ``[-180, 180)``."""
    out = np.mod(np.asarray(lon, np.float64) + 180.0, 360.0)
    out = np.where(out >= 360.0, 0.0, out)
    return out - 180.0


def lonlat_to_vec(lon: npt.ArrayLike, lat: npt.ArrayLike) -> FloatArray:
    """``(lon, lat)`` degrees, shape ``S`` -> unit vectors, shape ``S + (3,)``."""
    lon_r = np.radians(np.asarray(lon, np.float64))
    lat_r = np.radians(np.asarray(lat, np.float64))
    lon_r, lat_r = np.broadcast_arrays(lon_r, lat_r)
    c = np.cos(lat_r)
    return np.stack([c * np.sin(lon_r), np.sin(lat_r), c * np.cos(lon_r)], axis=-1)


def vec_to_lonlat(vec: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Vectors, shape ``S + (3,)`` (need not be unit length) -> ``(lon, lat)`` degrees, shape ``S``.

    lon is in ``[-180, 180]``; at the poles lon is 0 by convention (``atan2(0, 0)``).
    """
    v = np.asarray(vec, np.float64)
    if v.shape[-1:] != (3,):
        raise ValueError(f"vectors must have a last axis of length 3, got shape {v.shape}")
    X, Y, Z = v[..., 0], v[..., 1], v[..., 2]
    lon = np.degrees(np.arctan2(X, Z))
    lat = np.degrees(np.arctan2(Y, np.hypot(X, Z)))
    return lon, lat


def pixel_to_vec(x: npt.ArrayLike, y: npt.ArrayLike, W: float, H: float) -> FloatArray:
    """Panorama pixel coordinates, shape ``S`` -> unit vectors, shape ``S + (3,)``."""
    return lonlat_to_vec(*pixel_to_lonlat(x, y, W, H))


def vec_to_pixel(
    vec: npt.ArrayLike, W: float, H: float, wrap: bool = True
) -> tuple[FloatArray, FloatArray]:
    """Vectors, shape ``S + (3,)`` -> panorama pixel coordinates ``(x, y)``, shape ``S``."""
    lon, lat = vec_to_lonlat(vec)
    return lonlat_to_pixel(lon, lat, W, H, wrap=wrap)
