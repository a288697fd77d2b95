"""Precision/recall against the score threshold, and choosing per-class thresholds.

The manifest keeps every merged candidate down to the run's ``floor`` (decision
``dropped`` below ``review``), and merging does not depend on the thresholds, so a curve
computed from one run is exactly what the same run would have blurred at any threshold
>= its floor. Below the floor nothing was recorded: **the floor of the manifest limits what
can be tuned** (re-run with a lower ``thresholds.<class>.floor`` to tune lower).

Choosing thresholds (:func:`choose_thresholds`), per class, on the labelled images:

* ``blur`` = the highest threshold whose box recall (IoU ``iou``, default 0.3) reaches
  ``target_recall``: the score of the ``ceil(target * n)``-th matched detection, rounded
  down to 4 decimals;
* ``review`` = the lower of (a) the highest threshold reaching ``review_recall`` (default:
  half the miss rate allowed by the target, e.g. 0.995 for 0.99) and (b) ``blur *
  review_ratio`` (default 0.5), so the review band is never empty by construction; never
  below the floor. Everything >= ``review`` is blurred; ``[review, blur)`` is also listed
  for human review;
* a target the curve never reaches (recall at the floor is lower) is reported as not
  reached, and ``blur`` goes to the *plateau*: the highest threshold that keeps the best
  recall reachable above the floor (lower thresholds add only false positives on the
  labelled set). An unreached ``review_recall`` likewise leaves only rule (b). The misses
  are then the detector's, not the thresholds': see the curve.

The expected review-band size is the number of candidates with ``review <= score < blur``
per 1,000 images, counted over the published rows given (``redact tune``: the labelled
images, or with ``--rate-manifest`` every published row of another run, e.g. production).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from redact.classes import ObjectClass
from redact.config import RedactConfig
from redact.evaluation.dataset import ManifestImage
from redact.evaluation.matching import DetStatus, match_detections
from redact.evaluation.metrics import PRIMARY, ImageEval, Protocol, class_arrays
from redact.manifest import Status

SCORES = ("final", "stage1", "stage2")
"""Which score a curve is built from: ``final`` = the manifest's ``score`` (what the run's
decision used), ``stage1`` = the detector's, ``stage2`` = the post-processor's (0 where it
did not score a candidate). A two-stage run's manifest holds all three, so stage 1 alone can
be tuned (and compared) from it without re-running detection."""

GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class Curve:
    """Cumulative matches of one class at every distinct score, highest first.

    Attributes:
        thresholds: (K,) float64 distinct detection scores, descending.
        tp, fp: (K,) int64 true/false positives among detections scoring >= each threshold
            (detections on don't-care objects are neither).
        n_det: (K,) int64 detections scoring >= each threshold (all, judged or not).
        n_gt: labelled (non-don't-care) objects.
        floor: lowest score the manifest recorded for the class (max of the runs' floors).
    """

    cls: ObjectClass
    iou: float
    protocol: str
    thresholds: npt.NDArray[np.float64]
    tp: npt.NDArray[np.int64]
    fp: npt.NDArray[np.int64]
    n_det: npt.NDArray[np.int64]
    n_gt: int
    n_images: int
    floor: float

    def at(self, threshold: float) -> dict[str, Any]:
        """Recall, precision and counts for detections scoring >= ``threshold``."""
        k = int(np.searchsorted(-self.thresholds, -threshold, side="right"))  # count >= t
        tp = int(self.tp[k - 1]) if k else 0
        fp = int(self.fp[k - 1]) if k else 0
        nd = int(self.n_det[k - 1]) if k else 0
        return {
            "threshold": float(threshold),
            "recall": tp / self.n_gt if self.n_gt else None,
            "precision": tp / (tp + fp) if tp + fp else None,
            "tp": tp,
            "fp": fp,
            "detections": nd,
            "detections_per_image": nd / self.n_images if self.n_images else None,
        }

    def steps(self) -> list[dict[str, Any]]:
        """The operating points where recall rises (each matched detection's score)."""
        out = []
        prev = 0
        for i, t in enumerate(self.thresholds):
            if self.tp[i] > prev:
                prev = int(self.tp[i])
                out.append(self.at(float(t)))
        return out

    def threshold_for_recall(self, recall: float) -> float | None:
        """Highest threshold whose recall reaches ``recall`` (None: never reached)."""
        need = math.ceil(recall * self.n_gt - 1e-9)
        if need <= 0:
            return float(self.thresholds[0]) if self.thresholds.size else None
        hit = np.nonzero(self.tp >= need)[0]
        return float(self.thresholds[hit[0]]) if hit.size else None

    def table(self, extra: Sequence[float] = ()) -> list[dict[str, Any]]:
        """Curve points at the grid thresholds (and ``extra``) at or above the floor."""
        ts = sorted({round(t, 6) for t in (*GRID, *extra, self.floor) if t >= self.floor - 1e-9})
        return [self.at(t) for t in ts]

    def as_dict(self) -> dict[str, Any]:
        return {
            "class": self.cls.label,
            "iou": self.iou,
            "protocol": self.protocol,
            "n_gt": self.n_gt,
            "n_images": self.n_images,
            "floor": self.floor,
            "table": self.table(),
            "steps": self.steps(),
        }


def manifest_floor(images: Sequence[ManifestImage], cls: ObjectClass) -> float:
    """The highest floor any of the rows used for ``cls`` (0 if the rows do not say)."""
    floors = [im.thresholds[cls].floor for im in images if cls in im.thresholds]
    return max(floors) if floors else 0.0


def with_score(image: ManifestImage, which: str) -> ManifestImage:
    """``image`` with ``det_score`` taken from one of :data:`SCORES` (NaN -> 0)."""
    if which not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {which!r}")
    if which == "final":
        return image
    src = image.det_stage1 if which == "stage1" else image.det_stage2
    if src.shape != image.det_score.shape:  # built without stage scores: stage 1 = score
        src = image.det_score if which == "stage1" else np.zeros_like(image.det_score)
    return dataclasses.replace(image, det_score=np.nan_to_num(src.astype(np.float64), nan=0.0))


def pr_curve(
    evals: Sequence[ImageEval], cls: ObjectClass, iou: float, protocol: Protocol = PRIMARY
) -> Curve:
    """Precision/recall of ``cls`` at every score over the labelled images (all candidates)."""
    scores: list[np.ndarray] = []
    status: list[np.ndarray] = []
    n_gt = 0
    floor = manifest_floor([e.image for e in evals], cls)
    for ev in evals:
        img = ev.image
        _, gt, ignore = class_arrays(ev, cls, protocol)
        n_gt += int((~ignore).sum())
        sel = (img.det_class == int(cls)) & (img.det_score >= floor)
        m = match_detections(
            gt,
            ignore,
            img.det_xyxy[sel],
            img.det_score[sel],
            iou,
            float(img.width) if img.wrap else None,
        )
        scores.append(img.det_score[sel])
        status.append(m.det_status)
    s = np.concatenate(scores) if scores else np.zeros(0)
    st = np.concatenate(status) if status else np.zeros(0, np.int8)
    order = np.argsort(-s, kind="stable")
    s, st = s[order], st[order]
    tp = np.cumsum(st == DetStatus.TP)
    fp = np.cumsum(st == DetStatus.FP)
    nd = np.arange(1, s.size + 1)
    # One point per distinct score: the last detection scoring exactly that much.
    last = np.nonzero(np.append(s[1:] != s[:-1], True))[0] if s.size else np.zeros(0, np.intp)
    return Curve(
        cls,
        iou,
        protocol.name,
        s[last].astype(np.float64),
        tp[last].astype(np.int64),
        fp[last].astype(np.int64),
        nd[last].astype(np.int64),
        n_gt,
        len(evals),
        floor,
    )


# --- tuning ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneTarget:
    recall: float = 0.99
    review_recall: float | None = None  # default: 1 - (1 - recall) / 2
    review_ratio: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.recall <= 1.0:
            raise ValueError(f"target recall must be in (0, 1], got {self.recall}")
        rr = self.review_recall
        if rr is not None and not self.recall <= rr <= 1.0:
            raise ValueError(f"review recall must be in [{self.recall}, 1], got {rr}")
        if not 0.0 < self.review_ratio <= 1.0:
            raise ValueError(f"review ratio must be in (0, 1], got {self.review_ratio}")

    @property
    def review(self) -> float:
        return self.review_recall if self.review_recall is not None else 1 - (1 - self.recall) / 2


@dataclass(frozen=True)
class ClassChoice:
    """Thresholds chosen for one class and what they give on the labelled set."""

    cls: ObjectClass
    blur: float
    review: float
    floor: float
    reached: bool
    review_reached: bool
    at_blur: Mapping[str, Any]
    at_review: Mapping[str, Any]
    review_band_per_1000: float
    blurred_per_1000: float
    n_rows: int
    points: Sequence[Mapping[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "class": self.cls.label,
            "blur": self.blur,
            "review": self.review,
            "floor": self.floor,
            "target_reached": self.reached,
            "review_target_reached": self.review_reached,
            "at_blur": dict(self.at_blur),
            "at_review": dict(self.at_review),
            "review_band_per_1000_images": self.review_band_per_1000,
            "blurred_per_1000_images": self.blurred_per_1000,
            "rate_images": self.n_rows,
            "curve_points": [dict(p) for p in self.points],
        }


def _round_down(x: float, floor: float) -> float:
    return max(math.floor(x * 1e4) / 1e4, floor)


def per_1000(rows: Sequence[ManifestImage], cls: ObjectClass, lo: float, hi: float) -> float:
    """Candidates of ``cls`` with ``lo <= score < hi`` per 1,000 published images."""
    pub = [r for r in rows if r.status is Status.PUBLISHED]
    if not pub:
        return 0.0
    n = sum(
        int(np.sum((r.det_class == int(cls)) & (r.det_score >= lo) & (r.det_score < hi)))
        for r in pub
    )
    return 1000.0 * n / len(pub)


def choose_thresholds(
    curve: Curve, target: TuneTarget, rows: Sequence[ManifestImage], floor: float | None = None
) -> ClassChoice:
    """Pick ``blur`` and ``review`` for one class (see the module docstring)."""
    fl = max(curve.floor, floor or 0.0)
    t_blur = curve.threshold_for_recall(target.recall)
    reached = t_blur is not None and t_blur >= fl
    if not reached:
        t_blur = curve.threshold_for_recall(curve.at(fl)["recall"])  # the plateau
    blur = _round_down(t_blur, fl) if t_blur is not None and t_blur >= fl else fl
    by_ratio = _round_down(blur * target.review_ratio, fl)
    t_rev = curve.threshold_for_recall(target.review)
    review_reached = t_rev is not None and t_rev >= fl
    review = _round_down(t_rev, fl) if review_reached and t_rev is not None else by_ratio
    review = max(min(review, by_ratio), fl)
    review = min(review, blur)
    near = [p for p in curve.steps() if abs(p["threshold"] - blur) <= 0.15]
    points = sorted(
        {p["threshold"]: p for p in [*near, curve.at(blur), curve.at(review)]}.values(),
        key=lambda p: -p["threshold"],
    )
    published = [r for r in rows if r.status is Status.PUBLISHED]
    return ClassChoice(
        cls=curve.cls,
        blur=blur,
        review=review,
        floor=fl,
        reached=reached,
        review_reached=review_reached,
        at_blur=curve.at(blur),
        at_review=curve.at(review),
        review_band_per_1000=per_1000(rows, curve.cls, review, blur),
        blurred_per_1000=per_1000(rows, curve.cls, review, math.inf),
        n_rows=len(published),
        points=points,
    )


# --- writing configs ---------------------------------------------------------------------------


def _threshold_line(indent: str, cls: ObjectClass, blur: float, review: float, floor: float) -> str:
    return f"{indent}{cls.label}: {{blur: {blur:.4f}, review: {review:.4f}, floor: {floor:g}}}"


def render_tuned_config(
    base: Path, out: Path, choices: Mapping[ObjectClass, ClassChoice], header: Sequence[str]
) -> str:
    """YAML text of a config that ``extends:`` ``base`` with the chosen thresholds.

    The floor of each class stays the base config's (the thresholds never go below it).
    """
    base_cfg = RedactConfig.load(base)
    rel = os.path.relpath(base.resolve(), out.resolve().parent).replace(os.sep, "/")
    lines = [f"# {h}" if h else "#" for h in header]
    lines += [f"extends: {rel}", "", "thresholds:"]
    for cls, ch in sorted(choices.items()):
        fl = base_cfg.thresholds[cls].floor
        lines.append(_threshold_line("  ", cls, max(ch.blur, fl), max(ch.review, fl), fl))
    return "\n".join(lines) + "\n"


_THRESHOLD_BLOCK = re.compile(r"^thresholds:[ \t]*(#.*)?$", re.MULTILINE)


def edit_thresholds_in_place(text: str, choices: Mapping[ObjectClass, ClassChoice]) -> str:
    """Replace ``blur``/``review`` in the one-line ``<class>: {blur: .., review: .., floor: ..}``
    entries of the ``thresholds:`` block of a config's text, keeping everything else (other
    keys of those lines, comments included)."""
    m = _THRESHOLD_BLOCK.search(text)
    if m is None:
        raise ValueError("no top-level 'thresholds:' block to edit in place; use --out")
    head, block = text[: m.end()], text[m.end() :]
    end = re.search(r"^\S", block, re.MULTILINE)  # next top-level key
    body, tail = (block[: end.start()], block[end.start() :]) if end else (block, "")
    for cls, ch in choices.items():
        pat = re.compile(
            rf"^(?P<indent>[ \t]+){cls.label}:[ \t]*\{{(?P<inner>[^}}]*)\}}(?P<rest>.*)$",
            re.MULTILINE,
        )
        found = pat.search(body)
        if found is None:
            raise ValueError(
                f"thresholds.{cls.label} is not a one-line mapping; cannot edit in place, use --out"
            )
        inner = yaml.safe_load("{" + found["inner"] + "}") or {}
        floor = float(inner.get("floor", 0.0))
        line = _threshold_line(
            found["indent"], cls, max(ch.blur, floor), max(ch.review, floor), floor
        )
        kept = [f"{k}: {v}" for k, v in inner.items() if k not in ("blur", "review", "floor")]
        if kept:  # other keys of the line (e.g. review_max_height) stay as they were
            line = line[:-1] + ", " + ", ".join(kept) + "}"
        body = body[: found.start()] + line + found["rest"] + body[found.end() :]
    return head + body + tail
