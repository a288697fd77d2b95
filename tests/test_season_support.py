"""Helpers shared by the capture-season tests (no tests here): synthetic images for the tiny
colour detector (red square = face, blue = plate), a small config, EXIF GPS blocks."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow.compute as pc

from redact.manifest import read_manifest
from tests.tiny_models import write_tiny_config

TILE = 64
RED = (255, 0, 0)
BLUE = (0, 0, 255)
# purity (R - max(G, B)) / 255 = 0.47 -> score sigmoid(16 * (0.47 - 0.5)) = 0.38: review band
PALE_RED = (200, 80, 80)


def textured(h: int, w: int, seed: int) -> np.ndarray:
    """A grey, textured RGB background the colour detector ignores."""
    rng = np.random.default_rng(seed)
    g = rng.integers(60, 200, (h, w), dtype=np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


def square(img: np.ndarray, x: int, y: int, s: int, color: tuple[int, int, int]) -> np.ndarray:
    """A copy of ``img`` with an s x s square at (x, y)."""
    out = img.copy()
    out[y : y + s, x : x + s] = color
    return out


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def write_config(root: Path, **season: Any) -> Path:
    """A config with the tiny colour detector, 64 px tiles, blur >= 0.5, review >= 0.3."""
    return write_tiny_config(
        root,
        tile=TILE,
        blur={"dilate": 0.1, "feather_px": 2},
        season={"progress_interval_s": 0.0, **season},
    )


def rows(dst: Path, run_id: str | None = None) -> list[dict]:
    table = read_manifest(str(dst / "_manifest"))
    if run_id is not None:
        table = table.filter(pc.equal(table["run_id"], run_id))
    return table.to_pylist()


def by_path(rs: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in rs:
        assert r["relative_path"] not in out, f"two rows for {r['relative_path']}"
        out[r["relative_path"]] = r
    return out


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=2)


def destroyed(a: np.ndarray, b: np.ndarray) -> bool:
    """``b`` replaced the content of ``a`` (two (h, w, 3) crops): nearly every pixel changed
    (the noise-free blur may reproduce a grey level by chance) and no fine detail is shared."""
    from redact.blur import high_frequency_correlation

    return bool(changed(a, b).mean() >= 0.95 and high_frequency_correlation(a, b) < 0.2)


# --- EXIF GPS (an independent little TIFF writer) ------------------------------------------------


def _rational(values: list[tuple[int, int]]) -> bytes:
    return b"".join(struct.pack("<II", n, d) for n, d in values)


def exif_with_gps(
    lat: float, lng: float, *, camera: tuple[str, str] = ("Ladybug", "LB5"), gps_time: bool = True
) -> bytes:
    """A little-endian TIFF/EXIF block: IFD0 (Make, Model, GPS pointer) and a GPS IFD with
    N/S, E/W references, D/M/S rationals (seconds to 1/1000) and a GPS date/time."""

    def dms(v: float) -> list[tuple[int, int]]:
        v = abs(v)
        d = int(v)
        m = int((v - d) * 60)
        s = round(((v - d) * 60 - m) * 60 * 1000)
        return [(d, 1), (m, 1), (s, 1000)]

    make = camera[0].encode() + b"\x00"
    model = camera[1].encode() + b"\x00"
    # ASCII values of <= 4 bytes sit inline in their entry; longer ones in the data area.
    out_of_line = [v for v in (make, model) if len(v) > 4]
    # Layout: header(8) | IFD0: 2 + 3*12 + 4 | its data | GPS IFD | GPS data
    ifd0_off = 8
    data0 = ifd0_off + 2 + 3 * 12 + 4
    offsets = {}
    pos = data0
    for v in out_of_line:
        offsets[id(v)] = pos
        pos += len(v)
    gps_off = pos
    gps_entries = 6 if gps_time else 4
    gps_data = gps_off + 2 + gps_entries * 12 + 4
    lat_r, lng_r, time_r = (
        _rational(dms(lat)),
        _rational(dms(lng)),
        _rational([(10, 1), (20, 1), (30, 1)]),
    )
    date = b"2024:05:17\x00"
    lat_off = gps_data
    lng_off = lat_off + len(lat_r)
    time_off = lng_off + len(lng_r)
    date_off = time_off + len(time_r)

    def entry(tag: int, typ: int, count: int, value: bytes | int) -> bytes:
        if isinstance(value, int):
            return struct.pack("<HHII", tag, typ, count, value)
        return struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\x00")

    ifd0 = (
        struct.pack("<H", 3)
        + entry(0x010F, 2, len(make), offsets[id(make)] if len(make) > 4 else make)
        + entry(0x0110, 2, len(model), offsets[id(model)] if len(model) > 4 else model)
        + entry(0x8825, 4, 1, gps_off)
        + struct.pack("<I", 0)
    )
    gps = [
        entry(0x0001, 2, 2, b"N" if lat >= 0 else b"S"),
        entry(0x0002, 5, 3, lat_off),
        entry(0x0003, 2, 2, b"E" if lng >= 0 else b"W"),
        entry(0x0004, 5, 3, lng_off),
    ]
    if gps_time:
        gps += [entry(0x0007, 5, 3, time_off), entry(0x001D, 2, len(date), date_off)]
    gps_ifd = struct.pack("<H", len(gps)) + b"".join(gps) + struct.pack("<I", 0)
    tiff = b"II" + struct.pack("<HI", 42, ifd0_off) + ifd0 + b"".join(out_of_line) + gps_ifd
    assert len(tiff) == gps_data
    tiff += lat_r + lng_r
    if gps_time:
        tiff += time_r + date
    return tiff


def jpeg_with_exif(rgb: np.ndarray, tiff: bytes, quality: int = 95) -> bytes:
    ok, enc = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    data = enc.tobytes()
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + app1 + data[2:]
