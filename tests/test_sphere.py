"""Equirectangular pixel <-> lon/lat <-> vector conventions."""

from __future__ import annotations

import numpy as np
import pytest

from redact.geometry.sphere import (
    lonlat_to_pixel,
    lonlat_to_vec,
    pixel_to_lonlat,
    pixel_to_vec,
    vec_to_lonlat,
    vec_to_pixel,
    wrap_lon,
    wrap_x,
)

W, H = 8000, 4000


@pytest.mark.parametrize(
    ("x", "y", "lon", "lat"),
    [
        (0.0, 0.0, -180.0, 90.0),
        (W / 2, H / 2, 0.0, 0.0),
        (W, H, 180.0, -90.0),
        (W / 4, H / 4, -90.0, 45.0),
        (0.5, 0.5, -180 + 0.5 * 360 / W, 90 - 0.5 * 180 / H),  # first pixel centre
    ],
)
def test_pixel_lonlat_table(x: float, y: float, lon: float, lat: float) -> None:
    got_lon, got_lat = pixel_to_lonlat(x, y, W, H)
    assert got_lon == pytest.approx(lon, abs=1e-12)
    assert got_lat == pytest.approx(lat, abs=1e-12)
    back_x, back_y = lonlat_to_pixel(lon, lat, W, H)
    assert back_x == pytest.approx(x, abs=1e-9)
    assert back_y == pytest.approx(y, abs=1e-9)


@pytest.mark.parametrize(
    ("lon", "lat", "vec"),
    [
        (0.0, 0.0, (0.0, 0.0, 1.0)),  # forward
        (90.0, 0.0, (1.0, 0.0, 0.0)),  # right
        (-90.0, 0.0, (-1.0, 0.0, 0.0)),
        (180.0, 0.0, (0.0, 0.0, -1.0)),  # behind
        (0.0, 90.0, (0.0, 1.0, 0.0)),  # up
        (0.0, -90.0, (0.0, -1.0, 0.0)),
    ],
)
def test_lonlat_vec_table(lon: float, lat: float, vec: tuple[float, float, float]) -> None:
    np.testing.assert_allclose(lonlat_to_vec(lon, lat), vec, atol=1e-15)


def test_round_trips_random() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, W, (50, 40))
    y = rng.uniform(0, H, (50, 40))
    lon, lat = pixel_to_lonlat(x, y, W, H)
    assert lon.shape == (50, 40)
    x2, y2 = lonlat_to_pixel(lon, lat, W, H)
    np.testing.assert_allclose(x2, x, atol=1e-9)
    np.testing.assert_allclose(y2, y, atol=1e-9)

    v = lonlat_to_vec(lon, lat)
    assert v.shape == (50, 40, 3)
    np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 1.0, atol=1e-12)
    lon2, lat2 = vec_to_lonlat(v)
    np.testing.assert_allclose(lat2, lat, atol=1e-9)
    np.testing.assert_allclose(wrap_lon(lon2 - lon), 0.0, atol=1e-9)

    xv, yv = vec_to_pixel(pixel_to_vec(x, y, W, H), W, H)
    np.testing.assert_allclose(xv, x, atol=1e-6)
    np.testing.assert_allclose(yv, y, atol=1e-6)


def test_vec_to_lonlat_accepts_non_unit_vectors() -> None:
    lon, lat = vec_to_lonlat(np.array([[2.0, 2.0, 0.0], [0.0, -5.0, 0.0]]))
    np.testing.assert_allclose(lon, [90.0, 0.0])
    np.testing.assert_allclose(lat, [45.0, -90.0])


def test_wrap_helpers() -> None:
    np.testing.assert_allclose(
        wrap_x([-1.0, 0.0, W, W + 5.0, 2 * W - 1], W), [W - 1, 0, 0, 5, W - 1]
    )
    out = wrap_x(np.array([-1e-13]), W)
    assert 0.0 <= out[0] < W
    np.testing.assert_allclose(
        wrap_lon([-180.0, 180.0, 190.0, -190.0, 540.0]), [-180, -180, -170, 170, -180]
    )
    lon_x, _ = lonlat_to_pixel(np.array([-190.0, 170.0]), 0.0, W, H, wrap=True)
    np.testing.assert_allclose(lon_x, [W * 350 / 360, W * 350 / 360])


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="positive"):
        pixel_to_lonlat(1.0, 1.0, 0, H)
    with pytest.raises(ValueError, match="length 3"):
        vec_to_lonlat(np.zeros((4, 2)))
