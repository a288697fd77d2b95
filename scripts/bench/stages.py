"""Per-stage timing of the redaction of one image, in-process.

Calls the library functions the Beam pipeline calls, in the same order
(:class:`redact.pipeline.prepare.PrepareImage` then RunInference then
:func:`redact.pipeline.detect.to_image_space` then :func:`redact.core.redact_image`), with a
timer around each stage:

``read`` (bytes + sha256), ``decode``, ``tile`` (plan + render every tile, remap maps cached),
``infer`` (the real detector handler/ensemble, in batches of its ``batch_size``), ``merge``
(tile -> image mapping, merge, thresholds), ``decode2`` (publication decodes the original
bytes a second time), ``blur``, ``encode`` (these four are :func:`redact.core.redact_image`, the
one core the pipeline's Publish step calls, timed by its own clock), ``write``.

One-off costs (model load, the first render of a tile layout which builds its remap maps) are
measured separately, so the per-image figures are the steady state of a long job.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from redact.classes import ObjectClass, Projection
from redact.config import RedactConfig
from redact.core import Redacted, redact_image
from redact.detections import Detections
from redact.io.codec import DecodedImage, decode_image
from redact.io.storage import read_bytes, write_atomic
from redact.manifest import RunInfo
from redact.pipeline import resolve_projection
from redact.pipeline.detect import to_image_space
from redact.records import ImageRecord, TileKey, TileResult
from redact.tiling import (
    RemapCache,
    Tile,
    plan_panorama_tiles,
    plan_perspective_tiles,
    render_tile,
)

STAGES = ("read", "decode", "tile", "infer", "merge", "decode2", "blur", "encode", "write")
# Stages timed by the bench's own clock; the others come from redact_image's timings.
CLOCKED = ("read", "decode", "tile", "infer", "core", "write")


@dataclass
class ImageRun:
    """Stage timings (seconds; median over repeats) and outputs of one image."""

    path: str
    name: str
    width: int
    height: int
    projection: str
    tiles: int
    timings_s: dict[str, float]
    blurred: dict[str, int]  # class label -> boxes blurred (BLUR + REVIEW decisions)
    input_bytes: int
    output_bytes: int
    untouched_psnr_db: float | None  # re-encoded vs original decode, outside the blur mask
    # same, re-encoding a fast_upsample decode: what redact_image does, so equal to the above
    untouched_psnr_fast_upsample_db: float | None
    qtables_exact: bool | None  # the re-encode uses exactly the original's quant tables
    blurred_xyxy: npt.NDArray[np.float32] = field(repr=False)
    blurred_class: npt.NDArray[np.int32] = field(repr=False)
    all_runs: list[dict[str, float]] = field(default_factory=list, repr=False)

    @property
    def total_s(self) -> float:
        return float(sum(self.timings_s[s] for s in STAGES))

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "projection": self.projection,
            "tiles": self.tiles,
            "timings_s": self.timings_s,
            "total_s": self.total_s,
            "s_per_megapixel": self.total_s / self.megapixels,
            "blurred": self.blurred,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "untouched_psnr_db": self.untouched_psnr_db,
            "untouched_psnr_fast_upsample_db": self.untouched_psnr_fast_upsample_db,
            "qtables_exact": self.qtables_exact,
            "runs": self.all_runs,
            "blurred_boxes": [
                [*(round(float(v), 1) for v in box), int(c)]
                for box, c in zip(self.blurred_xyxy, self.blurred_class, strict=True)
            ],
        }


def plan_tiles(
    cfg: RedactConfig, decoded: DecodedImage, projection: Projection
) -> tuple[Tile, ...]:
    """The tiles the pipeline would render for this image."""
    w, h = decoded.width, decoded.height
    mw = cfg.io.equirect_min_width
    if resolve_projection(projection, w, h, decoded.xmp, mw) is Projection.EQUIRECTANGULAR:
        return plan_panorama_tiles(w, h, cfg.tiling)
    return plan_perspective_tiles(w, h, cfg.tiling)


def psnr_outside(
    a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8], mask: npt.NDArray[np.bool_]
) -> float | None:
    """PSNR (dB) of ``b`` against ``a`` (H, W, C) over the pixels where ``mask`` (H, W) is
    False; ``inf`` when identical, None when no pixel is outside the mask."""
    keep = ~mask
    n = int(np.count_nonzero(keep))
    if n == 0:
        return None
    diff = a.astype(np.int16) - b.astype(np.int16)
    sq = np.einsum("ijk,ijk->ij", diff, diff, dtype=np.int64)
    mse = float(sq[keep].sum()) / (n * a.shape[2])
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


class StageBench:
    """Runs images through the stages with one loaded detector and one remap cache.

    Args:
        cfg: the redaction config.
        handler: the detector ModelHandler (``make_detector_handler``); loaded here.
        out_dir: where the published copies are written.
        projection: as ``redact run --projection``.
    """

    def __init__(
        self,
        cfg: RedactConfig,
        handler: Any,
        out_dir: Path,
        projection: Projection = Projection.AUTO,
    ) -> None:
        self.cfg = cfg
        self.handler = handler
        self.out_dir = out_dir
        self.projection = projection
        self.cache = RemapCache()
        t0 = time.perf_counter()
        self.model = handler.load_model()
        self.model_load_s = time.perf_counter() - t0
        self.batch_size = int(handler.batch_elements_kwargs().get("max_batch_size") or 1)
        self.layout_build_s: dict[str, float] = {}  # "WxH" -> first render of its tiles (s)
        self._warm = False
        self.run_info = RunInfo(
            run_id="bench", models=[], config_hash=cfg.hash(), thresholds=[], redact_version=""
        )

    def _render(self, decoded: DecodedImage, tiles: Sequence[Tile]) -> list[np.ndarray]:
        return [render_tile(decoded.pixels, t, self.cache) for t in tiles]

    def warm_up(self, path: str) -> None:
        """Build the remap maps of this image's tile layout (timed: a one-off cost); the first
        time, also run every stage once untimed (lazy imports, ONNX Runtime allocations)."""
        data = read_bytes(path)
        decoded = decode_image(data, max_pixels=self.cfg.io.max_pixels)
        key = f"{decoded.width}x{decoded.height}"
        if key in self.layout_build_s:
            return
        tiles = plan_tiles(self.cfg, decoded, self.projection)
        t0 = time.perf_counter()
        self._render(decoded, tiles)
        self.layout_build_s[key] = time.perf_counter() - t0
        if not self._warm:
            self.run_once(path)
            self._warm = True

    def infer(self, rendered: Sequence[np.ndarray]) -> list[Any]:
        """PredictionResults for every tile, batch by batch, like RunInference does."""
        out: list[Any] = []
        for i in range(0, len(rendered), self.batch_size):
            out.extend(self.handler.run_inference(rendered[i : i + self.batch_size], self.model))
        return out

    def run_once(self, path: str) -> tuple[dict[str, float], dict[str, Any]]:
        """One pass over the stages -> (timings in s, outputs)."""
        cfg = self.cfg
        clock: list[float] = [time.perf_counter()]

        def lap() -> None:
            clock.append(time.perf_counter())

        data = read_bytes(path, retries=cfg.io.read_retries, backoff_s=cfg.io.retry_backoff_s)
        sha = hashlib.sha256(data).hexdigest()
        lap()
        decoded = decode_image(data, max_pixels=cfg.io.max_pixels)
        lap()
        w, h = decoded.width, decoded.height
        projection = resolve_projection(
            self.projection, w, h, decoded.xmp, cfg.io.equirect_min_width
        )
        wrap = projection is Projection.EQUIRECTANGULAR
        tiles = plan_tiles(cfg, decoded, projection)
        rendered = self._render(decoded, tiles)
        lap()
        preds = self.infer(rendered)
        lap()
        mapped = [
            to_image_space((TileKey(path, i, t, w, h, wrap), p))[1]
            for i, (t, p) in enumerate(zip(tiles, preds, strict=True))
        ]
        ok = [r for r in mapped if isinstance(r, TileResult)]
        if len(ok) != len(tiles):
            raise RuntimeError(f"{path}: {len(tiles) - len(ok)} tile(s) failed to map")
        record = ImageRecord(
            uri=path,
            relative_path=Path(path).name,
            output_uri=str(self.out_dir / Path(path).name),
            sha256=sha,
            width=w,
            height=h,
            format=decoded.format.value,
            projection=projection,
            n_tiles=len(tiles),
            timings_s={},
        )
        # The one redaction core the pipeline's Publish step calls (merge, decide, re-decode,
        # blur, encode); its own timings split the merge/decode2/blur/encode stages.
        out = redact_image(data, [r.detections for r in ok], cfg, record, self.run_info)
        core_t = dict(out.row["timings_s"])
        lap()
        write_atomic(record.output_uri, out.data)
        lap()
        timings = {s: clock[i + 1] - clock[i] for i, s in enumerate(CLOCKED)}
        del timings["core"]
        timings.update(
            merge=core_t["merge"], decode2=core_t["decode"], blur=core_t["blur"],
            encode=core_t["encode"],
        )  # fmt: skip
        outputs = {
            "decoded": decoded,
            "mask": out.mask,
            "encoded": out.data,
            "data": data,
            "tiles": len(tiles),
            "projection": projection,
            "to_blur": out.blurred,
            "decisions": list(out.decisions),
            "redacted": out,
        }
        return timings, outputs

    def run(self, path: str, repeat: int = 1) -> ImageRun:
        """Warm up (once per tile layout), then ``repeat`` timed passes; medians per stage."""
        self.warm_up(path)
        runs: list[dict[str, float]] = []
        outputs: dict[str, Any] = {}
        for _ in range(max(1, repeat)):
            timings, outputs = self.run_once(path)
            runs.append(timings)
        med = {s: statistics.median(r[s] for r in runs) for s in STAGES}
        decoded: DecodedImage = outputs["decoded"]
        to_blur: Detections = outputs["to_blur"]
        redacted: Redacted = outputs["redacted"]
        blurred = {
            ObjectClass.FACE.label: redacted.n_faces,
            ObjectClass.LICENSE_PLATE.label: redacted.n_plates,
        }
        psnr: float | None = None
        psnr_fast: float | None = None
        if decoded.format.value == "jpeg":
            again = decode_image(outputs["encoded"], max_pixels=self.cfg.io.max_pixels)
            psnr = psnr_outside(decoded.pixels, again.pixels, outputs["mask"])
            psnr_fast = psnr  # redact_image re-encodes from a fast_upsample decode
        return ImageRun(
            path=path,
            name=Path(path).name,
            width=decoded.width,
            height=decoded.height,
            projection=outputs["projection"].value,
            tiles=int(outputs["tiles"]),
            timings_s=med,
            blurred=blurred,
            input_bytes=len(outputs["data"]),
            output_bytes=len(outputs["encoded"]),
            untouched_psnr_db=psnr,
            untouched_psnr_fast_upsample_db=psnr_fast,
            qtables_exact=decoded.qtables_exact,
            blurred_xyxy=np.asarray(to_blur.xyxy, np.float32),
            blurred_class=np.asarray(to_blur.class_id, np.int32),
            all_runs=runs,
        )


def time_call(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Best wall time (s) of ``repeat`` calls of ``fn``."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
