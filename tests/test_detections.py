import numpy as np
import pytest

from redact.detections import Detections


def make(n, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(1, 20, (n, 2))
    return Detections(np.hstack([xy, xy + wh]), rng.uniform(0, 1, n), rng.integers(0, 2, n))


def test_validation():
    with pytest.raises(ValueError, match="shape"):
        Detections(np.zeros((2, 3)), [0, 0], [0, 0])
    with pytest.raises(ValueError, match="entries"):
        Detections(np.zeros((2, 4)), [0], [0, 0])
    with pytest.raises(ValueError, match="x1 <= x2"):
        Detections([[5, 0, 1, 1]], [0.5], [0])
    with pytest.raises(ValueError, match="non-finite"):
        Detections([[0, 0, np.nan, 1]], [0.5], [0])


def test_mask_index_merge_and_immutability():
    d = make(5)
    sub = d[d.confidence > 0.5]
    assert len(sub) == int((d.confidence > 0.5).sum())
    assert len(d[2]) == 1 and d[2].xyxy[0].tolist() == d.xyxy[2].tolist()
    both = Detections.merge([d, Detections.empty(), sub])
    assert len(both) == len(d) + len(sub)
    assert both.source.tolist() == [-1] * len(both)
    with pytest.raises(ValueError):
        d.xyxy[0, 0] = 1.0  # read-only: stages never mutate shared arrays
    assert Detections.merge([]) == Detections.empty()


def test_caller_array_not_aliased_for_writes():
    boxes = np.array([[0, 0, 1, 1]], np.float32)
    d = Detections(boxes, [0.5], [0])
    boxes[0, 0] = 0.5  # the caller's array stays writable...
    assert d.xyxy[0].tolist() == [0, 0, 1, 1]  # ...and the detections do not see the write
