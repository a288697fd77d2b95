"""Manual regions table and review decisions (unit level)."""

from __future__ import annotations

import numpy as np
import pytest

from redact.classes import ObjectClass
from redact.season.manual import (
    ManualRegion,
    RegionSource,
    check_box_in_image,
    parse_box,
    read_regions,
    regions_hash,
    to_detections,
    write_regions,
)
from redact.season.review import (
    ReviewDecision,
    apply_decisions,
    read_decisions,
    read_hard_negatives,
    review_id,
    review_items,
    write_decisions,
    write_hard_negatives,
)


def _region(box, cls=ObjectClass.FACE, rel="a/b.png"):
    return ManualRegion.new(
        image_uri="/src/" + rel,
        relative_path=rel,
        box=box,
        object_class=cls,
        reason="missed face",
        created_by="tester",
    )


def test_parse_box():
    assert parse_box(" 1, 2,3.5,4 ") == (1.0, 2.0, 3.5, 4.0)
    for bad in ("1,2,3", "a,b,c,d", "5,2,3,4", "1,4,3,4", "-1,0,3,4", "1,2,inf,4"):
        with pytest.raises(ValueError):
            parse_box(bad)


def test_box_in_image_with_seam():
    check_box_in_image((500, 10, 530, 20), 512, 256, wrap=True)  # crosses the seam: fine
    with pytest.raises(ValueError):
        check_box_in_image((500, 10, 530, 20), 512, 256, wrap=False)
    with pytest.raises(ValueError):
        check_box_in_image((10, 10, 20, 300), 512, 256, wrap=True)
    with pytest.raises(ValueError):
        check_box_in_image((10, 10, 600, 20), 512, 256, wrap=True)  # wider than the panorama


def test_to_detections_clips_and_keeps_seam_convention():
    regions = [
        _region((10, 20, 30, 40)),
        _region((500, 0, 540, 300), ObjectClass.LICENSE_PLATE),  # crosses the seam, too tall
        _region((600, 10, 620, 20)),  # x beyond W on a panorama: wraps to 88..108
        _region((10, 300, 20, 310)),  # below the image: left out
    ]
    d = to_detections(regions, 512, 256, wrap=True)
    np.testing.assert_array_equal(
        d.xyxy, np.array([[10, 20, 30, 40], [500, 0, 540, 256], [88, 10, 108, 20]], np.float32)
    )
    assert d.class_id.tolist() == [0, 1, 0]
    assert d.confidence.tolist() == [1.0, 1.0, 1.0] and d.source.tolist() == [-1, -1, -1]
    flat = to_detections(regions[:2], 512, 256, wrap=False)
    np.testing.assert_array_equal(flat.xyxy[1], [500, 0, 512, 256])


def test_table_round_trip_and_hash(tmp_path):
    a, b = _region((1, 2, 3, 4)), _region((5, 6, 7, 8), rel="c.png")
    write_regions(str(tmp_path), [a])
    write_regions(str(tmp_path), [b])
    got = read_regions(str(tmp_path))
    assert sorted(r.region_id for r in got) == sorted([a.region_id, b.region_id])
    assert {r.region_id: r for r in got}[a.region_id] == a
    assert regions_hash([a, b]) == regions_hash([b, a]) != regions_hash([a])
    assert regions_hash([]) == ""
    assert read_regions(str(tmp_path / "none")) == []


def _row():
    dets = [
        {
            "class": "face",
            "score": 0.4,
            "x1": 1.0,
            "y1": 2.0,
            "x2": 11.0,
            "y2": 12.0,
            "decision": "review",
            "model": "m",
        },
        {
            "class": "face",
            "score": 0.9,
            "x1": 50.0,
            "y1": 2.0,
            "x2": 60.0,
            "y2": 12.0,
            "decision": "blur",
            "model": "m",
        },
        {
            "class": "license_plate",
            "score": 0.35,
            "x1": 70.0,
            "y1": 2.0,
            "x2": 90.0,
            "y2": 8.0,
            "decision": "review",
            "model": "m",
        },
    ]
    return {
        "status": "published",
        "run_id": "r1",
        "image_uri": "/src/a/b.png",
        "relative_path": "a/b.png",
        "output_uri": "/dst/a/b.png",
        "processed_at": None,
        "detections": dets,
    }


def test_review_items_are_the_review_band_only():
    items = list(review_items(_row()))
    assert [(i["class"], i["score"]) for i in items] == [("face", 0.4), ("license_plate", 0.35)]
    assert items[0]["review_id"] == review_id("r1", "a/b.png", _row()["detections"][0])
    assert len({i["review_id"] for i in items}) == 2
    assert list(review_items({**_row(), "status": "failed"})) == []


def test_decisions_become_regions_and_hard_negatives(tmp_path):
    items = {i["review_id"]: i for i in review_items(_row())}
    face_id, plate_id = list(items)
    rows, regions, negatives = apply_decisions(
        items,
        [
            (face_id, ReviewDecision.parse("missed"), {"box": (0.0, 0.0, 20.0, 20.0)}),
            (plate_id, ReviewDecision.parse("false-positive"), {}),
        ],
        decided_by="rev",
    )
    (region,) = regions
    assert region.box == (0.0, 0.0, 20.0, 20.0) and region.source is RegionSource.REVIEW
    assert region.relative_path == "a/b.png" and region.review_id == face_id
    (neg,) = negatives
    assert neg["detected_class"] == "license_plate" and neg["label"] == "background"
    assert (neg["x1"], neg["x2"]) == (70.0, 90.0) and neg["image_uri"] == "/src/a/b.png"
    assert [r["decision"] for r in rows] == ["missed", "false_positive"]
    assert rows[0]["region_id"] == region.region_id
    write_decisions(str(tmp_path), rows)
    write_hard_negatives(str(tmp_path), negatives)
    assert read_decisions(str(tmp_path)).num_rows == 2
    assert read_hard_negatives(str(tmp_path))["review_id"].to_pylist() == [plate_id]
    with pytest.raises(ValueError, match="unknown review id"):
        apply_decisions(items, [("nope", ReviewDecision.CONFIRMED, {})], decided_by="x")
    with pytest.raises(ValueError):
        ReviewDecision.parse("maybe")


def test_region_mode_and_strength_round_trip_and_old_tables(tmp_path):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from redact.season.manual import MANUAL_SCHEMA, in_image, regions_from_parquet

    r = ManualRegion.new(
        image_uri="/src/a.png", relative_path="a.png", box=(1, 2, 30, 40),
        object_class=ObjectClass.FACE, reason="r", created_by="qa", mode="solid",
        strength="high",
    )  # fmt: skip
    write_regions(str(tmp_path), [r, _region((5, 5, 9, 9))])
    back = {x.region_id: x for x in read_regions(str(tmp_path))}
    assert (back[r.region_id].mode, back[r.region_id].strength) == ("solid", "high")
    entry = back[r.region_id].manifest_entry()
    assert (entry["mode"], entry["strength"]) == ("solid", "high")
    assert back[r.region_id].manifest_entry(("blur", "low"))["mode"] == "blur"
    # a table written before the columns existed reads with "" (= the class's)
    old = pa.schema([f for f in MANUAL_SCHEMA if f.name not in ("mode", "strength")])
    row = {k: v for k, v in r.to_row().items() if k in old.names}
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([row], schema=old), buf)
    (legacy,) = regions_from_parquet(buf.getvalue())
    assert (legacy.mode, legacy.strength) == ("", "")
    with pytest.raises(ValueError, match="BlurMode 'smudge'"):
        ManualRegion.new(
            image_uri="", relative_path="a.png", box=(1, 2, 3, 4),
            object_class=ObjectClass.FACE, reason="r", created_by="qa", mode="smudge",
        )  # fmt: skip
    # in_image keeps exactly the regions to_detections keeps, in order
    regions = [_region((10, 10, 20, 20)), _region((600, 10, 700, 20)), _region((30, 5, 40, 9))]
    kept = in_image(regions, 512, 256, wrap=False)
    assert [k.region_id for k in kept] == [regions[0].region_id, regions[2].region_id]
    assert len(to_detections(regions, 512, 256, wrap=False)) == len(kept)
