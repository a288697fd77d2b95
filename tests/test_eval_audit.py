"""Stratified audit sample: allocation by hand, strata, determinism and weights."""

from __future__ import annotations

import csv

import pytest

from redact.classes import ObjectClass
from redact.evaluation.audit import (
    PlaceKey,
    Stratum,
    allocate,
    coarsen_cell,
    count_bin,
    draw_sample,
    link,
    stratum_of,
    write_review_sheet,
)
from redact.manifest import Status
from redact.season.location import cell_token
from tests.fixtures.eval_data import manifest_image

FACE = ObjectClass.FACE
BOX = (0, 0, 10, 10)


def test_allocation_hand_computed():
    a, b, c = Stratum("a", "0", True), Stratum("b", "0", False), Stratum("c", "0", False)
    # Minimums (review strata first): 1 each; the 5 left go by room 1 : 9 : 27 -> quotas
    # 0.14, 1.22, 3.65 -> 0, 1, 3, and the last one to the largest remainder (c).
    assert allocate({a: 2, b: 10, c: 28}, 8) == {a: 1, b: 2, c: 5}
    # Too small for every stratum: the review stratum first, then the largest.
    assert allocate({a: 2, b: 10, c: 28}, 2) == {a: 1, b: 0, c: 1}
    # Never more than there is.
    assert allocate({a: 2, b: 1}, 50) == {a: 2, b: 1}


def test_count_bins():
    assert [count_bin(n) for n in (0, 1, 2, 3, 9, 10, 400)] == [
        "0",
        "1-2",
        "1-2",
        "3-9",
        "3-9",
        "10+",
        "10+",
    ]


def test_strata_s2_or_folder():
    tok = cell_token(52.37, 4.89, 16)
    row = manifest_image("drive1/day2/x.jpg", 40, 20, [(FACE, 0.9, BOX, True)], s2_cell=tok)
    assert stratum_of(row, 1).place == f"s2:{tok}"
    assert stratum_of(row, 1, PlaceKey.FOLDER).place == "drive1"
    assert stratum_of(row, 2, PlaceKey.FOLDER).place == "drive1/day2"
    assert coarsen_cell(tok, 10) == cell_token(52.37, 4.89, 10)
    assert stratum_of(row, 1, s2_level=10).place == "s2:" + cell_token(52.37, 4.89, 10)
    no_loc = manifest_image("drive1/y.jpg", 40, 20)
    assert stratum_of(no_loc, 1).place == "drive1"
    assert stratum_of(no_loc, 1, PlaceKey.S2).place == "s2:no-location"
    s = stratum_of(row, 1)
    assert (s.detections, s.review_band) == ("1-2", False)


def _rows():
    """30 published images: folder f0 (even i) / f1 (odd i), i % 4 blurred faces, the ones
    with 3 faces having one in the review band; plus a quarantined image."""
    rows = []
    for i in range(30):
        n = i % 4
        dets = [(FACE, 0.9, BOX, True)] * n
        review = [n == 3] + [False] * (n - 1) if n else []
        rows.append(manifest_image(f"f{i % 2}/img{i:02d}.jpg", 40, 20, dets, review=review))
    rows.append(manifest_image("f0/failed.jpg", 40, 20, status=Status.FAILED))
    return rows


def test_sample_is_stratified_deterministic_and_weighted(tmp_path):
    rows = _rows()
    s1 = draw_sample(rows, 10, seed=3)
    s2 = draw_sample(rows, 10, seed=3)
    assert [x.row.relative_path for x in s1] == [x.row.relative_path for x in s2]
    assert len({x.row.relative_path for x in s1}) == 10  # without replacement
    assert "f0/failed.jpg" not in {x.row.relative_path for x in s1}
    # Strata: f0|0 (8 images), f0|1-2 (7), f1|1-2 (8), f1|3-9|review (7). One each, then the
    # 6 left by room 7:6:7:6 -> 1 each, and the last 2 to the largest remainders (room 7).
    got = {}
    for x in s1:
        got.setdefault(x.stratum.name, []).append(x.weight)
    assert {k: len(v) for k, v in got.items()} == {
        "f0|0|no-review": 3,
        "f0|1-2|no-review": 2,
        "f1|1-2|no-review": 3,
        "f1|3-9|review": 2,
    }
    assert got["f0|0|no-review"][0] == pytest.approx(8 / 3)
    assert got["f1|3-9|review"][0] == pytest.approx(7 / 2)
    assert sum(x.weight for x in s1) == pytest.approx(30)  # weights add back to the run
    sheet, page = write_review_sheet(s1, tmp_path)
    got_rows = list(csv.DictReader(open(sheet)))
    assert [int(r["sample_id"]) for r in got_rows] == list(range(1, 11))
    assert all(r["published_link"].startswith("file://") for r in got_rows)
    assert page.read_text().count("<li>") == 10
    with pytest.raises(ValueError, match=">= 1"):
        draw_sample(rows, 0)


def test_links():
    assert link("gs://b/p/x y.jpg") == "https://storage.cloud.google.com/b/p/x%20y.jpg"
    assert link("s3://b/k.jpg") == "https://s3.console.aws.amazon.com/s3/object/b?prefix=k.jpg"
    assert link("/tmp/a.jpg") == "file:///tmp/a.jpg"
