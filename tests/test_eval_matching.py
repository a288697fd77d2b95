"""Greedy one-to-one matching: hand-computed cases and a brute-force prefix reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from redact.evaluation.matching import DetStatus, match_detections

TP, FP, IG = DetStatus.TP, DetStatus.FP, DetStatus.IGNORED


def test_hand_computed_matching():
    gt = [[0, 0, 10, 10], [20, 0, 30, 10], [50, 0, 60, 10]]
    ignore = [False, False, True]
    dets = [
        [0, 0, 10, 10],  # exact match of gt0 (score 0.5)
        [1, 0, 11, 10],  # IoU 9/11 = 0.818 with gt0 but scores higher: takes gt0 first
        [20, 0, 25, 10],  # IoU 0.5 with gt1
        [50, 0, 60, 10],  # the don't-care box: ignored
        [100, 0, 110, 10],  # nothing there: FP
    ]
    scores = [0.5, 0.9, 0.4, 0.8, 0.3]
    m = match_detections(gt, ignore, dets, scores, 0.5)
    assert m.det_status.tolist() == [FP, TP, TP, IG, FP]  # det0 duplicates gt0: FP
    assert m.det_gt.tolist() == [-1, 0, 1, -1, -1]
    assert m.gt_det.tolist() == [1, 2, -1]
    np.testing.assert_allclose(m.gt_best_iou, [1.0, 0.5, 1.0])
    # At IoU 0.6 the half-overlap no longer matches gt1.
    m6 = match_detections(gt, ignore, dets, scores, 0.6)
    assert m6.det_status.tolist() == [FP, TP, FP, IG, FP] and m6.gt_det.tolist() == [1, -1, -1]


def test_best_iou_gt_gets_the_detection():
    # One detection overlapping two boxes goes to the one it overlaps most.
    m = match_detections(
        [[0, 0, 10, 10], [4, 0, 14, 10]], [False, False], [[3, 0, 13, 10]], [1], 0.3
    )
    assert m.gt_det.tolist() == [-1, 0]


def test_seam_crossing_match_needs_wrap():
    W = 400.0
    gt = [[390, 10, 410, 30]]  # unwrapped across the seam
    det = [[0, 10, 10, 30]]  # only the right half, stored at x 0-10
    assert match_detections(gt, [False], det, [1], 0.3).gt_det.tolist() == [-1]
    m = match_detections(gt, [False], det, [1], 0.3, wrap_width=W)
    assert m.gt_det.tolist() == [0]  # IoU 200 / 400 = 0.5 on the cylinder
    np.testing.assert_allclose(m.gt_best_iou, [0.5])


def test_empty_inputs():
    m = match_detections(np.zeros((0, 4)), [], [[0, 0, 1, 1]], [0.5], 0.5)
    assert m.det_status.tolist() == [FP]
    m = match_detections([[0, 0, 1, 1]], [False], np.zeros((0, 4)), [], 0.5)
    assert m.gt_det.tolist() == [-1]


boxes = st.lists(
    st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(2, 20), st.integers(2, 20)),
    min_size=0,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(gt=boxes, det=boxes, seed=st.integers(0, 1000))
def test_prefix_property_against_brute_force(gt, det, seed):
    """Matching all detections once and counting TPs with score >= t equals re-matching only
    the detections scoring >= t (what the sweep relies on)."""
    rng = np.random.default_rng(seed)
    g = np.array([[x, y, x + w, y + h] for x, y, w, h in gt], float).reshape(-1, 4)
    d = np.array([[x, y, x + w, y + h] for x, y, w, h in det], float).reshape(-1, 4)
    s = rng.permutation(len(d)) / max(len(d), 1) + 0.01  # distinct scores
    ign = rng.random(len(g)) < 0.3
    full = match_detections(g, ign, d, s, 0.3)
    for t in s:
        keep = s >= t
        sub = match_detections(g, ign, d[keep], s[keep], 0.3)
        assert np.sum(sub.det_status == TP) == np.sum(full.det_status[keep] == TP)
        assert np.sum(sub.det_status == FP) == np.sum(full.det_status[keep] == FP)
