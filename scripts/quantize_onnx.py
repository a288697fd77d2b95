#!/usr/bin/env python3
"""INT8 ONNX for the CPU path: static QDQ quantization calibrated on real tiles.

    .venv/bin/python scripts/quantize_onnx.py --src models/redact-faceplate-yolov8n-0.2.0.onnx \\
        --out models/redact-faceplate-yolov8n-0.2.0-int8.onnx \\
        --calib-dir .cache/train_data/images/train --calib-images 160

ONNX Runtime's static quantization (``onnxruntime.quantization``, needs ``onnx``: the
``[dev]`` or ``[train]`` extra): weights int8 per output channel, activations uint8 per
tensor, QDQ format (ONNX Runtime fuses DQ->Conv->Q into integer convolutions that use
AVX512-VNNI / AVX-VNNI where the CPU has them; TensorRT reads the same QDQ graph as explicit
INT8). Only convolutions are quantized, and not all of them: YOLOv8's SiLU, concatenations and
the decoding head (DFL softmax, box arithmetic, class sigmoids) stay float, and so do the two
stem convolutions and the final 1x1 box/class convolutions (measured on faceghost: quantizing
those moved face scores by up to 0.44 and cost small-face recall; keeping them float, 0.07). Calibration: min/max (or ``--moving-average``, or ``--percentile P``) over tiles cut by the project's own tiler
(``export_engine.calibration_batches``) from a seeded random sample of ``--calib-dir``
images; never use dev images for it.

Prints the size, the speed of both models on this machine and the largest score change
on held-out calibration tiles; writes ``<out>.json`` with those figures.

Calibrate on the panorama domain too: with tiles from the 28 shared panoramas that are not
dev-labelled plus 120 MaskON/openalpr training photos (two ``--calib-dir``,
``--calib-images 148``) the 0.2.1 INT8 keeps every dev face (16/16 panoramas, MaskON 0.972),
where photo-only calibration lost a panorama face; it still loses one openalpr plate match
and one panorama plate, so it is not the default (docs/performance.md, issue #13). Keeping
more float (``--keep-float cls|head|/prefix``) does not bring them back: the error is made in
the backbone's activation ranges; ``--moving-average`` ranges keep those plates but lose small
MaskON faces and UC3M-LP plates (same section). Judge an INT8 model with
``scripts/eval_dev.py`` on all five sets and ``scripts/bench/pano_recall.py --baseline``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def sample_images(folders: list[Path], n: int, seed: int, dest: Path) -> list[Path]:
    """Symlink a seeded random sample of ``n`` images from ``folders`` into ``dest``."""
    pool = sorted(
        p for f in folders for p in Path(f).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not pool:
        raise ValueError(f"no images under {[str(f) for f in folders]}")
    picked = random.Random(seed).sample(pool, min(n, len(pool)))
    dest.mkdir(parents=True, exist_ok=True)
    links = []
    for i, p in enumerate(picked):
        link = dest / f"{i:05d}{p.suffix.lower()}"
        link.symlink_to(p.resolve())
        links.append(link)
    return links


FLOAT_GROUPS = {
    "cls": ("/model.22/cv3.",),  # the class branch (3 convs per level; both classes share it)
    "box": ("/model.22/cv2.",),  # the box branch (DFL logits)
    "head": ("/model.22/",),  # every convolution of the detection head
}
"""``--keep-float`` names -> node-name prefixes of convolutions to leave float as well."""


def float_prefixes(names: list[str]) -> tuple[str, ...]:
    """``--keep-float`` values (a :data:`FLOAT_GROUPS` name or a node-name prefix starting
    with ``/``) -> the prefixes; ValueError on anything else."""
    out: list[str] = []
    for name in names:
        if name in FLOAT_GROUPS:
            out.extend(FLOAT_GROUPS[name])
        elif name.startswith("/"):
            out.append(name)
        else:
            raise ValueError(
                f"--keep-float {name!r}: not one of {sorted(FLOAT_GROUPS)} or a /prefix"
            )
    return tuple(out)


def float_nodes(model_path: Path, extra_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Nodes left in float, in graph order: the head's decoding (``/model.22/``
    non-convolutions and the DFL convolution; quantizing the head's Concat puts boxes 0..640
    and scores 0..1 under one scale and wipes out every score), the two stem convolutions
    (``/model.0/``, ``/model.1/``: raw pixels in), the final 1x1 convolutions of the box and
    class branches (``cv2.i.2``, ``cv3.i.2``: logits out), and every convolution whose name
    starts with one of ``extra_prefixes`` (:func:`float_prefixes`)."""
    import onnx

    keep = []
    for n in onnx.load(str(model_path)).graph.node:
        parts = n.name.split("/")
        if n.name.startswith("/model.22/") and (n.op_type != "Conv" or "/dfl/" in n.name):
            keep.append(n.name)  # decoding, including the DFL's fixed 0..15 projection conv
        elif n.op_type == "Conv" and n.name.startswith(("/model.0/", "/model.1/")):
            keep.append(n.name)
        elif n.op_type == "Conv" and extra_prefixes and n.name.startswith(extra_prefixes):
            keep.append(n.name)
        elif n.op_type == "Conv" and n.name.startswith("/model.22/cv") and len(parts) > 3:
            branch = parts[3]  # "/model.22/cv3.0/cv3.0.2/Conv" -> "cv3.0.2"
            if branch.count(".") == 2 and branch.endswith(".2"):
                keep.append(n.name)
    return keep


def quantize(
    src: Path,
    out: Path,
    batches: list[np.ndarray],
    extra_prefixes: tuple[str, ...] = (),
    moving_average: bool = False,
    percentile: float | None = None,
) -> list[str]:
    """Static QDQ INT8 quantization of the convolutions of ``src`` into ``out``; returns the
    nodes left float (:func:`float_nodes` with ``extra_prefixes``). ``moving_average``: each
    activation's range is the moving average (constant 0.01) of the per-batch min/max
    instead of the min/max over every batch (ORT's ``CalibMovingAverage``). ``percentile``
    (e.g. 99.999): each activation's range cuts ``(100 - percentile) / 2`` % of its values
    off each end of a histogram over every calibration batch (ORT's percentile calibrator,
    asymmetric), streamed one batch at a time (``CalibStridedMinMax``: ORT otherwise holds
    every activation of every batch before it builds the histograms)."""
    if moving_average and percentile is not None:
        raise ValueError("moving_average and percentile are two different range rules")
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = (
        ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        """The batches in order; ``set_range`` (strided calibration) limits it to a slice."""

        def __init__(self) -> None:
            self._it = iter(batches)

        def __len__(self) -> int:
            return len(batches)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._it = iter(batches[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            b = next(self._it, None)
            return None if b is None else {input_name: b}

    if percentile is None:
        method = CalibrationMethod.MinMax
        options: dict[str, object] = {"CalibMovingAverage": moving_average}
    else:
        method = CalibrationMethod.Percentile
        options = {
            "CalibPercentile": percentile,
            "CalibTensorRangeSymmetric": False,
            "CalibStridedMinMax": 1,
        }

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        keep = float_nodes(pre, extra_prefixes)
        quantize_static(
            str(pre),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=keep,
            calibrate_method=method,
            extra_options=options,
        )
    return keep


def _session(path: Path, threads: int):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def compare(src: Path, out: Path, held_out: list[np.ndarray], threads: int) -> dict[str, float]:
    """ms/tile of both models (best of 3, interleaved) and the largest class-score change."""
    a, b = _session(src, threads), _session(out, threads)
    name = a.get_inputs()[0].name
    diffs = []
    for x in held_out:
        ya, yb = a.run(None, {name: x})[0], b.run(None, {name: x})[0]
        diffs.append(float(np.abs(ya[:, 4:] - yb[:, 4:]).max()))
    x = held_out[0]
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(3):
        for key, sess in (("fp32", a), ("int8", b)):
            t0 = time.perf_counter()
            sess.run(None, {name: x})
            times[key].append((time.perf_counter() - t0) / len(x))
    return {
        "fp32_ms_per_tile": round(1000 * min(times["fp32"]), 1),
        "int8_ms_per_tile": round(1000 * min(times["int8"]), 1),
        "max_score_change": round(max(diffs), 4),
        "mean_max_score_change": round(float(np.mean(diffs)), 4),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", type=Path, required=True, help="float ONNX model")
    ap.add_argument("--out", type=Path, required=True, help="INT8 ONNX model to write")
    ap.add_argument("--calib-dir", type=Path, action="append", required=True)
    ap.add_argument("--calib-images", type=int, default=160)
    ap.add_argument("--calib-tiles", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="for the speed comparison")
    ap.add_argument(
        "--keep-float",
        action="append",
        default=[],
        metavar="GROUP|/PREFIX",
        help=f"also leave these convolutions float: {', '.join(sorted(FLOAT_GROUPS))} "
        "or a node-name prefix (repeatable)",
    )
    ap.add_argument(
        "--moving-average",
        action="store_true",
        help="activation ranges: moving average of per-batch min/max (default: global min/max)",
    )
    ap.add_argument(
        "--percentile",
        type=float,
        default=None,
        metavar="P",
        help="activation ranges: the central P %% of each activation's values over every "
        "calibration batch (e.g. 99.999; default: global min/max)",
    )
    args = ap.parse_args(argv)
    if args.percentile is not None and not 50.0 < args.percentile <= 100.0:
        ap.error(f"--percentile {args.percentile}: must be in (50, 100]")
    if args.percentile is not None and args.moving_average:
        ap.error("--percentile and --moving-average are two different range rules: pick one")
    try:
        extra = float_prefixes(args.keep_float)
    except ValueError as e:
        ap.error(str(e))
    from export_engine import calibration_batches

    with tempfile.TemporaryDirectory() as tmp:
        sample_images(args.calib_dir, args.calib_images, args.seed, Path(tmp))
        batches = list(
            calibration_batches(
                Path(tmp), tile_size=640, batch_size=args.batch, max_tiles=args.calib_tiles
            )
        )
    if len(batches) < 3:
        raise SystemExit(f"only {len(batches)} calibration batches: give more images")
    held_out, calib = batches[-2:], batches[:-2]
    t0 = time.perf_counter()
    keep = quantize(args.src, args.out, calib, extra, args.moving_average, args.percentile)
    figures: dict[str, object] = {
        "src": str(args.src),
        "out": str(args.out),
        "keep_float": args.keep_float,
        "moving_average": args.moving_average,
        "percentile": args.percentile,
        "float_convs": sum(1 for n in keep if n.endswith("Conv")),
        "calibration_tiles": sum(len(b) for b in calib),
        "quantize_s": round(time.perf_counter() - t0, 1),
        "src_mb": round(args.src.stat().st_size / 1e6, 2),
        "out_mb": round(args.out.stat().st_size / 1e6, 2),
        **compare(args.src, args.out, held_out, args.threads),
    }
    print(json.dumps(figures, indent=1))
    args.out.with_suffix(".json").write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
