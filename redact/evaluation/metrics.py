"""Privacy metrics of a run against ground truth, per class and sliced.

Per labelled object (don't-care objects excluded from every count):

* **box recall @ IoU t** -- matched one-to-one (:mod:`~redact.evaluation.matching`) by a
  detection the run *blurred* (decision blur, review or manual) with IoU >= t (0.3 and 0.5).
* **pixel recall** -- share of the objects' pixels that the published copy blurred, measured
  by comparing it with the original (:func:`~redact.evaluation.pixels.blurred_mask`); summed
  over pixels, so large objects weigh more.
* **sufficiently-blurred recall** -- share of objects whose identifying detail is gone:
  :func:`~redact.evaluation.pixels.detail_retained` <= :data:`~redact.evaluation.pixels.DETAIL_BOUND`.
  Objects with no detail in the original (flat, pre-anonymised patches) are left out of it
  and counted as ``no_detail``.

Per image: **false-positive area** -- blurred pixels outside every labelled box (don't-care
ones included, every class) as a share of the image; ``fp_area_far`` ignores blurred pixels
within half a box size around labelled boxes (the blur's own margin), leaving blurs of things
that are not labelled at all. Both need exhaustive labels of every class to mean what they say.

Slices: ``all``; object height (``size:``); latitude band of the box centre on panoramas
(``lat:``, ``lat = 90 - y / H * 180``); flags (``printed`` / ``not printed`` faces,
``preblurred`` plates, ...); each image (``image:``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from redact.classes import ObjectClass
from redact.evaluation.dataset import ManifestImage
from redact.evaluation.labels import GtFlag, GtObject, ImageLabels, LabelSet, join_seam_halves
from redact.evaluation.matching import DetStatus, iou_matrix, match_detections
from redact.evaluation.pixels import (
    DETAIL_BOUND,
    DiffConfig,
    blurred_mask,
    box_columns,
    box_rows,
    coverage,
    crop,
    detail_retained,
)

IOUS = (0.3, 0.5)
SIZE_BINS: tuple[tuple[str, float, float], ...] = (
    ("<12px", 0.0, 12.0),
    ("12-24px", 12.0, 24.0),
    ("24-48px", 24.0, 48.0),
    ("48-96px", 48.0, 96.0),
    (">=96px", 96.0, math.inf),
)
# Latitude bands (degrees): (label, low, high), a centre at lat belongs where low < lat <= high;
# the last band also takes lat == -90.
LAT_BANDS: tuple[tuple[str, float, float], ...] = (
    ("+90..+30", 30.0, 90.0),
    ("+30..+10", 10.0, 30.0),
    ("+10..-10", -10.0, 10.0),
    ("-10..-30", -30.0, -10.0),
    ("-30..-90", -90.0, -30.0),
)
FAR_MARGIN = 0.5  # fp_area_far: labelled boxes grown by this share of their size per side


@dataclass(frozen=True)
class Protocol:
    """Which flagged objects are don't care."""

    name: str
    dont_care: frozenset[GtFlag]


PRIMARY = Protocol("primary", frozenset({GtFlag.UNCERTAIN}))
PREBLURRED_DONT_CARE = Protocol(
    "preblurred_dont_care", frozenset({GtFlag.UNCERTAIN, GtFlag.PREBLURRED})
)


def latitude(y_center: float, height: int) -> float:
    """Latitude (degrees) of an equirectangular row: ``90 - y / H * 180``."""
    return 90.0 - y_center / float(height) * 180.0


def size_bin(height_px: float) -> str:
    for label, lo, hi in SIZE_BINS:
        if lo <= height_px < hi:
            return label
    return SIZE_BINS[-1][0]


def lat_band(lat: float) -> str:
    for label, lo, hi in LAT_BANDS:
        if lo < lat <= hi:
            return label
    return LAT_BANDS[-1][0]


@dataclass(frozen=True)
class ImageEval:
    """Labels, manifest row and pixel measurements of one image.

    ``coverage`` and ``retained`` are (M,) float64 per labelled object (NaN: not measured, or
    for ``retained`` no detail); ``fp_area*`` and ``blurred_measured`` are None without pixels.
    """

    labels: ImageLabels
    image: ManifestImage
    coverage: npt.NDArray[np.float64]
    retained: npt.NDArray[np.float64]
    gt_pixels: npt.NDArray[np.int64]
    blurred_measured: float | None = None
    fp_area: float | None = None
    fp_area_far: float | None = None

    @property
    def measured(self) -> bool:
        return self.blurred_measured is not None


def prepare_labels(labels: ImageLabels, image: ManifestImage) -> ImageLabels:
    """Check the label size against the image; join seam halves on panoramas."""
    if (
        labels.width
        and labels.height
        and (labels.width, labels.height)
        != (
            image.width,
            image.height,
        )
    ):
        raise ValueError(
            f"{image.relative_path}: labels are for {labels.width}x{labels.height} but the "
            f"image is {image.width}x{image.height}"
        )
    return join_seam_halves(labels, image.width) if image.wrap else labels


def _gt_pixel_counts(objs: Sequence[GtObject], width: int, height: int, wrap: bool) -> np.ndarray:
    return np.array(
        [
            box_rows(o.box[1], o.box[3], height).size
            * box_columns(o.box[0], o.box[2], width, wrap).size
            for o in objs
        ],
        np.int64,
    )


def evaluate_boxes_only(labels: ImageLabels, image: ManifestImage) -> ImageEval:
    """An :class:`ImageEval` without pixel measurements (box metrics only)."""
    lab = prepare_labels(labels, image)
    m = len(lab.objects)
    return ImageEval(
        lab,
        image,
        np.full(m, np.nan),
        np.full(m, np.nan),
        _gt_pixel_counts(lab.objects, image.width, image.height, image.wrap),
    )


def _box_mask(
    objs: Iterable[GtObject], shape: tuple[int, int], wrap: bool, grow: float = 0.0
) -> npt.NDArray[np.bool_]:
    h, w = shape
    mask = np.zeros((h, w), bool)
    for o in objs:
        x1, y1, x2, y2 = o.box
        gx, gy = grow * (x2 - x1), grow * (y2 - y1)
        rows = box_rows(y1 - gy, y2 + gy, h)
        cols = box_columns(x1 - gx, x2 + gx, w, wrap)
        mask[rows[:, None], cols[None, :]] = True
    return mask


def evaluate_pixels(
    labels: ImageLabels,
    image: ManifestImage,
    original: npt.NDArray[np.uint8],
    published: npt.NDArray[np.uint8],
    diff: DiffConfig | None = None,
) -> ImageEval:
    """Measure blurred pixels, per-object coverage and retained detail, and FP area.

    ``original``/``published``: (H, W, 3) uint8 upright RGB of the same size as the row says.
    """
    lab = prepare_labels(labels, image)
    h, w = original.shape[:2]
    if (w, h) != (image.width, image.height) or published.shape != original.shape:
        raise ValueError(
            f"{image.relative_path}: original {original.shape}, published {published.shape}, "
            f"manifest {image.width}x{image.height} differ"
        )
    mask = blurred_mask(original, published, diff)
    wrap = image.wrap
    cov = np.empty(len(lab.objects))
    ret = np.empty(len(lab.objects))
    for i, o in enumerate(lab.objects):
        hit, tot = coverage(mask, o.box, wrap)
        cov[i] = hit / tot if tot else np.nan
        r = detail_retained(crop(original, o.box, wrap), crop(published, o.box, wrap))
        ret[i] = np.nan if r is None else r
    total = float(h * w)
    inside = _box_mask(lab.objects, (h, w), wrap)
    near = _box_mask(lab.objects, (h, w), wrap, grow=FAR_MARGIN)
    return ImageEval(
        lab,
        image,
        cov,
        ret,
        _gt_pixel_counts(lab.objects, w, h, wrap),
        blurred_measured=float(np.count_nonzero(mask)) / total,
        fp_area=float(np.count_nonzero(mask & ~inside)) / total,
        fp_area_far=float(np.count_nonzero(mask & ~near)) / total,
    )


# --- matching ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectResult:
    """One labelled object's outcome under one protocol (JSON-friendly)."""

    image: str
    index: int
    cls: ObjectClass
    box: tuple[float, float, float, float]
    flags: frozenset[GtFlag]
    text: str
    ignored: bool
    height_px: float
    lat_deg: float | None
    matched: Mapping[float, bool]  # IoU threshold -> matched by a blurred detection
    match_score: float | None  # score of the blurred detection matched at IoU 0.3
    best_iou: float  # best IoU of any detection of the class, dropped ones included
    best_candidate: float | None  # best score of any detection of the class with IoU >= 0.3
    coverage: float | None
    gt_pixels: int
    retained: float | None

    @property
    def sufficient(self) -> bool | None:
        return None if self.retained is None else self.retained <= DETAIL_BOUND

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "class": self.cls.label,
            "box": [round(v, 2) for v in self.box],
            "flags": sorted(f.value for f in self.flags),
            "text": self.text,
            "dont_care": self.ignored,
            "height_px": self.height_px,
            "lat_deg": None if self.lat_deg is None else round(self.lat_deg, 3),
            **{f"matched_iou{t}": self.matched[t] for t in IOUS},
            "match_score": self.match_score,
            "best_iou": round(self.best_iou, 4),
            "best_candidate_score": self.best_candidate,
            "pixel_coverage": None if self.coverage is None else round(self.coverage, 4),
            "detail_retained": None if self.retained is None else round(self.retained, 4),
            "sufficiently_blurred": self.sufficient,
        }


@dataclass
class DetCounts:
    """Blurred detections of one class: matched, false, ignored (per IoU threshold)."""

    n: int = 0
    tp: dict[float, int] = field(default_factory=lambda: dict.fromkeys(IOUS, 0))
    fp: dict[float, int] = field(default_factory=lambda: dict.fromkeys(IOUS, 0))
    ignored: dict[float, int] = field(default_factory=lambda: dict.fromkeys(IOUS, 0))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n_blurred_detections": self.n}
        for t in IOUS:
            judged = self.tp[t] + self.fp[t]
            out[f"precision_iou{t}"] = self.tp[t] / judged if judged else None
            out[f"false_positives_iou{t}"] = self.fp[t]
            out[f"dont_care_iou{t}"] = self.ignored[t]
        return out


def class_arrays(
    ev: ImageEval, cls: ObjectClass, protocol: Protocol
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Indices of the class's labelled objects, their (M, 4) boxes and don't-care flags."""
    idx = [i for i, o in enumerate(ev.labels.objects) if o.cls == cls]
    boxes = np.array([ev.labels.objects[i].box for i in idx], np.float64).reshape(-1, 4)
    ignore = np.array([bool(ev.labels.objects[i].flags & protocol.dont_care) for i in idx], bool)
    return idx, boxes, ignore


def image_results(
    ev: ImageEval, cls: ObjectClass, protocol: Protocol
) -> tuple[list[ObjectResult], DetCounts]:
    """Per-object results and blurred-detection counts of one class in one image."""
    img = ev.image
    idx, gt, ignore = class_arrays(ev, cls, protocol)
    sel = img.det_class == int(cls)
    boxes, scores = img.det_xyxy[sel], img.det_score[sel]
    blurred = img.det_blurred[sel]
    wrap_w = float(img.width) if img.wrap else None
    counts = DetCounts(n=int(blurred.sum()))
    matched: dict[float, np.ndarray] = {}
    match_score = np.full(len(idx), np.nan)
    for t in IOUS:
        m = match_detections(gt, ignore, boxes[blurred], scores[blurred], t, wrap_w)
        matched[t] = m.gt_det >= 0
        counts.tp[t] = int(np.sum(m.det_status == DetStatus.TP))
        counts.fp[t] = int(np.sum(m.det_status == DetStatus.FP))
        counts.ignored[t] = int(np.sum(m.det_status == DetStatus.IGNORED))
        if t == IOUS[0]:
            ok = m.gt_det >= 0
            match_score[ok] = scores[blurred][m.gt_det[ok]]
    # Best overlap with ANY candidate of the class (dropped ones too): how close a miss was.
    if len(idx) and len(boxes):
        iou = iou_matrix(gt, boxes, wrap_w)
        best_iou = iou.max(axis=1)
        cand = np.where(iou >= IOUS[0], scores[None, :], -1.0).max(axis=1)
    else:
        best_iou = np.zeros(len(idx))
        cand = np.full(len(idx), -1.0)
    out = []
    for k, i in enumerate(idx):
        o = ev.labels.objects[i]
        cx_y = (o.box[1] + o.box[3]) / 2.0
        out.append(
            ObjectResult(
                image=img.relative_path,
                index=i,
                cls=cls,
                box=o.box,
                flags=o.flags,
                text=o.text,
                ignored=bool(ignore[k]),
                height_px=o.height,
                lat_deg=latitude(cx_y, img.height) if img.wrap else None,
                matched={t: bool(matched[t][k]) for t in IOUS},
                match_score=None if np.isnan(match_score[k]) else float(match_score[k]),
                best_iou=float(best_iou[k]),
                best_candidate=float(cand[k]) if cand[k] >= 0 else None,
                coverage=None if np.isnan(ev.coverage[i]) else float(ev.coverage[i]),
                gt_pixels=int(ev.gt_pixels[i]),
                retained=None if np.isnan(ev.retained[i]) else float(ev.retained[i]),
            )
        )
    return out, counts


# --- aggregation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceStats:
    """Counts over a set of (non-don't-care) objects."""

    n: int
    matched: Mapping[float, int]
    gt_pixels: int
    covered_pixels: float
    n_pixel_measured: int
    n_sufficient: int
    n_detail_measured: int
    n_no_detail: int

    @classmethod
    def of(cls, objs: Sequence[ObjectResult]) -> SliceStats:
        measured = [o for o in objs if o.coverage is not None]
        detail = [o for o in objs if o.retained is not None]
        return cls(
            n=len(objs),
            matched={t: sum(o.matched[t] for o in objs) for t in IOUS},
            gt_pixels=sum(o.gt_pixels for o in measured),
            covered_pixels=sum(o.gt_pixels * (o.coverage or 0.0) for o in measured),
            n_pixel_measured=len(measured),
            n_sufficient=sum(bool(o.sufficient) for o in detail),
            n_detail_measured=len(detail),
            n_no_detail=len(measured) - len(detail),
        )

    def box_recall(self, iou: float) -> float | None:
        return self.matched[iou] / self.n if self.n else None

    @property
    def pixel_recall(self) -> float | None:
        return self.covered_pixels / self.gt_pixels if self.gt_pixels else None

    @property
    def sufficient_recall(self) -> float | None:
        return self.n_sufficient / self.n_detail_measured if self.n_detail_measured else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            **{f"box_recall_iou{t}": self.box_recall(t) for t in IOUS},
            **{f"matched_iou{t}": self.matched[t] for t in IOUS},
            "pixel_recall": self.pixel_recall,
            "sufficiently_blurred_recall": self.sufficient_recall,
            "n_sufficiently_blurred": self.n_sufficient,
            "n_detail_measured": self.n_detail_measured,
            "n_no_detail": self.n_no_detail,
        }


def slice_objects(objs: Sequence[ObjectResult]) -> dict[str, list[ObjectResult]]:
    """Named slices of the counted (non-don't-care) objects of one class, in report order."""
    counted = [o for o in objs if not o.ignored]
    present = {f for o in counted for f in o.flags}
    complement = [f for f in (GtFlag.PRINTED, GtFlag.PREBLURRED) if f in present]
    groups: dict[str, list[ObjectResult]] = {}
    for o in counted:
        names = [f"size:{size_bin(o.height_px)}"]
        if o.lat_deg is not None:
            names.append(f"lat:{lat_band(o.lat_deg)}")
        names += [f"flag:{f.value}" for f in o.flags]
        names += [f"flag:not {f.value}" for f in complement if f not in o.flags]
        names.append(f"image:{o.image}")
        for n in names:
            groups.setdefault(n, []).append(o)
    order = (
        [f"size:{lab}" for lab, *_ in SIZE_BINS]
        + [f"lat:{lab}" for lab, *_ in LAT_BANDS]
        + sorted(k for k in groups if k.startswith("flag:"))
        + sorted(k for k in groups if k.startswith("image:"))
    )
    out = {"all": counted}
    out.update((k, groups[k]) for k in order if k in groups)
    return out


@dataclass(frozen=True)
class EvalResult:
    """Everything ``redact eval`` computes under one protocol."""

    protocol: Protocol
    objects: Mapping[ObjectClass, list[ObjectResult]]
    detections: Mapping[ObjectClass, DetCounts]
    images: Sequence[ImageEval]

    def slices(self, cls: ObjectClass) -> dict[str, SliceStats]:
        return {k: SliceStats.of(v) for k, v in slice_objects(self.objects[cls]).items()}

    def fp_area_summary(self) -> dict[str, Any]:
        vals = [e.fp_area for e in self.images if e.fp_area is not None]
        far = [e.fp_area_far for e in self.images if e.fp_area_far is not None]
        if not vals:
            return {"n_images": 0}
        return {
            "n_images": len(vals),
            "mean": float(np.mean(vals)),
            "median": float(np.median(vals)),
            "max": float(np.max(vals)),
            "share_of_images_over_1pct": float(np.mean(np.asarray(vals) > 0.01)),
            "far_mean": float(np.mean(far)),
            "far_max": float(np.max(far)),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol.name,
            "dont_care_flags": sorted(f.value for f in self.protocol.dont_care),
            "classes": {
                c.label: {
                    "slices": {k: s.as_dict() for k, s in self.slices(c).items()},
                    "detections": self.detections[c].as_dict(),
                }
                for c in self.objects
            },
            "fp_area": self.fp_area_summary(),
        }


def evaluate(
    images: Sequence[ImageEval], classes: Iterable[ObjectClass], protocol: Protocol = PRIMARY
) -> EvalResult:
    """Match and aggregate every image under one protocol."""
    objects: dict[ObjectClass, list[ObjectResult]] = {}
    dets: dict[ObjectClass, DetCounts] = {}
    for cls in sorted(classes):
        objects[cls] = []
        total = DetCounts()
        for ev in images:
            objs, counts = image_results(ev, cls, protocol)
            objects[cls].extend(objs)
            total.n += counts.n
            for t in IOUS:
                total.tp[t] += counts.tp[t]
                total.fp[t] += counts.fp[t]
                total.ignored[t] += counts.ignored[t]
        dets[cls] = total
    return EvalResult(protocol, objects, dets, images)


def protocols_for(labels: LabelSet) -> list[Protocol]:
    """PRIMARY, plus PREBLURRED_DONT_CARE when some object is flagged preblurred."""
    out = [PRIMARY]
    if any(GtFlag.PREBLURRED in o.flags for im in labels.images.values() for o in im.objects):
        out.append(PREBLURRED_DONT_CARE)
    return out
