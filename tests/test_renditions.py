"""Renditions (redact/renditions.py): geometry tables, stitching back, blur survives every
level and cube face, the seam, and the files carry nothing but their pixels."""

from __future__ import annotations

import itertools
import json
import math

import cv2
import numpy as np
import pytest
import simplejpeg
from hypothesis import given, settings
from hypothesis import strategies as st

from redact.classes import Projection
from redact.config import RedactConfig, RenditionsConfig
from redact.errors import ConfigError, ImageError
from redact.geometry.gnomonic import GnomonicTile, lonlat_to_tile, remap_maps
from redact.io import jpeg_meta
from redact.io.leakscan import embedded_images
from redact.renditions import (
    CUBE_FACES,
    FACE_MAPS,
    FACE_MAPS_MAX_BYTES,
    RenditionKind,
    cube_face_maps,
    cube_face_size,
    cube_level_sizes,
    direct_face_maps,
    fit_size,
    make_renditions,
    pyramid_sizes,
    render_face,
    tile_grid,
    turn_face_maps,
)
from redact.tiling import RemapCache

BASE = "/out/p.jpg.renditions"
ON = RenditionsConfig(enabled=True)


def _jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    return bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(rgb), quality=quality))


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    return buf.tobytes()


def _decode(data: bytes) -> np.ndarray:
    return simplejpeg.decode_jpeg(data, colorspace="RGB")


def _smooth(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB field (low frequencies only: JPEG and resampling keep it)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 215, (max(2, h // 64), max(2, w // 64), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _make(img: np.ndarray, projection=Projection.EQUIRECTANGULAR, cfg=ON, data=None, **kw):
    return make_renditions(
        _png(img) if data is None else data, projection, cfg, BASE, max_pixels=10**9, **kw
    )


def _by_kind(rs, kind):
    return [r for r in rs if r.kind is kind]


# --- geometry tables ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("w", "h", "tile", "expected"),
    [
        (8000, 4000, 512, ((500, 250), (1000, 500), (2000, 1000), (4000, 2000), (8000, 4000))),
        (1001, 500, 512, ((501, 250), (1001, 500))),
        (1025, 512, 512, ((257, 128), (513, 256), (1025, 512))),
        (512, 256, 512, ((512, 256),)),
        (1, 1, 512, ((1, 1),)),
        (3, 1, 1, ((1, 1), (2, 1), (3, 1))),
    ],
)
def test_pyramid_sizes(w, h, tile, expected):
    assert pyramid_sizes(w, h, tile) == expected


def test_tile_grid_of_8000x4000_levels_has_171_tiles_cut_at_the_edges():
    sizes = pyramid_sizes(8000, 4000, 512)
    counts = [len(tile_grid(lw, lh, 512)) for lw, lh in sizes]
    assert counts == [1, 2, 8, 32, 128]
    last = tile_grid(8000, 4000, 512)[-1]
    assert (last.row, last.col, last.x, last.y, last.w, last.h) == (7, 15, 7680, 3584, 320, 416)
    odd = tile_grid(1001, 500, 512)
    assert [(t.x, t.y, t.w, t.h) for t in odd] == [(0, 0, 512, 500), (512, 0, 489, 500)]


@pytest.mark.parametrize(
    ("width", "tile", "given_px", "face", "levels"),
    [
        (8000, 512, 0, 2048, (512, 1024, 2048)),  # 8000 / pi = 2546: 2^2 x 512 nearest
        (11000, 512, 0, 4096, (512, 1024, 2048, 4096)),  # 3501: 2^3 nearest in log scale
        (2000, 512, 0, 512, (512,)),  # 637
        (1001, 512, 0, 312, (312,)),  # 318 < 512: one tile, a multiple of 8
        (16, 512, 0, 8, (8,)),
        (8000, 256, 1024, 1024, (256, 512, 1024)),
        (8000, 512, 300, 300, (300,)),
    ],
)
def test_cube_sizes(width, tile, given_px, face, levels):
    assert cube_face_size(width, tile, given_px) == face
    assert cube_level_sizes(face, min(tile, face)) == levels
    for s in levels:  # Marzipano: each level whole tiles
        assert s % min(tile, s) == 0


def test_fit_size_never_upscales():
    assert fit_size(8000, 4000, 512) == (512, 256)
    assert fit_size(300, 1200, 512) == (128, 512)
    assert fit_size(100, 50, 512) == (100, 50)
    assert fit_size(1, 1, 512) == (1, 1)
    assert fit_size(10000, 1, 512) == (512, 1)


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(1, 3000),
    h=st.integers(1, 3000),
    tile=st.integers(1, 700),
)
def test_tiles_cover_each_level_exactly_once(w, h, tile):
    sizes = pyramid_sizes(w, h, min(tile, 4096))
    assert sizes[-1] == (w, h) and max(sizes[0]) <= tile
    for (aw, ah), (bw, bh) in itertools.pairwise(sizes):
        assert (aw, ah) == ((bw + 1) // 2, (bh + 1) // 2)
    lw, lh = sizes[-1] if w * h <= 10**6 else sizes[0]
    cover = np.zeros((lh, lw), np.int32)
    for t in tile_grid(lw, lh, tile):
        assert 0 < t.w <= tile and 0 < t.h <= tile
        cover[t.y : t.y + t.h, t.x : t.x + t.w] += 1
    assert (cover == 1).all()


def test_config_rejects_cube_sizes_that_do_not_halve_into_tiles():
    base = {"models": [{"path": "m.onnx", "classes": ["face"]}]}
    ok = RedactConfig.from_dict({**base, "renditions": {"tile_px": 256, "cube_face_px": 2048}})
    assert ok.renditions.cube_face_px == 2048
    for bad in (1536, 3000):
        with pytest.raises(ConfigError, match="cube_face_px"):
            RedactConfig.from_dict({**base, "renditions": {"cube_face_px": bad}})
    off = RedactConfig.from_dict(base)
    assert not off.renditions.enabled
    # Off, the section does not enter the hash (existing markers stay current); on, it does.
    on = RedactConfig.from_dict({**base, "renditions": {"enabled": True}})
    tiles = RedactConfig.from_dict({**base, "renditions": {"tile_px": 256}})
    assert off.hash() == tiles.hash() != on.hash()


# --- what the files hold -----------------------------------------------------------------------


def test_panorama_gets_every_kind_and_photo_a_thumbnail_only():
    img = _smooth(200, 400)
    rs = _make(img)
    kinds = {r.kind for r in rs}
    assert kinds == set(RenditionKind)
    assert len({r.name for r in rs}) == len(rs)
    assert all(r.uri == f"{BASE}/{r.name}" for r in rs)
    photo = _make(_smooth(120, 200), Projection.PERSPECTIVE)
    assert [(r.kind, r.name, r.width, r.height) for r in photo] == [
        (RenditionKind.THUMBNAIL, "thumbnail.jpg", 200, 120)
    ]


def test_renditions_carry_no_metadata_even_when_the_copy_does():
    img = _smooth(256, 512)
    exif = b"Exif\x00\x00" + b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    copy = jpeg_meta.insert_segments(
        _jpeg(img), (b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif,)
    )
    assert b"Exif" in copy
    for r in _make(img, data=copy):
        if r.kind is RenditionKind.VIEWER_CONFIG:
            json.loads(r.data)
            continue
        assert r.data[:2] == b"\xff\xd8"
        assert embedded_images(r.data) == []
        markers = {m for m, _ in jpeg_meta.parse_jpeg(r.data).segments}
        assert markers.isdisjoint({0xE1, 0xE2, 0xED, 0xFE}), r.name  # EXIF/XMP, ICC, IRB, COM


def test_full_resolution_level_stitches_back_to_the_copy():
    """The last equirect level, stitched, is the published copy up to JPEG tolerance, and no
    region of it differs beyond that (a rendition holds no pixel the copy does not)."""
    img = _smooth(700, 1400, 3)
    rng = np.random.default_rng(1)
    img[100:300, 200:420] = rng.integers(0, 255, (200, 220, 3), np.uint8)  # texture
    copy = _jpeg(img, 92)
    published = _decode(copy)
    rs = _make(img, data=copy)
    tiles = _by_kind(rs, RenditionKind.EQUIRECT_TILE)
    top = max(t.level for t in tiles)
    assert {(t.level_width, t.level_height) for t in tiles if t.level == top} == {(1400, 700)}
    stitched = np.zeros_like(published)
    for t in (t for t in tiles if t.level == top):
        px = _decode(t.data)
        assert px.shape == (t.h, t.w, 3) == (t.height, t.width, 3)
        stitched[t.y : t.y + t.h, t.x : t.x + t.w] = px
    diff = np.abs(stitched.astype(np.int16) - published.astype(np.int16))
    smooth = np.ones(diff.shape[:2], bool)
    smooth[90:310, 190:430] = False
    assert np.abs(diff[smooth]).mean() < 1.5 and np.percentile(diff[smooth], 99.9) <= 12
    # In 8 px blocks, nothing the copy lacks appears: block means agree everywhere, the
    # textured part included (a hidden face would differ by tens of levels).
    signed = stitched[:696].astype(np.float32) - published[:696].astype(np.float32)
    blocks = np.abs(signed.reshape(87, 8, 175, 8, 3).mean(axis=(1, 3)))
    assert blocks.max() < 10, blocks.max()
    # Every lower level is the copy, area-resized.
    for t in (t for t in tiles if t.level < top):
        ref = cv2.resize(published, (t.level_width, t.level_height), interpolation=cv2.INTER_AREA)
        part = ref[t.y : t.y + t.h, t.x : t.x + t.w].astype(np.int16)
        assert np.abs(_decode(t.data).astype(np.int16) - part).mean() < 3


def _hf_energy(px: np.ndarray) -> float:
    """Mean absolute Laplacian of the gray image (high-frequency energy)."""
    g = cv2.cvtColor(px, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(g, cv2.CV_32F)).mean())


def _region_in(t_px: np.ndarray, mask: np.ndarray) -> float:
    return (
        _hf_energy(t_px)
        if not mask.any()
        else float(
            np.abs(
                cv2.Laplacian(cv2.cvtColor(t_px, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)
            )[mask].mean()
        )
    )


def test_a_face_blurred_in_the_copy_is_blurred_in_every_level_and_cube_face():
    """A bright high-frequency "face" at (lon 30, lat 10): the copy blurs it; every level, cube
    face and cube tile that sees that direction shows it as smooth as the copy does, while
    the same texture left unblurred elsewhere stays sharp (the test can fail)."""
    W, H = 2048, 1024
    rng = np.random.default_rng(7)
    img = np.full((H, W, 3), 120, np.uint8)
    checker = ((np.indices((64, 64)).sum(axis=0) // 2) % 2 * 255).astype(np.uint8)
    face = np.repeat(checker[:, :, None], 3, axis=2)
    fx, fy = int((30 + 180) / 360 * W), int((90 - 10) / 180 * H)
    sx, sy = int((-60 + 180) / 360 * W), int((90 - 5) / 180 * H)  # sharp control, lon -60
    img[sy - 32 : sy + 32, sx - 32 : sx + 32] = face
    blurred = img.copy()
    blurred[fy - 32 : fy + 32, fx - 32 : fx + 32] = 200 + rng.integers(-2, 3, (64, 64, 3))
    img[fy - 32 : fy + 32, fx - 32 : fx + 32] = face  # what the original had
    copy = _jpeg(blurred, 92)
    rs = _make(blurred, data=copy)

    def lonlat_box(lon, lat, half_deg):
        return lon - half_deg, lon + half_deg, lat - half_deg, lat + half_deg

    checked = {"equirect": 0, "face": 0, "tile": 0}
    for r in rs:
        if r.kind in (RenditionKind.VIEWER_CONFIG,):
            continue
        px = _decode(r.data)
        lw, lh = r.level_width, r.level_height
        for (lon, lat), sharp in (((30, 10), False), ((-60, 5), True)):
            if r.kind is RenditionKind.CUBE_FACE or r.kind is RenditionKind.CUBE_TILE:
                yaw, pitch = CUBE_FACES[r.face]
                u, v, front = lonlat_to_tile(GnomonicTile(yaw, pitch, 90.0, lw), lon, lat)
                if not front:
                    continue
                cu, cv = float(u) - r.x, float(v) - r.y
                half = 0.6 * 64 / W * 360 / (90 / lw) / 2  # ~0.6 x the face's half size, px
            else:
                cu = (lon + 180) / 360 * lw - r.x
                cv = (90 - lat) / 180 * lh - r.y
                half = 0.6 * 32 * lw / W
            if half < 3:  # too small at this level to measure
                continue
            scale = lw * math.pi / W if r.face else lw / W  # level px per panorama px
            if sharp and scale < 0.7:  # the 2 px checker averages out: not a control here
                continue
            x0, x1 = int(cu - half), int(cu + half)
            y0, y1 = int(cv - half), int(cv + half)
            if x0 < 0 or y0 < 0 or x1 > px.shape[1] or y1 > px.shape[0]:
                continue
            energy = _hf_energy(px[y0:y1, x0:x1])
            if sharp:
                assert energy > 20, (r.name, energy)
            else:
                assert energy < 6, (r.name, energy)
                key = {RenditionKind.CUBE_FACE: "face", RenditionKind.CUBE_TILE: "tile"}.get(
                    r.kind, "equirect"
                )
                checked[key] += 1
    assert checked["equirect"] >= 3 and checked["face"] >= 1 and checked["tile"] >= 1, checked
    # And the original's face would have been caught: the same measure on it is sharp.
    assert _hf_energy(img[fy - 19 : fy + 19, fx - 19 : fx + 19]) > 20


def test_a_region_across_the_seam_appears_whole_in_the_back_face():
    """A red disc centred on the 0/360 seam (lon 180): the b face shows it whole, centred,
    from both halves of the panorama."""
    W, H = 1024, 512
    img = np.full((H, W, 3), 90, np.uint8)
    cv2.circle(img, (0, H // 2), 40, (255, 0, 0), -1)
    cv2.circle(img, (W, H // 2), 40, (255, 0, 0), -1)
    rs = _make(img, cfg=RenditionsConfig(enabled=True, cube_face_px=256, tile_px=256))
    (b,) = [r for r in rs if r.kind is RenditionKind.CUBE_FACE and r.face == "b"]
    px = _decode(b.data).astype(np.int16)
    red = (px[:, :, 0] > 200) & (px[:, :, 1] < 80)
    ys, xs = np.nonzero(red)
    assert red.sum() > 0.8 * math.pi * (40 / W * 360 / (90 / 256)) ** 2 / 4
    assert abs(xs.mean() - 128) < 3 and abs(ys.mean() - 128) < 3
    assert xs.min() < 128 - 10 < 128 + 10 < xs.max()  # both halves (left and right of centre)
    for f in "flud":
        (r,) = [r for r in rs if r.kind is RenditionKind.CUBE_FACE and r.face == f]
        q = _decode(r.data).astype(np.int16)
        assert not ((q[:, :, 0] > 200) & (q[:, :, 1] < 80)).any(), f


def test_cube_faces_are_oriented_like_pannellum():
    """Colour the panorama by direction: f at the centre column, r to its right, u up with the
    back at its top, d down with the front at its top."""
    W, H = 1024, 512
    img = np.zeros((H, W, 3), np.uint8)
    x = np.arange(W)
    img[:, :, 0] = ((x / W) * 255).astype(np.uint8)[None, :]  # red grows with longitude
    img[:, :, 1] = np.linspace(255, 0, H).astype(np.uint8)[:, None]  # green: up
    rs = _make(img, cfg=RenditionsConfig(enabled=True, cube_face_px=128, tile_px=128))
    faces = {r.face: _decode(r.data).astype(float) for r in rs if r.kind is RenditionKind.CUBE_FACE}
    assert abs(faces["f"][64, 64, 0] - 128) < 8  # lon 0 = centre column
    assert abs(faces["r"][64, 64, 0] - 191) < 8  # lon +90
    assert abs(faces["l"][64, 64, 0] - 64) < 8
    assert faces["f"][64, 100, 0] > faces["f"][64, 28, 0]  # right = increasing longitude
    assert faces["u"][64, 64, 1] > 235 and faces["d"][64, 64, 1] < 20
    # u: bottom edge touches f's top edge (front); d: top edge touches f's bottom edge.
    assert abs(faces["u"][126, 64, 0] - 128) < 10 and abs(faces["d"][1, 64, 0] - 128) < 10


def test_viewer_json_describes_the_cube_pyramid_on_disk():
    rs = _make(_smooth(1024, 2048), cfg=RenditionsConfig(enabled=True, tile_px=128))
    (vj,) = _by_kind(rs, RenditionKind.VIEWER_CONFIG)
    doc = json.loads(vj.data)
    mr = doc["multiRes"]
    assert doc["type"] == "multires" and mr["path"] == "/%l/%s/%y/%x" and mr["extension"] == "jpg"
    face_px = mr["cubeResolution"]
    assert face_px == cube_face_size(2048, 128) == 512
    names = {r.name for r in rs}
    for level in range(1, mr["maxLevel"] + 1):
        size = face_px // 2 ** (mr["maxLevel"] - level)
        n = math.ceil(size / mr["tileResolution"])
        for f in CUBE_FACES:
            for y in range(n):
                for x in range(n):
                    assert f"cube/{level}/{f}/{y}/{x}.jpg" in names
            assert f"cube/{level}/{f}/{n}/0.jpg" not in names
    assert [lv["size"] for lv in doc["marzipano"]["levels"]] == [128, 256, 512]
    cube_tiles = _by_kind(rs, RenditionKind.CUBE_TILE)
    assert {t.level for t in cube_tiles} == {0, 1, 2}  # manifest level = folder level - 1
    assert (
        vj.data
        == _by_kind(
            _make(_smooth(1024, 2048), cfg=RenditionsConfig(enabled=True, tile_px=128)),
            RenditionKind.VIEWER_CONFIG,
        )[0].data
    )


def test_one_pixel_and_tiny_images():
    for w, h in ((1, 1), (2, 1), (7, 3)):
        rs = _make(np.full((h, w, 3), 77, np.uint8))
        tiles = _by_kind(rs, RenditionKind.EQUIRECT_TILE)
        assert [(t.level, t.w, t.h) for t in tiles] == [(0, w, h)]
        assert all(_decode(r.data).shape[:2] == (r.height, r.width) for r in rs if r.width)


def test_switches_and_failure():
    img = _smooth(256, 512)
    only_pyramid = _make(img, cfg=RenditionsConfig(enabled=True, cube=False))
    assert {r.kind for r in only_pyramid} == {
        RenditionKind.THUMBNAIL,
        RenditionKind.PREVIEW,
        RenditionKind.EQUIRECT_TILE,
    }
    with pytest.raises(ImageError) as e:
        make_renditions(
            b"\xff\xd8\xff\xe0garbage", Projection.PERSPECTIVE, ON, BASE, max_pixels=10**9
        )
    assert e.value.reason == "renditions_failed"


# --- cube-face maps: cached, fixed point, side faces turned from the front ---------------------


def _textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth colour field with sharp-edged discs on it (edges show interpolation error)."""
    img = _smooth(h, w, seed)
    rng = np.random.default_rng(seed)
    for _ in range(40):
        c = (int(rng.integers(0, w)), int(rng.integers(h // 8, h - h // 8)))
        cv2.circle(
            img, c, int(rng.integers(4, 30)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1
        )
    return img


def _positions(maps):
    """Fixed-point maps -> (x, y) sample positions in 1/32 px (int64)."""
    xy, frac = maps
    return (
        xy[..., 0].astype(np.int64) * 32 + (frac & 31),
        xy[..., 1].astype(np.int64) * 32 + (frac >> 5),
    )


def test_fixed_point_faces_match_the_float_reference_within_a_sub_level_mean():
    """Cached fixed-point maps sample within 1/64 px of the float maps: on an image with sharp
    edges the faces agree to a mean well under one level, a few levels at worst (edges)."""
    W, H = 1024, 512
    img = _textured(H, W, 5)
    cache = RemapCache()
    for face in CUBE_FACES:
        ref = render_face(img, face, 256).astype(np.int16)
        fixed = render_face(img, face, 256, cache).astype(np.int16)
        d = np.abs(fixed - ref)
        assert d.mean() < 0.2 and d.max() <= 8, (face, d.mean(), d.max())
        # the float maps and the fixed-point ones are the same positions, rounded to 1/32 px
        mx, my = remap_maps(GnomonicTile(*CUBE_FACES[face], 90.0, 256), W, H)
        px, py = _positions(cube_face_maps(face, 256, W, H, cache))
        dx = np.remainder(px / 32 - mx + W / 2, W) - W / 2  # a side face's x is mod W
        assert np.abs(dx).max() <= 1 / 64 + 1e-3 and np.abs(py / 32 - my).max() <= 1 / 64 + 1e-3


def test_side_faces_are_the_front_turned_when_the_width_divides_by_4():
    """W % 4 == 0: r/b/l maps are the front's shifted by W/4 columns; they equal the directly
    built maps except where a position falls on a 1/64 px rounding tie (float32 last bit),
    and there by one 1/32 px step. Only f/u/d are held."""
    W, H, S = 1024, 512, 128
    cache = RemapCache()
    for face in "rbl":
        tx, ty = _positions(cube_face_maps(face, S, W, H, cache))
        dx, dy = _positions(direct_face_maps(face, S, W, H))
        off = np.remainder(tx - dx + 16 * W, 32 * W) - 16 * W  # mod W columns, in 1/32 px
        assert np.abs(off).max() <= 1 and np.abs(ty - dy).max() <= 1, face
        assert np.count_nonzero(off) + np.count_nonzero(ty - dy) <= 0.02 * S * S, face
    assert {k[-1] for k in cache._data} == {"f"}
    img = _textured(H, W, 2)
    for face in "udf":
        cube_face_maps(face, S, W, H, cache)
    assert {k[-1] for k in cache._data} == {"f", "u", "d"}
    for face in "rbl":  # and the turned face shows what the direct one shows
        turned = render_face(img, face, S, cache).astype(np.int16)
        ref = render_face(img, face, S).astype(np.int16)
        assert np.abs(turned - ref).mean() < 0.2, face


def test_side_faces_are_built_directly_when_the_width_does_not_divide_by_4():
    W, H, S = 1022, 511, 64
    cache = RemapCache()
    for face in CUBE_FACES:
        got = cube_face_maps(face, S, W, H, cache)
        want = direct_face_maps(face, S, W, H)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert {k[-1] for k in cache._data} == set(CUBE_FACES)
    with pytest.raises(ValueError, match="W % 4"):
        turn_face_maps(direct_face_maps("f", S, W, H), 1, W)


def test_renditions_are_the_same_whatever_the_face_map_cache_holds():
    """Pure from the caller's view: a fresh cache, a warm one, the process-wide one and one
    warmed by other layouts give identical files; the cache is bounded in bytes."""
    img, other = _textured(512, 1024, 1), _textured(500, 1000, 2)
    data, other_data = _png(img), _png(other)
    fresh = _make(img, data=data, face_maps=RemapCache())
    face = cube_face_size(1024, ON.tile_px)  # 320
    warm_cache = RemapCache(maxsize=16, max_bytes=2 * 3 * 6 * face**2)  # f/u/d of two layouts
    first = _make(img, data=data, face_maps=warm_cache)
    _make(other, data=other_data, face_maps=warm_cache)
    _make(_textured(256, 512, 3), face_maps=warm_cache)  # a third layout evicts the first
    assert warm_cache.nbytes <= warm_cache.max_bytes
    assert ("cube", 1024, 512, face, "f") not in warm_cache._data  # evicted: rebuilt below
    again = _make(img, data=data, face_maps=warm_cache)
    default = _make(img, data=data)
    assert FACE_MAPS.max_bytes == FACE_MAPS_MAX_BYTES and FACE_MAPS.nbytes <= FACE_MAPS_MAX_BYTES
    assert ("cube", 1024, 512, face, "f") in FACE_MAPS._data
    for rs in (first, again, default):
        assert [(r.name, r.data) for r in rs] == [(r.name, r.data) for r in fresh]
    assert warm_cache.hits > 0


def test_two_threads_share_one_face_map_cache():
    """Two threads render two layouts at once through one cache, starting together (both miss
    the same keys): every result equals the single-threaded one."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    images = [_textured(512, 1024, 4), _textured(511, 1022, 6)]  # W % 4 == 0 and != 0
    datas = [_png(i) for i in images]
    want = [
        [(r.name, r.data) for r in _make(i, data=d, face_maps=RemapCache())]
        for i, d in zip(images, datas, strict=True)
    ]
    cache = RemapCache()
    start = threading.Barrier(2)

    def work(k: int):
        start.wait()
        return [
            [(r.name, r.data) for r in _make(images[j % 2], data=datas[j % 2], face_maps=cache)]
            for j in range(k, k + 3)
        ]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(work, (0, 1)))
    for k, runs in enumerate(results):
        for j, got in zip(range(k, k + 3), runs, strict=True):
            assert got == want[j % 2]
    assert cache.hits > 0 and len(cache) == 3 + 6
