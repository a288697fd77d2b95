"""Metrics against hand-computed expectations (box metrics exact, pixel ones within 1 px)."""

from __future__ import annotations

import numpy as np
import pytest

from redact.classes import ObjectClass
from redact.evaluation.labels import GtFlag, GtObject, ImageLabels, LabelFormat, LabelSet
from redact.evaluation.metrics import (
    PREBLURRED_DONT_CARE,
    PRIMARY,
    evaluate,
    evaluate_boxes_only,
    evaluate_pixels,
    lat_band,
    latitude,
    protocols_for,
    size_bin,
)
from redact.evaluation.pixels import DiffConfig
from tests.fixtures.eval_data import manifest_image, textured

FACE, PLATE = ObjectClass.FACE, ObjectClass.LICENSE_PLATE
F = frozenset


def _photo() -> tuple[ImageLabels, object]:
    """300x200 photo: 4 faces (one don't care, one printed) and a preblurred plate."""
    labels = ImageLabels(
        "a.jpg",
        300,
        200,
        (
            GtObject((10, 10, 40, 50), FACE),  # F1, 40 px tall
            GtObject((100, 10, 110, 20), FACE),  # F2, 10 px
            GtObject((200, 100, 260, 200), FACE, F({GtFlag.PRINTED})),  # F3, 100 px
            GtObject((150, 150, 170, 170), FACE, F({GtFlag.UNCERTAIN})),  # F4: don't care
            GtObject((50, 150, 90, 165), PLATE, F({GtFlag.PREBLURRED})),  # P1, 15 px
        ),
    )
    row = manifest_image(
        "a.jpg",
        300,
        200,
        [
            (FACE, 0.9, (10, 10, 40, 50), True),  # F1, IoU 1
            (FACE, 0.4, (200, 100, 260, 140), True),  # F3, IoU 2400/6000 = 0.4
            (FACE, 0.35, (150, 150, 170, 170), True),  # on the don't-care face
            (FACE, 0.2, (100, 10, 110, 20), False),  # F2, but dropped (below threshold)
            (FACE, 0.6, (250, 10, 270, 30), True),  # nothing there: FP
            (PLATE, 0.8, (50, 150, 80, 165), True),  # P1, IoU 450 / 600 = 0.75
        ],
    )
    return labels, row


def _pano() -> tuple[ImageLabels, object]:
    """400x200 panorama: a face labelled in two halves across the seam, one missed face."""
    labels = ImageLabels(
        "p.jpg",
        400,
        200,
        (
            GtObject((390, 95, 400, 105), FACE),
            GtObject((0, 95, 10, 105), FACE),
            GtObject((50, 20, 60, 40), FACE),
        ),
    )
    row = manifest_image("p.jpg", 400, 200, [(FACE, 0.7, (0, 95, 10, 105), True)])
    return labels, row


def test_latitude_and_bins():
    assert latitude(100, 200) == 0.0 and latitude(0, 200) == 90.0 and latitude(200, 200) == -90
    assert lat_band(63.0) == "+90..+30" and lat_band(30.0) == "+30..+10"
    assert lat_band(0.0) == "+10..-10" and lat_band(-90.0) == "-30..-90"
    assert size_bin(11.9) == "<12px" and size_bin(12) == "12-24px" and size_bin(500) == ">=96px"


def test_box_metrics_hand_computed():
    evals = [evaluate_boxes_only(*_photo()), evaluate_boxes_only(*_pano())]
    # The seam halves were joined into one unwrapped box.
    assert [o.box for o in evals[1].labels.objects] == [(50, 20, 60, 40), (390, 95, 410, 105)]
    res = evaluate(evals, [FACE, PLATE], PRIMARY)
    faces = res.slices(FACE)
    # Counted faces: F1, F2, F3 (photo) and the two panorama faces; F4 is don't care.
    allf = faces["all"]
    assert allf.n == 5
    # @0.3: F1, F3 (IoU 0.4) and the seam face (IoU 100/200 = 0.5 on the cylinder).
    assert allf.box_recall(0.3) == pytest.approx(3 / 5)
    assert allf.box_recall(0.5) == pytest.approx(2 / 5)
    # Under 12 px: F2 (missed) and the 10 px seam face (found).
    assert faces["size:<12px"].n == 2 and faces["size:<12px"].box_recall(0.3) == 0.5
    assert faces["size:24-48px"].box_recall(0.3) == 1.0 and faces["size:>=96px"].n == 1
    assert faces["flag:printed"].n == 1 and faces["flag:printed"].box_recall(0.5) == 0.0
    assert faces["flag:not printed"].n == 4 and faces["flag:not printed"].box_recall(0.3) == 0.5
    assert faces["lat:+90..+30"].n == 1 and faces["lat:+90..+30"].box_recall(0.3) == 0.0
    assert faces["lat:+10..-10"].box_recall(0.5) == 1.0
    assert "lat:-10..-30" not in faces  # empty slices are left out
    assert faces["image:a.jpg"].box_recall(0.3) == pytest.approx(2 / 3)
    assert faces["image:p.jpg"].box_recall(0.3) == pytest.approx(1 / 2)
    det = res.detections[FACE].as_dict()
    # Blurred faces: 4 in the photo (1 ignored) + 1 in the panorama.
    assert det["n_blurred_detections"] == 5
    assert det["precision_iou0.3"] == pytest.approx(3 / 4)  # FP: the empty-spot detection
    assert det["precision_iou0.5"] == pytest.approx(2 / 4)  # F3's 0.4 IoU is now an FP too
    assert det["dont_care_iou0.3"] == 1
    # The dropped detection is how close F2 came: best candidate score 0.2, IoU 1.
    f2 = next(o for o in res.objects[FACE] if o.box == (100, 10, 110, 20))
    assert not f2.matched[0.3] and f2.best_candidate == pytest.approx(0.2) and f2.best_iou == 1.0
    assert res.slices(PLATE)["all"].box_recall(0.5) == 1.0
    # Pixel metrics were not measured.
    assert allf.pixel_recall is None and allf.sufficient_recall is None


def test_preblurred_protocol():
    lab, row = _photo()
    ls = LabelSet({"a.jpg": lab}, LabelFormat.DEV, "x")
    assert protocols_for(ls) == [PRIMARY, PREBLURRED_DONT_CARE]
    res = evaluate([evaluate_boxes_only(lab, row)], [PLATE], PREBLURRED_DONT_CARE)
    assert res.slices(PLATE)["all"].n == 0
    assert res.detections[PLATE].as_dict()["dont_care_iou0.3"] == 1


def test_label_size_mismatch_is_an_error():
    lab, row = _photo()
    bad = ImageLabels("a.jpg", 600, 400, lab.objects)
    with pytest.raises(ValueError, match="600x400"):
        evaluate_boxes_only(bad, row)


def test_pixel_metrics_hand_computed():
    lab, row = _photo()
    orig = textured(200, 300, 11)
    pub = orig.copy()
    rng = np.random.default_rng(3)
    regions = [(5, 5, 45, 55), (200, 100, 230, 200), (250, 10, 270, 30)]  # x1, y1, x2, y2
    for x1, y1, x2, y2 in regions:
        pub[y1:y2, x1:x2] = rng.integers(0, 256, (y2 - y1, x2 - x1, 3), dtype=np.uint8)
    diff = DiffConfig(sigma_px=0.5, fine_sigma_px=0.0, close_px=0)  # edges exact to ~1 px
    ev = evaluate_pixels(lab, row, orig, pub, diff)
    res = evaluate([ev], [FACE, PLATE], PRIMARY)
    objs = {o.box: o for o in res.objects[FACE]}
    assert objs[(10, 10, 40, 50)].coverage == 1.0  # inside the first region
    assert objs[(100, 10, 110, 20)].coverage == 0.0  # untouched
    assert 0.5 <= objs[(200, 100, 260, 200)].coverage <= 31 / 60  # the left half (+1 px)
    # Pixel recall: (1200 + 0 + 3000) / (1200 + 100 + 6000) pixels.
    assert 4200 / 7300 <= res.slices(FACE)["all"].pixel_recall <= 4300 / 7300 + 1e-9
    # Sufficiently blurred: only F1 (noise kept none of its detail); F3 keeps its right half.
    f = res.slices(FACE)["all"]
    assert (f.n_sufficient, f.n_detail_measured) == (1, 3)
    assert objs[(10, 10, 40, 50)].retained < 0.1 and objs[(200, 100, 260, 200)].retained > 0.8
    # FP area: region 1 outside F1 (2000 - 1200 px) + region 3 (400 px), of 60,000 px. The
    # mask may spill one pixel ring around each region: 184 px around region 1, 84 around
    # region 3, and around region 2 the ring outside F3: its left column (101 px inside the
    # image) and top row (31 px).
    lo = (800 + 400) / 60000
    hi = lo + (184 + 84 + 132) / 60000
    assert lo <= ev.fp_area <= hi
    # Beyond half a box around the labels only region 3 is left.
    assert 400 / 60000 <= ev.fp_area_far <= (400 + 84) / 60000
    # All three regions, plus at most their one-pixel rings (184 + 264 + 84 px).
    assert 5400 / 60000 <= ev.blurred_measured <= (5400 + 532) / 60000
    assert res.fp_area_summary()["n_images"] == 1
