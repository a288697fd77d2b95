"""One validated, frozen configuration object for a redaction run.

Loaded from YAML (``configs/*.yaml``); a file may ``extends:`` another (paths relative to
itself) and override any subset of keys, which is how per-region settings work. Unknown keys,
wrong types and out-of-range values raise :class:`ConfigError` naming the offending key.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import struct
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redact.classes import ObjectClass, Projection
from redact.errors import ConfigError
from redact.io.metadata import MetadataPolicy
from redact.yamlfile import read_yaml_mapping


class Backend(enum.Enum):
    ONNX = "onnx"
    TENSORRT = "tensorrt"
    OPENVINO = "openvino"  # the [openvino] extra (CPU)
    AUTO = "auto"  # OpenVINO where the worker has the extra, else ONNX Runtime (float32)


class Precision(enum.Enum):
    """Arithmetic the detector runs in, where the backend lets the config choose it (OpenVINO;
    ONNX Runtime runs the ONNX file's float32, a TensorRT engine's precision is its own)."""

    FP32 = "fp32"
    BF16 = "bf16"  # bfloat16 on AMX / AVX-512 BF16 CPUs; float32 elsewhere (OpenVINO decides)


class MergeMethod(enum.Enum):
    UNION = "union"  # cluster overlapping boxes, keep the enclosing box (recall first)
    NMS = "nms"  # keep the highest-scoring box of each cluster


class BlurShape(enum.Enum):
    ELLIPSE = "ellipse"
    BOX = "box"


class BlurMode(enum.Enum):
    """How a region's content is replaced (:mod:`redact.blur`)."""

    BLUR = "blur"  # area-average to a few cells, then a strong smooth blur
    PIXELATE = "pixelate"  # hard-edged mosaic of area-averaged cells
    SOLID = "solid"  # one colour: ``BlurConfig.solid_fill``


class BlurStrength(enum.Enum):
    """Strength of a mode; the measured parameters: ``redact.blur.STRENGTHS``."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class ModelConfig:
    """One detector of the (union) ensemble.

    ``name`` is a ``models/registry.yaml`` entry; alternatively ``path`` + ``classes`` name
    an ONNX file directly (tests, experiments).
    """

    name: str = ""
    path: str = ""
    classes: tuple[ObjectClass | None, ...] = ()  # model class index -> ObjectClass (None = ignore)
    backend: Backend = Backend.ONNX
    precision: Precision = Precision.FP32  # bf16: only with backend openvino or auto
    batch_size: int = 8
    score_floor: float = 0.02  # raw candidates below this are discarded in the tile
    tile_nms_iou: float = 0.6
    # 0 = auto: cores / worker threads in a multi-threaded local run (season.local_workers
    # or --direct_num_workers; redact.runner.local_parallelism), ONNX Runtime's default (all
    # cores) elsewhere
    intra_op_threads: int = 0
    # Folder of the detector canary this model must pass before it runs ("" = the packaged
    # models/canary, next to the registry; redact.detection.canary).
    canary: str = ""

    def _validate(self, where: str) -> None:
        if not self.name and not self.path:
            raise ConfigError(f"{where}: give a registry 'name' or a 'path'")
        if self.path and not self.classes:
            raise ConfigError(f"{where}: a model given by 'path' needs 'classes'")
        _range(f"{where}.batch_size", self.batch_size, 1, 4096)
        _range(f"{where}.score_floor", self.score_floor, 0.0, 1.0)
        _range(f"{where}.tile_nms_iou", self.tile_nms_iou, 0.0, 1.0)
        _range(f"{where}.intra_op_threads", self.intra_op_threads, 0, 1024)
        if self.precision is not Precision.FP32 and self.backend not in (
            Backend.OPENVINO,
            Backend.AUTO,
        ):
            raise ConfigError(
                f"{where}.precision {self.precision.value!r} needs backend 'openvino' or "
                "'auto' (ONNX Runtime runs the file's float32; a TensorRT engine has its own "
                "precision)"
            )


@dataclass(frozen=True)
class TileLevel:
    """One ring of gnomonic tiles over a pitch band of the panorama.

    ``scale`` is tile resolution relative to the panorama's native resolution at the tile
    centre (1.0 = same pixels per degree; 2.0 = rendered at twice native, for small objects).
    Adjacent tiles overlap so that any object up to ``max_object_deg`` lies whole in a tile.
    """

    name: str = "native"
    scale: float = 1.0
    # a user-defined level's default; the default plan: _default_levels
    pitch_min_deg: float = -45.0
    pitch_max_deg: float = 30.0
    max_object_deg: float = 4.0

    def _validate(self, where: str) -> None:
        _range(f"{where}.scale", self.scale, 0.05, 8.0)
        _range(f"{where}.pitch_min_deg", self.pitch_min_deg, -90.0, 90.0)
        _range(f"{where}.pitch_max_deg", self.pitch_max_deg, -90.0, 90.0)
        if self.pitch_min_deg >= self.pitch_max_deg:
            raise ConfigError(f"{where}: pitch_min_deg must be < pitch_max_deg")
        _range(f"{where}.max_object_deg", self.max_object_deg, 0.0, 60.0)


@dataclass(frozen=True)
class PerspectiveTiling:
    """Windows over ordinary photos: native-resolution windows plus one down-scaled view; a
    photo smaller than a tile is also seen magnified (see :func:`redact.tiling.plan_perspective_tiles`)."""

    overlap_px: int = 160  # objects up to this many pixels lie whole in a (native) window
    global_view: bool = True  # add the whole photo fitted into one tile, never magnified
    # Photos whose longest side is below this many tiles are magnified to it (at least
    # 1.25x, at most 8x) and also kept at native scale as the global view. 1 tile (640 px):
    # UC3M-LP val (320x240) plates sufficiently blurred 360 -> 401 of 437, MaskON dev (400 px)
    # faces 606 -> 612 of 616, none lost, at more blurred area (MaskON 21.8 -> 25.1 %); 1280 px
    # was worse on every set (docs/tiling.md). 0 = never.
    upscale_below_tiles: float = 1.0
    upscale_below_px: int = 0  # the same in pixels; when > 0 it overrides upscale_below_tiles

    def _validate(self, where: str) -> None:
        _range(f"{where}.overlap_px", self.overlap_px, 0, 4096)
        _range(f"{where}.upscale_below_tiles", self.upscale_below_tiles, 0.0, 16.0)
        _range(f"{where}.upscale_below_px", self.upscale_below_px, 0, 16384)


def _default_levels() -> tuple[TileLevel, ...]:
    # Native resolution stops at -26.25 deg (until 2026-12-02: -45, a fourth ring of 14 tiles
    # at -35.6): below it a street camera (2-3 m up) sees ground-level objects near and large
    # (an upright child's face >= ~2 deg, ~14 px in the coarse ring at 8000x4000; a plate's
    # height only ~1 deg, 6-8 px there: plates pay for this, see docs/tiling.md). At
    # 8000x4000 the three remaining native rows are exactly the old top three: 82 -> 68 tiles
    # (job CPU -6..-13 % measured together with the input-buffer change); 4000x2000 keeps 36
    # tiles in shifted rows. Dev panoramas lost no object; ground-plane composites lost no
    # blur, but plate scores halve below -26 deg. configs/regions/high-privacy.yaml keeps -45.
    return (
        TileLevel("native", 1.0, -26.25, 30.0, 4.0),
        TileLevel("coarse", 0.3, -70.0, 60.0, 30.0),
    )


@dataclass(frozen=True)
class TilingConfig:
    tile_size: int = 640  # px, square; the detector's input size
    levels: tuple[TileLevel, ...] = field(default_factory=_default_levels)
    perspective: PerspectiveTiling = field(default_factory=PerspectiveTiling)

    def _validate(self, where: str) -> None:
        _range(f"{where}.tile_size", self.tile_size, 32, 4096)
        if not self.levels:
            raise ConfigError(f"{where}.levels: at least one level is needed")
        for i, lv in enumerate(self.levels):
            lv._validate(f"{where}.levels[{i}]")
        self.perspective._validate(f"{where}.perspective")


@dataclass(frozen=True)
class MergeConfig:
    method: MergeMethod = MergeMethod.UNION
    iou_threshold: float = 0.45  # boxes of one class overlapping this much are one object
    ios_threshold: float = 0.75  # ...or when this share of the smaller box is inside the larger

    def _validate(self, where: str) -> None:
        _range(f"{where}.iou_threshold", self.iou_threshold, 0.0, 1.0)
        _range(f"{where}.ios_threshold", self.ios_threshold, 0.0, 1.0)


@dataclass(frozen=True)
class ClassThresholds:
    """Score thresholds of one class: blur >= ``blur``; ``review`` <= s < ``blur`` is blurred
    and listed for review; ``floor`` <= s < ``review`` is recorded as dropped.

    ``review_max_height``: on equirectangular panoramas, a detection scoring below
    ``giant_min_score`` whose box is taller than this share of the panorama height
    (0.08 x 180 deg = 14.4 deg) is recorded as dropped (0 disables). Low-confidence giants are
    nearly always false positives in street imagery, and a real face or plate that close to
    the camera scores high. The rule is kept apart from ``blur`` so that tuning ``blur`` down
    to the curve's plateau (``redact tune``) does not let every low-score giant through.
    Photos have no known field of view, so the rule does not apply to them. It runs on the
    raw tile boxes, before merging (:func:`redact.decision.select_regions`).
    """

    blur: float
    review: float
    floor: float
    review_max_height: float = 0.08
    giant_min_score: float = 0.5

    def _validate(self, where: str) -> None:
        for k in ("blur", "review", "floor", "review_max_height", "giant_min_score"):
            _range(f"{where}.{k}", getattr(self, k), 0.0, 1.0)
        if not self.floor <= self.review <= self.blur:
            raise ConfigError(f"{where}: need floor <= review <= blur")


def _default_thresholds() -> dict[ObjectClass, ClassThresholds]:
    """The shipped operating point.

    ``blur``/``review``/``floor`` were written by ``redact tune --target-recall 0.99`` on the
    dev sets (12 panoramas + MaskON + openalpr dev splits, never trained on; the curve is in
    configs/tuned/default-dev.yaml and docs/evaluation.md). 0.99 is not reached, so ``blur``
    sits at the recall plateau (faces 0.964, plates 0.743 at IoU 0.3).
    Size prior: a panorama box taller than 0.08 x 180 = 14.4 deg scoring below 0.5 is recorded,
    not blurred. A 0.2 m face that tall is < 0.8 m from the lens, a plate < 0.45 m; 79
    held-out faces pasted into panoramas at 14.4-58 deg all scored >= 0.63
    (scripts/synth_pano_recall.py), the dev panoramas' giant false positives 0.28-0.34.
    """
    return {
        ObjectClass.FACE: ClassThresholds(blur=0.0339, review=0.0300, floor=0.03),
        ObjectClass.LICENSE_PLATE: ClassThresholds(blur=0.0402, review=0.0300, floor=0.03),
    }


def _default_shapes() -> dict[ObjectClass, BlurShape]:
    return {ObjectClass.FACE: BlurShape.ELLIPSE, ObjectClass.LICENSE_PLATE: BlurShape.BOX}


def _default_modes() -> dict[ObjectClass, BlurMode]:
    return {c: BlurMode.BLUR for c in ObjectClass}


def _default_strengths() -> dict[ObjectClass, BlurStrength]:
    return {c: BlurStrength.MEDIUM for c in ObjectClass}


@dataclass(frozen=True)
class BlurConfig:
    """Irreversible anonymisation of a region (see :mod:`redact.blur`)."""

    # Per class; a class not listed gets BOX (it covers the most). An ELLIPSE always passes
    # through the detected box's corners, whatever ``dilate`` is.
    shapes: Mapping[ObjectClass, BlurShape] = field(default_factory=_default_shapes)
    # Grow each box by this share of its size on every side (measured: docs/evaluation.md).
    dilate: float = 0.5
    # Per-class override of ``dilate`` (a class not listed gets ``dilate``).
    class_dilate: Mapping[ObjectClass, float] = field(default_factory=dict)
    min_size_px: int = 8  # regions are at least this many pixels wide and tall
    feather_px: int = 3  # soft edge *outside* the dilated region; inside is fully destroyed
    # Per class (a class not listed gets BLUR; YAML also takes one value for every class) and
    # per manual region (its ``mode`` column). Every mode passes `redact eval --strict`
    # (docs/evaluation.md).
    mode: Mapping[ObjectClass, BlurMode] = field(default_factory=_default_modes)
    # Per class (a class not listed gets MEDIUM; one value for every class accepted): maps to
    # the measured parameters of ``redact.blur.STRENGTHS`` (cells, smoothing, extra margin).
    strength: Mapping[ObjectClass, BlurStrength] = field(default_factory=_default_strengths)
    # Colour of the SOLID mode: "mean" (of the pixels inside the shape) or an RGB triple 0-255.
    solid_fill: str | tuple[int, ...] = "mean"

    # Keys of older configs, rejected with the reason (ConfigError names the key).
    _removed_keys: typing.ClassVar[Mapping[str, str]] = {
        k: "removed: the blur adds no noise any more; set blur.strength (low|medium|high, "
        "measured in docs/evaluation.md) instead"
        for k in ("cells", "noise_sigma", "cell_noise_sigma")
    }

    def _validate(self, where: str) -> None:
        _range(f"{where}.dilate", self.dilate, 0.0, 2.0)
        for c, d in self.class_dilate.items():
            _range(f"{where}.class_dilate.{c.label}", d, 0.0, 2.0)
        _range(f"{where}.min_size_px", self.min_size_px, 1, 4096)
        _range(f"{where}.feather_px", self.feather_px, 0, 256)
        fill = self.solid_fill
        if isinstance(fill, str):
            if fill != "mean":
                raise ConfigError(
                    f"{where}.solid_fill: {fill!r} must be 'mean' or an RGB triple [r, g, b]"
                )
        elif len(fill) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in fill):
            raise ConfigError(
                f"{where}.solid_fill: {list(fill)!r} must be 'mean' or three integers in 0-255"
            )

    def mode_for(self, class_id: int) -> BlurMode:
        """The mode of one ObjectClass value (BLUR for a class not configured)."""
        try:
            return self.mode.get(ObjectClass(int(class_id)), BlurMode.BLUR)
        except ValueError:
            return BlurMode.BLUR

    def strength_for(self, class_id: int) -> BlurStrength:
        """The strength of one ObjectClass value (MEDIUM for a class not configured)."""
        try:
            return self.strength.get(ObjectClass(int(class_id)), BlurStrength.MEDIUM)
        except ValueError:
            return BlurStrength.MEDIUM

    def dilate_for(self, class_id: int) -> float:
        """The dilation of one ObjectClass value (``dilate`` for a class not listed)."""
        try:
            return self.class_dilate.get(ObjectClass(int(class_id)), self.dilate)
        except ValueError:
            return self.dilate

    def shape_for(self, class_id: int) -> BlurShape:
        """The blur shape of one ObjectClass value (BOX for a class not configured)."""
        try:
            return self.shapes.get(ObjectClass(int(class_id)), BlurShape.BOX)
        except ValueError:
            return BlurShape.BOX


@dataclass(frozen=True)
class OutputConfig:
    jpeg_quality: int = 0  # 0 = match the original's estimated quality
    keep_metadata: bool = True  # EXIF (thumbnail removed), XMP incl. GPano, ICC

    def _validate(self, where: str) -> None:
        _range(f"{where}.jpeg_quality", self.jpeg_quality, 0, 100)


@dataclass(frozen=True)
class IOConfig:
    read_retries: int = 3
    retry_backoff_s: float = 0.5
    max_pixels: int = 400_000_000  # refuse (quarantine) larger images: decompression bombs
    # projection auto: an untagged (no GPano XMP) 2:1 image narrower than this is a photo
    equirect_min_width: int = 2000

    def _validate(self, where: str) -> None:
        _range(f"{where}.read_retries", self.read_retries, 1, 100)
        _range(f"{where}.retry_backoff_s", self.retry_backoff_s, 0.0, 60.0)
        _range(f"{where}.max_pixels", self.max_pixels, 1, 10**10)
        _range(f"{where}.equirect_min_width", self.equirect_min_width, 2, 10**6)


@dataclass(frozen=True)
class SeasonConfig:
    """How a capture season is run and watched. Nothing here changes a published pixel, so
    this section is left out of :meth:`RedactConfig.hash` (changing it re-does no image)."""

    s2_level: int = 16  # S2 cell level stored in the manifest (16: ~150 m cells)
    # Dataflow resource hint of the inference step only ("" = none): its workers get the GPU.
    accelerator: str = "type:nvidia-l4;count:1;install-nvidia-driver"
    # Local runs (DirectRunner): worker threads (--direct_num_workers, multi_threading) unless
    # given on the command line; a detector whose intra_op_threads is 0 then gets
    # cores / local_workers threads. 1 (Beam's in_memory FnApiRunner, one thread): Beam
    # 2.77's multi_threading mode, with 1 or 2 workers, ran away in memory inside the
    # CoGroupByKey's input decoding in 4 of 6 runs of a 50-image fake-detector job on a busy
    # CPU, in_memory in none of 4 (docs/performance.md, "an intermittent memory runaway").
    # 2 workers were 10-12 % faster on 2 cores; choose them only under a memory watchdog.
    local_workers: int = 1
    progress_interval_s: float = 30.0  # a progress log line at most this often (per worker)
    alert_min_images: int = 5  # shards with fewer published images are not judged
    alert_zero_median: float = 3.0  # warn on an image with 0 detections if the shard median >= this
    alert_rate_drop: float = 0.3  # warn on a shard whose rate < this x the run's median shard rate

    def _validate(self, where: str) -> None:
        _range(f"{where}.s2_level", self.s2_level, 0, 30)
        if self.accelerator and not self.accelerator.startswith("type:"):
            raise ConfigError(
                f"{where}.accelerator: {self.accelerator!r} must look like "
                "'type:nvidia-l4;count:1;install-nvidia-driver' (or be empty)"
            )
        _range(f"{where}.local_workers", self.local_workers, 1, 256)
        _range(f"{where}.progress_interval_s", self.progress_interval_s, 0.0, 86400.0)
        _range(f"{where}.alert_min_images", self.alert_min_images, 1, 10**9)
        _range(f"{where}.alert_zero_median", self.alert_zero_median, 0.0, 10**6)
        _range(f"{where}.alert_rate_drop", self.alert_rate_drop, 0.0, 1.0)


@dataclass(frozen=True)
class BreakerConfig:
    """The run-level circuit breaker (:mod:`redact.pipeline.breaker`): publication of the whole
    run stops when, among at least ``min_images`` images processed (skipped ones not counted),
    the share quarantined exceeds ``max_quarantined_share`` or the share on which the detectors
    scored no candidate at all (down to the models' score floors) exceeds
    ``max_no_candidate_share``. Absolute bounds: a run cannot judge itself by its own median.
    Street imagery nearly always yields low-score candidates; a run where most images yield
    none has a broken detector, whatever the canary said."""

    min_images: int = 20
    max_quarantined_share: float = 0.5
    max_no_candidate_share: float = 0.8

    def _validate(self, where: str) -> None:
        _range(f"{where}.min_images", self.min_images, 1, 10**9)
        _range(f"{where}.max_quarantined_share", self.max_quarantined_share, 0.0, 1.0)
        _range(f"{where}.max_no_candidate_share", self.max_no_candidate_share, 0.0, 1.0)


def _default_veto_below() -> dict[ObjectClass, float]:
    return {ObjectClass.FACE: 0.005, ObjectClass.LICENSE_PLATE: 0.005}


def _default_veto_min_elevation() -> dict[ObjectClass, float]:
    return {ObjectClass.LICENSE_PLATE: 20.0}


@dataclass(frozen=True)
class PostprocessConfig:
    """Stage 2: the learned post-processor that rescores every merged candidate
    (:mod:`redact.postprocess`). ``model`` names a registry entry ("" with no ``path`` = stage
    1 only); ``path`` (+ ``classes``, its output columns) names an ONNX file directly.

    With a model the per-class ``thresholds`` (blur, review) apply to the FINAL score: the
    stage-2 score (a veto), or ``max(stage 1, stage 2)`` for candidates whose stage-1 score is
    at least ``stage1_keep``, whose box covers less than ``veto_min_area`` of the image,
    whose stage-2 score is at least their class's ``veto_below``, or whose box lies less than
    their class's ``veto_min_elevation`` (degrees) above a panorama's horizon; the class
    ``floor`` applies to the stage-1 score. At load the model's own
    stage-2 score of every required detector-canary object (``canary`` folder, "" = the
    packaged one; stage-1 feature ``canary_stage1_score``, which must lie below
    ``stage1_keep``) must reach its class's blur threshold. Changes
    published pixels: hashed."""

    model: str = ""
    path: str = ""
    classes: tuple[ObjectClass | None, ...] = ()
    # The operating point of rescorer 0.3.0, chosen on its validation split and on non-dev
    # background panoramas, never on the dev sets (models/cards/redact-rescorer-0.3.0.md):
    # stage 1 >= 0.5 keeps its score (0.1 until 0.3.0);
    stage1_keep: float = 0.5
    # stage 2 may lower the score only of a candidate whose box covers at least this share of
    # the image's pixels (0 = of any): a blur costs its area, and the small, distant candidates
    # cost least and are the ones stage 1 finds least surely (2.5e-5: 800 px at 8000x4000, a
    # 28x28 box; on the background panoramas it blurs 0.02-0.05 % of the image more). The
    # canary judges the model's own scores, without any fusion rule;
    veto_min_area: float = 2.5e-5
    # stage 2 vetoes (its score replaces stage 1's) only where its score is below its class's
    # value here; at or above it the candidate keeps max(stage 1, stage 2). A class not listed
    # is never vetoed (0 = never, 1.0 = any score);
    veto_below: Mapping[ObjectClass, float] = field(default_factory=_default_veto_below)
    # and a candidate of a class listed here only where its box's lowest edge lies at least
    # this many degrees above the horizon of a panorama (never on a photo, which has no
    # horizon; -90: anywhere, photos included; a class not listed: anywhere). Licence plates: a plate 0.3-1.5 m above the road
    # seen from a camera ~2.5 m up is below the horizon on level ground, and at most ~19 deg
    # above it on the steepest public streets (35 % grade), so 20 deg never touches a road
    # vehicle's plate, while about 30 % of the plate false-positive area on the background
    # panoramas (facades, signs, trees) lies above it. Everywhere else plates are never
    # vetoed: a plate veto below the horizon lost near ground-plane plates on the synthetic
    # panoramas (scripts/synth_pano_recall.py --plates, docs/evaluation.md).
    veto_min_elevation: Mapping[ObjectClass, float] = field(
        default_factory=_default_veto_min_elevation
    )
    threads: int = 1  # ONNX Runtime intra-op threads (0 = its default)
    canary: str = ""
    canary_stage1_score: float = 0.05

    @property
    def enabled(self) -> bool:
        return bool(self.model or self.path)

    def _validate(self, where: str) -> None:
        _range(f"{where}.stage1_keep", self.stage1_keep, 0.0, 1.0)
        _range(f"{where}.veto_min_area", self.veto_min_area, 0.0, 1.0)
        for c, v in self.veto_below.items():
            _range(f"{where}.veto_below.{c.label}", v, 0.0, 1.0)
        for c, v in self.veto_min_elevation.items():
            _range(f"{where}.veto_min_elevation.{c.label}", v, -90.0, 90.0)
        _range(f"{where}.threads", self.threads, 0, 1024)
        _range(f"{where}.canary_stage1_score", self.canary_stage1_score, 0.0, 1.0)
        # keep 0: stage 2 can never lower a score, the canary passes trivially (safe for recall)
        keep, canary = _float32(self.stage1_keep), _float32(self.canary_stage1_score)
        if self.enabled and 0.0 < keep <= canary:  # float32: what fuse() compares
            raise ConfigError(
                f"{where}.canary_stage1_score ({self.canary_stage1_score:g}) must be below "
                f"stage1_keep ({self.stage1_keep:g}): at or above it stage 2 cannot lower the "
                "score and the canary tests nothing"
            )
        if self.path and not self.classes:
            raise ConfigError(f"{where}: a post-processor given by 'path' needs 'classes'")
        if self.classes and not self.path:
            raise ConfigError(f"{where}.classes: only with 'path' (a registry model has its own)")


@dataclass(frozen=True)
class RenditionsConfig:
    """What a viewer or a map loads besides the one big copy (:mod:`redact.renditions`,
    docs/publishing.md): every rendition is made from the PUBLISHED bytes in the same job and
    written under ``DST/<relative path>.renditions/``. Off by default (configs/publish.yaml
    turns it on). Changes published files: hashed.

    ``thumbnail_px``: longest side of ``thumbnail.jpg`` (every image). ``preview_px``: width of
    the equirectangular ``preview.jpg``. ``tile_px``: square tile size of both pyramids.
    ``cube_face_px``: cube face size; 0 = auto (``tile_px`` times the power of two nearest to
    ``width / pi / tile_px``, so every cube level is whole tiles, as Marzipano needs), else
    ``tile_px`` times a power of two, or at most ``tile_px`` (one tile per face). Never
    upscaled past the source: a smaller image keeps its size. ``pyramid``: the
    equirectangular tile pyramid; ``cube``: the cube faces, their tile pyramid and
    ``viewer.json`` (panoramas only). ``jpeg_quality``: of every rendition (1-100)."""

    enabled: bool = False
    thumbnail_px: int = 512
    preview_px: int = 2048
    tile_px: int = 512
    cube_face_px: int = 0
    pyramid: bool = True
    cube: bool = True
    jpeg_quality: int = 85

    def _validate(self, where: str) -> None:
        _range(f"{where}.thumbnail_px", self.thumbnail_px, 16, 8192)
        _range(f"{where}.preview_px", self.preview_px, 16, 16384)
        _range(f"{where}.tile_px", self.tile_px, 64, 4096)
        _range(f"{where}.cube_face_px", self.cube_face_px, 0, 32768)
        _range(f"{where}.jpeg_quality", self.jpeg_quality, 1, 100)
        n = self.cube_face_px
        if n > self.tile_px and (n % self.tile_px or (n // self.tile_px) & (n // self.tile_px - 1)):
            raise ConfigError(
                f"{where}.cube_face_px: {n} must be 0 (auto), at most tile_px ({self.tile_px}) "
                "or tile_px times a power of two (every cube level whole tiles)"
            )


# Sections that do not affect the published output: excluded from the config hash.
UNHASHED_SECTIONS = ("season", "breaker")


@dataclass(frozen=True)
class RedactConfig:
    """Everything that determines what a run blurs. Its :meth:`hash` goes in the manifest."""

    models: tuple[ModelConfig, ...] = ()
    tiling: TilingConfig = field(default_factory=TilingConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    thresholds: Mapping[ObjectClass, ClassThresholds] = field(default_factory=_default_thresholds)
    blur: BlurConfig = field(default_factory=BlurConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    io: IOConfig = field(default_factory=IOConfig)
    # The metadata allowlist of published copies (defaults and docs: redact/io/metadata.py).
    metadata: MetadataPolicy = field(default_factory=MetadataPolicy)
    season: SeasonConfig = field(default_factory=SeasonConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    renditions: RenditionsConfig = field(default_factory=RenditionsConfig)

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("models: at least one detector is needed")
        for i, m in enumerate(self.models):
            m._validate(f"models[{i}]")
        missing = [c.label for c in ObjectClass if c not in self.thresholds]
        if missing:
            raise ConfigError(f"thresholds: missing classes {missing}")
        for c, t in self.thresholds.items():
            t._validate(f"thresholds.{c.label}")
        for name in (
            "tiling",
            "merge",
            "blur",
            "output",
            "io",
            "metadata",
            "season",
            "breaker",
            "postprocess",
            "renditions",
        ):
            getattr(self, name)._validate(name)

    @property
    def score_floor(self) -> float:
        """Lowest score any class keeps (detections below it are never recorded)."""
        return min(t.floor for t in self.thresholds.values())

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys) of the whole config."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def hash(self, projection: Projection | None = None) -> str:
        """sha256 hex of the canonical JSON of every section that affects the output
        (:data:`UNHASHED_SECTIONS` left out): configs that blur alike hash alike.

        With a ``projection``, only what affects images of that projection is hashed:
        panoramas leave out ``tiling.perspective``, photos ``tiling.levels`` and the stage-2
        elevation limits, which act on photos only as "never vetoed" (a photo-only change must
        not make every panorama of a season outdated, nor the reverse). The three hashes of one
        config always differ (different keys are hashed). ``None`` or ``AUTO``: everything.
        """
        data = {k: v for k, v in self.to_dict().items() if k not in UNHASHED_SECTIONS}
        if not self.renditions.enabled:  # no renditions: hashes as before the section existed
            data.pop("renditions")
        if not self.postprocess.enabled:  # stage 1 alone: its settings change no pixel
            data.pop("postprocess")
        # float32 detectors hash as before ``precision`` existed (no image becomes outdated)
        data["models"] = [
            {k: v for k, v in m.items() if not (k == "precision" and v == Precision.FP32.value)}
            for m in data["models"]
        ]
        if projection in _UNUSED_TILING:  # None and AUTO: every section
            unused = _UNUSED_TILING[projection]
            data["tiling"] = {k: v for k, v in data["tiling"].items() if k != unused}
            data["hashed_for"] = projection.value
        if projection is Projection.PERSPECTIVE and "postprocess" in data:
            data["postprocess"] = _photo_postprocess(data["postprocess"])
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def projection_hashes(self) -> dict[str, str]:
        """``{projection value: hash(projection)}`` for panoramas and photos."""
        return {p.value: self.hash(p) for p in _UNUSED_TILING}

    def current_hashes(self) -> frozenset[str]:
        """Every config hash under which an image published now counts as current: each
        projection's, and the whole config's (what rows and markers recorded before hashes
        were per projection: an unchanged config leaves those current too)."""
        return frozenset({self.hash(), *self.projection_hashes().values()})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RedactConfig:
        """Build from plain data, merged over the code's defaults (the one source of defaults:
        a file sets only what it changes, down to a single key of one class)."""
        try:
            return _build(cls, _deep_merge(_plain_defaults(), _canonical_classes(data)), "")
        except ConfigError:
            raise
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from e

    @classmethod
    def load(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> RedactConfig:
        """Load a YAML config file (following ``extends:``), then apply ``overrides``."""
        data = _load_yaml_chain(Path(path), seen=())
        if overrides:
            data = _deep_merge(data, overrides)
        return cls.from_dict(data)


# The tiling settings that images of each projection never use (left out of their hash).
_UNUSED_TILING: dict[Projection, str] = {
    Projection.EQUIRECTANGULAR: "perspective",
    Projection.PERSPECTIVE: "levels",
}


def _photo_postprocess(pp: Mapping[str, Any]) -> dict[str, Any]:
    """The ``postprocess`` section (plain data, class labels as keys) as it acts on photos: a
    photo has no horizon, so a class with a ``veto_min_elevation`` above -90 deg is never
    vetoed there, like a class whose ``veto_below`` is 0 or absent, and the limits themselves
    change no photo pixel (a panorama-only change must not make every photo outdated)."""
    out = dict(pp)
    elevation = out.pop("veto_min_elevation", None) or {}
    out["veto_below"] = {
        c: v
        for c, v in (out.get("veto_below") or {}).items()
        if v > 0.0 and elevation.get(c, -90.0) <= -90.0
    }
    return out


# --- helpers ---------------------------------------------------------------------------------


def _plain_defaults() -> dict[str, Any]:
    """Every defaulted section of :class:`RedactConfig` as plain data (models have none)."""
    return {
        f.name: _to_plain(f.default_factory())
        for f in dataclasses.fields(RedactConfig)
        if f.default_factory is not dataclasses.MISSING
    }


# Mappings keyed by object class: their keys are canonicalised ("plate" -> "license_plate")
# before merging, so that an alias overrides the default entry instead of sitting beside it.
_CLASS_KEYED = (
    ("thresholds",),
    ("blur", "shapes"),
    ("blur", "class_dilate"),
    ("blur", "mode"),
    ("blur", "strength"),
    ("postprocess", "veto_below"),
    ("postprocess", "veto_min_elevation"),
)
# Per-class keys that also take one value for every class (``blur: {mode: pixelate}``).
_ONE_FOR_ALL = ("mode", "strength")


def _canonical_classes(data: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(data)
    blur = out.get("blur")
    if isinstance(blur, Mapping) and any(
        k in blur and isinstance(blur[k], str) for k in _ONE_FOR_ALL
    ):
        out["blur"] = {
            k: {c.label: v for c in ObjectClass} if k in _ONE_FOR_ALL and isinstance(v, str) else v
            for k, v in blur.items()
        }
    for path in _CLASS_KEYED:
        parent: Any = out
        for key in path[:-1]:
            if not isinstance(parent.get(key), Mapping):
                break
            parent[key] = dict(parent[key])
            parent = parent[key]
        else:
            leaf = parent.get(path[-1])
            if isinstance(leaf, Mapping):
                parent[path[-1]] = {_class_label(k): v for k, v in leaf.items()}
    return out


def _class_label(key: Any) -> Any:
    try:
        return ObjectClass.parse(str(key)).label
    except ValueError:
        return key  # left for _build to reject with the key's path


def _range(where: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise ConfigError(f"{where}: {value!r} is outside [{lo}, {hi}]")


def _float32(v: float) -> float:
    """``v`` rounded to float32 (the precision the runtime compares scores in)."""
    return float(struct.unpack("f", struct.pack("f", float(v)))[0])


def _load_yaml_chain(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'extends' cycle")
    data = dict(read_yaml_mapping(path, ConfigError, "config"))
    parent = data.pop("extends", None)
    if parent is None:
        return data
    base = _load_yaml_chain(path.parent / str(parent), (*seen, path))
    return _deep_merge(base, data)


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, ObjectClass):
        return obj.label
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return {str(_to_plain(k)): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _build(tp: Any, value: Any, where: str) -> Any:
    """Convert plain YAML data into the annotated type ``tp``, validating as it goes."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    label = where or "config"
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for alt in inner[:-1]:  # the first alternative that takes the value, else the last's error
            try:
                return _build(alt, value, where)
            except ConfigError:
                continue
        return _build(inner[-1], value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{label}: expected a mapping, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        removed: Mapping[str, str] = getattr(tp, "_removed_keys", {})
        gone = sorted(set(value) & set(removed))
        if gone:
            k = gone[0]
            raise ConfigError(f"{where}.{k}: {removed[k]}" if where else f"{k}: {removed[k]}")
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfigError(f"{label}: unknown key(s) {unknown} (known: {sorted(names)})")
        kwargs = {k: _build(hints[k], v, f"{where}.{k}" if where else k) for k, v in value.items()}
        try:
            return tp(**kwargs)  # type: ignore[operator]
        except TypeError as e:
            raise ConfigError(f"{label}: {e}") from e
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{label}: expected a list, got {type(value).__name__}")
        return tuple(_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict, typing.Mapping, typing.Dict):  # noqa: UP006
        if not isinstance(value, Mapping):
            raise ConfigError(f"{label}: expected a mapping, got {type(value).__name__}")
        return {
            _build(args[0], k, f"{where}.{k}"): _build(args[1], v, f"{where}.{k}")
            for k, v in value.items()
        }
    if tp is ObjectClass:
        if isinstance(value, ObjectClass):
            return value
        try:
            return ObjectClass.parse(str(value))
        except ValueError as e:
            raise ConfigError(f"{label}: {e}") from None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        try:
            return tp(str(value).lower())
        except ValueError:
            valid = ", ".join(str(m.value) for m in tp)
            raise ConfigError(f"{label}: {value!r} is not one of: {valid}") from None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{label}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{label}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{label}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{label}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{label}: unsupported config type {tp!r}")  # pragma: no cover
