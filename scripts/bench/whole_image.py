"""Second baseline: the project's own YOLOv8 on the whole equirectangular image, no tiling.

Modes (``MODES``): the panorama resized to 1024x512 or 2048x1024 and run as one image (the
model's spatial input is dynamic), or resized to 8192x4096 and run as two 4096x4096 halves.
Boxes are scaled back to panorama pixels and go through the same decision
(:func:`redact.decision.select_regions`, panorama rules) as the tiled pipeline; recall is
measured like the benchmark's (a labelled box is found when >= 50 % of it is inside the blur
shapes). Time per panorama: resize + preprocess + inference + decoding (JPEG decode excluded,
the same for every mode).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

#: mode -> (resize to (W, H), number of vertical strips it is cut into)
MODES: dict[str, tuple[tuple[int, int], int]] = {
    "whole 1024x512": ((1024, 512), 1),
    "whole 2048x1024": ((2048, 1024), 1),
    "two 4096x4096 halves": ((8192, 4096), 2),
}


def _views(pixels: np.ndarray, size: tuple[int, int], parts: int) -> list[tuple[np.ndarray, int]]:
    """Resized image cut into ``parts`` vertical strips -> [(strip (h, w, 3), x offset)]."""
    interp = cv2.INTER_AREA if size[0] < pixels.shape[1] else cv2.INTER_LINEAR
    big = cv2.resize(pixels, size, interpolation=interp)
    step = size[0] // parts
    return [
        (np.ascontiguousarray(big[:, i * step : (i + 1) * step]), i * step) for i in range(parts)
    ]


def detect_whole(
    session: Any, spec: Any, mc: Any, pixels: np.ndarray, mode: str
) -> tuple[Any, float]:
    """Detections (panorama pixels) of one mode and the seconds it took."""
    from redact.detection.yolo import decode_yolov8
    from redact.detections import Detections

    size, parts = MODES[mode]
    h, w = pixels.shape[:2]
    t0 = time.perf_counter()
    found = []
    name = session.get_inputs()[0].name
    for view, x0 in _views(pixels, size, parts):
        x = np.ascontiguousarray(view.transpose(2, 0, 1)[None], np.float32) / np.float32(255.0)
        raw = session.run(None, {name: x})[0]
        (det,) = decode_yolov8(
            raw,
            num_classes=spec.num_classes,
            extra_channels=spec.extra_channels,
            model=spec.model_id,
            batch=1,
            class_map=spec.classes,
            score_floor=mc.score_floor,
            nms_iou=mc.tile_nms_iou,
            input_size=(view.shape[1], view.shape[0]),
        )
        if len(det):
            b = det.xyxy.astype(np.float64)
            b[:, [0, 2]] += x0
            b *= np.array([w / size[0], h / size[1], w / size[0], h / size[1]])
            found.append(det.with_boxes(b.astype(np.float32)))
    dets = Detections.merge(found) if found else Detections.empty()
    return dets, time.perf_counter() - t0


def run_whole_image(
    cfg: Any, registry: Any, paths: Sequence[str], labels: dict[str, Any]
) -> dict[str, Any]:
    """Every mode on the labelled panoramas among ``paths``: s/panorama and recall."""
    import onnxruntime as ort

    from bench.recall import DONT_CARE, RecallCount, coverage, redact_mask
    from redact.classes import Decision, ObjectClass
    from redact.decision import select_regions
    from redact.io.codec import decode_image

    mc = cfg.models[0]
    spec = registry.resolve(mc)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if mc.intra_op_threads:
        opts.intra_op_num_threads = mc.intra_op_threads
    session = ort.InferenceSession(spec.uri, opts, providers=["CPUExecutionProvider"])
    out: dict[str, Any] = {"model": spec.model_id, "modes": {}}
    for mode in MODES:
        rec = {"face": RecallCount(), "license_plate (not preblurred)": RecallCount()}
        secs: list[float] = []
        for p in paths:
            lab = labels.get(Path(p).name)
            if lab is None:
                continue
            pixels = decode_image(Path(p).read_bytes(), max_pixels=cfg.io.max_pixels).pixels
            if pixels.shape[:2] != (lab.height, lab.width) or lab.width != 2 * lab.height:
                continue
            dets, s = detect_whole(session, spec, mc, pixels, mode)
            secs.append(s)
            kept, decisions = select_regions([dets], cfg, lab.width, lab.height, wrap=True)
            blurs = np.array([d in (Decision.BLUR, Decision.REVIEW) for d in decisions], bool)
            b = kept[blurs] if len(kept) else kept
            mask = redact_mask((lab.height, lab.width), b.xyxy, b.class_id, cfg.blur, wrap=True)
            name = Path(p).name
            faces = lab.boxes(ObjectClass.FACE)
            rec["face"].add(name, faces, coverage(mask, faces), 0.5)
            plates = lab.boxes(ObjectClass.LICENSE_PLATE)
            rec["license_plate (not preblurred)"].add(
                name, plates, coverage(mask, plates), 0.5, DONT_CARE | {"preblurred"}
            )
        out["modes"][mode] = {
            "panoramas": len(secs),
            "s_per_panorama": float(np.mean(secs)) if secs else None,
            "recall": {k: v.to_dict() for k, v in rec.items()},
        }
    return out
