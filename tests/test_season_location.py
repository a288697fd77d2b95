"""Location: EXIF GPS, sidecar catalogs, S2 cells (parent/child containment), cell selection."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

s2sphere = pytest.importorskip("s2sphere")

from redact.io.codec import decode_image  # noqa: E402
from redact.io.exif import CaptureInfo, exif_capture_info  # noqa: E402
from redact.season.cells import CellPriority, read_cells, select  # noqa: E402
from redact.season.location import (  # noqa: E402
    CellRange,
    Location,
    LocationSource,
    cell_token,
    leaf_cell_id,
    location_from_exif,
    parse_catalog,
)
from redact.season.markers import models_hash  # noqa: E402
from tests.test_season_support import exif_with_gps, jpeg_with_exif, textured  # noqa: E402


def test_exif_gps_position_time_and_camera():
    info = exif_capture_info(exif_with_gps(52.3702, -4.8952))
    # D/M/S with seconds to 1/1000: error <= 0.0005 s of arc = 1.4e-7 degrees
    assert info.latitude == pytest.approx(52.3702, abs=2e-7)
    assert info.longitude == pytest.approx(-4.8952, abs=2e-7)
    assert info.captured_at == "2024-05-17T10:20:30.000Z"
    assert info.camera == "Ladybug LB5"
    south = exif_capture_info(exif_with_gps(-33.8568, 151.2153, gps_time=False))
    assert south.latitude == pytest.approx(-33.8568, abs=2e-7)
    assert south.longitude == pytest.approx(151.2153, abs=2e-7)
    assert south.captured_at == ""


def test_null_island_and_unset_clock_are_no_fix():
    tiff = bytearray(exif_with_gps(0.0, 0.0))
    i = tiff.index(b"2024:05:17")
    tiff[i : i + 10] = b"0000:00:00"
    info = exif_capture_info(bytes(tiff))
    assert (info.latitude, info.longitude, info.captured_at) == (None, None, "")
    assert info.camera == "Ladybug LB5"


def test_exif_without_gps_or_garbage_gives_nothing():
    assert exif_capture_info(b"not a tiff") == CaptureInfo()
    tiff = bytearray(exif_with_gps(10.0, 20.0))
    tiff[2:4] = b"\x00\x00"  # break the TIFF magic
    assert exif_capture_info(bytes(tiff)).latitude is None


def test_location_survives_decode_of_a_jpeg():
    data = jpeg_with_exif(textured(32, 64, 0), exif_with_gps(48.8584, 2.2945))
    loc = location_from_exif(decode_image(data, max_pixels=10**6))
    assert loc is not None and loc.source is LocationSource.EXIF
    assert (loc.latitude, loc.longitude) == pytest.approx((48.8584, 2.2945), abs=2e-7)


def test_location_validates_range():
    with pytest.raises(ValueError):
        Location(91.0, 0.0)
    with pytest.raises(ValueError):
        Location(0.0, float("nan"))


def test_catalog_csv_and_parquet():
    csv_data = (
        b"Relative_Path,Latitude,lon,captured_at,camera\n"
        b"a/1.jpg,52.1,4.5,2024-01-01T10:00:00Z,cam1\n"
        b"a/2.jpg,,4.5,,\n"  # no latitude: skipped
        b"a/3.jpg,95,4.5,,\n"  # out of range: skipped
        b"a/4.jpg,-1.5,-2.5,,\n"
    )
    got = list(parse_catalog(csv_data, "cat.csv"))
    assert [(e.key, e.is_uri) for e in got] == [("a/1.jpg", False), ("a/4.jpg", False)]
    assert got[0].location == Location(
        52.1, 4.5, "2024-01-01T10:00:00Z", "cam1", LocationSource.CATALOG
    )
    buf = io.BytesIO()
    pq.write_table(pa.table({"uri": ["gs://b/x.jpg"], "lat": [1.0], "lng": [2.0]}), buf)
    (entry,) = parse_catalog(buf.getvalue(), "cat.parquet")
    assert entry.is_uri and entry.key == "gs://b/x.jpg" and entry.location.longitude == 2.0
    with pytest.raises(ValueError, match="latitude"):
        list(parse_catalog(b"uri,lng\nx,1\n", "bad.csv"))


def test_parent_cells_contain_their_children_even_when_tokens_are_not_prefixes():
    lat, lng = 52.3702, 4.8952
    child = cell_token(lat, lng, 16)
    parent11 = cell_token(lat, lng, 11)
    assert not child.startswith(parent11)  # odd levels: the token is no prefix
    assert CellRange.parse(parent11).contains_token(child)
    assert CellRange.parse(cell_token(lat, lng, 10)).contains_token(child)
    assert not CellRange.parse(child).contains_token(parent11)
    sibling = cell_token(lat + 0.01, lng + 0.01, 16)
    assert sibling != child and not CellRange.parse(child).contains_token(sibling)
    assert CellRange.parse(child).contains_leaf(leaf_cell_id(lat, lng))
    assert CellRange.parse(child).level == 16


def test_cell_range_agrees_with_s2sphere_contains():
    rng = np.random.default_rng(0)
    for _ in range(50):
        lat, lng = rng.uniform(-80, 80), rng.uniform(-180, 180)
        leaf = s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(lat, lng))
        level = int(rng.integers(0, 25))
        cell = s2sphere.CellId.from_token(cell_token(lat + rng.normal(0, 0.5), lng, level))
        expected = cell.contains(leaf)
        assert CellRange.parse(cell.to_token()).contains_leaf(leaf.id()) == expected


@pytest.mark.parametrize("token", ["", "zz", "X", "12345678901234567", "0"])
def test_invalid_tokens_are_refused(token):
    with pytest.raises(ValueError):
        CellRange.parse(token)


def test_read_cells(tmp_path):
    f = tmp_path / "cells.csv"
    f.write_text("token,priority\n47c609,3\n# a comment\n\n47c609c17\n")
    assert read_cells(str(f)) == [CellPriority("47c609", 3), CellPriority("47c609c17", 0)]
    f.write_text("nothex,1\n")
    with pytest.raises(ValueError, match=r"cells\.csv:1"):
        read_cells(str(f))


def _row(rel, lat, lng, *, cfg="c1", models=("m", "1")):
    return {
        "relative_path": rel,
        "latitude": lat,
        "longitude": lng,
        "s2_cell": "",
        "config_hash": cfg,
        "models": [{"name": models[0], "version": models[1], "sha256": "", "backend": "onnx"}],
    }


def test_select_by_cells_priority_and_outdated():
    ams, ams2, paris, paris2 = (52.37, 4.89), (52.38, 4.90), (48.85, 2.35), (48.86, 2.36)
    rows = [
        _row("a", *ams),
        _row("b", *ams2, cfg="old"),
        _row("c", *paris),
        _row("d", *paris2),
        _row("nowhere", None, None),
    ]
    parent = cell_token(*ams, 8)
    assert parent == cell_token(*ams2, 8)
    child = cell_token(*paris, 16)
    assert child != cell_token(*paris2, 16)
    cells = [CellPriority(parent, 1), CellPriority(child, 5), CellPriority(cell_token(*ams, 16), 7)]
    assert select(rows, cells) == {"a": 7, "b": 1, "c": 5}
    current = models_hash(rows[0]["models"])
    assert select(rows, cells, models_hash=current, config_hash="c1") == {"b": 1}
    assert select(rows, cells, config_hash=frozenset({"c1", "old"})) == {}
    assert select(rows, cells, config_hash=frozenset({"c2"})) == {"a": 7, "b": 1, "c": 5}
    assert select(rows, cells, config_hashes=["c1"]) == {"a": 7, "c": 5}
    # A row with only a stored cell (no lat/lng) is matched by that cell's range.
    only_cell = {**_row("e", None, None), "s2_cell": cell_token(*paris, 16)}
    assert select([only_cell], [CellPriority(cell_token(*paris, 12), 2)]) == {"e": 2}
    assert select([only_cell], [CellPriority(cell_token(*paris, 20), 2)]) == {}
