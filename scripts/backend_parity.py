#!/usr/bin/env python3
"""Detector backends on the same real tiles: ms per tile and how far their detections differ.

Renders every tile of the given images with the default tiling (2:1 images as panoramas: the
gnomonic rings; others as photos: the perspective windows), runs the config's first detector on ONNX Runtime (fp32) and on
OpenVINO (fp32 and bf16; needs the [openvino] extra), one intra-op thread each unless
``--threads``, and compares each variant's decoded detections with ONNX Runtime's: for every
detection scoring at least ``--min-score`` the best same-class box of the other run, its IoU
and score difference. This is the parity check behind ``backend: openvino`` in
docs/performance.md; the recall checks (scripts/eval_dev.py, scripts/synth_pano_recall.py)
judge whether a variant may ship.

    .venv/bin/python scripts/backend_parity.py IMG [IMG ...] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def match(a: list, b: list, min_score: float = 0.03, min_iou: float = 0.5) -> dict[str, float]:
    """Detections ``a`` (per tile) against ``b``: how many of ``a``'s scoring >= ``min_score``
    have a same-class box in ``b`` at IoU >= ``min_iou`` (``matched``, ``unmatched``), the
    lowest such IoU and the largest and mean score difference of the matched."""
    ious: list[float] = []
    diffs: list[float] = []
    unmatched = 0
    for da, db in zip(a, b, strict=True):
        for j in np.flatnonzero(da.confidence >= min_score):
            sel = db.class_id == da.class_id[j]
            if not sel.any():
                unmatched += 1
                continue
            bb, x = db.xyxy[sel].astype(np.float64), da.xyxy[j].astype(np.float64)
            iw = np.clip(np.minimum(bb[:, 2], x[2]) - np.maximum(bb[:, 0], x[0]), 0, None)
            ih = np.clip(np.minimum(bb[:, 3], x[3]) - np.maximum(bb[:, 1], x[1]), 0, None)
            inter = iw * ih
            union = (bb[:, 2] - bb[:, 0]) * (bb[:, 3] - bb[:, 1]) + (x[2] - x[0]) * (x[3] - x[1])
            iou = inter / np.maximum(union - inter, 1e-9)
            k = int(np.argmax(iou))
            if iou[k] < min_iou:
                unmatched += 1
                continue
            ious.append(float(iou[k]))
            diffs.append(abs(float(db.confidence[sel][k]) - float(da.confidence[j])))
    return {
        "matched": len(ious),
        "unmatched": unmatched,
        "min_iou": min(ious) if ious else float("nan"),
        "max_score_diff": max(diffs) if diffs else float("nan"),
        "mean_score_diff": float(np.mean(diffs)) if diffs else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    from redact.config import Backend, Precision
    from redact.detection.ensemble import make_member_handler
    from redact.detection.registry import ModelRegistry
    from redact.io.codec import decode_image
    from redact.resources import config_path
    from redact.tiling import (
        RemapCache,
        plan_panorama_tiles,
        plan_perspective_tiles,
        render_tile,
    )

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per backend")
    ap.add_argument("--min-score", type=float, default=0.03)
    args = ap.parse_args(argv)

    from redact.config import RedactConfig

    cfg = RedactConfig.load(config_path("default.yaml"))
    base = dataclasses.replace(cfg.models[0], backend=Backend.ONNX, intra_op_threads=args.threads)
    spec = ModelRegistry.load().resolve(base)
    tiles = []
    for path in args.images:
        pixels = decode_image(path.read_bytes(), max_pixels=400_000_000).pixels
        cache = RemapCache()
        h, w = pixels.shape[:2]
        plan = plan_panorama_tiles if w == 2 * h else plan_perspective_tiles  # 2:1 = panorama
        tiles += [render_tile(pixels, t, cache) for t in plan(w, h, cfg.tiling)]
    print(f"{len(tiles)} tiles from {len(args.images)} image(s)", flush=True)
    variants = {
        "onnxruntime fp32": base,
        "openvino fp32": dataclasses.replace(base, backend=Backend.OPENVINO),
        "openvino bf16": dataclasses.replace(
            base, backend=Backend.OPENVINO, precision=Precision.BF16
        ),
    }
    results = {}
    for name, mc in variants.items():
        handler = make_member_handler(spec, mc, 0)
        model = handler.load_model()
        t0 = time.perf_counter()
        dets = []
        for i in range(0, len(tiles), mc.batch_size):
            batch = tiles[i : i + mc.batch_size]
            dets += [r.inference.detections for r in handler.run_inference(batch, model)]
        ms = (time.perf_counter() - t0) / len(tiles) * 1000
        results[name] = dets
        print(f"{name}: {ms:.1f} ms per tile, {sum(len(d) for d in dets)} detections", flush=True)
    ref = results["onnxruntime fp32"]
    for name, dets in results.items():
        if name == "onnxruntime fp32":
            continue
        fwd, back = match(ref, dets, args.min_score), match(dets, ref, args.min_score)
        print(
            f"{name} vs onnxruntime (scores >= {args.min_score}): {fwd['matched']} matched, "
            f"{fwd['unmatched']} of onnxruntime's and {back['unmatched']} of its own without a "
            f"same-class box at IoU >= 0.5; lowest IoU {fwd['min_iou']:.3f}; score difference "
            f"max {fwd['max_score_diff']:.4f}, mean {fwd['mean_score_diff']:.5f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
