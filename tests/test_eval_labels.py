"""Ground-truth readers: every format to the same pixel xyxy boxes, flags and classes."""

from __future__ import annotations

import json

import pytest

from redact.classes import ObjectClass
from redact.evaluation.labels import (
    GtFlag,
    GtObject,
    ImageLabels,
    LabelFormat,
    detect_format,
    join_seam_halves,
    load_labels,
    parse_class_map,
    read_coco,
    read_dev_labels,
    read_openalpr,
    read_voc,
    read_yolo,
)

FACE, PLATE = ObjectClass.FACE, ObjectClass.LICENSE_PLATE


def test_dev_labels_boxes_and_flags(tmp_path):
    p = tmp_path / "dev_labels.json"
    p.write_text(
        json.dumps(
            {
                "a.jpg": {
                    "width": 400,
                    "height": 200,
                    "faces": [{"box": [10, 20, 30, 50], "flags": ["printed", "profile"]}],
                    "plates": [{"box": [100, 100, 130, 110], "flags": ["preblurred"]}],
                }
            }
        )
    )
    ls = read_dev_labels(p)
    im = ls.images["a.jpg"]
    assert (im.width, im.height) == (400, 200)
    face, plate = im.objects
    assert face.box == (10.0, 20.0, 30.0, 50.0) and face.cls is FACE
    assert face.flags == {GtFlag.PRINTED, GtFlag.PROFILE}
    assert plate.cls is PLATE and plate.flags == {GtFlag.PREBLURRED}
    assert face.height == 30.0 and face.width == 20.0
    assert detect_format(p) is LabelFormat.DEV and ls.exhaustive


def test_unknown_flag_is_an_error(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(
        json.dumps(
            {
                "a.jpg": {
                    "width": 4,
                    "height": 2,
                    "faces": [{"box": [0, 0, 1, 1], "flags": ["blurry"]}],
                }
            }
        )
    )
    with pytest.raises(ValueError, match="blurry"):
        read_dev_labels(p)


def test_coco_xywh_to_xyxy_crowd_and_class_names(tmp_path):
    p = tmp_path / "coco.json"
    p.write_text(
        json.dumps(
            {
                "images": [{"id": 7, "file_name": "sub/x.png", "width": 64, "height": 32}],
                "annotations": [
                    {"image_id": 7, "category_id": 1, "bbox": [4, 5, 10, 20]},
                    {"image_id": 7, "category_id": 2, "bbox": [30, 1, 8, 4], "iscrowd": 1},
                    {"image_id": 7, "category_id": 3, "bbox": [0, 0, 1, 1]},
                ],
                "categories": [
                    {"id": 1, "name": "face"},
                    {"id": 2, "name": "plate"},
                    {"id": 3, "name": "car"},
                ],
            }
        )
    )
    with pytest.raises(ValueError, match="car"):
        read_coco(p)
    ls = read_coco(p, parse_class_map(["car=ignore"]))
    objs = ls.images["sub/x.png"].objects
    assert [o.box for o in objs] == [(4.0, 5.0, 14.0, 25.0), (30.0, 1.0, 38.0, 5.0)]
    assert [o.cls for o in objs] == [FACE, PLATE]
    assert objs[1].flags == {GtFlag.UNCERTAIN}
    assert detect_format(p) is LabelFormat.COCO
    assert ls.classes == {FACE, PLATE}


def test_voc_maskon_names_are_faces_difficult_is_uncertain(tmp_path):
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>m1.jpg</filename><size><width>50</width><height>40</height>"
        "</size><object><name>sin_mascarilla</name><difficult>0</difficult><bndbox><xmin>1</xmin>"
        "<ymin>2</ymin><xmax>11</xmax><ymax>22</ymax></bndbox></object><object>"
        "<name>with_mask</name><difficult>1</difficult><truncated>1</truncated><bndbox>"
        "<xmin>20</xmin><ymin>2</ymin><xmax>30</xmax><ymax>12</ymax></bndbox></object>"
        "</annotation>"
    )
    ls = read_voc(tmp_path)
    im = ls.images["m1.jpg"]
    assert (im.width, im.height) == (50, 40)
    assert [o.box for o in im.objects] == [(1.0, 2.0, 11.0, 22.0), (20.0, 2.0, 30.0, 12.0)]
    assert all(o.cls is FACE for o in im.objects)
    assert im.objects[1].flags == {GtFlag.UNCERTAIN, GtFlag.PARTIAL}
    assert ls.classes == {FACE}  # plates are not labelled in this set
    assert detect_format(tmp_path) is LabelFormat.VOC


def test_yolo_normalised_to_pixels(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "img.txt").write_text("0 0.5 0.25 0.1 0.5\n1 0.25 0.75 0.5 0.5\n")
    ls = read_yolo(tmp_path, lambda key: (200, 100) if key == "d/img" else None)
    a, b = ls.images["d/img"].objects
    assert a.cls is FACE and a.box == pytest.approx((90.0, 0.0, 110.0, 50.0))
    assert b.cls is PLATE and b.box == pytest.approx((0.0, 50.0, 100.0, 100.0))
    assert detect_format(tmp_path) is LabelFormat.YOLO
    # An image the sizes do not know is skipped, not guessed.
    assert read_yolo(tmp_path, lambda key: None).images == {}


def test_openalpr_text_and_not_exhaustive(tmp_path):
    (tmp_path / "car.txt").write_text("car.jpg\t935\t362\t99\t49\tYG9X2G\n")
    ls = read_openalpr(tmp_path)
    (o,) = ls.images["car.jpg"].objects
    assert o.box == (935.0, 362.0, 1034.0, 411.0) and o.text == "YG9X2G" and o.cls is PLATE
    assert not ls.exhaustive and ls.classes == {PLATE}
    assert detect_format(tmp_path) is LabelFormat.OPENALPR
    assert load_labels(tmp_path).format is LabelFormat.OPENALPR


def test_class_map_parsing():
    assert parse_class_map(["0=face", "x=plate", "*=ignore"]) == {"0": FACE, "x": PLATE, "*": None}
    with pytest.raises(ValueError, match="NAME=CLASS"):
        parse_class_map(["face"])


def test_join_seam_halves():
    W = 4000
    lab = ImageLabels(
        "p.jpg",
        W,
        2000,
        (
            GtObject((3960, 1000, 4000, 1012), PLATE, frozenset({GtFlag.PARTIAL}), "AB"),
            GtObject((0, 1001, 27, 1013), PLATE, frozenset({GtFlag.PREBLURRED})),
            GtObject((0, 500, 10, 520), FACE),  # left edge, but no right partner of its class
            GtObject((100, 100, 120, 130), FACE),
        ),
    )
    out = join_seam_halves(lab, W)
    assert len(out.objects) == 3
    joined = out.objects[-1]
    assert joined.box == (3960.0, 1000.0, 4027.0, 1013.0)
    assert joined.flags == {GtFlag.PARTIAL, GtFlag.PREBLURRED} and joined.text == "AB"
    # Halves at different heights stay apart.
    apart = ImageLabels(
        "p.jpg", W, 2000, (GtObject((3990, 10, 4000, 20), FACE), GtObject((0, 50, 5, 60), FACE))
    )
    assert join_seam_halves(apart, W) == apart


def test_bad_box_rejected():
    with pytest.raises(ValueError, match="x2 < x1"):
        GtObject((10, 0, 5, 5), FACE)
