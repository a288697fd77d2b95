"""The detector canary: known faces and plates every detector must find before it blurs anything.

A model that loads but is broken (an all-zero or NaN head, a wrong layout, ``score_floor: 1.0``,
thresholds no detection can reach) would otherwise publish every image with nothing blurred.
The canary is a folder of small crops with known objects (``models/canary/canary.yaml``). Each
detector handler runs it in ``load_model`` (so every Beam worker checks before any inference;
a miss raises :class:`CanaryError` and the worker, hence the job, fails), and the launcher runs
:func:`check_detectors` before it builds the pipeline.

A crop is fed through the handler's real ``run_inference`` exactly like a photo window: at
native scale, letterboxed into the top-left of the model's input tile (zero padding). Every
required object of a class the model claims must be matched (IoU >= ``min_iou``) by a
detection of that class scoring at least the configured ``blur`` threshold.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from redact.classes import ObjectClass
from redact.detection.registry import default_registry_path
from redact.tiling import CropTile, crop_boxes_to_image, render_crop
from redact.yamlfile import read_yaml_mapping

if TYPE_CHECKING:
    from redact.config import RedactConfig
    from redact.detection.base import DetectorHandler
    from redact.detection.registry import ModelRegistry

log = logging.getLogger(__name__)

CANARY_FILE = "canary.yaml"
DEFAULT_MIN_IOU = 0.3
DEFAULT_INPUT_SIZE = 640  # tile size when neither the model nor the registry fixes one

CanaryFolder = str | os.PathLike[str] | Traversable
"""Where a canary lives: a local path, or an ``importlib.resources`` folder."""


class CanaryError(RuntimeError):
    """A detector missed a canary object (or the canary itself is unreadable); one line."""


@dataclass(frozen=True)
class CanaryObject:
    """One known object of a crop.

    Attributes:
        cls: its class.
        box: (x1, y1, x2, y2) in crop pixels.
        must: True = the model must find it; False = reported only.
    """

    cls: ObjectClass
    box: tuple[float, float, float, float]
    must: bool = True


@dataclass(frozen=True)
class CanaryCrop:
    """A crop and its objects.

    Attributes:
        file: file name inside the canary folder.
        image: (H, W, 3) uint8 RGB.
        objects: the known objects.
    """

    file: str
    image: np.ndarray
    objects: tuple[CanaryObject, ...]


@dataclass(frozen=True)
class Canary:
    """A loaded canary folder.

    Attributes:
        where: the folder, for messages.
        crops: the crops, in file order.
        min_iou: a detection matches an object when their IoU is at least this.
    """

    where: str
    crops: tuple[CanaryCrop, ...]
    min_iou: float = DEFAULT_MIN_IOU

    def required_classes(self) -> frozenset[ObjectClass]:
        """Classes with at least one ``must`` object."""
        return frozenset(o.cls for c in self.crops for o in c.objects if o.must)


@dataclass(frozen=True)
class ObjectResult:
    """How one model did on one canary object.

    Attributes:
        crop: crop file name.
        index: object index in the crop.
        cls: object class.
        box: object box, crop pixels.
        must: whether it is required.
        threshold: the class's blur threshold it had to reach.
        best_score: best score of a same-class detection with IoU >= min_iou (0 if none;
            detections below the model's score_floor do not exist).
        best_iou: best IoU of any same-class detection (0 if none).
        found: ``best_score >= threshold`` for a matching detection.
    """

    crop: str
    index: int
    cls: ObjectClass
    box: tuple[float, float, float, float]
    must: bool
    threshold: float
    best_score: float
    best_iou: float
    found: bool

    def describe(self) -> str:
        box = "[" + ", ".join(f"{v:g}" for v in self.box) + "]"
        return f"{self.cls.label} #{self.index} {box} of {self.crop}"


@dataclass(frozen=True)
class CanaryReport:
    """One model's canary result.

    Attributes:
        model_id: ``name@version`` of the model.
        canary: the canary folder.
        classes: classes the model claims (the ones checked).
        objects: one result per canary object of those classes.
        score_floor: the model's score floor.
        seconds: wall time of the canary inference (not of loading the model).
        uncovered: claimed classes the canary has no required object of (a failure).
        skipped: why the check did not run here ("" = it ran); see :func:`check_detectors`.
    """

    model_id: str
    canary: str
    classes: tuple[ObjectClass, ...]
    objects: tuple[ObjectResult, ...]
    score_floor: float
    seconds: float
    uncovered: tuple[ObjectClass, ...] = ()
    skipped: str = ""

    @property
    def missed(self) -> tuple[ObjectResult, ...]:
        """Required objects that were not found."""
        return tuple(o for o in self.objects if o.must and not o.found)

    @property
    def passed(self) -> bool:
        return not self.skipped and not self.missed and not self.uncovered

    def message(self) -> str:
        """One line: passed, or what was missed and the best score seen."""
        who = f"model {self.model_id!r}"
        if self.skipped:
            return f"canary not run for {who} here: {self.skipped}"
        if self.uncovered:
            labels = ", ".join(c.label for c in self.uncovered)
            return (
                f"canary failed for {who}: the canary {self.canary} has no required object of "
                f"class {labels}, which the model claims; add one to its {CANARY_FILE}"
            )
        missed = self.missed
        if missed:
            m = missed[0]
            more = f" (and {len(missed) - 1} more)" if len(missed) > 1 else ""
            return (
                f"canary failed for {who}: missed {m.describe()}{more}: best matching score "
                f"{m.best_score:.4f} (best IoU {m.best_iou:.2f}), needs >= {m.threshold:.6g} "
                f"(blur threshold; model score_floor {self.score_floor:g}); canary {self.canary}"
            )
        found = sum(o.found for o in self.objects)
        worst = min((o.best_score for o in self.objects if o.must), default=float("nan"))
        return (
            f"canary passed for {who}: {found}/{len(self.objects)} objects found, lowest "
            f"required score {worst:.3f}, {self.seconds:.2f} s"
        )

    def raise_if_failed(self) -> CanaryReport:
        """Raise :class:`CanaryError` (one line) unless passed or skipped; return self."""
        if not self.skipped and not self.passed:
            raise CanaryError(self.message())
        return self


# --- loading -----------------------------------------------------------------------------------


def default_canary_folder() -> Path:
    """``canary/`` next to the model registry (the packaged ``models/canary``)."""
    return default_registry_path().parent / "canary"


def _folder(folder: CanaryFolder | None) -> Traversable:
    if folder is None:
        return default_canary_folder()
    if isinstance(folder, (str, os.PathLike)):
        return Path(folder).expanduser()
    return folder


def _box(raw: Any, where: str, w: int, h: int) -> tuple[float, float, float, float]:
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        raise CanaryError(f"{where}.box: expected [x1, y1, x2, y2], got {raw!r}")
    try:
        x1, y1, x2, y2 = (float(v) for v in raw)
    except (TypeError, ValueError):
        raise CanaryError(f"{where}.box: expected 4 numbers, got {raw!r}") from None
    if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
        raise CanaryError(f"{where}.box {raw!r} is not a box inside the {w}x{h} crop")
    return x1, y1, x2, y2


def _decode(data: bytes, where: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise CanaryError(f"{where}: not a readable image")
    return np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def _crop(raw: Any, i: int, root: Traversable, where: str) -> CanaryCrop:
    at = f"{where}: crops[{i}]"
    if not isinstance(raw, Mapping) or not isinstance(raw.get("file"), str):
        raise CanaryError(f"{at}: expected a mapping with a 'file'")
    unknown = sorted(set(raw) - {"file", "source", "objects"})
    if unknown:
        raise CanaryError(f"{at}: unknown key(s) {unknown}")
    name = raw["file"]
    try:
        data = root.joinpath(name).read_bytes()
    except OSError as e:
        raise CanaryError(f"{at}: cannot read {name}: {e.strerror or e}") from e
    image = _decode(data, f"{at} ({name})")
    h, w = image.shape[:2]
    objs_raw = raw.get("objects")
    if not isinstance(objs_raw, list) or not objs_raw:
        raise CanaryError(f"{at} ({name}): 'objects' must be a non-empty list")
    objects = []
    for k, o in enumerate(objs_raw):
        ow = f"{at}.objects[{k}]"
        if not isinstance(o, Mapping):
            raise CanaryError(f"{ow}: expected a mapping")
        unknown = sorted(set(o) - {"class", "box", "must"})
        if unknown:
            raise CanaryError(f"{ow}: unknown key(s) {unknown}")
        try:
            cls = ObjectClass.parse(str(o.get("class", "")))
        except ValueError as e:
            raise CanaryError(f"{ow}.class: {e}") from None
        must = o.get("must", True)
        if not isinstance(must, bool):
            raise CanaryError(f"{ow}.must: expected true or false, got {must!r}")
        objects.append(CanaryObject(cls, _box(o.get("box"), ow, w, h), must))
    return CanaryCrop(name, image, tuple(objects))


def load_canary(folder: CanaryFolder | None = None) -> Canary:
    """Read a canary folder (``canary.yaml`` + its crops).

    Args:
        folder: a path or ``importlib.resources`` folder; None = :func:`default_canary_folder`.

    Raises:
        CanaryError: the folder, its YAML or a crop is missing or invalid (one line).
    """
    root = _folder(folder)
    where = str(root.joinpath(CANARY_FILE))
    data = read_yaml_mapping(root.joinpath(CANARY_FILE), CanaryError, "detector canary")
    unknown = sorted(set(data) - {"version", "min_iou", "crops"})
    if unknown:
        raise CanaryError(f"{where}: unknown key(s) {unknown}")
    crops_raw = data.get("crops")
    if not isinstance(crops_raw, list) or not crops_raw:
        raise CanaryError(f"{where}: 'crops' must be a non-empty list")
    try:
        min_iou = float(data.get("min_iou", DEFAULT_MIN_IOU))
    except (TypeError, ValueError):
        raise CanaryError(f"{where}: min_iou must be a number") from None
    if not 0.0 < min_iou <= 1.0:
        raise CanaryError(f"{where}: min_iou must be in (0, 1], got {min_iou}")
    crops = tuple(_crop(c, i, root, where) for i, c in enumerate(crops_raw))
    return Canary(str(root), crops, min_iou)


# --- running -----------------------------------------------------------------------------------


def canary_tile(image: np.ndarray, size: int) -> tuple[np.ndarray, CropTile]:
    """A crop as the pipeline feeds a photo window: native scale (shrunk only if it does not
    fit), letterboxed into the top-left of a (size, size) tile with zero padding.

    Returns the (size, size, 3) uint8 tile and the :class:`CropTile` mapping it back.
    """
    h, w = image.shape[:2]
    tile = CropTile(0, 0, w, h, size, scale=min(1.0, size / max(w, h)))
    return render_crop(image, tile), tile


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    union = (box[2] - box[0]) * (box[3] - box[1]) + (
        (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    )
    union = union - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _model_input_size(handler: DetectorHandler[Any], model: Any) -> int:
    size = getattr(model, "input_size", None) or handler.spec.input_size or DEFAULT_INPUT_SIZE
    return int(size)


def run_canary(
    handler: DetectorHandler[Any],
    model: Any,
    canary: Canary,
    thresholds: Mapping[ObjectClass, float],
) -> CanaryReport:
    """Run the canary through ``handler.run_inference`` and match its objects.

    Args:
        handler: the real detector handler (its spec, score floor, batch size, decoding).
        model: what ``handler`` loaded (``open_model``).
        canary: from :func:`load_canary`.
        thresholds: per-class blur threshold, in [0, 1]; every class the model claims needs one.

    Returns:
        The report (see :meth:`CanaryReport.raise_if_failed`). Errors of the model itself
        (a head breaking its contract: shape, NaN, score range) propagate.
    """
    claimed = tuple(sorted({c for c in handler.spec.classes if c is not None}))
    missing = [c.label for c in claimed if c not in thresholds]
    if missing:
        raise ValueError(f"run_canary: no blur threshold for class(es) {missing}")
    size = _model_input_size(handler, model)
    tiles = [canary_tile(c.image, size) for c in canary.crops]
    batch = max(1, int(handler.model_config.batch_size))
    t0 = time.perf_counter()
    results: list[Any] = []
    for start in range(0, len(tiles), batch):
        chunk = [t for t, _ in tiles[start : start + batch]]
        out = list(handler.run_inference(chunk, model))
        if len(out) != len(chunk):
            raise RuntimeError(f"{handler!r} returned {len(out)} results for {len(chunk)} tiles")
        results.extend(out)
    seconds = time.perf_counter() - t0
    objects: list[ObjectResult] = []
    for crop, (_, tile), result in zip(canary.crops, tiles, results, strict=True):
        det = result.inference.detections
        boxes, src = crop_boxes_to_image(tile, det.xyxy)
        conf = det.confidence[src]
        cls_ids = det.class_id[src]
        for k, obj in enumerate(crop.objects):
            if obj.cls not in claimed:
                continue
            same = cls_ids == int(obj.cls)
            ious = _iou(np.asarray(obj.box, np.float64), boxes[same].astype(np.float64))
            best_iou = float(ious.max()) if ious.size else 0.0
            matching = conf[same][ious >= canary.min_iou]
            best = float(matching.max()) if matching.size else 0.0
            thr = float(thresholds[obj.cls])
            found = bool(matching.size) and best >= thr
            objects.append(
                ObjectResult(crop.file, k, obj.cls, obj.box, obj.must, thr, best, best_iou, found)
            )
    uncovered = tuple(c for c in claimed if c not in canary.required_classes())
    return CanaryReport(
        model_id=handler.spec.model_id,
        canary=canary.where,
        classes=claimed,
        objects=tuple(objects),
        score_floor=float(handler.model_config.score_floor),
        seconds=seconds,
        uncovered=uncovered,
    )


def prove(
    handler: DetectorHandler[Any], model: Any, canary: CanaryFolder | Canary | None = None
) -> CanaryReport:
    """Load the canary (``handler.canary`` when None) and run it at the handler's blur
    thresholds; log the one-line result. Raises :class:`CanaryError` on a miss."""
    if not isinstance(canary, Canary):
        canary = load_canary(canary if canary is not None else handler.canary)
    report = run_canary(handler, model, canary, handler.blur_thresholds)
    report.raise_if_failed()
    log.info("%s", report.message())
    return report


def blur_thresholds(config: RedactConfig) -> dict[ObjectClass, float]:
    """The per-class ``blur`` thresholds of a config (what the canary must reach)."""
    return {c: float(t.blur) for c, t in config.thresholds.items()}


def _close(model: Any) -> None:
    close = getattr(model, "close", None)
    if callable(close):
        close()


def check_detectors(
    config: RedactConfig,
    registry: ModelRegistry,
    *,
    canary: str | os.PathLike[str] | None = None,
) -> list[CanaryReport]:
    """Prove every detector of ``config`` on the canary, here, before a pipeline is built.

    Each model is opened with the backend the config names and checked on the classes it
    claims, at ``config``'s blur thresholds. A TensorRT model on a machine without TensorRT
    or a GPU (a launcher) is not run here: its report says so in ``skipped`` (and a warning
    is logged); the workers still prove it when they load it.

    Args:
        config: the run's config.
        registry: resolves ``config.models``.
        canary: canary folder for every model; None = each model's ``canary`` setting, else
            :func:`default_canary_folder`.

    Returns:
        One report per model, in config order (all passed or skipped).

    Raises:
        CanaryError: the first model that misses a required object (one line).
        ModelFileError: a model file is missing, unreadable or has the wrong sha256.
        DetectorOutputError: a model's head breaks its contract on the canary.
    """
    from redact.detection.base import BackendUnavailableError
    from redact.detection.ensemble import make_member_handler, member_canary

    thresholds = blur_thresholds(config)
    reports = []
    for i, mc in enumerate(config.models):
        folder = member_canary(mc, canary)
        loaded = load_canary(folder)
        handler = make_member_handler(
            registry.resolve(mc), mc, i, blur_thresholds=thresholds, canary=folder
        )
        t0 = time.perf_counter()
        try:
            model = handler.open_model()
        except BackendUnavailableError as e:
            report = CanaryReport(
                handler.spec.model_id, loaded.where, (), (), mc.score_floor, 0.0, skipped=str(e)
            )
            log.warning("%s", report.message())
            reports.append(report)
            continue
        try:
            report = run_canary(handler, model, loaded, thresholds)
        finally:
            _close(model)
        report.raise_if_failed()
        log.info("%s (model opened in %.2f s)", report.message(), time.perf_counter() - t0)
        reports.append(report)
    return reports


def summarize(reports: Sequence[CanaryReport]) -> str:
    """Every report's message on one line, ``; ``-separated (one launcher log record)."""
    return "; ".join(r.message() for r in reports)


__all__ = [
    "CANARY_FILE",
    "Canary",
    "CanaryCrop",
    "CanaryError",
    "CanaryObject",
    "CanaryReport",
    "ObjectResult",
    "blur_thresholds",
    "canary_tile",
    "check_detectors",
    "default_canary_folder",
    "load_canary",
    "prove",
    "run_canary",
    "summarize",
]
