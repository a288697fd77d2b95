"""``scripts/benchmark.py``: speed (and recall) against deface.

Runs, on the same images:

1. the redaction stages in-process (:mod:`bench.stages`), per image;
2. the real Beam job (``redact run``, DirectRunner), one job per image size
   (:mod:`bench.e2e`);
3. deface in its own venv (:mod:`bench.baseline`), with face recall on labelled images;
4. optionally (``--ort-sweep``) ONNX Runtime settings (:mod:`bench.ort_sweep`).

Prints tables and writes everything as JSON (``--json``) and Markdown (``--markdown``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import REPO_ROOT

DEFACE_PYTHON = REPO_ROOT / ".venv-deface" / "bin" / "python"
NOT_PREBLURRED = "license_plate (not preblurred)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options (``scripts/benchmark.py``)."""
    from bench.images import DEV_LABELS

    p.add_argument(
        "--images",
        nargs="+",
        metavar="PATH",
        help="files, folders or globs (default: the sample shard + a subset of "
        "../shared/data/panoramas/amsterdam_street when present)",
    )
    p.add_argument("--config", metavar="YAML", help="config file (default: configs/default.yaml)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    p.add_argument("--registry", help="model registry YAML (default: models/registry.yaml)")
    p.add_argument("--repeat", type=int, default=1, help="timed passes per image (median kept)")
    p.add_argument("--json", metavar="OUT", help="write all results as JSON")
    p.add_argument("--markdown", metavar="OUT", help="write the tables as Markdown")
    p.add_argument("--no-stages", action="store_true", help="skip the in-process stage timing")
    p.add_argument("--no-e2e", action="store_true", help="skip the Beam end-to-end jobs")
    p.add_argument("--no-deface", action="store_true", help="skip deface")
    p.add_argument(
        "--deface-python",
        default=str(DEFACE_PYTHON),
        help="python of deface's venv (default: .venv-deface/bin/python)",
    )
    p.add_argument(
        "--deface-scale",
        metavar="WxH",
        help="deface --scale (default: none, full-resolution inference like its CLI)",
    )
    p.add_argument("--ort-sweep", action="store_true", help="also sweep ONNX Runtime settings")
    p.add_argument(
        "--whole-image",
        action="store_true",
        help="also run the second baseline: the detector on the whole equirectangular image "
        "(1024 / 2048 px wide, two 4096 halves) over every labelled dev panorama",
    )
    p.add_argument(
        "--sweep-tiles", type=int, default=16, help="tiles per ONNX Runtime sweep setting"
    )
    p.add_argument(
        "--labels",
        default=str(DEV_LABELS),
        help="hand labels for recall (default: ../shared/data/panoramas/dev_labels.json)",
    )
    p.add_argument("--workdir", help="keep outputs here (default: a temp folder, removed)")
    p.add_argument(
        "--beam-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra Beam option for the end-to-end jobs, e.g. --beam-arg=--direct_num_workers=2",
    )


def _machine() -> dict[str, Any]:
    import numpy
    import onnxruntime
    import simplejpeg

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "simplejpeg": simplejpeg.__version__,
        "platform": platform.platform(),
    }


def _group(width: int, height: int) -> str:
    from redact.classes import Projection
    from redact.config import IOConfig
    from redact.pipeline import resolve_projection

    auto = resolve_projection(Projection.AUTO, width, height, None, IOConfig().equirect_min_width)
    if auto is Projection.EQUIRECTANGULAR:
        return f"{width}x{height}"
    return "photo"


def run(args: argparse.Namespace, command: str) -> int:
    """Run the benchmark; ``command`` is recorded with the results. Returns the exit status."""
    from bench import report
    from bench.images import default_images, describe, expand
    from bench.recall import load_labels
    from redact.cli import load_config
    from redact.detection import ModelRegistry

    cfg = load_config(args.config, args.set)
    labels = load_labels(args.labels) if args.labels and os.path.isfile(args.labels) else {}
    paths = expand(args.images) if args.images else default_images(labels)
    if not paths:
        raise FileNotFoundError("no images to benchmark")
    images = describe(paths)
    groups = {im.path: _group(im.width, im.height) for im in images}
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="redact-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": command,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": _machine(),
        "config_hash": cfg.hash(),
        "overrides": list(args.set),
        "models": [m.name or m.path for m in cfg.models],
        "batch_size": [m.batch_size for m in cfg.models],
        "intra_op_threads": [m.intra_op_threads for m in cfg.models],
        "images": [{"path": im.path, "width": im.width, "height": im.height} for im in images],
    }
    try:
        registry = ModelRegistry.load(args.registry)
        if not args.no_stages:
            results["stages"] = _run_stages(cfg, registry, paths, groups, work, args, labels)
        if args.ort_sweep:
            results["ort_sweep"] = _run_sweep(cfg, registry, paths, args)
        if args.whole_image:
            results["whole_image"] = _run_whole_image(cfg, registry, labels)
        if not args.no_e2e:
            results["e2e"] = _run_e2e(paths, groups, work, args)
        if not args.no_deface:
            results["deface"] = _run_deface(paths, groups, work, args, labels)
        results["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        results["loadavg_at_end"] = os.getloadavg()
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    text = report.tables(results)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=_jsonable) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(report.markdown(results))
    return 0


def _jsonable(o: Any) -> Any:
    if isinstance(o, float) and o != o:
        return None
    return str(o)


def _run_stages(
    cfg: Any,
    registry: Any,
    paths: Sequence[str],
    groups: dict[str, str],
    work: Path,
    args: argparse.Namespace,
    labels: dict[str, Any],
) -> dict[str, Any]:
    from bench.peak import vm_hwm_mb
    from bench.recall import DONT_CARE, RecallCount, coverage, redact_mask
    from bench.stages import StageBench
    from redact.classes import ObjectClass, Projection
    from redact.detection import make_detector_handler

    out_dir = work / "stages-out"
    out_dir.mkdir(parents=True, exist_ok=True)
    bench = StageBench(cfg, make_detector_handler(cfg, registry), out_dir)
    rows = []
    recall = {c.label: RecallCount() for c in ObjectClass}
    recall[NOT_PREBLURRED] = RecallCount()
    for p in paths:
        print(f"[stages] {Path(p).name}", file=sys.stderr, flush=True)
        r = bench.run(p, args.repeat)
        row = r.to_dict()
        row["group"] = groups[p]
        lab = labels.get(r.name)
        if lab is not None and (lab.width, lab.height) == (r.width, r.height):
            mask = redact_mask(
                (r.height, r.width),
                r.blurred_xyxy,
                r.blurred_class,
                cfg.blur,
                wrap=r.projection == Projection.EQUIRECTANGULAR.value,
            )
            row["labelled"] = True
            for c in ObjectClass:
                boxes = lab.boxes(c)
                cover = coverage(mask, boxes)
                recall[c.label].add(r.name, boxes, cover, 0.5)
                if c is ObjectClass.LICENSE_PLATE:
                    recall[NOT_PREBLURRED].add(
                        r.name, boxes, cover, 0.5, DONT_CARE | {"preblurred"}
                    )
        rows.append(row)
    return {
        "model_load_s": bench.model_load_s,
        "layout_build_s": bench.layout_build_s,
        "batch_size": bench.batch_size,
        "peak_rss_mb": vm_hwm_mb(),
        "images": rows,
        "recall": {k: v.to_dict() for k, v in recall.items()},
    }


def _run_sweep(
    cfg: Any, registry: Any, paths: Sequence[str], args: argparse.Namespace
) -> dict[str, Any]:
    from bench.ort_sweep import sweep
    from bench.stages import plan_tiles
    from redact.classes import Projection
    from redact.io.codec import decode_image
    from redact.io.storage import read_bytes
    from redact.tiling import render_tile

    # Tiles from the largest image (real street content, the default tile layout).
    biggest = max(paths, key=lambda p: os.path.getsize(p))
    decoded = decode_image(read_bytes(biggest), max_pixels=cfg.io.max_pixels)
    tiles = plan_tiles(cfg, decoded, Projection.AUTO)
    step = max(1, len(tiles) // args.sweep_tiles)
    chosen = [render_tile(decoded.pixels, t) for t in tiles[::step][: args.sweep_tiles]]
    print(f"[ort-sweep] {len(chosen)} tiles of {Path(biggest).name}", file=sys.stderr, flush=True)
    res = sweep(cfg, registry, chosen, repeat=max(2, args.repeat))
    res["image"] = biggest
    return res


def _run_whole_image(cfg: Any, registry: Any, labels: dict[str, Any]) -> dict[str, Any]:
    from bench.images import SHARED_STREET
    from bench.whole_image import run_whole_image

    paths = [str(SHARED_STREET / n) for n in sorted(labels) if (SHARED_STREET / n).is_file()]
    print(f"[whole-image] {len(paths)} labelled panorama(s)", file=sys.stderr, flush=True)
    return run_whole_image(cfg, registry, paths, labels)


def _run_e2e(
    paths: Sequence[str], groups: dict[str, str], work: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    from bench.e2e import run_job

    by_group: dict[str, list[str]] = {}
    for p in paths:
        by_group.setdefault(groups[p], []).append(p)
    out = []
    for g, ps in by_group.items():
        print(f"[e2e] {g}: {len(ps)} image(s)", file=sys.stderr, flush=True)
        job = run_job(g, ps, work, config=args.config, overrides=args.set, beam_args=args.beam_arg)
        if job.returncode != 0:
            raise RuntimeError(
                f"redact run failed for {g} (exit {job.returncode}):\n{job.log_tail}"
            )
        out.append(job.to_dict())
    return out


def _run_deface(
    paths: Sequence[str],
    groups: dict[str, str],
    work: Path,
    args: argparse.Namespace,
    labels: dict[str, Any],
) -> dict[str, Any]:
    from bench.baseline import INSTALL_HINT, run_deface
    from bench.recall import RecallCount, coverage, ellipse_mask

    if not os.path.exists(args.deface_python):
        print(
            f"[deface] skipped: {args.deface_python} not found (install: {INSTALL_HINT})",
            file=sys.stderr,
        )
        return {"skipped": f"{args.deface_python} not found; install: {INSTALL_HINT}"}
    scale = None
    if args.deface_scale:
        w, h = args.deface_scale.lower().split("x")
        scale = (int(w), int(h))
    print(f"[deface] {len(paths)} image(s)", file=sys.stderr, flush=True)
    run = run_deface(args.deface_python, paths, work, scale=scale, repeat=args.repeat)
    recall = RecallCount()
    rows = []
    for p, im in zip(paths, run.images(), strict=True):
        name = Path(p).name
        row = {
            "name": name,
            "group": groups[p],
            "width": im["width"],
            "height": im["height"],
            "timings_s": im["timings_s"],
            "faces_blurred": len(im["blurred"]),
        }
        lab = labels.get(name)
        if lab is not None and (lab.width, lab.height) == (im["width"], im["height"]):
            mask = ellipse_mask((im["height"], im["width"]), [b["box"] for b in im["blurred"]])
            recall.add(name, lab.faces, coverage(mask, lab.faces), 0.5)
            row["labelled"] = True
        rows.append(row)
    return {
        "version": run.result.get("deface_version"),
        "backend": run.result.get("backend"),
        "load_s": run.result.get("load_s"),
        "scale": args.deface_scale,
        "wall_s": run.wall_s,
        "peak_rss_mb": run.peak_rss_mb,
        "images": rows,
        "face_recall": recall.to_dict(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    parser = argparse.ArgumentParser(
        prog="benchmark.py",
        description="Benchmark redact (per stage and end to end) against deface.",
        allow_abbrev=False,
    )
    add_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return run(args, "python scripts/benchmark.py " + shlex.join(argv))
