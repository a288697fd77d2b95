"""Recall check of a detector or tiling change on the labelled dev panoramas.

For every panorama in ``dev_labels.json`` (12 images: 3 at 8000x4000, 9 at 4000x2000) this
runs the pipeline's own detection path in-process (decode, plan + render tiles, the real
detector handler in batches, tile -> image mapping, :func:`redact.decision.select_regions`)
and records what would be blurred. Two outputs:

* labelled recall: a labelled box is found when >= 50 % of its pixels are inside the blur
  shapes (:func:`bench.recall.redact_mask`, as in the benchmark's recall table);
* with ``--baseline OTHER.json``: every region the baseline blurred that the candidate no
  longer covers (>= 50 % of the region outside the candidate's blur shapes), by class and
  score. "No detection lost" means no labelled box lost *and* this list empty or made only of
  low-score false positives, judged by eye.

    .venv/bin/python scripts/bench/pano_recall.py --out /tmp/pr/base.json
    .venv/bin/python scripts/bench/pano_recall.py --model-path /tmp/int8.onnx \\
        --baseline /tmp/pr/base.json --out /tmp/pr/int8.json

Outputs stay outside the repository (they describe real people's positions).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: scripts/ on sys.path for ``bench``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))

MIN_COVER = 0.5


def _config(args: argparse.Namespace) -> Any:
    from redact.classes import ObjectClass
    from redact.cli import load_config

    cfg = load_config(args.config, args.set)
    if args.model_path:
        classes = (ObjectClass.FACE, ObjectClass.LICENSE_PLATE)
        first = dataclasses.replace(
            cfg.models[0], name="", path=str(Path(args.model_path).resolve()), classes=classes
        )
        cfg = dataclasses.replace(cfg, models=(first,))
    return cfg


def detect_image(
    path: Path, cfg: Any, handler: Any, model: Any, cache: Any
) -> tuple[Any, bool, int, float]:
    """``(blurred Detections, wrap, n_tiles, infer seconds)`` of one image, in-process."""
    from redact.classes import Decision, Projection
    from redact.decision import select_regions
    from redact.detections import Detections
    from redact.io.codec import decode_image
    from redact.pipeline import resolve_projection
    from redact.tiling import (
        Tile,
        plan_panorama_tiles,
        plan_perspective_tiles,
        render_tile,
        tile_boxes_to_image,
    )

    decoded = decode_image(path.read_bytes(), max_pixels=cfg.io.max_pixels)
    w, h = decoded.width, decoded.height
    proj = resolve_projection(Projection.AUTO, w, h, decoded.xmp, cfg.io.equirect_min_width)
    wrap = proj is Projection.EQUIRECTANGULAR
    tiles: tuple[Tile, ...] = (
        plan_panorama_tiles(w, h, cfg.tiling) if wrap else plan_perspective_tiles(w, h, cfg.tiling)
    )
    batch = int(handler.batch_elements_kwargs().get("max_batch_size") or 8)
    per_tile: list[Detections] = []
    infer_s = 0.0
    for i in range(0, len(tiles), batch):
        chunk = tiles[i : i + batch]
        pixels = [render_tile(decoded.pixels, t, cache) for t in chunk]
        t0 = time.perf_counter()
        results = list(handler.run_inference(pixels, model))
        infer_s += time.perf_counter() - t0
        for t, r in zip(chunk, results, strict=True):
            det = r.inference.detections
            boxes, src = tile_boxes_to_image(t, det.xyxy, w, h, wrap)
            per_tile.append(det[src].with_boxes(boxes) if len(src) else Detections.empty())
    found, decisions = select_regions(per_tile, cfg, w, h, wrap=wrap)
    blurs = np.array([d in (Decision.BLUR, Decision.REVIEW) for d in decisions], bool)
    return (found[blurs] if len(found) else found), wrap, len(tiles), infer_s


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.images import DEV_LABELS, SHARED_STREET
    from bench.recall import DONT_CARE, RecallCount, coverage, redact_mask
    from redact.classes import ObjectClass
    from redact.detection import ModelRegistry, make_detector_handler
    from redact.tiling import RemapCache

    cfg = _config(args)
    labels_path = Path(args.labels or DEV_LABELS)
    from bench.recall import load_labels

    labels = load_labels(labels_path)
    handler = make_detector_handler(cfg, ModelRegistry.load(args.registry))
    model = handler.load_model()
    cache = RemapCache()
    images: dict[str, Any] = {}
    recall = {
        "face": RecallCount(),
        "license_plate": RecallCount(),
        "license_plate (not preblurred)": RecallCount(),
    }
    tiles_total, infer_total = 0, 0.0
    for name in sorted(labels):
        lab = labels[name]
        path = Path(args.images_dir or SHARED_STREET) / name
        blurred, wrap, n_tiles, infer_s = detect_image(path, cfg, handler, model, cache)
        tiles_total += n_tiles
        infer_total += infer_s
        mask = redact_mask(
            (lab.height, lab.width), blurred.xyxy, blurred.class_id, cfg.blur, wrap=wrap
        )
        for c in ObjectClass:
            boxes = lab.boxes(c)
            cover = coverage(mask, boxes)
            recall[c.label].add(name, boxes, cover, MIN_COVER)
            if c is ObjectClass.LICENSE_PLATE:
                recall["license_plate (not preblurred)"].add(
                    name, boxes, cover, MIN_COVER, DONT_CARE | {"preblurred"}
                )
        images[name] = {
            "tiles": n_tiles,
            "infer_s": round(infer_s, 3),
            "blurred": [
                [*(round(float(v), 1) for v in b), int(c), round(float(s), 4)]
                for b, c, s in zip(blurred.xyxy, blurred.class_id, blurred.confidence, strict=True)
            ],
        }
        print(f"[pano-recall] {name}: {n_tiles} tiles, {len(blurred)} blurred", file=sys.stderr)
    out: dict[str, Any] = {
        "config_hash": cfg.hash(),
        "overrides": list(args.set),
        "config": args.config,
        "model_path": args.model_path,
        "tiles": tiles_total,
        "infer_s": round(infer_total, 2),
        "recall": {k: v.to_dict() for k, v in recall.items()},
        "images": images,
    }
    if args.baseline:
        out["lost_vs_baseline"] = lost_regions(
            json.loads(Path(args.baseline).read_text()), out, cfg, labels
        )
    return out


def lost_regions(
    base: dict[str, Any], cand: dict[str, Any], cfg: Any, labels: dict[str, Any]
) -> list[dict[str, Any]]:
    """Regions the baseline blurred that the candidate's blur shapes cover < 50 % of."""
    from bench.recall import LabelledBox, coverage, redact_mask

    lost: list[dict[str, Any]] = []
    for name, b in base["images"].items():
        c = cand["images"].get(name)
        if c is None:
            continue
        lab = labels[name]
        cb = np.asarray([r[:5] for r in c["blurred"]], np.float32).reshape(-1, 5)
        mask = redact_mask(
            (lab.height, lab.width), cb[:, :4], cb[:, 4].astype(np.int32), cfg.blur, wrap=True
        )
        regions = [
            LabelledBox((round(r[0]), round(r[1]), round(r[2]), round(r[3])), frozenset())
            for r in b["blurred"]
        ]
        # an unwrapped box past the seam: check its part inside the image
        for r, cov in zip(b["blurred"], coverage(mask, regions), strict=True):
            if cov < MIN_COVER:
                lost.append(
                    {"image": name, "box": r[:4], "class": r[4], "score": r[5], "cover": cov}
                )
    return lost


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="config YAML (default: the packaged default)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--registry", help="model registry YAML")
    ap.add_argument("--model-path", help="run this ONNX (classes face, license_plate) instead")
    ap.add_argument("--labels", help="dev labels JSON (default: ../shared/data/panoramas/...)")
    ap.add_argument("--images-dir", help="folder of the labelled panoramas")
    ap.add_argument("--baseline", help="an earlier --out JSON: list the regions it lost")
    ap.add_argument("--out", required=True, help="write the result JSON here")
    args = ap.parse_args(argv)
    res = run(args)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    summary = {k: f"{v['found']}/{v['total']}" for k, v in res["recall"].items()}
    print(json.dumps({"tiles": res["tiles"], "infer_s": res["infer_s"], "recall": summary}))
    if "lost_vs_baseline" in res:
        lost = res["lost_vs_baseline"]
        print(f"lost vs baseline: {len(lost)} region(s)")
        for r in sorted(lost, key=lambda r: -r["score"])[:20]:
            print("  ", json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
