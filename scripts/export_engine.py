"""Build a TensorRT 10 engine (INT8 by default) from a YOLOv8 ONNX detector.

Run on the GPU machine the engine will serve on (engines are specific to the GPU model and
TensorRT version); needs the [tensorrt] extra. See docs/tensorrt.md.

    python scripts/export_engine.py --calib-dir /data/calib_panoramas
    python scripts/export_engine.py --fp16-only   # comparison engine, no calibration
    python scripts/export_engine.py --fp32

Writes ``<out-dir>/<name>-<version>-<precision>.engine`` and ``<same>.json`` (sha256,
precision, profile, TensorRT version, calibration counts). INT8 calibration uses
``IInt8EntropyCalibrator2`` over tiles made by the project's own tiler and preprocessed
exactly like the pipeline (:func:`redact.detection.base.preprocess`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from redact.config import TilingConfig  # noqa: E402  (after the repo is on sys.path)

DEFAULT_ONNX = REPO / "models" / "redact-faceplate-yolov8n-0.3.1.onnx"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
MIN_CALIB_TILES = 500


@dataclass
class CalibrationStats:
    """What the calibration generator consumed: images opened, tiles yielded."""

    images: int = 0
    tiles: int = 0


def calibration_batches(
    calib_dir: Path,
    *,
    tile_size: int,
    batch_size: int,
    max_tiles: int,
    stats: CalibrationStats | None = None,
    tiling: TilingConfig | None = None,
    equirect_min_width: int | None = None,
) -> Iterator[np.ndarray]:
    """Preprocessed calibration batches from the images in ``calib_dir`` (sorted, recursive).

    Panoramas (the pipeline's ``auto`` rule: GPano XMP not read here, so 2:1 images at least
    ``equirect_min_width`` px wide, default the pipeline's) are cut with
    ``plan_panorama_tiles``, others
    with ``plan_perspective_tiles`` (``tiling``: default ``TilingConfig(tile_size=tile_size)``,
    the pipeline default); tiles are rendered with ``render_tile`` and preprocessed
    with ``redact.detection.base.preprocess``.

    Yields:
        (batch_size, 3, tile_size, tile_size) float32 arrays in [0, 1]; stops after
        ``max_tiles`` tiles (a final partial batch is dropped: calibration needs full ones).

    Raises:
        ValueError: bad sizes, or an image that cannot be decoded.
    """
    import cv2

    from redact.classes import Projection
    from redact.config import IOConfig
    from redact.detection.base import preprocess
    from redact.pipeline import resolve_projection
    from redact.tiling import RemapCache, plan_panorama_tiles, plan_perspective_tiles, render_tile

    min_w = IOConfig().equirect_min_width if equirect_min_width is None else equirect_min_width

    if batch_size < 1 or max_tiles < 1 or tile_size < 32:
        raise ValueError(f"bad sizes: batch {batch_size}, max_tiles {max_tiles}, tile {tile_size}")
    stats = stats if stats is not None else CalibrationStats()
    tiling = tiling if tiling is not None else TilingConfig(tile_size=tile_size)
    if tiling.tile_size != tile_size:
        raise ValueError(f"tiling.tile_size {tiling.tile_size} != tile_size {tile_size}")
    cache = RemapCache()
    paths = sorted(p for p in Path(calib_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    pending: list[np.ndarray] = []
    limit = max_tiles - max_tiles % batch_size
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot decode calibration image {path}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        pano = resolve_projection(Projection.AUTO, w, h, None, min_w) is Projection.EQUIRECTANGULAR
        tiles = plan_panorama_tiles(w, h, tiling) if pano else plan_perspective_tiles(w, h, tiling)
        stats.images += 1
        for tile in tiles:
            pending.append(render_tile(rgb, tile, cache))
            if len(pending) == batch_size:
                stats.tiles += batch_size
                yield preprocess(pending, tile_size, np.float32)
                pending = []
                if stats.tiles >= limit:
                    return


def parse_name_version(onnx: Path) -> tuple[str, str]:
    """``redact-faceplate-yolov8n-0.1.0.onnx`` -> (``redact-faceplate-yolov8n``, ``0.1.0``)."""
    stem = onnx.stem
    name, _, version = stem.rpartition("-")
    if name and version[:1].isdigit():
        return name, version
    return stem, "0"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--onnx", type=Path, default=DEFAULT_ONNX, help="source ONNX model")
    ap.add_argument("--out-dir", type=Path, default=REPO / "models")
    ap.add_argument("--name", default=None, help="default: from the ONNX file name")
    ap.add_argument("--version", default=None, help="default: from the ONNX file name")
    ap.add_argument("--calib-dir", type=Path, help="folder of real images (INT8 only)")
    ap.add_argument("--calib-tiles", type=int, default=512, help=f">= {MIN_CALIB_TILES}")
    ap.add_argument("--calib-batch", type=int, default=8, help="tiles per calibration batch")
    ap.add_argument(
        "--calib-cache",
        type=Path,
        default=None,
        help="calibration cache (read if present, written after calibration); "
        "default <out-dir>/<name>-<version>-int8.calib",
    )
    ap.add_argument("--min-batch", type=int, default=1)
    ap.add_argument("--opt-batch", type=int, default=8)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--workspace-gib", type=float, default=4.0)
    prec = ap.add_mutually_exclusive_group()
    prec.add_argument("--fp16-only", action="store_true", help="FP16 engine, no INT8")
    prec.add_argument("--fp32", action="store_true", help="FP32 engine (reference)")
    args = ap.parse_args(argv)
    if not 1 <= args.min_batch <= args.opt_batch <= args.max_batch:
        ap.error("need 1 <= --min-batch <= --opt-batch <= --max-batch")
    args.precision = "fp32" if args.fp32 else "fp16" if args.fp16_only else "int8"
    if args.precision == "int8":
        if args.calib_tiles < MIN_CALIB_TILES:
            ap.error(f"--calib-tiles must be >= {MIN_CALIB_TILES}")
        if args.calib_dir is None:
            ap.error("INT8 needs --calib-dir (or use --fp16-only / --fp32)")
    if args.name is None or args.version is None:
        name, version = parse_name_version(args.onnx)
        args.name = args.name or name
        args.version = args.version or version
    return args


def _make_calibrator(
    trt: Any, cudart: Any, batches: Iterator[np.ndarray], batch_size: int, cache_path: Path
) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding ``batches`` through one device buffer."""

    def check(res: Any) -> Any:
        err = res[0] if isinstance(res, tuple) else res
        if err != cudart.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA call failed: {err}")
        return res[1] if isinstance(res, tuple) and len(res) > 1 else None

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.ptr: int | None = None
            self.batches = 0

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            x = next(batches, None)
            if x is None:
                return None
            x = np.ascontiguousarray(x, dtype=np.float32)
            if self.ptr is None:
                self.ptr = int(check(cudart.cudaMalloc(x.nbytes)))
            kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            check(cudart.cudaMemcpy(self.ptr, x.ctypes.data, x.nbytes, kind))
            self.batches += 1
            return [self.ptr]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            cache_path.write_bytes(bytes(cache))

    return Calibrator()


def build(args: argparse.Namespace) -> Path:
    """Build and write the engine + sidecar; returns the engine path."""
    try:
        import tensorrt as trt
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            import tensorrt as trt
            from cuda import cudart  # older cuda-python
        except ImportError as e:
            raise SystemExit(f"needs the [tensorrt] extra (tensorrt>=10, cuda-python): {e}") from e

    logger = trt.Logger(trt.Logger.INFO)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    onnx_bytes = args.onnx.read_bytes()
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SystemExit(f"cannot parse {args.onnx}: {errors}")
    if network.num_inputs != 1:
        raise SystemExit(f"expected one input, got {network.num_inputs}")
    inp = network.get_input(0)
    size = int(inp.shape[2])
    if size < 1 or inp.shape[3] != size:
        raise SystemExit(f"need a static square input, got {tuple(inp.shape)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(args.workspace_gib * 2**30))
    shapes = {k: (getattr(args, f"{k}_batch"), 3, size, size) for k in ("min", "opt", "max")}
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)

    stats = CalibrationStats()
    cache_path = args.calib_cache or args.out_dir / f"{args.name}-{args.version}-int8.calib"
    if args.precision in ("int8", "fp16"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8: fp16 fallback for non-INT8 layers
    if args.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        calib_shape = (args.calib_batch, 3, size, size)
        calib_profile = builder.create_optimization_profile()
        calib_profile.set_shape(inp.name, calib_shape, calib_shape, calib_shape)
        config.set_calibration_profile(calib_profile)
        batches = calibration_batches(
            args.calib_dir,
            tile_size=size,
            batch_size=args.calib_batch,
            max_tiles=args.calib_tiles,
            stats=stats,
        )
        config.int8_calibrator = _make_calibrator(
            trt, cudart, batches, args.calib_batch, cache_path
        )

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SystemExit("TensorRT engine build failed (see the log above)")
    if args.precision == "int8" and not cache_path.is_file() and stats.tiles < MIN_CALIB_TILES:
        raise SystemExit(
            f"only {stats.tiles} calibration tiles in {args.calib_dir}; need >= {MIN_CALIB_TILES}"
        )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    engine_path = args.out_dir / f"{args.name}-{args.version}-{args.precision}.engine"
    data = bytes(serialized)
    engine_path.write_bytes(data)
    sidecar = {
        "engine": engine_path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "precision": args.precision,
        "profile": {"input": inp.name, **{k: list(v) for k, v in shapes.items()}},
        "tensorrt_version": trt.__version__,
        "onnx": str(args.onnx),
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "calibration_images": stats.images,
        "calibration_tiles": stats.tiles,
        "calibration_cache": str(cache_path) if args.precision == "int8" else None,
    }
    engine_path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return engine_path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = build(args)
    print(f"wrote {path} and {path.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
