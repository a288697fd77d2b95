"""Tile plans (panorama and perspective), coverage guarantees, rendering and mapping back."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from redact.config import ConfigError, PerspectiveTiling, TileLevel, TilingConfig
from redact.geometry.gnomonic import GnomonicTile, rays_to_tile, remap_maps, tile_rays
from redact.geometry.sphere import lonlat_to_vec
from redact.tiling import (
    MAX_FOV_DEG,
    CropTile,
    RemapCache,
    crop_boxes_to_image,
    level_fov_deg,
    plan_level_rows,
    plan_panorama_tiles,
    plan_perspective_tiles,
    rect_in_footprint,
    render_tile,
    tile_boxes_to_image,
)

# --- panorama plans ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("W", "size", "scale", "fov"),
    [
        (8000, 640, 1.0, 28.21560),  # 2 atan(320 / (8000 / 2 pi))
        (8000, 640, 0.3, 79.90973),
        (8000, 640, 2.0, 14.32491),
        (4000, 1024, 1.0, 77.61580),
        (1000, 640, 0.3, MAX_FOV_DEG),  # capped
    ],
)
def test_level_fov_table(W: int, size: int, scale: float, fov: float) -> None:
    assert level_fov_deg(W, size, TileLevel("x", scale, -10, 10, 1)) == pytest.approx(fov, abs=1e-4)


def _measured_px_per_deg(t: GnomonicTile) -> float:
    c = t.size / 2
    r = tile_rays(t, [c - 0.5, c + 0.5, c, c], [c, c, c - 0.5, c + 0.5])
    horiz = math.degrees(math.acos(float(r[0] @ r[1])))
    vert = math.degrees(math.acos(float(r[2] @ r[3])))
    assert horiz == pytest.approx(vert, rel=1e-9)
    return 1.0 / horiz


@pytest.mark.parametrize(("W", "H"), [(8000, 4000), (5376, 2688), (1200, 600)])
def test_native_resolution_rule(W: int, H: int) -> None:
    tiling = TilingConfig()
    tiles = plan_panorama_tiles(W, H, tiling)
    by_fov = {t.fov_deg: t for t in tiles}
    for level in tiling.levels:
        fov = level_fov_deg(W, tiling.tile_size, level)
        target = level.scale * W / 360.0
        ppd = _measured_px_per_deg(by_fov[fov])
        if fov < MAX_FOV_DEG:
            assert ppd == pytest.approx(target, rel=1e-5)
        else:
            assert ppd > target  # capped fov: finer than asked, never coarser


def test_default_plan_table() -> None:
    """Regression table for the default config on an 8000x4000 panorama."""
    tiles = plan_panorama_tiles(8000, 4000, TilingConfig())
    rows: dict[tuple[float, float], int] = {}
    for t in tiles:
        key = (round(t.fov_deg, 3), round(t.pitch_deg, 3))
        rows[key] = rows.get(key, 0) + 1
    assert rows == {
        (28.216, 20.625): 15,
        (28.216, 1.875): 15,
        (28.216, -16.875): 15,
        (79.91, 38.333): 8,
        (79.91, -5.0): 8,
        (79.91, -48.333): 7,
    }
    assert len(tiles) == 68
    assert tiles == plan_panorama_tiles(8000, 4000, TilingConfig())  # deterministic
    assert len({t.tile_id for t in tiles}) == len(tiles)


def test_default_native_rows_are_the_old_top_three_rows() -> None:
    """The default's native band (-26.25..30 deg) keeps the three upper rows of the former
    -45..30 deg band tile for tile (only the ring at -35.6 deg is gone), so every object
    above the cut is seen in the same tiles as before."""
    old = TilingConfig(
        levels=(TileLevel("native", 1.0, -45.0, 30.0, 4.0), *TilingConfig().levels[1:])
    )
    before = plan_panorama_tiles(8000, 4000, old)
    after = plan_panorama_tiles(8000, 4000, TilingConfig())
    native_after = [t for t in after if t.fov_deg < 30]
    native_before = [t for t in before if t.fov_deg < 30]
    assert len(native_before) == 59 and len(native_after) == 45
    assert native_after == native_before[:45]
    assert [t for t in after if t.fov_deg > 30] == [t for t in before if t.fov_deg > 30]


def test_equator_band_hand_computed() -> None:
    """Thin band at the equator: one row at pitch 0; yaw step from the closed-form eroded
    half-width at the band edge (lat 2): side planes at pitch 0 are meridian planes at
    +-fov/2, so a cap of radius r at (h, 2) is inside iff cos 2 sin(fov/2 - h) >= sin r."""
    level = TileLevel("eq", 1.0, -2.0, 2.0, 4.0)
    tiling = TilingConfig(tile_size=640, levels=(level,))
    fov = level_fov_deg(8000, 640, level)
    r = math.radians(2.0)
    half = math.radians(fov / 2) - math.asin(math.sin(r) / math.cos(math.radians(2.0)))
    expected_count = math.ceil(180.0 / math.degrees(half))
    assert expected_count == 15
    tiles = plan_panorama_tiles(8000, 4000, tiling)
    assert len(tiles) == expected_count
    assert all(t.pitch_deg == 0.0 and t.fov_deg == fov and t.size == 640 for t in tiles)
    np.testing.assert_allclose([t.yaw_deg for t in tiles], np.arange(-168, 180, 24), atol=1e-9)


def test_rows_order_and_cover_band() -> None:
    tiling = TilingConfig()
    tiles = plan_panorama_tiles(8000, 4000, tiling)
    for level in tiling.levels:
        fov = level_fov_deg(8000, tiling.tile_size, level)
        rows = plan_level_rows(fov, level)
        assert rows[0].lat_hi_deg == level.pitch_max_deg
        assert rows[-1].lat_lo_deg == level.pitch_min_deg
        for a, b in itertools.pairwise(rows):
            assert a.lat_lo_deg == pytest.approx(b.lat_hi_deg)
            assert a.pitch_deg > b.pitch_deg
        mine = [t for t in tiles if t.fov_deg == fov]
        assert [(t.pitch_deg, t.yaw_deg) for t in mine] == sorted(
            ((t.pitch_deg, t.yaw_deg) for t in mine), key=lambda p: (-p[0], p[1])
        )


def test_object_too_large_for_tile_raises() -> None:
    tiling = TilingConfig(tile_size=64, levels=(TileLevel("tiny", 1.0, -10, 10, 4.0),))
    with pytest.raises(ConfigError, match="max_object_deg"):
        plan_panorama_tiles(8000, 4000, tiling)


def _cap_outline(centres: np.ndarray, radius_deg: np.ndarray, k: int = 48) -> np.ndarray:
    """(N, k, 3) points on the circle of angular radius r around each centre (N, 3)."""
    c = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    helper = np.where(np.abs(c[:, 1:2]) < 0.9, [[0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]])
    e1 = np.cross(c, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(c, e1)
    a = np.linspace(0, 2 * np.pi, k, endpoint=False)
    r = np.radians(radius_deg)[:, None, None]
    ring = np.cos(a)[None, :, None] * e1[:, None] + np.sin(a)[None, :, None] * e2[:, None]
    return np.cos(r) * c[:, None] + np.sin(r) * ring


def _covered(tiles: list[GnomonicTile], outline: np.ndarray) -> np.ndarray:
    """(N,) True where an object's whole outline projects inside at least one tile."""
    ok = np.zeros(outline.shape[0], bool)
    for t in tiles:
        u, v, front = rays_to_tile(t, outline)
        inside = front & (u >= 0) & (u <= t.size) & (v >= 0) & (v <= t.size)
        ok |= inside.all(axis=1)
    return ok


def _random_objects(
    rng: np.random.Generator, level: TileLevel, n: int
) -> tuple[np.ndarray, np.ndarray]:
    lat = rng.uniform(level.pitch_min_deg, level.pitch_max_deg, n)
    lon = rng.uniform(-180, 180, n)
    lat[:40] = np.repeat([level.pitch_min_deg, level.pitch_max_deg], 20)  # band edges
    lon[40:60] = 180.0  # the seam
    diameter = rng.uniform(0, level.max_object_deg, n)
    diameter[: n // 3] = level.max_object_deg  # the hardest case: the largest objects
    return lonlat_to_vec(lon, lat), diameter / 2


@pytest.mark.parametrize(
    ("W", "tiling"),
    [
        (8000, TilingConfig()),
        (5376, TilingConfig(tile_size=512)),
        (
            4000,
            TilingConfig(
                tile_size=640,
                levels=(
                    TileLevel("polar", 0.5, 40.0, 90.0, 12.0),
                    TileLevel("low", 1.0, -90, -50, 8.0),
                ),
            ),
        ),
    ],
)
def test_sphere_band_cover(W: int, tiling: TilingConfig) -> None:
    rng = np.random.default_rng(7)
    tiles = plan_panorama_tiles(W, W // 2, tiling)
    for level in tiling.levels:
        fov = level_fov_deg(W, tiling.tile_size, level)
        mine = [t for t in tiles if t.fov_deg == fov]
        centres, radius = _random_objects(rng, level, 3000)
        outline = _cap_outline(centres, radius)
        covered = _covered(mine, outline)
        assert covered.all(), (
            f"{level.name}: {np.count_nonzero(~covered)} objects not whole in a tile"
        )


def test_cover_check_can_fail() -> None:
    """Negative control: with one yaw fewer per row the same check finds uncovered objects."""
    rng = np.random.default_rng(8)
    tiling = TilingConfig()
    level = tiling.levels[0]
    fov = level_fov_deg(8000, tiling.tile_size, level)
    sparse = [
        GnomonicTile(k * 360.0 / (row.count - 1), row.pitch_deg, fov, tiling.tile_size)
        for row in plan_level_rows(fov, level)
        for k in range(row.count - 1)
    ]
    centres, radius = _random_objects(rng, level, 3000)
    assert not _covered(sparse, _cap_outline(centres, radius)).all()


def _outline_margin(t: GnomonicTile, lon: np.ndarray, lat: np.ndarray, radius: float) -> float:
    """Smallest distance (tile px) from a sampled cap outline to the tile border (< 0: outside)."""
    out = _cap_outline(lonlat_to_vec(lon.ravel(), lat.ravel()), np.full(lon.size, radius), 24)
    u, v, front = rays_to_tile(t, out)
    m = np.minimum(np.minimum(u, t.size - u), np.minimum(v, t.size - v))
    return float(np.min(np.where(front, m, -np.inf)))


def test_rect_in_footprint_matches_brute_force() -> None:
    """Find the largest half-width h* the exact test accepts; sampled caps centred in the
    h* rectangle must all be inside the tile, and some centred 0.5 deg further out must not."""
    rng = np.random.default_rng(9)
    informative = 0
    hs = np.linspace(0.0, 180.0, 3601)
    for _ in range(30):
        pitch = rng.uniform(-90, 90)
        fov = rng.uniform(20, 100)
        radius = rng.uniform(0, fov / 5)
        reach = fov / 2 - radius
        lo = max(-90.0, pitch - rng.uniform(0, reach))
        hi = min(90.0, lo + rng.uniform(0, reach))
        ok = rect_in_footprint(pitch, fov, radius, hs, lo, hi)
        k = int(np.count_nonzero(ok))
        assert ok[:k].all()  # monotone in h
        if k == 0 or k == hs.size:
            continue
        informative += 1
        t = GnomonicTile(0.0, pitch, fov, 1000)
        lat = np.linspace(lo, hi, 201)
        h_in, h_out = hs[k - 1], min(180.0, hs[k - 1] + 0.5)
        lon, lat_g = np.meshgrid(np.linspace(-h_in, h_in, 41), lat)
        assert _outline_margin(t, lon, lat_g, radius) >= -1e-6
        edge = np.concatenate([np.full(lat.size, -h_out), np.full(lat.size, h_out)])
        assert _outline_margin(t, edge, np.concatenate([lat, lat]), radius) < 0
    assert informative >= 20


# --- perspective plans ------------------------------------------------------------------------


def test_perspective_plan_table() -> None:
    tiles = plan_perspective_tiles(1920, 1080, TilingConfig())
    native = [(t.x0, t.y0, t.width, t.height) for t in tiles[:-1]]
    assert native == [(x, y, 640, 640) for y in (0, 440) for x in (0, 426, 853, 1280)]
    assert all(t.scale == 1.0 and t.content_size == (640, 640) for t in tiles[:-1])
    g = tiles[-1]
    assert (g.x0, g.y0, g.width, g.height, g.scale) == (0, 0, 1920, 1080, None)
    assert g.content_size == (640, 360)


@pytest.mark.parametrize(
    ("W", "H", "persp", "expected"),
    [
        (640, 640, PerspectiveTiling(), [(0, 0, 640, 640, 1.0)]),
        (300, 200, PerspectiveTiling(upscale_below_tiles=0), [(0, 0, 300, 200, 1.0)]),
        # the default magnifies a photo smaller than a tile and keeps it at native scale too
        (300, 200, PerspectiveTiling(), [(0, 0, 300, 200, 640 / 300), (0, 0, 300, 200, 1.0)]),
        # upscaled: one magnified window plus the photo at native scale (global view)
        (
            300,
            200,
            PerspectiveTiling(upscale_below_px=600),
            [(0, 0, 300, 200, 2.0), (0, 0, 300, 200, 1.0)],
        ),
        (
            300,
            200,
            PerspectiveTiling(upscale_below_px=600, global_view=False),
            [(0, 0, 300, 200, 2.0)],
        ),
        # upscaled into several windows, larger than a tile: the global view is fitted (< 1)
        (
            800,
            600,
            PerspectiveTiling(overlap_px=100, upscale_below_px=1000),
            [
                (0, 0, 512, 512, 1.25),
                (288, 0, 512, 512, 1.25),
                (0, 88, 512, 512, 1.25),
                (288, 88, 512, 512, 1.25),
                (0, 0, 800, 600, None),
            ],
        ),
        (
            1000,
            400,
            PerspectiveTiling(overlap_px=100, global_view=False),
            [(0, 0, 640, 400, 1.0), (360, 0, 640, 400, 1.0)],
        ),
    ],
)
def test_perspective_small_cases(W: int, H: int, persp: PerspectiveTiling, expected: list) -> None:
    tiles = plan_perspective_tiles(W, H, TilingConfig(perspective=persp))
    assert [(t.x0, t.y0, t.width, t.height, t.scale) for t in tiles] == expected


def test_perspective_upscaled_windows() -> None:
    persp = PerspectiveTiling(overlap_px=40, upscale_below_px=1280, global_view=False)
    tiles = plan_perspective_tiles(800, 400, TilingConfig(perspective=persp))
    assert {(t.width, t.height, t.scale, t.content_size) for t in tiles} == {
        (400, 400, 1.6, (640, 640))
    }
    assert [t.x0 for t in tiles] == [0, 200, 400]  # two windows would overlap by 0 < 40


def test_perspective_windows_cover_with_overlap() -> None:
    rng = np.random.default_rng(10)
    for _ in range(50):
        W, H = int(rng.integers(100, 5000)), int(rng.integers(100, 5000))
        ov = int(rng.integers(0, 300))
        tiling = TilingConfig(perspective=PerspectiveTiling(overlap_px=ov, global_view=False))
        tiles = plan_perspective_tiles(W, H, tiling)
        for axis, L in (("x0", W), ("y0", H)):
            starts = sorted({getattr(t, axis) for t in tiles})
            ext = tiles[0].width if axis == "x0" else tiles[0].height
            assert starts[0] == 0 and starts[-1] + ext == L
            gaps = np.diff(starts)
            assert np.all(ext - gaps >= min(ov, ext))  # consecutive overlap >= overlap_px
            if len(starts) > 2:
                assert gaps.max() - gaps.min() <= 1  # evenly spread


def test_perspective_upscaled_overlap_is_capped_at_half_a_window() -> None:
    """A thumbnail magnified 4x has 160 px windows: the 160 px overlap would not fit, so it is
    capped at half a window (larger objects are whole in the native-scale global view)."""
    tiling = TilingConfig(perspective=PerspectiveTiling(upscale_below_px=1280))
    tiles = plan_perspective_tiles(320, 240, tiling)
    windows, glob = tiles[:-1], tiles[-1]
    assert {(t.width, t.height, t.scale) for t in windows} == {(160, 160, 4.0)}
    assert sorted({t.x0 for t in windows}) == [0, 80, 160]  # 3 columns: 80 px overlap
    assert sorted({t.y0 for t in windows}) == [0, 80]
    assert (glob.width, glob.height, glob.scale) == (320, 240, 1.0)


@pytest.mark.parametrize(
    ("W", "H", "tile", "persp", "factor"),
    [
        (320, 240, 640, PerspectiveTiling(), 2.0),  # one tile by default
        (600, 400, 640, PerspectiveTiling(), 1.0),  # 1.07x < MIN_UPSCALE: not worth a view
        (512, 300, 640, PerspectiveTiling(), 1.25),
        (640, 480, 640, PerspectiveTiling(), 1.0),
        (320, 240, 320, PerspectiveTiling(), 1.0),  # relative to the tile size, not 640 px
        (500, 300, 1024, PerspectiveTiling(), 2.048),
        (1, 1, 640, PerspectiveTiling(), 8.0),  # capped at MAX_UPSCALE
        (320, 240, 640, PerspectiveTiling(upscale_below_tiles=0), 1.0),  # off
        (320, 240, 640, PerspectiveTiling(upscale_below_px=960), 3.0),  # px overrides tiles
    ],
)
def test_upscale_factor_table(
    W: int, H: int, tile: int, persp: PerspectiveTiling, factor: float
) -> None:
    from redact.tiling import upscale_factor

    assert upscale_factor(W, H, TilingConfig(tile_size=tile, perspective=persp)) == pytest.approx(
        factor
    )


def test_tiny_and_thin_photos_plan_without_error() -> None:
    for W, H in ((1, 1), (639, 5), (5, 639), (8, 8), (100, 3)):
        for tile in (32, 64, 320, 640):
            persp = PerspectiveTiling(overlap_px=tile // 4)
            tiles = plan_perspective_tiles(W, H, TilingConfig(tile_size=tile, perspective=persp))
            assert tiles and all(t.x0 + t.width <= W and t.y0 + t.height <= H for t in tiles)


def test_perspective_overlap_too_large() -> None:
    tiling = TilingConfig(perspective=PerspectiveTiling(overlap_px=640))
    with pytest.raises(ConfigError, match="overlap_px"):
        plan_perspective_tiles(2000, 1000, tiling)
    one = TilingConfig(perspective=PerspectiveTiling(overlap_px=640, upscale_below_tiles=0))
    assert len(plan_perspective_tiles(500, 500, one)) == 1  # one window: no overlap needed


# --- crop tiles ---------------------------------------------------------------------------------


def test_crop_tile_validation_and_id() -> None:
    assert CropTile(0, 0, 1920, 1080, 640).tile_id == "c:x0=0,y0=0,w=1920,h=1080,s=640"
    assert CropTile(5, 6, 400, 300, 640, 1.6).tile_id == "c:x0=5,y0=6,w=400,h=300,s=640,k=1.6"
    with pytest.raises(ValueError, match="fit"):
        CropTile(0, 0, 500, 100, 640, 1.5)
    with pytest.raises(ValueError):
        CropTile(-1, 0, 10, 10, 64)


def test_render_crop_and_boxes_map_back_exactly() -> None:
    rng = np.random.default_rng(11)
    img = rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    before = img.copy()
    native = CropTile(426, 440, 640, 640, 640, 1.0)
    out = render_tile(img, native)
    np.testing.assert_array_equal(out, img[440:1080, 426:1066])
    np.testing.assert_array_equal(img, before)

    g = CropTile(0, 0, 1920, 1080, 640)
    out = render_tile(img, g)
    assert out.shape == (640, 640, 3)
    assert not out[360:].any()  # letterbox padding below the content
    sx, sy = g.scale_xy
    assert (sx, sy) == (1 / 3, 1 / 3)
    image_boxes = np.array([[300, 150, 600, 420], [0, 0, 1920, 1080]], np.float32)
    tile_boxes = image_boxes * np.array([sx, sy, sx, sy], np.float32)
    back, src = tile_boxes_to_image(g, tile_boxes, 1920, 1080, wrap=False)
    np.testing.assert_allclose(back, image_boxes, atol=1e-3)
    np.testing.assert_array_equal(src, [0, 1])


def test_crop_boxes_clip_and_drop_padding() -> None:
    t = CropTile(100, 50, 300, 200, 640, 1.0)  # content 300x200 at the top-left
    boxes = [[10, 10, 20, 20], [290, 190, 350, 260], [400, 10, 450, 20], [10, 300, 20, 310]]
    out, src = crop_boxes_to_image(t, boxes)
    np.testing.assert_array_equal(src, [0, 1])
    np.testing.assert_array_equal(out, [[110, 60, 120, 70], [390, 240, 400, 250]])
    out, src = crop_boxes_to_image(t, np.zeros((0, 4)))
    assert out.shape == (0, 4) and src.shape == (0,)


# --- gnomonic rendering through the cache, mapping back ---------------------------------------


def test_remap_cache_reuses_maps() -> None:
    cache = RemapCache(maxsize=2)
    a, b, c = (GnomonicTile(y, 0, 60, 32) for y in (0, 90, 180))
    m1 = cache.maps(a, 720, 360)
    assert cache.maps(a, 720, 360) is m1
    assert (cache.hits, cache.misses) == (1, 1)
    assert not m1[0].flags.writeable
    assert cache.maps(a, 1440, 720) is not m1  # another panorama size: other maps
    cache.maps(b, 720, 360)
    cache.maps(c, 720, 360)
    assert len(cache) == 2 and cache.maps(a, 720, 360) is not m1  # evicted (LRU)
    img = np.random.default_rng(0).integers(0, 255, (360, 720, 3), dtype=np.uint8)
    np.testing.assert_array_equal(render_tile(img, b, cache), render_tile(img, b))


def test_remap_cache_threads_split_a_layout_and_build_each_key_once() -> None:
    """Two threads prefetching the same layout at once: every key is built exactly once, both
    threads build some of them (the work is split), and both end with every key stored."""
    import threading
    import time

    cache = RemapCache()
    built: list[tuple[int, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(2)

    def builder(k: int):
        def make():
            time.sleep(0.01)  # long enough for the other thread to find the key in flight
            with lock:
                built.append((k, threading.current_thread().name))
            return (np.full(4, k, np.float32),)

        return make

    items = [(("k", k), builder(k)) for k in range(12)]
    counts: dict[str, int] = {}

    def run(name: str) -> None:
        start.wait()
        counts[name] = cache.prefetch(items)

    threads = [threading.Thread(target=run, args=(n,), name=n) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(k for k, _ in built) == list(range(12))  # each key once
    assert counts["a"] + counts["b"] == 12 and min(counts.values()) >= 1  # split
    assert all(cache.get(("k", k), builder(99))[0][0] == k for k in range(12))  # all stored
    assert cache.prefetch(items) == 0  # nothing left to build


def test_remap_cache_a_failed_build_is_rebuilt_by_the_waiting_thread() -> None:
    import threading

    cache = RemapCache()
    entered, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def failing():
        entered.set()
        release.wait(5)
        raise RuntimeError("boom")

    def first() -> None:
        try:
            cache.get("k", failing)
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=first)
    t.start()
    assert entered.wait(5)
    got: list[tuple[np.ndarray, ...]] = []
    waiter = threading.Thread(target=lambda: got.append(cache.get("k", lambda: (np.ones(2),))))
    waiter.start()
    release.set()
    t.join(5)
    waiter.join(5)
    assert len(errors) == 1 and len(got) == 1 and got[0][0].tolist() == [1.0, 1.0]


def test_prefetch_maps_builds_only_gnomonic_tiles_and_matches_maps() -> None:
    cache = RemapCache()
    tiles = (GnomonicTile(0, 0, 60, 16), GnomonicTile(90, 0, 60, 16), CropTile(0, 0, 8, 8, 16))
    assert cache.prefetch_maps(tiles, 720, 360) == 2 and len(cache) == 2
    for t in tiles[:2]:
        ref = remap_maps(t, 720, 360)
        got = cache.maps(t, 720, 360)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
    assert cache.hits == 2


def test_remap_cache_builds_each_ring_once_and_its_tiles_share_map_y(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import redact.tiling as tiling

    calls: list[tuple[float, float]] = []
    real = tiling.remap_row_base

    def counting(tile: GnomonicTile, W: int, H: int, rows: object = None):  # type: ignore[no-untyped-def]
        calls.append((tile.pitch_deg, tile.fov_deg))
        return real(tile, W, H)

    monkeypatch.setattr(tiling, "remap_row_base", counting)
    cache = RemapCache()
    ring_a = [GnomonicTile(y, 10, 60, 16) for y in (-120, 0, 120)]
    ring_b = [GnomonicTile(y, -30, 60, 16) for y in (-90, 90)]
    assert cache.prefetch_maps(ring_a + ring_b, 720, 360) == 5 and len(cache) == 5
    assert sorted(calls) == [(-30.0, 60.0), (10.0, 60.0)]  # one base per ring
    ys = [cache.maps(t, 720, 360)[1] for t in ring_a]
    assert ys[0] is ys[1] is ys[2]
    for t in ring_a + ring_b:  # the same maps as built alone
        got, ref = cache.maps(t, 720, 360), remap_maps(t, 720, 360)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
    # nbytes counts both: 5 tiles' maps (16x16 float32 x 2, map_y shared but counted per tile)
    # and 2 ring bases (16x16 float64 x0 + float32 map_y)
    assert cache.nbytes == 5 * 2 * 16 * 16 * 4 + 2 * (16 * 16 * 8 + 16 * 16 * 4)
    cache.maps(GnomonicTile(45, 10, 60, 16), 1440, 720)  # another size: another base
    assert len(calls) == 3


def test_remap_cache_byte_bound_evicts_lru_and_never_holds_an_oversized_entry() -> None:
    cache = RemapCache(maxsize=10, max_bytes=3000)
    built: list[str] = []

    def build(name: str, n: int):
        def make():
            built.append(name)
            return (np.zeros(n, np.uint8), np.zeros(n, np.uint8))

        return make

    a = cache.get("a", build("a", 500))  # 1000 bytes each
    cache.get("b", build("b", 500))
    assert cache.get("a", build("a", 500)) is a and cache.nbytes == 2000  # a is now newest
    cache.get("c", build("c", 500))  # 3000: at the bound, all held
    cache.get("d", build("d", 500))  # 4000 > 3000: b (least recently used) goes
    assert len(cache) == 3 and cache.nbytes == 3000
    cache.get("b", build("b", 500))
    assert built == ["a", "b", "c", "d", "b"]
    big = cache.get("big", build("big", 2000))  # 4000 on its own: returned, not held
    assert big[0].size == 2000 and not big[0].flags.writeable
    assert len(cache) == 3 and cache.nbytes == 3000
    assert cache.get("a", build("a", 500)) is not a  # a was evicted by b's return
    assert cache.nbytes <= 3000
    with pytest.raises(ValueError, match="max_bytes"):
        RemapCache(max_bytes=-1)


def test_tile_boxes_to_image_seam_wrap_and_split() -> None:
    t = GnomonicTile(180, 0, 60, 100)
    boxes = [[40, 40, 60, 60], [70, 40, 80, 60]]
    wrapped, src = tile_boxes_to_image(t, boxes, 720, 360, wrap=True)
    assert wrapped.shape == (2, 4) and wrapped[0, 2] > 720
    np.testing.assert_array_equal(src, [0, 1])
    split, src = tile_boxes_to_image(t, boxes, 720, 360, wrap=False)
    np.testing.assert_array_equal(src, [0, 0, 1])
    assert np.all(split[:, 2] <= 720) and split[0, 2] == 720 and split[1, 0] == 0
    with pytest.raises(TypeError):
        tile_boxes_to_image("tile", boxes, 720, 360, wrap=True)  # type: ignore[arg-type]


def test_panorama_plans_are_memoised_per_size_and_config() -> None:
    t = TilingConfig()
    a = plan_panorama_tiles(8000, 4000, t)
    assert plan_panorama_tiles(8000, 4000, TilingConfig()) is a  # equal configs: one plan
    assert plan_panorama_tiles(4000, 2000, t) is not a
    narrow = TilingConfig(levels=(TileLevel("native", 1.0, -10.0, 10.0, 4.0),))
    assert len(plan_panorama_tiles(8000, 4000, narrow)) < len(a)


def test_prepare_shares_one_remap_cache_across_dofn_instances() -> None:
    """Every PrepareImage instance of a worker process (one per harness thread) gets the same
    RemapCache: the maps of a layout are built once per process."""
    import pickle

    from redact.pipeline.prepare import PrepareImage

    proto = PrepareImage(job=None, run=None)  # type: ignore[arg-type]
    first, second = pickle.loads(pickle.dumps(proto)), pickle.loads(pickle.dumps(proto))
    first.setup()
    second.setup()
    assert isinstance(first._cache, RemapCache)
    assert first._cache is second._cache
