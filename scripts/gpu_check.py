#!/usr/bin/env python3
"""One-shot GPU check (``scripts/gpu_check.sh OUTDIR`` runs this): engines, parity, speed.

Steps, each recorded in ``OUTDIR/gpu_check.json`` as soon as it ends (status ``ok``,
``skipped`` with the reason, or ``failed`` with the error), so a run cut short by its time
budget still leaves every finished figure behind:

1. ``env``: GPU (``nvidia-smi -L``), TensorRT / cuda-python / torch / torchvision versions,
   ONNX Runtime providers.
2. ``engines``: INT8 (calibrated by ``scripts/export_engine.py`` on tiles cut by the project's
   tiler from ``--calib-dir``; needs >= 500 tiles) and FP16 engines from the shipped ONNX.
3. ``parity``: ONNX Runtime vs each engine on real tiles (``--images``, default the sample
   shard): raw head difference (boxes + class scores) and, per class, the ONNX detections at
   the config's blur threshold that the engine also finds (same class, IoU >= 0.5) and
   their largest score change.
4. ``throughput``: tiles/s of each engine at batch 1/8/32/64 (host arrays in and out, as the
   handler runs them), ONNX Runtime at batch 8 for reference.
5. ``e2e``: panoramas/s, decode + render + detect of the sample panorama, with the CPU
   JPEG decoder (simplejpeg) and with nvJPEG (``torchvision.io.decode_jpeg(device="cuda")``).

GPU utilisation and memory (``nvidia-smi`` sampled every 0.25 s) are recorded per step.
Nothing here edits the accelerator's settings.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

SAMPLE = REPO / "tests" / "data" / "sample_shard"
DEFAULT_CALIB = REPO.parent / "shared" / "data" / "panoramas" / "amsterdam_street"
BATCHES = (1, 8, 32, 64)
MATCH_IOU = 0.5


class GpuSampler:
    """``nvidia-smi`` utilisation / memory every ``interval_s`` in a thread, split by phase."""

    def __init__(self, interval_s: float = 0.25, exe: str = "nvidia-smi") -> None:
        self.interval_s = interval_s
        self.exe = shutil.which(exe)
        self.samples: list[tuple[str, float, float]] = []  # (phase, util %, memory MiB)
        self.phase = "idle"
        self.error = "" if self.exe else f"{exe} not on PATH"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _query(self) -> tuple[float, float] | None:
        if self.exe is None:
            return None
        args = [
            self.exe,
            "--query-gpu=utilization.gpu,memory.used",
            "--format=csv,noheader,nounits",
        ]
        res = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
        if res.returncode != 0:
            self.error = f"nvidia-smi exit {res.returncode}: {res.stderr.strip()[:200]}"
            return None
        first = res.stdout.strip().splitlines()[0]  # GPU 0 only
        util, mem = (float(v) for v in first.split(",")[:2])
        return util, mem

    def _loop(self) -> None:
        while not self._stop.is_set():
            got = self._query()
            if got is None:
                return
            self.samples.append((self.phase, *got))
            self._stop.wait(self.interval_s)

    def enter(self, phase: str) -> None:
        """Start ``phase`` with one sample taken now: a step shorter than the sampling
        interval still has its GPU state recorded."""
        self.phase = phase
        if self.exe and not self.error:
            got = self._query()
            if got is not None:
                self.samples.append((phase, *got))

    def start(self) -> None:
        if self.exe:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def summary(self, phase: str) -> dict[str, Any]:
        """Mean / max utilisation (%) and max memory (MiB) of one phase."""
        got = [(u, m) for p, u, m in self.samples if p == phase]
        if not got:
            return {"samples": 0, "error": self.error} if self.error else {"samples": 0}
        utils = [u for u, _ in got]
        return {
            "samples": len(got),
            "util_mean_pct": round(statistics.fmean(utils), 1),
            "util_max_pct": max(utils),
            "memory_max_mib": max(m for _, m in got),
        }


class Report:
    """The JSON report, rewritten (atomically) after every step."""

    def __init__(self, out: Path, sampler: GpuSampler, deadline: float) -> None:
        self.out = out
        self.sampler = sampler
        self.deadline = deadline
        self.data: dict[str, Any] = {
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        }
        self.out.mkdir(parents=True, exist_ok=True)

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def step(self, name: str, fn: Callable[[], dict[str, Any]], need_s: float = 0.0) -> Any:
        """Run one step; record ok / skipped / failed with its figures and GPU use."""
        if self.left_s() < need_s:
            self.data[name] = {"status": "skipped", "reason": f"{self.left_s():.0f} s left"}
            self.save()
            return None
        self.sampler.enter(name)
        t0 = time.monotonic()
        try:
            res = fn()
            entry = {"status": "ok", **res}
        except Skip as e:
            res, entry = None, {"status": "skipped", "reason": str(e)}
        except Exception as e:  # recorded, and the next step still runs
            res = None
            entry = {
                "status": "failed",
                "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc()[-3000:],
            }
        self.sampler.phase = "idle"
        entry["seconds"] = round(time.monotonic() - t0, 2)
        entry["gpu"] = self.sampler.summary(name)
        self.data[name] = entry
        self.save()
        print(f"[gpu-check] {name}: {entry['status']} ({entry['seconds']} s)", flush=True)
        return res

    def save(self) -> None:
        tmp = self.out / "gpu_check.json.tmp"
        tmp.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        os.replace(tmp, self.out / "gpu_check.json")


class Skip(Exception):
    """A step that cannot run here (missing library, no engine): recorded as skipped."""


def _version(module: str) -> str | None:
    try:
        return str(getattr(importlib.import_module(module), "__version__", "?"))
    except Exception as e:  # any import failure means "not usable here"
        return f"unavailable: {type(e).__name__}: {e}"[:200]


def env_step() -> dict[str, Any]:
    import onnxruntime as ort

    smi = shutil.which("nvidia-smi")
    gpus = ""
    if smi:
        res = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False)
        gpus = res.stdout.strip() or res.stderr.strip()
    return {
        "gpus": gpus or "nvidia-smi not found",
        "tensorrt": _version("tensorrt"),
        "cuda_python": _version("cuda.bindings.runtime") or _version("cuda.cudart"),
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
    }


def calibration_folder(src: Path, labels: Path | None, dest: Path) -> Path:
    """Symlinks to the images of ``src`` that are not labelled dev images (never calibrate on
    what the engine is evaluated on)."""
    names: set[str] = set()
    if labels is not None and labels.is_file():
        names = set(json.loads(labels.read_text()))
    dest.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.rglob("*")):
        if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.name not in names:
            link = dest / p.name
            if not link.exists():
                link.symlink_to(p.resolve())
    return dest


def engines_step(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Build the INT8 and FP16 engines; a failed precision is recorded, the other still built."""
    import export_engine

    built: dict[str, Any] = {}
    for precision in ("int8", "fp16"):
        argv = ["--onnx", str(args.onnx), "--out-dir", str(out / "engines")]
        top = max(args.batches)
        argv += ["--min-batch", "1", "--opt-batch", str(min(32, top)), "--max-batch", str(top)]
        if precision == "fp16":
            argv.append("--fp16-only")
        else:
            if args.calib_dir is None or not Path(args.calib_dir).is_dir():
                built[precision] = {
                    "status": "skipped",
                    "reason": f"no --calib-dir ({args.calib_dir})",
                }
                continue
            calib = calibration_folder(Path(args.calib_dir), args.labels, out / "calib")
            argv += ["--calib-dir", str(calib), "--calib-tiles", str(args.calib_tiles)]
        t0 = time.monotonic()
        try:
            path = export_engine.build(export_engine.parse_args(argv))
        except (Exception, SystemExit) as e:  # SystemExit: export_engine's own errors
            built[precision] = {"status": "failed", "error": f"{type(e).__name__}: {e}"[:2000]}
            continue
        sidecar = json.loads(path.with_suffix(".json").read_text())
        built[precision] = {
            "status": "ok",
            "engine": str(path),
            "build_s": round(time.monotonic() - t0, 1),
            "sidecar": sidecar,
        }
    return {"engines": built}


def _onnx_handler(cfg: Any, registry: Any, batch: int) -> Any:
    from redact.detection.canary import blur_thresholds
    from redact.detection.ensemble import make_member_handler, member_canary

    mc = replace(cfg.models[0], batch_size=batch)
    spec = registry.resolve(mc)
    return make_member_handler(
        spec, mc, 0, blur_thresholds=blur_thresholds(cfg), canary=member_canary(mc, None)
    )


def _engine_handler(cfg: Any, registry: Any, engine: dict[str, Any], batch: int) -> Any:
    from redact.config import Backend
    from redact.detection.canary import blur_thresholds
    from redact.detection.ensemble import member_canary
    from redact.detection.tensorrt_handler import TensorRTModelHandler

    base = cfg.models[0]
    onnx_spec = registry.resolve(base)
    spec = replace(
        onnx_spec,
        name=f"{onnx_spec.name}-{engine['sidecar']['precision']}",
        uri=engine["engine"],
        sha256=engine["sidecar"]["sha256"],
    )
    mc = replace(
        base,
        name="",
        path=engine["engine"],
        classes=spec.classes,
        backend=Backend.TENSORRT,
        batch_size=batch,
    )
    return TensorRTModelHandler(
        spec, mc, 0, blur_thresholds=blur_thresholds(cfg), canary=member_canary(base, None)
    )


def real_tiles(cfg: Any, images: Sequence[Path], limit: int) -> list[np.ndarray]:
    """Up to ``limit`` tiles of ``images``, rendered by the pipeline's own tiler."""
    from redact.classes import Projection
    from redact.io.codec import decode_image
    from redact.pipeline import resolve_projection
    from redact.tiling import RemapCache, plan_panorama_tiles, plan_perspective_tiles, render_tile

    cache = RemapCache()
    out: list[np.ndarray] = []
    for path in images:
        dec = decode_image(path.read_bytes(), max_pixels=cfg.io.max_pixels)
        w, h = dec.width, dec.height
        proj = resolve_projection(Projection.AUTO, w, h, dec.xmp, cfg.io.equirect_min_width)
        plan = (
            plan_panorama_tiles(w, h, cfg.tiling)
            if proj is Projection.EQUIRECTANGULAR
            else plan_perspective_tiles(w, h, cfg.tiling)
        )
        out.extend(render_tile(dec.pixels, t, cache) for t in plan)
        if len(out) >= limit:
            break
    return out[:limit]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy -> (N, M) IoU."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def compare_detections(
    ref: Sequence[Any], other: Sequence[Any], thresholds: dict[Any, float]
) -> dict[str, Any]:
    """Per class: reference detections at/above the blur threshold (per tile), how many the
    other backend finds (same class, IoU >= 0.5, any score), and the largest score change."""
    out: dict[str, Any] = {}
    for cls, thr in thresholds.items():
        n = found = 0
        worst = 0.0
        for r, o in zip(ref, other, strict=True):
            keep = (r.class_id == int(cls)) & (r.confidence >= thr)
            rb, rs = r.xyxy[keep], r.confidence[keep]
            same = o.class_id == int(cls)
            ob, os_ = o.xyxy[same], o.confidence[same]
            n += len(rb)
            if not len(rb):
                continue
            if not len(ob):
                continue
            iou = _iou(rb, ob)
            best = iou.argmax(axis=1)
            hit = iou[np.arange(len(rb)), best] >= MATCH_IOU
            found += int(hit.sum())
            if hit.any():
                worst = max(worst, float(np.abs(rs[hit] - os_[best[hit]]).max()))
        out[cls.label] = {
            "reference_at_blur": n,
            "found": found,
            "recall_vs_reference": round(found / n, 4) if n else None,
            "max_score_change": round(worst, 4),
        }
    return out


def _detect(handler: Any, model: Any, tiles: Sequence[np.ndarray], batch: int) -> list[Any]:
    dets: list[Any] = []
    for i in range(0, len(tiles), batch):
        dets.extend(
            r.inference.detections for r in handler.run_inference(tiles[i : i + batch], model)
        )
    return dets


def parity_step(
    cfg: Any, registry: Any, engines: dict[str, Any], tiles: list[np.ndarray]
) -> dict[str, Any]:
    from redact.detection.base import preprocess
    from redact.detection.canary import blur_thresholds

    ok = {k: v for k, v in engines.items() if v.get("status") == "ok"}
    if not ok:
        raise Skip("no engine was built")
    ref_h = _onnx_handler(cfg, registry, 8)
    ref_m = ref_h.load_model()
    ref = _detect(ref_h, ref_m, tiles, 8)
    thresholds = blur_thresholds(cfg)
    x = preprocess(tiles[:8], ref_m.input_size or cfg.tiling.tile_size, np.float32)
    head_ref = ref_m.forward(x)
    nc = 4 + ref_h.spec.num_classes
    res: dict[str, Any] = {
        "tiles": len(tiles),
        "onnx_providers": list(ref_m.session.get_providers()),
    }
    for precision, eng in ok.items():
        h = _engine_handler(cfg, registry, eng, 8)
        m = h.load_model()  # the canary proves the engine first
        try:
            head = m.forward(x.astype(m.input_dtype))
            diff = np.abs(head[:, :nc] - head_ref[:, :nc])
            res[precision] = {
                "raw_box_max_abs_px": round(float(diff[:, :4].max()), 4),
                "raw_score_max_abs": round(float(diff[:, 4:nc].max()), 4),
                "raw_score_mean_abs": round(float(diff[:, 4:nc].mean()), 6),
                "detections": compare_detections(ref, _detect(h, m, tiles, 8), thresholds),
            }
        finally:
            getattr(m, "close", lambda: None)()
    return res


def _time_forward(
    forward: Callable[[np.ndarray], Any], x: np.ndarray, batch: int, rounds: int = 3
) -> float:
    """Best tiles/s over ``rounds`` passes of ``x`` in batches of ``batch`` (one warm-up)."""
    forward(x[:batch])
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i in range(0, len(x), batch):
            forward(x[i : i + batch])
        best = max(best, len(x) / (time.perf_counter() - t0))
    return round(best, 1)


def throughput_step(
    cfg: Any,
    registry: Any,
    engines: dict[str, Any],
    tiles: list[np.ndarray],
    batches: Sequence[int],
) -> dict[str, Any]:
    from redact.detection.base import preprocess

    size = cfg.tiling.tile_size
    n = max(max(batches) * 2, 64)
    base = preprocess(tiles[: min(len(tiles), 64)], size, np.float32)
    x = np.concatenate([base] * (-(-n // len(base))))[:n]
    res: dict[str, Any] = {"tiles_per_pass": n}
    ref_h = _onnx_handler(cfg, registry, 8)
    ref_m = ref_h.load_model()
    res["onnxruntime"] = {
        "providers": list(ref_m.session.get_providers()),
        "tiles_per_s": {"8": _time_forward(ref_m.forward, x[: min(n, 64)], 8, rounds=2)},
    }
    for precision, eng in engines.items():
        if eng.get("status") != "ok":
            continue
        h = _engine_handler(cfg, registry, eng, max(batches))
        m = h.load_model()
        try:
            xe = x.astype(m.input_dtype)
            res[precision] = {
                "max_batch": int(m.plan.max_batch),
                "tiles_per_s": {str(b): _time_forward(m.forward, xe, b) for b in batches},
            }
        finally:
            getattr(m, "close", lambda: None)()
    return res


def _nvjpeg_decoder() -> Callable[[bytes], np.ndarray]:
    try:
        import torch
        from torchvision.io import decode_jpeg
    except ImportError as e:
        raise Skip(f"nvJPEG path needs torch + torchvision: {e}") from e
    if not torch.cuda.is_available():
        raise Skip("torch sees no CUDA device")

    def decode(data: bytes) -> np.ndarray:
        raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        img = decode_jpeg(raw, device="cuda")  # (3, H, W) uint8 on the GPU
        return np.ascontiguousarray(img.permute(1, 2, 0).cpu().numpy())

    return decode


def e2e_step(
    cfg: Any, registry: Any, engines: dict[str, Any], image: Path, repeat: int, decoder: str
) -> dict[str, Any]:
    """Panoramas/s: decode + plan + render every tile + detect (best engine, batch 32)."""
    from redact.io.codec import decode_image
    from redact.tiling import RemapCache, plan_panorama_tiles, render_tile

    eng = (
        engines.get("int8")
        if engines.get("int8", {}).get("status") == "ok"
        else engines.get("fp16")
    )
    if not eng or eng.get("status") != "ok":
        raise Skip("no engine was built")
    if decoder == "nvjpeg":
        decode = _nvjpeg_decoder()
    else:

        def decode(data: bytes) -> np.ndarray:
            return decode_image(data, max_pixels=cfg.io.max_pixels).pixels

    data = image.read_bytes()
    h = _engine_handler(cfg, registry, eng, 32)
    m = h.load_model()
    cache = RemapCache()
    try:
        times: dict[str, list[float]] = {"decode": [], "render": [], "detect": [], "total": []}
        for i in range(repeat + 1):  # the first pass builds the remap maps: not counted
            t0 = time.perf_counter()
            pixels = decode(data)
            t1 = time.perf_counter()
            plan = plan_panorama_tiles(pixels.shape[1], pixels.shape[0], cfg.tiling)
            tiles = [render_tile(pixels, t, cache) for t in plan]
            t2 = time.perf_counter()
            _detect(h, m, tiles, 32)
            t3 = time.perf_counter()
            if i:
                for k, v in (
                    ("decode", t1 - t0),
                    ("render", t2 - t1),
                    ("detect", t3 - t2),
                    ("total", t3 - t0),
                ):
                    times[k].append(v)
    finally:
        getattr(m, "close", lambda: None)()
    med = {k: round(statistics.median(v), 4) for k, v in times.items()}
    return {
        "engine": eng["sidecar"]["precision"],
        "image": image.name,
        "size": [int(pixels.shape[1]), int(pixels.shape[0])],
        "tiles": len(plan),
        "median_s": med,
        "panoramas_per_s": round(1.0 / med["total"], 2),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json, engines")
    ap.add_argument("--config", help="redact config (default: the packaged default)")
    ap.add_argument("--registry", help="model registry (default: the packaged one)")
    ap.add_argument(
        "--onnx", type=Path, help="ONNX to build engines from (default: config's first model)"
    )
    ap.add_argument(
        "--calib-dir", type=Path, default=DEFAULT_CALIB if DEFAULT_CALIB.is_dir() else None
    )
    ap.add_argument(
        "--labels",
        type=Path,
        default=DEFAULT_CALIB.parent / "dev_labels.json",
        help="dev labels: these images are left out of calibration",
    )
    ap.add_argument("--calib-tiles", type=int, default=512)
    ap.add_argument(
        "--images", type=Path, nargs="+", help="images for parity (default: sample shard)"
    )
    ap.add_argument("--pano", type=Path, help="panorama for e2e (default: the sample shard's)")
    ap.add_argument("--parity-tiles", type=int, default=64)
    ap.add_argument(
        "--batches", type=lambda s: tuple(int(v) for v in s.split(",")), default=BATCHES
    )
    ap.add_argument("--repeat", type=int, default=5, help="e2e passes per decoder")
    ap.add_argument("--budget-s", type=float, default=450.0, help="stop starting steps after this")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from redact.cli import load_config
    from redact.detection import ModelRegistry

    args = parse_args(argv)
    deadline = time.monotonic() + args.budget_s
    sampler = GpuSampler()
    sampler.start()
    report = Report(args.out, sampler, deadline)
    try:
        cfg = load_config(args.config)
        registry = ModelRegistry.load(args.registry)
        if args.onnx is None:
            args.onnx = Path(registry.resolve(cfg.models[0]).uri)
        report.data["onnx"] = str(args.onnx)
        report.step("env", env_step)
        built = report.step("engines", lambda: engines_step(args, args.out), need_s=60)
        engines = (built or {}).get("engines", {})
        images = args.images or sorted(p for p in SAMPLE.rglob("*.jpg"))
        tile_list: list[np.ndarray] = []

        def tiles_step() -> dict[str, Any]:
            tile_list.extend(real_tiles(cfg, images, args.parity_tiles))
            return {"n": len(tile_list), "images": [str(p) for p in images]}

        report.step("tiles", tiles_step)
        report.step("parity", lambda: parity_step(cfg, registry, engines, tile_list), need_s=20)
        report.step(
            "throughput",
            lambda: throughput_step(cfg, registry, engines, tile_list, args.batches),
            need_s=30,
        )
        pano = args.pano or next(iter(sorted((SAMPLE / "panoramas").glob("*.jpg"))))
        for dec in ("cpu", "nvjpeg"):

            def e2e(d: str = dec) -> dict[str, Any]:
                return e2e_step(cfg, registry, engines, pano, args.repeat, d)

            report.step(f"e2e_{dec}", e2e, need_s=30)
    finally:
        sampler.stop()
        report.data["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        report.save()
    failed = [
        k for k, v in report.data.items() if isinstance(v, dict) and v.get("status") == "failed"
    ]
    print(f"[gpu-check] wrote {args.out / 'gpu_check.json'}; failed steps: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
