import numpy as np

from redact.classes import Decision, ObjectClass
from redact.config import ClassThresholds
from redact.decision import decide
from redact.detections import Detections

TH = {
    ObjectClass.FACE: ClassThresholds(blur=0.5, review=0.2, floor=0.05),
    ObjectClass.LICENSE_PLATE: ClassThresholds(blur=0.3, review=0.3, floor=0.1),
}


def test_thresholds_per_class_inclusive_at_boundaries():
    scores = [0.5, 0.49, 0.2, 0.19, 0.05, 0.04, 0.3, 0.29, 0.1, 0.09]
    classes = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    dets = Detections(np.tile([[0, 0, 1, 1]], (10, 1)), scores, classes)
    kept, decisions = decide(dets, TH)
    assert (
        kept.confidence.tolist()
        == np.float32([0.5, 0.49, 0.2, 0.19, 0.05, 0.3, 0.29, 0.1]).tolist()
    )
    B, R, D = Decision.BLUR, Decision.REVIEW, Decision.DROPPED
    assert decisions == [B, R, R, D, D, B, D, D]


def test_empty():
    kept, decisions = decide(Detections.empty(), TH)
    assert len(kept) == 0 and decisions == []


def test_low_confidence_giants_are_dropped_only_below_giant_min_score():
    th = {
        ObjectClass.FACE: ClassThresholds(
            blur=0.5, review=0.2, floor=0.05, review_max_height=0.25, giant_min_score=0.5
        ),
        ObjectClass.LICENSE_PLATE: ClassThresholds(
            blur=0.5, review=0.2, floor=0.05, review_max_height=0.0
        ),
    }
    # Image 400 px tall: the limit is 100 px for faces, none for plates.
    boxes = [[0, 0, 10, 100], [0, 0, 10, 101], [0, 0, 10, 300], [0, 0, 10, 300], [0, 0, 10, 300]]
    dets = Detections(boxes, [0.3, 0.3, 0.3, 0.6, 0.3], [0, 0, 0, 0, 1])
    _, decisions = decide(dets, th, image_height=400)
    B, R, D = Decision.BLUR, Decision.REVIEW, Decision.DROPPED
    # 100 px: at the limit (kept); 101 and 300 px at 0.3: dropped; 300 px at 0.6 >= blur: blurred;
    # plates have no limit.
    assert decisions == [R, D, D, B, R]
    # Without the image height the size rule does not apply.
    assert decide(dets, th)[1] == [R, R, R, B, R]


def test_giant_rule_holds_when_blur_is_tuned_down_to_the_floor():
    th = {
        ObjectClass.FACE: ClassThresholds(
            blur=0.04, review=0.03, floor=0.03, review_max_height=0.25, giant_min_score=0.25
        ),
    }
    boxes = [[0, 0, 10, 300], [0, 0, 10, 300], [0, 0, 10, 300], [0, 0, 10, 50]]
    dets = Detections(boxes, [0.1, 0.25, 0.035, 0.035], [0, 0, 0, 0])
    _, decisions = decide(dets, th, image_height=400)
    B, R, D = Decision.BLUR, Decision.REVIEW, Decision.DROPPED
    # tall at 0.1 and 0.035: below giant_min_score -> dropped; tall at 0.25: blurred;
    # a small box at 0.035 is in the review band.
    assert decisions == [D, B, D, R]


def _panorama_config(face_blur: float):
    """A config with the size prior (faces: 0.25 x H, below 0.5) and the given face blur."""
    from redact.config import RedactConfig

    return RedactConfig.from_dict(
        {
            "models": [{"path": "m.onnx", "classes": ["face"]}],
            "thresholds": {
                "face": {
                    "blur": face_blur,
                    "review": 0.2,
                    "floor": 0.05,
                    "review_max_height": 0.25,
                    "giant_min_score": 0.5,
                },
                "plate": {"blur": 0.5, "review": 0.2, "floor": 0.05},
            },
        }
    )


def test_select_regions_floor_merge_and_panorama_only_size_rule():
    from redact.decision import select_regions

    cfg = _panorama_config(face_blur=0.5)
    tile_a = Detections([[10, 10, 20, 20], [0, 0, 10, 300]], [0.9, 0.3], [0, 0])
    tile_b = Detections([[11, 10, 21, 20], [50, 50, 60, 60]], [0.4, 0.01], [0, 0])  # 0.01 < floor
    kept, decisions = select_regions([tile_a, tile_b], cfg, 800, 400, wrap=True)
    # The two overlapping face boxes merge into one (score 0.9); the 300 px giant at 0.3 is
    # taller than 0.25 x 400 on a panorama: dropped; the 0.01 box is below the floor.
    assert len(kept) == 2
    assert decisions == [Decision.BLUR, Decision.DROPPED]
    assert kept.xyxy[0].tolist() == [10, 10, 21, 20]
    # On a photo (no wrap) the size rule does not apply.
    assert select_regions([tile_a, tile_b], cfg, 800, 400, wrap=False)[1] == [
        Decision.BLUR,
        Decision.REVIEW,
    ]


def test_low_score_giant_does_not_absorb_a_confident_face():
    """Union merge would enclose the face in the giant (score 0.34 < giant_min 0.5) and drop
    both; the size rule runs on raw boxes, so the face stays blurred on its own."""
    from redact.decision import select_regions

    cfg = _panorama_config(face_blur=0.3)
    tile = Detections(
        [[10, 40, 20, 60], [0, 0, 30, 300], [2, 0, 31, 280]], [0.34, 0.3, 0.2], [0, 0, 0]
    )
    kept, decisions = select_regions([tile], cfg, 800, 400, wrap=True)
    assert decisions == [Decision.BLUR, Decision.DROPPED]
    assert kept.xyxy[0].tolist() == [10, 40, 20, 60]
    assert kept.xyxy[1].tolist() == [0, 0, 31, 300]  # the two giants, merged and recorded
    # A giant that scores at least giant_min_score is an ordinary box (merged with the face).
    strong = Detections([[10, 40, 20, 60], [0, 0, 30, 300]], [0.34, 0.6], [0, 0])
    kept, decisions = select_regions([strong], cfg, 800, 400, wrap=True)
    assert decisions == [Decision.BLUR] and kept.xyxy[0].tolist() == [0, 0, 30, 300]


def test_select_candidates_rescores_merged_candidates_but_not_giants():
    """Stage 2 sees merged candidates at or above the floor (stage-1 score), the thresholds
    judge its final score, giants keep their stage-1 decision and get no stage-2 score."""
    import numpy as np
    import pytest

    from redact.decision import select_candidates
    from redact.errors import ImageError

    cfg = _panorama_config(face_blur=0.5)
    tile = Detections(
        [[10, 10, 20, 20], [11, 10, 21, 20], [100, 50, 110, 60], [0, 0, 10, 300]],
        [0.9, 0.4, 0.2, 0.3],
        [0, 0, 0, 0],
    )
    seen = []

    def rescore(d: Detections):  # type: ignore[no-untyped-def]
        seen.append(d)
        s2 = np.where(d.confidence > 0.5, 0.1, 0.95).astype(np.float32)
        return s2, s2

    sel = select_candidates([tile], cfg, 800, 400, wrap=True, rescore=rescore)
    assert len(seen) == 1 and len(seen[0]) == 2  # the merged face and the 0.2 box, no giant
    by_x = {int(b[0]): i for i, b in enumerate(sel.detections.xyxy)}
    face, small, giant = by_x[10], by_x[100], by_x[0]
    assert sel.decisions[face] is Decision.DROPPED and sel.decisions[small] is Decision.BLUR
    assert sel.decisions[giant] is Decision.DROPPED and np.isnan(sel.stage2[giant])
    assert sel.stage1[face] == pytest.approx(0.9) and sel.stage2[face] == pytest.approx(0.1)
    assert sel.detections.confidence[small] == pytest.approx(0.95)
    plain = select_candidates([tile], cfg, 800, 400, wrap=True)
    assert np.isnan(plain.stage2).all()
    np.testing.assert_allclose(plain.stage1, plain.detections.confidence)
    with pytest.raises(ImageError, match="finite"):
        select_candidates(
            [tile], cfg, 800, 400, wrap=False,
            rescore=lambda d: (np.full(len(d), np.nan), np.full(len(d), np.nan)),
        )  # fmt: skip
    empty = select_candidates([], cfg, 800, 400, wrap=True, rescore=rescore)
    assert len(empty.detections) == 0 and empty.stage1.shape == (0,)


def test_every_candidate_gets_the_reason_of_its_decision():
    """One reason per candidate: size prior (giant), above blur, review band, below review;
    with stage 2 the reason judges the final score."""
    import numpy as np

    from redact.classes import Reason
    from redact.decision import decide_with_reasons, select_candidates

    cfg = _panorama_config(face_blur=0.5)
    tile = Detections(
        [[10, 10, 20, 20], [100, 50, 110, 60], [200, 50, 210, 60], [0, 0, 10, 300]],
        [0.9, 0.3, 0.1, 0.3],
        [0, 0, 0, 0],
    )
    sel = select_candidates([tile], cfg, 800, 400, wrap=True)
    by_x = {
        int(b[0]): (d, r)
        for b, d, r in zip(sel.detections.xyxy, sel.decisions, sel.reasons, strict=True)
    }
    assert by_x == {
        10: (Decision.BLUR, Reason.ABOVE_BLUR),
        100: (Decision.REVIEW, Reason.REVIEW_BAND),
        200: (Decision.DROPPED, Reason.BELOW_REVIEW),
        0: (Decision.DROPPED, Reason.SIZE_PRIOR),
    }

    def rescore(d: Detections):  # type: ignore[no-untyped-def]
        s2 = np.where(d.confidence > 0.5, 0.1, 0.95).astype(np.float32)
        return s2, s2

    two = select_candidates([tile], cfg, 800, 400, wrap=True, rescore=rescore)
    by_x = {int(b[0]): r for b, r in zip(two.detections.xyxy, two.reasons, strict=True)}
    assert by_x == {
        10: Reason.BELOW_REVIEW,  # final 0.1 < review 0.2 (stage 1 said 0.9)
        100: Reason.ABOVE_BLUR,
        200: Reason.ABOVE_BLUR,
        0: Reason.SIZE_PRIOR,  # giants are never rescored
    }
    assert len(two.reasons) == len(two.decisions) == len(two.detections)
    th = cfg.thresholds
    _, decisions, reasons = decide_with_reasons(tile, th, image_height=400)
    assert reasons[-1] is Reason.SIZE_PRIOR and decisions[-1] is Decision.DROPPED
