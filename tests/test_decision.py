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


def test_low_confidence_giants_are_dropped_only_below_blur():
    th = {
        ObjectClass.FACE: ClassThresholds(blur=0.5, review=0.2, floor=0.05, review_max_height=0.25),
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
