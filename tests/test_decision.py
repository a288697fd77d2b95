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
