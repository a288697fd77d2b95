"""Gnomonic tiles: rays, remap maps, rendering across the seam, boxes back to the panorama."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from redact.geometry.gnomonic import (
    GnomonicTile,
    lonlat_to_tile,
    rays_to_tile,
    remap_maps,
    remap_row_base,
    render_tile,
    tile_boxes_to_pano,
    tile_rays,
)
from redact.geometry.sphere import lonlat_to_vec, vec_to_pixel, wrap_lon

W, H = 720, 360


def _random_tiles(rng: np.random.Generator, n: int) -> list[GnomonicTile]:
    tiles = [
        GnomonicTile(rng.uniform(-180, 180), rng.uniform(-90, 90), rng.uniform(10, 120), 64)
        for _ in range(n)
    ]
    return [
        *tiles,
        GnomonicTile(180, 0, 60, 64),
        GnomonicTile(30, 90, 60, 64),
        GnomonicTile(-60, -90, 60, 64),
    ]


def test_tile_validation_and_id() -> None:
    t = GnomonicTile(-0.0, 12.5, 90, 640)
    assert t.tile_id == "g:yaw=0.0000,pitch=12.5000,fov=90.0000,s=640"
    assert t.focal == pytest.approx(320.0)
    assert GnomonicTile(10, 0, 60, 64) == GnomonicTile(10.0, 0.0, 60.0, 64)
    assert hash(GnomonicTile(10, 0, 60, 64)) == hash(GnomonicTile(10.0, 0.0, 60.0, 64))
    for bad in [(0, 0, 180, 64), (0, 0, 0, 64), (0, 91, 60, 64), (0, 0, 60, 0), (0, 0, 60, 1.5)]:
        with pytest.raises(ValueError):
            GnomonicTile(*bad)


def test_basis_orthonormal_and_directions() -> None:
    t = GnomonicTile(40, 25, 60, 100)
    B = t.basis()
    np.testing.assert_allclose(B @ B.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(B[2], lonlat_to_vec(40, 25), atol=1e-12)
    c = t.size / 2
    lon, lat = map(float, _lonlat(tile_rays(t, c, c)))
    assert (lon, lat) == pytest.approx((40.0, 25.0))
    lon_r, _ = _lonlat(tile_rays(t, c + 10, c))
    _, lat_up = _lonlat(tile_rays(t, c, c - 10))
    assert lon_r > 40  # u to the right -> east (increasing longitude)
    assert lat_up > 25  # v upwards -> north


def _lonlat(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from redact.geometry.sphere import vec_to_lonlat

    return vec_to_lonlat(v)


def test_fov_edges() -> None:
    t = GnomonicTile(0, 0, 90, 100)
    lon, lat = _lonlat(tile_rays(t, [0.0, 100.0, 50.0, 50.0], [50.0, 50.0, 0.0, 100.0]))
    np.testing.assert_allclose(lon, [-45, 45, 0, 0], atol=1e-12)
    np.testing.assert_allclose(lat, [0, 0, 45, -45], atol=1e-12)


def test_pixel_ray_pixel_round_trip() -> None:
    rng = np.random.default_rng(0)
    for t in _random_tiles(rng, 20):
        u = rng.uniform(-0.5 * t.size, 1.5 * t.size, 500)
        v = rng.uniform(-0.5 * t.size, 1.5 * t.size, 500)
        rays = tile_rays(t, u, v)
        np.testing.assert_allclose(np.linalg.norm(rays, axis=-1), 1.0, atol=1e-12)
        u2, v2, front = rays_to_tile(t, rays)
        assert front.all()
        assert np.max(np.abs(u2 - u)) < 1e-3 and np.max(np.abs(v2 - v)) < 1e-3


def test_rays_behind_are_flagged() -> None:
    t = GnomonicTile(0, 0, 60, 64)
    u, v, front = rays_to_tile(t, np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(front, [False, False, True])
    assert np.isnan(u[:2]).all() and np.isnan(v[:2]).all()
    assert (u[2], v[2]) == (32.0, 32.0)
    u, v, front = lonlat_to_tile(t, 0.0, 0.0)
    assert bool(front) and (float(u), float(v)) == (32.0, 32.0)


def test_pixels_per_degree_at_centre() -> None:
    t = GnomonicTile(10, -20, 30, 640)
    c = t.size / 2
    rays = tile_rays(t, [c - 0.5, c + 0.5], [c, c])
    deg = math.degrees(math.acos(float(np.dot(rays[0], rays[1]))))
    assert 1.0 / deg == pytest.approx(t.focal * math.pi / 180, rel=1e-6)


def test_remap_maps_centre_and_range() -> None:
    t = GnomonicTile(180, 0, 90, 64)
    mx, my = remap_maps(t, W, H)
    assert mx.dtype == np.float32 and mx.shape == (64, 64)
    assert mx.min() >= -0.5 and mx.max() < W - 0.5
    assert my.min() >= 0 and my.max() <= H - 1
    # The pixel right of the centre looks just east of lon 180 -> x just above 0 (cv2 -0.5).
    x, y = vec_to_pixel(tile_rays(t, 32.5, 32.5), W, H)
    assert mx[32, 32] == pytest.approx(float(x) - 0.5, abs=1e-3)
    assert my[32, 32] == pytest.approx(float(y) - 0.5, abs=1e-3)


def _direct_maps(t: GnomonicTile, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Slow reference: the maps from the tile's own (yawed) rays, as built before 2026-12-03."""
    c = np.arange(t.size, dtype=np.float64) + 0.5
    x, y = vec_to_pixel(tile_rays(t, c[None, :], c[:, None]), w, h)
    return (x - 0.5).astype(np.float32), np.clip(y - 0.5, 0.0, h - 1.0).astype(np.float32)


def test_remap_maps_from_the_rings_base_match_the_tiles_own_rays() -> None:
    rng = np.random.default_rng(7)
    exact = 0
    for _ in range(40):
        w = int(rng.choice([720, 4000, 8000, 11000]))
        t = GnomonicTile(
            float(rng.uniform(-400, 400)),
            float(rng.uniform(-89, 89)),
            float(rng.uniform(5, 120)),
            int(rng.integers(8, 48)),
        )
        mx, my = remap_maps(t, w, w // 2)
        rx, ry = _direct_maps(t, w, w // 2)
        assert mx.min() >= -0.5 and mx.max() < w - 0.5
        # the same position up to float rounding (modulo the seam: -0.5 and w - 0.5 are one x)
        dx = np.abs(mx.astype(np.float64) - rx)
        dx = np.minimum(dx, w - dx)
        assert dx.max() < 1e-3 and np.abs(my - ry).max() < 1e-3
        exact += int(np.array_equal(mx, rx) and np.array_equal(my, ry))
        # a shared base gives the same maps, and map_y is the base's array itself
        base = remap_row_base(GnomonicTile(123.0, t.pitch_deg, t.fov_deg, t.size), w, w // 2)
        bx, by = remap_maps(t, w, w // 2, base=base)
        np.testing.assert_array_equal(bx, mx)
        assert by is base[1]
    assert exact >= 20  # most are bit-identical to the tile's own rays
    strip = remap_maps(GnomonicTile(10, 5, 60, 32), 720, 360, rows=(4, 9))
    full = remap_maps(GnomonicTile(10, 5, 60, 32), 720, 360)
    np.testing.assert_array_equal(strip[0], full[0][4:9])
    with pytest.raises(ValueError, match="rows"):
        remap_row_base(GnomonicTile(0, 0, 60, 32), 720, 360, rows=(9, 4))


def _bilinear_wrap(img: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Reference bilinear sampling (cv2 index coordinates), wrapping x and clamping y."""
    h, w = img.shape[:2]
    x0 = np.floor(mx).astype(int)
    y0 = np.floor(my).astype(int)
    fx, fy = mx - x0, my - y0
    out = 0.0
    for dx, wx in ((0, 1 - fx), (1, fx)):
        for dy, wy in ((0, 1 - fy), (1, fy)):
            xs = np.mod(x0 + dx, w)
            ys = np.clip(y0 + dy, 0, h - 1)
            out = out + img[ys, xs] * (wx * wy)
    return out


def test_render_matches_reference_sampling_across_seam() -> None:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    # Smooth and periodic in x, so bilinear error from cv2's 1/32 px weights stays small.
    img = (100 + 60 * np.sin(2 * np.pi * xx / W * 3) * np.cos(np.pi * yy / H * 2)).astype(
        np.float32
    )
    for t in (
        GnomonicTile(180, 10, 70, 48),
        GnomonicTile(-170, -40, 50, 48),
        GnomonicTile(0, 85, 60, 48),
    ):
        mx, my = remap_maps(t, W, H)
        got = render_tile(img, t)
        ref = _bilinear_wrap(img.astype(np.float64), mx.astype(np.float64), my.astype(np.float64))
        assert got.shape == (48, 48)
        assert np.max(np.abs(got - ref)) < 0.5


def test_seam_tile_shows_both_edges() -> None:
    col = np.tile(np.arange(W, dtype=np.float32), (H, 1))  # pixel value = its column
    img = np.dstack([col, col, col])
    before = img.copy()
    t = GnomonicTile(180, 0, 40, 64)
    out = render_tile(img, t, interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(img, before)  # not mutated
    assert out.shape == (64, 64, 3)
    row = out[32, :, 0]
    assert np.all(row[:32] > W - 50)  # west half of the tile: right edge of the panorama
    assert np.all(row[32:] < 50)  # east half: left edge
    assert row[31] == W - 1 and row[32] == 0
    # Every tile column's value is the column the geometry predicts.
    x, _ = vec_to_pixel(tile_rays(t, np.arange(64) + 0.5, 32.5), W, H)
    np.testing.assert_array_equal(row, np.floor(x))


def test_render_tile_checks_maps() -> None:
    t = GnomonicTile(0, 0, 60, 32)
    with pytest.raises(ValueError, match="shapes"):
        render_tile(
            np.zeros((H, W), np.uint8), t, maps=remap_maps(GnomonicTile(0, 0, 60, 16), W, H)
        )
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        render_tile(np.zeros(5, np.uint8), t)


# --- boxes back to the panorama ---------------------------------------------------------------


def _dense_outline_px(
    t: GnomonicTile, box: np.ndarray, k: int = 400
) -> tuple[np.ndarray, np.ndarray]:
    """Slow reference: densely sampled outline + interior of a tile box, as panorama pixels."""
    x1, y1, x2, y2 = box
    s = np.linspace(0, 1, k)
    u = np.concatenate([x1 + (x2 - x1) * s, np.full(k, x2), x2 - (x2 - x1) * s, np.full(k, x1)])
    v = np.concatenate([np.full(k, y1), y1 + (y2 - y1) * s, np.full(k, y2), y2 - (y2 - y1) * s])
    g = np.linspace(0, 1, 25)
    gu, gv = np.meshgrid(x1 + (x2 - x1) * g, y1 + (y2 - y1) * g)
    u = np.concatenate([u, gu.ravel()])
    v = np.concatenate([v, gv.ravel()])
    return vec_to_pixel(tile_rays(t, u, v), W, H)


def _contains(box: np.ndarray, x: np.ndarray, y: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """Points (wrapped x) inside an unwrapped panorama box."""
    ok_y = (y >= box[1] - tol) & (y <= box[3] + tol)
    ok_x = np.zeros_like(ok_y)
    for k in (-1, 0, 1):
        xs = x + k * W
        ok_x |= (xs >= box[0] - tol) & (xs <= box[2] + tol)
    return ok_x & ok_y


def test_boxes_enclose_dense_outline_and_are_tight() -> None:
    rng = np.random.default_rng(5)
    checked_seam = checked_pole = 0
    for t in _random_tiles(rng, 30):
        n = 12
        c = rng.uniform(0, t.size, (n, 2))
        wh = rng.uniform(1, t.size * 0.6, (n, 2))
        boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
        out, src = tile_boxes_to_pano(t, boxes, W, H)
        assert out.dtype == np.float32 and out.shape == (n, 4)
        np.testing.assert_array_equal(src, np.arange(n))
        assert np.all(out[:, 0] >= 0) and np.all(out[:, 0] < W)
        assert (
            np.all(out[:, 2] - out[:, 0] <= W) and np.all(out[:, 1] >= 0) and np.all(out[:, 3] <= H)
        )
        for box, b in zip(boxes, out, strict=True):
            x, y = _dense_outline_px(t, box)
            assert _contains(b, x, y).all(), (t, box, b)
            full = b[0] == 0 and b[2] == W
            checked_pole += full
            checked_seam += b[2] > W
            if not full:  # tight: the dense samples reach every side (up to sampling error)
                ref_x = b[0] + np.mod(x - b[0], W)  # unwrap relative to x1
                ref_x = np.where(ref_x > b[2] + 1e-3, ref_x - W, ref_x)
                assert ref_x.min() - b[0] < 0.05 and b[2] - ref_x.max() < 0.05
            # (A box around a pole reaches y = 0 / H only at the pole itself: not sampled.)
            assert y.min() - b[1] < 0.05 or (full and b[1] == 0)
            assert b[3] - y.max() < 0.05 or (full and b[3] == H)
    assert checked_seam > 0 and checked_pole > 0


def test_box_across_seam_is_one_unwrapped_box() -> None:
    t = GnomonicTile(180, 0, 60, 100)
    out, _ = tile_boxes_to_pano(t, [[40, 40, 60, 60]], W, H)
    x1, y1, x2, y2 = out[0]
    assert 0 <= x1 < W < x2
    assert x2 - x1 < W / 10
    assert (x1 + x2) / 2 == pytest.approx(W, abs=0.01)  # centred on the seam
    assert (y1 + y2) / 2 == pytest.approx(H / 2, abs=0.01)


@pytest.mark.parametrize(("pitch", "north"), [(90.0, True), (-90.0, False), (80.0, True)])
def test_box_containing_pole_spans_full_width(pitch: float, north: bool) -> None:
    t = GnomonicTile(20, pitch, 60, 100)
    pole_v = float(lonlat_to_tile(t, 0.0, 90.0 if north else -90.0)[1])
    box = [40, pole_v - 5, 60, pole_v + 5]
    out, _ = tile_boxes_to_pano(t, [box], W, H)
    x1, y1, x2, y2 = out[0]
    assert (x1, x2) == (0.0, W)
    if north:
        assert y1 == 0 and 0 < y2 < H / 2
    else:
        assert y2 == H and H / 2 < y1 < H
    # A box beside the pole does not get the full width.
    out, _ = tile_boxes_to_pano(t, [[40, pole_v + 8, 60, pole_v + 20]], W, H)
    assert out[0, 2] - out[0, 0] < W


def test_box_beyond_pole_does_not_wrap_around() -> None:
    """A tile centred at lat 70 sees past the pole; a box there lies ~180 deg from the centre."""
    t = GnomonicTile(0, 70, 90, 100)
    pole_v = float(lonlat_to_tile(t, 0.0, 90.0)[1])
    box = np.array([[45, pole_v - 20, 55, pole_v - 10]])
    out, _ = tile_boxes_to_pano(t, box, W, H)
    x, y = _dense_outline_px(t, box[0])
    assert _contains(out[0], x, y).all()
    assert out[0, 2] - out[0, 0] < W / 4
    lon_mid = (out[0, 0] + out[0, 2]) / 2 / W * 360 - 180
    assert abs(wrap_lon(lon_mid - 180.0)) < 1.0


def test_boxes_empty_and_invalid() -> None:
    t = GnomonicTile(0, 0, 60, 64)
    out, src = tile_boxes_to_pano(t, np.zeros((0, 4)), W, H)
    assert out.shape == (0, 4) and src.shape == (0,)
    with pytest.raises(ValueError):
        tile_boxes_to_pano(t, [[10, 10, 5, 20]], W, H)
    with pytest.raises(ValueError):
        tile_boxes_to_pano(t, [[10, 10, 5]], W, H)
