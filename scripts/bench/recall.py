"""Recall against hand labels (``dev_labels.json``): which labelled boxes got blurred.

A ground-truth box counts as found when at least ``min_cover`` (default 50 %) of its pixels
are blurred. "Blurred" is the *inside* of the blur shapes (feathered edges not counted):
for redact, :func:`redact.blur.blur_mask` with ``feather_px=0`` over the boxes it decided to
blur; for deface, the ellipses inscribed in the boxes it blurred (what
``deface.deface.draw_det`` replaces). Boxes flagged ``uncertain`` are "don't care" (excluded).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from redact.blur import blur_mask
from redact.classes import ObjectClass
from redact.config import BlurConfig

DONT_CARE = frozenset({"uncertain"})


@dataclass(frozen=True)
class LabelledBox:
    """One hand-labelled box: ``xyxy`` in full-resolution pixels, its flags."""

    xyxy: tuple[int, int, int, int]
    flags: frozenset[str]


@dataclass(frozen=True)
class ImageLabels:
    width: int
    height: int
    faces: tuple[LabelledBox, ...]
    plates: tuple[LabelledBox, ...]

    def boxes(self, cls: ObjectClass) -> tuple[LabelledBox, ...]:
        return self.faces if cls is ObjectClass.FACE else self.plates


def load_labels(path: str | Path) -> dict[str, ImageLabels]:
    """``dev_labels.json`` -> ``{file name: ImageLabels}``."""
    with open(path, encoding="utf-8") as f:
        raw: Mapping[str, Any] = json.load(f)

    def boxes(items: Iterable[Mapping[str, Any]]) -> tuple[LabelledBox, ...]:
        out = []
        for it in items:
            x1, y1, x2, y2 = (int(v) for v in it["box"])
            out.append(LabelledBox((x1, y1, x2, y2), frozenset(it.get("flags", ()))))
        return tuple(out)

    return {
        name: ImageLabels(
            int(v["width"]), int(v["height"]), boxes(v.get("faces", ())), boxes(v.get("plates", ()))
        )
        for name, v in raw.items()
    }


def coverage(mask: npt.NDArray[np.bool_], boxes: Sequence[LabelledBox]) -> list[float]:
    """Share (0..1) of each box's pixels set in ``mask`` (H, W) bool (box clipped to it)."""
    h, w = mask.shape
    out = []
    for b in boxes:
        x1, y1, x2, y2 = b.xyxy
        x1, x2 = max(0, min(x1, w)), max(0, min(x2, w))
        y1, y2 = max(0, min(y1, h)), max(0, min(y2, h))
        area = (x2 - x1) * (y2 - y1)
        out.append(float(np.count_nonzero(mask[y1:y2, x1:x2])) / area if area > 0 else 0.0)
    return out


def redact_mask(
    shape: tuple[int, int],
    xyxy: npt.ArrayLike,
    classes: npt.ArrayLike,
    cfg: BlurConfig,
    *,
    wrap: bool,
) -> npt.NDArray[np.bool_]:
    """(H, W) bool: pixels inside redact's blur shapes (no feather) for the blurred boxes."""
    inner = dataclasses.replace(cfg, feather_px=0)
    return blur_mask(shape, xyxy, inner, wrap=wrap, classes=classes)


def ellipse_mask(shape: tuple[int, int], xyxy: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """(H, W) bool: union of the ellipses inscribed in ``xyxy`` (N, 4) integer boxes, like
    ``skimage.draw.ellipse`` centred in each box (deface's blur shape)."""
    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), dtype=bool)
    for x1, y1, x2, y2 in np.asarray(xyxy, dtype=np.int64).reshape(-1, 4):
        x1, x2 = max(int(x1), 0), min(int(x2), w)
        y1, y2 = max(int(y1), 0), min(int(y2), h)
        bh, bw = y2 - y1, x2 - x1
        if bh <= 0 or bw <= 0:
            continue
        ry, rx = max(bh // 2, 1), max(bw // 2, 1)
        v = ((np.arange(bh) - bh // 2) / ry)[:, None]
        u = ((np.arange(bw) - bw // 2) / rx)[None, :]
        mask[y1:y2, x1:x2] |= u * u + v * v < 1.0
    return mask


@dataclass
class RecallCount:
    """Found / total labelled boxes (don't-care excluded), plus the missed boxes."""

    found: int = 0
    total: int = 0
    missed: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.found / self.total if self.total else None

    def add(
        self,
        image: str,
        boxes: Sequence[LabelledBox],
        cover: Sequence[float],
        min_cover: float,
        exclude: frozenset[str] = DONT_CARE,
    ) -> None:
        """Count ``boxes`` (their ``cover`` from :func:`coverage`), skipping any box with a
        flag in ``exclude``."""
        for b, c in zip(boxes, cover, strict=True):
            if b.flags & exclude:
                continue
            self.total += 1
            if c >= min_cover:
                self.found += 1
            else:
                self.missed.append(
                    {"image": image, "box": list(b.xyxy), "flags": sorted(b.flags), "cover": c}
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "total": self.total,
            "recall": self.recall,
            "missed": self.missed,
        }
