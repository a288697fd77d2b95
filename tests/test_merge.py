"""merge_detections against hand-computed cases and a slow pure-Python reference."""

from __future__ import annotations

import numpy as np
import pytest

from redact.config import MergeConfig, MergeMethod
from redact.detections import Detections
from redact.merge import connected_components, merge_detections

UNION = MergeConfig(MergeMethod.UNION, iou_threshold=0.45, ios_threshold=0.75)
NMS = MergeConfig(MergeMethod.NMS, iou_threshold=0.45, ios_threshold=0.75)


def _dets(boxes, conf=None, cls=None, src=None) -> Detections:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    return Detections(
        boxes,
        np.full(n, 0.5, np.float32) if conf is None else np.asarray(conf, np.float32),
        np.zeros(n, np.int32) if cls is None else np.asarray(cls, np.int32),
        np.zeros(n, np.int16) if src is None else np.asarray(src, np.int16),
    )


# --- slow reference --------------------------------------------------------------------------


def _pieces(b: list[float], wrap: float | None) -> list[list[float]]:
    if wrap is None or b[2] <= wrap:
        return [b]
    return [[b[0], b[1], wrap, b[3]], [0.0, b[1], b[2] - wrap, b[3]]]


def _inter(a: list[float], b: list[float], wrap: float | None) -> float:
    total = 0.0
    for p in _pieces(a, wrap):
        for q in _pieces(b, wrap):
            w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            total += w * h
    return total


def _linked(a: list[float], b: list[float], cfg: MergeConfig, wrap: float | None) -> bool:
    inter = _inter(a, b, wrap)
    if inter <= 0:
        return False
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return (
        inter / (area_a + area_b - inter) >= cfg.iou_threshold
        or inter / min(area_a, area_b) >= cfg.ios_threshold
    )


def _reference(d: Detections, cfg: MergeConfig, wrap: float | None) -> list[tuple]:
    boxes = d.xyxy.astype(float).tolist()
    conf = d.confidence.tolist()
    n = len(boxes)
    rows = []
    for c in sorted(set(d.class_id.tolist())):
        idx = [i for i in range(n) if d.class_id[i] == c]
        adj = {
            i: [j for j in idx if j != i and _linked(boxes[i], boxes[j], cfg, wrap)] for i in idx
        }
        if cfg.method is MergeMethod.NMS:
            removed: set[int] = set()
            for i in sorted(idx, key=lambda k: (-conf[k], k)):
                if i in removed:
                    continue
                rows.append((c, conf[i], tuple(boxes[i]), int(d.source[i])))
                removed.update(adj[i])
            continue
        seen: set[int] = set()
        for i in idx:
            if i in seen:
                continue
            comp, todo = [], [i]
            seen.add(i)
            while todo:  # breadth-first search
                k = todo.pop()
                comp.append(k)
                for j in adj[k]:
                    if j not in seen:
                        seen.add(j)
                        todo.append(j)
            best = min(comp, key=lambda k: (-conf[k], k))
            xs1, xs2 = [], []
            for k in comp:
                shift = 0.0
                if wrap is not None:
                    ck, cb = (boxes[k][0] + boxes[k][2]) / 2, (boxes[best][0] + boxes[best][2]) / 2
                    shift = min((-wrap, 0.0, wrap), key=lambda s: abs(ck + s - cb))
                xs1.append(boxes[k][0] + shift)
                xs2.append(boxes[k][2] + shift)
            x1, x2 = min(xs1), max(xs2)
            if wrap is not None:
                if x2 - x1 >= wrap:
                    x1, x2 = 0.0, wrap
                elif x1 < 0:
                    x1, x2 = x1 + wrap, x2 + wrap
                elif x1 >= wrap:
                    x1, x2 = x1 - wrap, x2 - wrap
            y1 = min(boxes[k][1] for k in comp)
            y2 = max(boxes[k][3] for k in comp)
            sources = {int(d.source[k]) for k in comp}
            rows.append(
                (
                    c,
                    max(conf[k] for k in comp),
                    (x1, y1, x2, y2),
                    sources.pop() if len(sources) == 1 else -1,
                )
            )
    return rows


def _rows(d: Detections) -> list[tuple]:
    return [
        (int(c), float(s), tuple(float(v) for v in b), int(src))
        for b, s, c, src in zip(d.xyxy, d.confidence, d.class_id, d.source, strict=True)
    ]


def _assert_same(got: Detections, ref: list[tuple]) -> None:
    g = sorted(_rows(got))
    r = sorted(ref)
    assert len(g) == len(r)
    for a, b in zip(g, r, strict=True):
        assert a[0] == b[0] and a[1] == pytest.approx(b[1]) and a[3] == b[3]
        np.testing.assert_allclose(a[2], b[2], atol=2e-3)


def _random_dets(rng: np.random.Generator, n: int, width: float, seam: bool) -> Detections:
    # Clustered objects with jittered duplicates, plus partial boxes inside full ones.
    k = max(1, n // 4)
    cx = rng.uniform(0, width, k)
    if seam:
        cx[: k // 2] = rng.uniform(-20, 20, k // 2) % width  # near / over the seam
    cy = rng.uniform(20, 200, k)
    size = rng.uniform(5, 40, k)
    which = rng.integers(0, k, n)
    jitter = rng.normal(0, 0.15, (n, 4)) * size[which, None]
    half = size[which] / 2
    b = (
        np.stack([cx[which] - half, cy[which] - half, cx[which] + half, cy[which] + half], 1)
        + jitter
    )
    partial = rng.random(n) < 0.2
    b[partial, 2] = b[partial, 0] + (b[partial, 2] - b[partial, 0]) * rng.uniform(
        0.2, 0.6, partial.sum()
    )
    b[:, [0, 2]] = np.sort(b[:, [0, 2]], axis=1)
    b[:, [1, 3]] = np.sort(b[:, [1, 3]], axis=1)
    shift = np.floor(b[:, 0] / width) * width  # canonical unwrapped form
    b[:, 0] -= shift
    b[:, 2] -= shift
    return Detections(
        b.astype(np.float32),
        rng.uniform(0.05, 1.0, n).astype(np.float32),
        rng.integers(0, 2, n).astype(np.int32),
        rng.integers(0, 2, n).astype(np.int16),
    )


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [UNION, NMS])
@pytest.mark.parametrize("wrap", [None, 1000.0])
def test_matches_reference_on_random_data(cfg: MergeConfig, wrap: float | None) -> None:
    rng = np.random.default_rng(0 if wrap is None else 1)
    merged_any = False
    for n in (1, 2, 7, 60, 150):
        d = _random_dets(rng, n, 1000.0, seam=wrap is not None)
        got = merge_detections(d, cfg, wrap)
        _assert_same(got, _reference(d, cfg, wrap))
        merged_any |= len(got) < n
    assert merged_any


def test_seam_data_really_crosses_the_seam() -> None:
    d = _random_dets(np.random.default_rng(1), 150, 1000.0, seam=True)
    assert np.any(d.xyxy[:, 2] > 1000.0)
    assert len(merge_detections(d, UNION, 1000.0)) < len(merge_detections(d, UNION, None))


def test_empty() -> None:
    out = merge_detections(Detections.empty(), UNION, 8000.0)
    assert len(out) == 0 and out.xyxy.shape == (0, 4)


def test_union_hand_case() -> None:
    d = _dets(
        [[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60], [0, 0, 10, 10]],
        conf=[0.3, 0.9, 0.4, 0.8],
        cls=[0, 0, 0, 1],
        src=[0, 1, 0, 1],
    )
    out = merge_detections(d, UNION)
    assert _rows(out) == [
        (0, pytest.approx(0.9), (0.0, 0.0, 12.0, 10.0), -1),  # IoU 80/120: fused across models
        (0, pytest.approx(0.4), (50.0, 50.0, 60.0, 60.0), 0),
        (1, pytest.approx(0.8), (0.0, 0.0, 10.0, 10.0), 1),  # other class: never merged
    ]


def test_partial_box_inside_full_box() -> None:
    """A face cut by a tile border (left 30 %) lies inside the full detection: IoS = 1."""
    d = _dets([[100, 100, 140, 150], [100, 100, 112, 150]], conf=[0.6, 0.95], src=[0, 0])
    out = merge_detections(d, UNION)
    assert len(out) == 1
    np.testing.assert_array_equal(out.xyxy, [[100, 100, 140, 150]])
    assert out.confidence[0] == pytest.approx(0.95) and out.source[0] == 0
    # IoU alone (0.3) would not merge them.
    assert len(merge_detections(d, MergeConfig(MergeMethod.UNION, 0.45, 1.01))) == 2


def test_union_is_transitive_nms_is_greedy() -> None:
    # A-B and B-C overlap (IoU 0.6), A-C do not.
    d = _dets([[0, 0, 10, 10], [2.5, 0, 12.5, 10], [5, 0, 15, 10]], conf=[0.9, 0.5, 0.8])
    out = merge_detections(d, MergeConfig(MergeMethod.UNION, 0.5, 1.0))
    np.testing.assert_array_equal(out.xyxy, [[0, 0, 15, 10]])
    out = merge_detections(d, MergeConfig(MergeMethod.NMS, 0.5, 1.0))
    # Greedy: A removes B; C is not linked to A, so it survives (connected-component NMS
    # would lose it).
    np.testing.assert_array_equal(out.xyxy, [[0, 0, 10, 10], [5, 0, 15, 10]])
    np.testing.assert_allclose(out.confidence, [0.9, 0.8])


def test_seam_hand_case() -> None:
    W = 8000.0
    d = _dets([[7990, 0, 8010, 10], [0, 0, 12, 10], [7980, 0, 7999, 10]], conf=[0.5, 0.7, 0.6])
    out = merge_detections(d, MergeConfig(MergeMethod.UNION, 0.1, 0.5), W)
    np.testing.assert_array_equal(out.xyxy, [[7980, 0, 8012, 10]])
    assert out.confidence[0] == pytest.approx(0.7)
    # Without the wrap width, the box at x 0..12 is a separate object.
    assert len(merge_detections(d, MergeConfig(MergeMethod.UNION, 0.1, 0.5), None)) == 2


def test_disjoint_boxes_never_merge_even_at_zero_threshold() -> None:
    d = _dets([[0, 0, 10, 10], [20, 0, 30, 10]])
    assert len(merge_detections(d, MergeConfig(MergeMethod.UNION, 0.0, 0.0))) == 2


def test_does_not_mutate_input() -> None:
    d = _dets([[0, 0, 10, 10], [1, 1, 11, 11]])
    before = d.xyxy.copy()
    merge_detections(d, UNION, 100.0)
    np.testing.assert_array_equal(d.xyxy, before)


def test_connected_components() -> None:
    i = np.array([0, 3, 5, 2], np.int64)
    j = np.array([4, 4, 6, 7], np.int64)
    np.testing.assert_array_equal(connected_components(8, i, j), [0, 1, 2, 0, 0, 5, 5, 2])
    rng = np.random.default_rng(3)
    n = 500
    i = rng.integers(0, n, 400)
    j = rng.integers(0, n, 400)
    labels = connected_components(n, i, j)
    assert np.all(labels[i] == labels[j]) and np.all(labels <= np.arange(n))
    assert np.all(labels[labels] == labels)  # labels are component roots
    # Reference: union-find in Python.
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    np.testing.assert_array_equal(labels, [find(k) for k in range(n)])


def test_merges_thousands() -> None:
    # Its time is a benchmark figure (scripts/benchmark.py, merge stage), not a test bound.
    d = _random_dets(np.random.default_rng(4), 3000, 8000.0, seam=True)
    out = merge_detections(d, UNION, 8000.0)
    assert 0 < len(out) < len(d)
