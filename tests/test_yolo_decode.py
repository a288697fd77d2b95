"""YOLOv8 head decoding: vectorized decode/NMS against a slow pure-Python reference."""

from __future__ import annotations

import re

import numpy as np
import pytest

from redact.classes import ObjectClass
from redact.detection.yolo import (
    SCORE_TOLERANCE,
    DetectorOutputError,
    check_head,
    cxcywh_to_xyxy,
    decode_yolov8,
    nms,
)

FACE, PLATE = ObjectClass.FACE, ObjectClass.LICENSE_PLATE


def _iou_ref(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def decode_ref(out, num_classes, class_map, floor, iou_thr, size):
    """Slow reference: per image, per anchor Python loops; returns list of sorted tuples."""
    results = []
    for img in out:  # (C, A)
        cands = []
        for a in range(img.shape[1]):
            best_s, best_c = -1.0, None
            for k in range(num_classes):
                if class_map[k] is None:
                    continue
                s = float(img[4 + k, a])
                if s > best_s:
                    best_s, best_c = s, class_map[k]
            if best_c is None or best_s < floor:
                continue
            cx, cy, w, h = (float(v) for v in img[:4, a])
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
            box = [min(max(v, 0.0), float(size)) for v in box]
            cands.append((best_s, a, int(best_c), box))
        cands.sort(key=lambda t: (-t[0], t[1]))
        kept = []
        for s, a, c, box in cands:
            if all(kc != c or _iou_ref(box, kb) <= iou_thr for _, _, kc, kb in kept):
                kept.append((s, a, c, box))
        results.append(kept)
    return results


def _random_head(rng, batch, nc, extra, anchors, size):
    cxcy = rng.uniform(0, size, (batch, 2, anchors))
    wh = rng.uniform(2, size / 3, (batch, 2, anchors))
    scores = rng.uniform(0, 1, (batch, nc, anchors)) ** 3  # mostly low, like a real head
    junk = rng.normal(0, 50, (batch, extra, anchors))
    return np.concatenate([cxcy, wh, scores, junk], axis=1).astype(np.float32)


@pytest.mark.parametrize(
    ("nc", "extra", "class_map"),
    [
        (2, 0, (FACE, PLATE)),
        (1, 15, (FACE,)),  # pose-style face model: 4 + 1 + 15 channels
        (3, 0, (FACE, None, PLATE)),
        (3, 2, (FACE, FACE, None)),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decode_matches_reference(nc, extra, class_map, seed):
    rng = np.random.default_rng(seed)
    size = 128
    out = _random_head(rng, 2, nc, extra, 300, size)
    got = decode_yolov8(
        out,
        num_classes=nc,
        class_map=class_map,
        score_floor=0.1,
        nms_iou=0.5,
        input_size=size,
        source=3,
        extra_channels=extra,
    )
    ref = decode_ref(out, nc, class_map, 0.1, 0.5, size)
    assert len(got) == 2
    for det, kept in zip(got, ref, strict=True):
        assert len(kept) > 5  # the test exercises real suppression, not an empty case
        assert len(det) == len(kept)
        np.testing.assert_allclose(det.confidence, [k[0] for k in kept], rtol=1e-6)
        np.testing.assert_array_equal(det.class_id, [k[2] for k in kept])
        np.testing.assert_allclose(det.xyxy, [k[3] for k in kept], atol=1e-3)
        assert np.all(det.source == 3)


_KW = dict(num_classes=2, class_map=(FACE, PLATE), score_floor=0.05, nms_iou=0.6, input_size=64)


def test_anchor_major_layout_is_refused_not_transposed():
    rng = np.random.default_rng(7)
    out = _random_head(rng, 1, 2, 0, 200, 64)
    assert len(decode_yolov8(out, **_KW, model="m@1")[0]) > 0
    with pytest.raises(DetectorOutputError, match=r"'m@1'.*\(1, 200, 6\).*\(B, 6, A\)"):
        decode_yolov8(np.ascontiguousarray(out.transpose(0, 2, 1)), **_KW, model="m@1")


def test_small_anchor_count_is_still_channels_first():
    out = np.zeros((1, 6, 4), np.float32)  # fewer anchors than channels: still (B, C, A)
    assert check_head(out, num_classes=2).shape == (1, 6, 4)


@pytest.mark.parametrize(
    ("shape", "extra"),
    [
        ((1, 3, 8400), 0),  # [B, 3, A]: too few channels (the old code transposed it)
        ((1, 7, 8400), 0),  # one channel too many
        ((1, 6, 8400), 15),  # a landmark model registered with 15 extra channels
        ((1, 21, 8400), 0),  # ...or one that has them but is registered without
        ((2, 6), 0),  # not 3-D
        ((1, 6, 0), 0),  # no anchors
    ],
)
def test_head_shape_must_match_exactly(shape, extra):
    with pytest.raises(DetectorOutputError, match=re.escape(f"shape {tuple(shape)}")):
        check_head(np.zeros(shape, np.float32), num_classes=2, extra_channels=extra, model="m")


def test_batch_size_is_checked():
    with pytest.raises(DetectorOutputError, match=r"\(B=3, 6, A\)"):
        decode_yolov8(np.zeros((2, 6, 10), np.float32), **_KW, batch=3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("channel", [0, 3, 4, 5])
def test_non_finite_box_or_score_raises(bad, channel):
    head = np.full((2, 6, 10), 0.5, np.float32)
    head[1, channel, 7] = bad
    with pytest.raises(DetectorOutputError, match=r"non-finite.*image 1, channel .*, anchor 7"):
        decode_yolov8(head, **_KW, model="m")


def test_non_finite_extra_channels_are_ignored():
    head = np.full((1, 6 + 2, 10), 0.5, np.float32)
    head[0, 6:, :] = np.nan  # keypoints of an undetected face may be anything
    (det,) = decode_yolov8(head, **_KW, extra_channels=2)
    assert len(det) > 0


@pytest.mark.parametrize("score", [-0.01, 1.01, 3.0, -1e4])
def test_scores_outside_unit_interval_raise(score):
    head = np.full((1, 6, 10), 0.5, np.float32)
    head[0, 5, 2] = score
    with pytest.raises(DetectorOutputError, match=r"class scores span"):
        decode_yolov8(head, **_KW, model="m")


def test_scores_within_tolerance_pass():
    head = np.full((1, 6, 10), 0.5, np.float32)
    head[0, 4, 0] = 1.0 + SCORE_TOLERANCE / 2
    head[0, 5, 0] = -SCORE_TOLERANCE / 2
    head[0, :4, :] = -5.0  # boxes may be anything finite (clipped later)
    check_head(head, num_classes=2)


def test_error_messages_are_one_line():
    for head in (np.zeros((1, 3, 9)), np.full((1, 6, 9), np.nan), np.full((1, 6, 9), 2.0)):
        with pytest.raises(DetectorOutputError) as e:
            check_head(head, num_classes=2, model="tiny@1")
        assert "\n" not in str(e.value) and "'tiny@1'" in str(e.value)


def test_hand_computed_boxes_clip_and_floor():
    # anchors: (cx, cy, w, h, face, plate)
    head = np.array(
        [
            [10, 10, 4, 6, 0.9, 0.1],  # face, box 8..12 x 7..13
            [62, 30, 10, 10, 0.2, 0.7],  # plate, clipped at x=64
            [30, 30, 10, 10, 0.01, 0.02],  # below the floor
        ],
        np.float32,
    ).T[None]
    (det,) = decode_yolov8(
        head, num_classes=2, class_map=(FACE, PLATE), score_floor=0.05, nms_iou=0.5, input_size=64
    )
    np.testing.assert_allclose(det.xyxy, [[8, 7, 12, 13], [57, 25, 64, 35]])
    np.testing.assert_allclose(det.confidence, [0.9, 0.7])
    np.testing.assert_array_equal(det.class_id, [FACE, PLATE])


def test_ignored_class_never_wins():
    # plate score is highest but plate is unmapped -> the face score (0.3) is used
    head = np.array([[20, 20, 8, 8, 0.3, 0.95]], np.float32).T[None]
    (det,) = decode_yolov8(
        head, num_classes=2, class_map=(FACE, None), score_floor=0.1, nms_iou=0.5, input_size=64
    )
    assert det.class_id.tolist() == [FACE]
    np.testing.assert_allclose(det.confidence, [0.3])


def test_all_ignored_and_bad_class_map():
    head = np.zeros((2, 6, 10), np.float32)
    bad = np.full((2, 6, 10), np.nan, np.float32)
    with pytest.raises(DetectorOutputError):  # checked even when no class is mapped
        decode_yolov8(
            bad, num_classes=2, class_map=(None, None), score_floor=0.0, nms_iou=0.5, input_size=64
        )
    res = decode_yolov8(
        head, num_classes=2, class_map=(None, None), score_floor=0.0, nms_iou=0.5, input_size=64
    )
    assert [len(d) for d in res] == [0, 0]
    with pytest.raises(ValueError, match="class_map"):
        decode_yolov8(
            head, num_classes=2, class_map=(FACE,), score_floor=0.0, nms_iou=0.5, input_size=64
        )


def test_nms_class_aware_hand_computed():
    xyxy = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # box 1 overlaps box 0 with IoU 90/110 = 0.818 -> suppressed; box 2 is another class.
    keep = nms(xyxy, scores, np.array([0, 0, 1, 0]), 0.5)
    assert keep.tolist() == [0, 2, 3]
    # threshold above the IoU keeps it
    keep = nms(xyxy, scores, np.array([0, 0, 1, 0]), 0.82)
    assert keep.tolist() == [0, 1, 2, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5).size == 0


def test_cxcywh_to_xyxy():
    np.testing.assert_allclose(cxcywh_to_xyxy(np.array([[10, 20, 4, 8]])), [[8, 16, 12, 24]])
