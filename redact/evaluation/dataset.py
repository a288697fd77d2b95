"""Pair ground-truth labels with manifest rows and with the original and published images.

Label keys (as the label files name the images) are matched to a manifest row's
``relative_path`` by, in order: the exact path, the path without extension, the file name,
the file name without extension. A key matching several rows at the first level it matches
at is an error (name the images by relative path then).
"""

from __future__ import annotations

import datetime
import logging
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from redact.classes import Decision, ObjectClass, Projection
from redact.evaluation.labels import ImageLabels, LabelFormat, LabelSet, load_labels
from redact.io.codec import decode_image
from redact.io.storage import read_bytes
from redact.manifest import Status, read_manifest

_LOG = logging.getLogger(__name__)
MAX_PIXELS = 400_000_000


@dataclass(frozen=True)
class Thresholds:
    """The thresholds a run used for one class (from the manifest row)."""

    blur: float
    review: float
    floor: float


@dataclass(frozen=True)
class ManifestImage:
    """One manifest row, typed. Detection arrays are (N, ...) and include dropped candidates.

    Attributes:
        det_xyxy: (N, 4) float64 boxes in image pixels (unwrapped across the panorama seam).
        det_score: (N,) float64 scores.
        det_class: (N,) int64 ObjectClass values.
        det_blurred: (N,) bool, the decision blurs (blur, review, manual).
        det_review: (N,) bool, the decision was REVIEW.
        det_stage1: (N,) float64 the detector's score (``score`` in manifests written
            before stage scores were recorded; NaN for manual regions).
        det_stage2: (N,) float64 the post-processor's score (NaN = none).
    """

    run_id: str
    relative_path: str
    image_uri: str
    output_uri: str
    status: Status
    width: int
    height: int
    projection: Projection
    det_xyxy: npt.NDArray[np.float64]
    det_score: npt.NDArray[np.float64]
    det_class: npt.NDArray[np.int64]
    det_blurred: npt.NDArray[np.bool_]
    det_review: npt.NDArray[np.bool_]
    thresholds: Mapping[ObjectClass, Thresholds]
    blurred_fraction: float
    config_hash: str
    models: tuple[str, ...]
    s2_cell: str = ""  # S2 cell token of the capture location ("" without a location)
    det_stage1: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    det_stage2: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    @property
    def wrap(self) -> bool:
        return self.projection is Projection.EQUIRECTANGULAR

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.relative_path)


def _row_to_image(row: Mapping) -> ManifestImage:
    dets = row.get("detections") or []
    xyxy = np.array([[d["x1"], d["y1"], d["x2"], d["y2"]] for d in dets], np.float64).reshape(-1, 4)
    decisions = [Decision(d["decision"]) for d in dets]
    thresholds = {
        ObjectClass.parse(t["class"]): Thresholds(
            float(t["blur"]), float(t["review"]), float(t["floor"])
        )
        for t in row.get("thresholds") or []
    }
    proj = row.get("projection") or Projection.PERSPECTIVE.value
    return ManifestImage(
        run_id=str(row.get("run_id") or ""),
        relative_path=str(row["relative_path"]),
        image_uri=str(row.get("image_uri") or ""),
        output_uri=str(row.get("output_uri") or ""),
        status=Status(row["status"]),
        width=int(row.get("width") or 0),
        height=int(row.get("height") or 0),
        projection=Projection(proj),
        det_xyxy=xyxy,
        det_score=np.array([d["score"] for d in dets], np.float64),
        det_class=np.array([int(ObjectClass.parse(d["class"])) for d in dets], np.int64),
        det_blurred=np.array([d.blurs for d in decisions], bool),
        det_review=np.array([d is Decision.REVIEW for d in decisions], bool),
        thresholds=thresholds,
        blurred_fraction=float(row.get("blurred_fraction") or 0.0),
        config_hash=str(row.get("config_hash") or ""),
        models=tuple(str(m["name"]) for m in row.get("models") or []),
        s2_cell=str(row.get("s2_cell") or ""),
        det_stage1=np.array([_stage1(d) for d in dets], np.float64),
        det_stage2=np.array([_num(d.get("stage2_score")) for d in dets], np.float64),
    )


def _num(v: object) -> float:
    return float("nan") if v is None else float(v)  # type: ignore[arg-type]


def _stage1(d: Mapping) -> float:
    """A detection's stage-1 score; old manifests (no ``stage1_score`` key) have only
    ``score``, which was the detector's."""
    if "stage1_score" not in d:
        return float(d["score"])
    if d["stage1_score"] is None:
        return float("nan") if d.get("decision") == Decision.MANUAL.value else float(d["score"])
    return float(d["stage1_score"])


def load_manifest_images(path: str, run_id: str | None = None) -> list[ManifestImage]:
    """Rows of a manifest folder (or file) as :class:`ManifestImage`.

    With several runs in the folder, ``run_id`` selects one; without it the most recent row
    of each image is kept (and a warning names the runs).
    """
    table = read_manifest(path)
    # A skipped row only says an earlier run's row stands: it carries no detections.
    rows = [r for r in table.to_pylist() if r["status"] != Status.SKIPPED.value]
    if run_id is not None:
        rows = [r for r in rows if r["run_id"] == run_id]
        if not rows:
            raise ValueError(f"manifest {path}: no rows of run {run_id!r}")
    runs = sorted({str(r["run_id"]) for r in rows})
    if len(runs) > 1:
        _LOG.warning(
            "manifest %s holds %d runs (%s); using each image's latest row (--run-id selects one)",
            path,
            len(runs),
            ", ".join(runs[:5]),
        )
    latest: dict[str, Mapping] = {}
    oldest = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    for r in rows:
        prev = latest.get(r["relative_path"])
        if prev is None or (r["processed_at"] or oldest) >= (prev["processed_at"] or oldest):
            latest[r["relative_path"]] = r
    if not latest:
        raise ValueError(f"manifest {path}: no rows")
    return [_row_to_image(latest[k]) for k in sorted(latest)]


def _stem(p: str) -> str:
    return posixpath.splitext(p)[0]


@dataclass(frozen=True)
class Pairing:
    """Labelled images with their manifest rows, and what could not be paired."""

    pairs: tuple[tuple[ImageLabels, ManifestImage], ...]
    labels_without_row: tuple[str, ...]
    rows_without_labels: tuple[str, ...]
    failed: tuple[str, ...]  # labelled images the run quarantined (nothing published)


def pair_labels(labels: LabelSet, images: Sequence[ManifestImage]) -> Pairing:
    """Match label keys to manifest rows (see the module docstring)."""
    indexes: list[dict[str, list[ManifestImage]]] = [{}, {}, {}, {}]
    for img in images:
        rel = img.relative_path
        name = posixpath.basename(rel)
        for idx, k in zip(indexes, (rel, _stem(rel), name, _stem(name)), strict=True):
            idx.setdefault(k, []).append(img)
    pairs = []
    missing = []
    failed = []
    used: set[str] = set()
    for key in sorted(labels.images):
        k = key.replace("\\", "/").removeprefix("./")
        name = posixpath.basename(k)
        found: ManifestImage | None = None
        for idx, probe in zip(indexes, (k, _stem(k), name, _stem(name)), strict=True):
            hits = idx.get(probe, [])
            if len(hits) > 1:
                raise ValueError(
                    f"label {key!r} matches {len(hits)} manifest rows "
                    f"({', '.join(h.relative_path for h in hits[:3])}); key the labels by relative path"
                )
            if hits:
                found = hits[0]
                break
        if found is None:
            missing.append(key)
            continue
        used.add(found.relative_path)
        if found.status is not Status.PUBLISHED:
            failed.append(found.relative_path)
            continue
        pairs.append((labels.images[key], found))
    unlabelled = tuple(sorted(i.relative_path for i in images if i.relative_path not in used))
    return Pairing(tuple(pairs), tuple(missing), unlabelled, tuple(failed))


def _join(base: str, rel: str) -> str:
    if "://" in base:
        return base.rstrip("/") + "/" + rel
    return os.path.join(base, rel)


def original_uri(img: ManifestImage, originals: str | None) -> str:
    """Where the original is: ``originals/relative_path``, else the row's ``image_uri``."""
    return _join(originals, img.relative_path) if originals else img.image_uri


def published_uri(img: ManifestImage, published: str | None) -> str:
    """Where the published copy is: ``published/relative_path``, else the row's ``output_uri``."""
    return _join(published, img.relative_path) if published else img.output_uri


def load_rgb(uri: str) -> npt.NDArray[np.uint8]:
    """(H, W, 3) uint8 upright RGB pixels of an image file (local or remote)."""
    return decode_image(read_bytes(uri), max_pixels=MAX_PIXELS).pixels


def load_labelled(
    labels_path: str,
    manifest: str,
    *,
    fmt: LabelFormat = LabelFormat.AUTO,
    class_map: Mapping[str, ObjectClass | None] | None = None,
    run_id: str | None = None,
) -> tuple[LabelSet, list[ManifestImage], Pairing]:
    """Read a manifest and labels and pair them; YOLO sizes come from the manifest rows.

    Raises ValueError when no labelled image is in the manifest.
    """
    images = load_manifest_images(manifest, run_id)
    by_stem: dict[str, ManifestImage] = {}
    for im in images:
        by_stem.setdefault(_stem(im.relative_path), im)
        by_stem.setdefault(_stem(posixpath.basename(im.relative_path)), im)

    def size(key: str) -> tuple[int, int] | None:
        im = by_stem.get(_stem(key)) or by_stem.get(_stem(posixpath.basename(key)))
        return (im.width, im.height) if im is not None else None

    labels = load_labels(labels_path, fmt, class_map=class_map, image_size=size)
    pairing = pair_labels(labels, images)
    if not pairing.pairs:
        raise ValueError(
            f"none of the {len(labels)} labelled images is published in manifest {manifest} "
            f"({len(pairing.failed)} quarantined, {len(pairing.labels_without_row)} not in it)"
        )
    return labels, images, pairing
