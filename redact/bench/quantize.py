"""EXPERIMENT: static INT8 (QDQ) quantisation of a YOLOv8 ONNX detector for the CPU path.

Calibrates activation ranges on real tiles rendered from calibration images with the
configured tile layout (use images that are NOT in the evaluation set), then writes a
per-channel INT8 model. Needs the ``onnx`` package (the ``[dev]`` extra); not used at run
time. Recall must be re-measured before any such model is used (``redact bench`` with
``--set 'models=[{path: ..., classes: [...]}]'``)::

    python -m redact.bench.quantize SRC.onnx DST.onnx --calib IMG [IMG ...] [--every 5]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


def calibration_tiles(
    paths: Sequence[str], every: int, config: str | None = None
) -> list[np.ndarray]:
    """Every ``every``-th tile of each image, (S, S, 3) uint8 RGB, default tile layout."""
    from redact.bench.stages import plan_tiles
    from redact.classes import Projection
    from redact.cli import load_config
    from redact.io.codec import decode_image
    from redact.io.storage import read_bytes
    from redact.tiling import RemapCache, render_tile

    cfg = load_config(config)
    cache = RemapCache()
    tiles: list[np.ndarray] = []
    for p in paths:
        decoded = decode_image(read_bytes(p), max_pixels=cfg.io.max_pixels)
        plan = plan_tiles(cfg, decoded, Projection.AUTO)
        tiles.extend(render_tile(decoded.pixels, t, cache) for t in plan[:: max(1, every)])
    return tiles


_HEAD_OUTPUT_CONV = re.compile(r"/model\.\d+/(cv[23]\.\d+/cv[23]\.\d+\.2|dfl/conv)/Conv$")


def head_outputs(path: str) -> list[str]:
    """Names of the Conv nodes that produce the YOLOv8 head's raw box/class logits and the DFL
    (ultralytics export names). Kept in float: calibration tiles are mostly background, so an
    INT8 range fitted to them clips every positive class logit (scores stuck at 0.5)."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "Conv" and _HEAD_OUTPUT_CONV.search(n.name)]


def quantize(src: str, dst: str, tiles: Sequence[np.ndarray], size: int = 640) -> None:
    """Write ``dst``: ``src`` with INT8 weights (per channel) and UINT8 activations (QDQ)."""
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from redact.detection.base import preprocess

    name = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(tiles)

        def get_next(self) -> dict[str, Any] | None:
            t = next(self._it, None)
            return None if t is None else {name: preprocess([t], size, np.float32)}

    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_static(
            pre,
            dst,
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # Only convolutions: quantising the head's Concat (boxes 0..640 next to scores
            # 0..1 under one scale) wipes out every score.
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=head_outputs(src),
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--calib", nargs="+", required=True, help="calibration images")
    p.add_argument("--every", type=int, default=5, help="use every n-th tile")
    p.add_argument("--config", help="config for the tile layout")
    args = p.parse_args(argv)
    tiles = calibration_tiles(args.calib, args.every, args.config)
    quantize(args.src, args.dst, tiles)
    print(f"{args.dst}: calibrated on {len(tiles)} tiles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
