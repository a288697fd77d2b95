"""Columnar detections: one validated dataclass used by every stage.

Boxes are ``xyxy`` in pixels of whatever image the detections refer to (a tile, or the
panorama). In panorama space a box that crosses the 0/360° seam is stored *unwrapped*:
``0 <= x1 < W`` and ``x2`` may exceed ``W`` (see :func:`redact.geometry.boxes.split_at_seam`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


def _as(arr: object, dtype: type, name: str, ndim: int) -> np.ndarray:
    # Always a private copy: the result is frozen read-only, the caller's array must not be.
    out: np.ndarray = np.array(arr, dtype=dtype, copy=True)
    if out.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {out.shape}")
    return out


@dataclass(frozen=True)
class Detections:
    """N detections.

    Attributes:
        xyxy: (N, 4) float32 boxes, pixels, ``x1 <= x2`` and ``y1 <= y2``.
        confidence: (N,) float32 scores in [0, 1].
        class_id: (N,) int32 :class:`redact.classes.ObjectClass` values.
        source: (N,) int16 index of the model (in the ensemble) that produced each box; -1 if
            not from a model (merged, manual).
    """

    xyxy: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int32]
    source: npt.NDArray[np.int16] = field(default=None)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        xyxy = _as(self.xyxy, np.float32, "xyxy", 2)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (N, 4), got {xyxy.shape}")
        n = xyxy.shape[0]
        conf = _as(self.confidence, np.float32, "confidence", 1)
        cls = _as(self.class_id, np.int32, "class_id", 1)
        src = (
            np.full(n, -1, np.int16)
            if self.source is None
            else _as(self.source, np.int16, "source", 1)
        )
        for name, a in (("confidence", conf), ("class_id", cls), ("source", src)):
            if a.shape[0] != n:
                raise ValueError(f"{name} has {a.shape[0]} entries but xyxy has {n}")
        if not np.all(np.isfinite(xyxy)):
            raise ValueError("xyxy contains non-finite values")
        if n and (np.any(xyxy[:, 2] < xyxy[:, 0]) or np.any(xyxy[:, 3] < xyxy[:, 1])):
            raise ValueError("boxes must satisfy x1 <= x2 and y1 <= y2")
        for name, a in (("xyxy", xyxy), ("confidence", conf), ("class_id", cls), ("source", src)):
            a.setflags(write=False)  # shared between stages: never mutated in place
            object.__setattr__(self, name, a)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    @classmethod
    def merge(cls, parts: Sequence[Detections]) -> Detections:
        """Concatenate detections (no suppression)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.confidence for p in parts]),
            np.concatenate([p.class_id for p in parts]),
            np.concatenate([p.source for p in parts]),
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> Detections:
        """Select by boolean mask, integer indices or slice; always returns Detections."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            self.xyxy[index], self.confidence[index], self.class_id[index], self.source[index]
        )

    @property
    def area(self) -> npt.NDArray[np.float32]:
        """(N,) box areas in square pixels."""
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])

    def with_boxes(self, xyxy: np.ndarray) -> Detections:
        """Same detections with new boxes (e.g. after mapping to another coordinate frame)."""
        return Detections(xyxy, self.confidence, self.class_id, self.source)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detections):
            return NotImplemented
        return (
            np.array_equal(self.xyxy, other.xyxy)
            and np.array_equal(self.confidence, other.confidence)
            and np.array_equal(self.class_id, other.class_id)
            and np.array_equal(self.source, other.source)
        )

    __hash__ = None  # type: ignore[assignment]
