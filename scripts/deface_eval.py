#!/usr/bin/env python3
"""deface (its CLI's own code path) on the dev sets, scored like redact: a peer row.

Runs ``scripts/bench/deface_driver.py`` in deface's own environment over every image that
``scripts/eval_dev.py`` links for the chosen sets (WORK/input/<set>/), writes deface's
published copies to WORK/output/<set>/, and a manifest (WORK/output/_manifest/) whose
detections are the boxes deface blurred (its raw CenterFace boxes, all "blur"; class face:
deface finds no plates), so that ``eval_dev.py --skip-run`` scores them with the same
``redact eval`` (box recall on deface's raw boxes; pixel recall, sufficiently blurred and
false-positive area from its published pixels against the originals).

    .venv/bin/python scripts/deface_eval.py --work /tmp/ev_deface \\
        --sets pano,maskon,openalpr,uc3m,dutch [--thresh 0.2]
    .venv/bin/python scripts/eval_table.py default=/tmp/ev_new deface=/tmp/ev_deface

Needs ``.venv-deface`` (``python3 -m venv .venv-deface && .venv-deface/bin/pip install deface
onnx onnxruntime``). Outputs stay in WORK (outside the repo): they hold real people.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def deface_job(work: Path, sets: list[str], thresh: float) -> dict[str, Any]:
    """The driver's job: every linked image of the sets -> WORK/output/<set>/<name>."""
    from redact.evaluation.labels import IMAGE_EXTENSIONS  # the images redact eval pairs

    images = []
    for s in sets:
        folder = work / "input" / s
        (work / "output" / s).mkdir(parents=True, exist_ok=True)
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                images.append({"path": str(p), "output": str(work / "output" / s / p.name)})
    return {
        "images": images,
        "thresh": thresh,
        "mask_scale": 1.3,  # deface's CLI defaults
        "backend": "onnxrt",
        "scale": None,
        "repeat": 1,
        "result": str(work / "deface_result.json"),
        # PNG bytes (decoders sniff the format): deface's own JPEG re-encode at imageio's
        # default quality changes every pixel of small photos by more than the blurred-pixel
        # threshold of `redact eval`, which would count as false-positive area
        "lossless": True,
    }


def manifest_rows(work: Path, result: dict[str, Any], thresh: float) -> list[dict[str, Any]]:
    """One PUBLISHED manifest row per image of the driver's result (see the module doc)."""
    import numpy as np

    from redact.classes import Decision, ObjectClass, Projection
    from redact.config import IOConfig

    min_pano_width = IOConfig().equirect_min_width
    from redact.detections import Detections
    from redact.manifest import ImageOutcome, RunInfo, Status, make_row

    run = RunInfo(
        run_id="deface",
        models=[{"name": f"deface-{result.get('deface_version', '?')}", "version": ""}],
        config_hash="deface",
        thresholds=[
            {"class": "face", "blur": thresh, "review": thresh, "floor": thresh},
        ],
        redact_version="deface",
    )
    rows = []
    inp = (work / "input").resolve()
    for item in result["images"]:
        rel = Path(item["path"]).relative_to(work / "input").as_posix()
        raw = [b.get("det_box", b["box"]) for b in item["blurred"]]
        dets = Detections(
            np.array(raw, np.float32).reshape(-1, 4),
            np.array([b["score"] for b in item["blurred"]], np.float32),
            np.full(len(raw), int(ObjectClass.FACE), np.int32),
        )
        # redact's rule for untagged images (io.equirect_min_width): a small 2:1 photo is a photo
        w, h = int(item["width"]), int(item["height"])
        pano = w == 2 * h and w >= min_pano_width
        outcome = ImageOutcome(
            image_uri=str(inp / rel),
            relative_path=rel,
            output_uri=str((work / "output" / rel).resolve()),
            status=Status.PUBLISHED,
            width=int(item["width"]),
            height=int(item["height"]),
            format="png",  # the scored copies are PNG bytes (the job's "lossless")
            projection=(Projection.EQUIRECTANGULAR if pano else Projection.PERSPECTIVE).value,
            detections=dets,
            decisions=[Decision.BLUR] * len(raw),
            # "infer": the key eval_dev.py reads as detection time (deface's "detect" step)
            timings_s={
                **{k: float(v) for k, v in item["timings_s"].items()},
                "infer": float(item["timings_s"].get("detect", 0.0)),
            },
        )
        rows.append(make_row(run, outcome, None))
    return rows


def write_manifest(work: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from redact.manifest import SCHEMA

    folder = work / "output" / "_manifest"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "deface-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="work folder (outside the repo)")
    ap.add_argument("--sets", default="pano,maskon,openalpr,uc3m,dutch")
    ap.add_argument("--thresh", type=float, default=0.2, help="deface --thresh (its default)")
    ap.add_argument("--deface-python", default=str(REPO / ".venv-deface" / "bin" / "python"))
    ap.add_argument("--skip-deface", action="store_true", help="reuse WORK/deface_result.json")
    args = ap.parse_args(argv)
    import eval_dev

    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    work: Path = args.work
    eval_dev.link_inputs(work, tuple(sets))
    job = deface_job(work, sets, args.thresh)
    if not args.skip_deface:
        job_file = work / "deface_job.json"
        job_file.write_text(json.dumps(job))
        driver = REPO / "scripts" / "bench" / "deface_driver.py"
        print(f"deface on {len(job['images'])} images", flush=True)
        subprocess.run([args.deface_python, str(driver), str(job_file)], check=True)
    result = json.loads(Path(job["result"]).read_text())
    print(f"manifest: {write_manifest(work, manifest_rows(work, result, args.thresh))}")
    cmd = [sys.executable, str(REPO / "scripts" / "eval_dev.py"), "--work", str(work)]
    cmd += ["--sets", ",".join(sets), "--skip-run", "--skip-tune", "--fast"]
    subprocess.run(cmd, check=True, cwd=REPO)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
