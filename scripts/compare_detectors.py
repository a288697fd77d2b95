#!/usr/bin/env python3
"""Each detector alone, the teacher ensemble and the shipped default, through the project's tiling.

The model card's comparison table (issue 3). For every candidate (one or more registry
models, union-merged like the pipeline's default) this runs ``redact run`` with the default
config but only those models, on the dev sets of ``scripts/eval_dev.py`` (the 12 hand-labelled
panoramas, the MaskON and openalpr dev splits: never trained on), then ``redact eval`` per
set, and tabulates box recall at IoU 0.3 / 0.5 by class and by object height (< 16, 16-32,
32-96, >= 96 px), precision (blurred detections matching a label at IoU 0.5) and the
false-positive area (blurred pixels outside every label, share of the image).

    nice .venv/bin/python scripts/compare_detectors.py --work /tmp/redact_compare \\
        --markdown docs/bench/detectors.md

Candidates are ``name=model[+model...]`` (``--candidate``, repeatable), a model being a
registry name or ``PATH.onnx:class[,class]`` (e.g. an INT8 variant); without any, the
default list below. Panorama protocol: ``preblurred_dont_care`` (the publisher's own blurred
patches and ``uncertain`` labels count neither way); photos: ``primary``.
Work files (outputs with real people) stay in WORK, outside the repo.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_CANDIDATES = (
    "own=redact-faceplate-yolov8n",
    "faceghost=faceghost-yolov8n-face",
    "safelicensing=safelicensing-yolov8-plate",
    "fastanpr=fastanpr-yolov8-plate",
    "teachers=faceghost-yolov8n-face+safelicensing-yolov8-plate+fastanpr-yolov8-plate",
    "default=redact-faceplate-yolov8n+faceghost-yolov8n-face",
)
SIZES: tuple[tuple[str, float, float], ...] = (
    ("<16", 0.0, 16.0),
    ("16-32", 16.0, 32.0),
    ("32-96", 32.0, 96.0),
    (">=96", 96.0, math.inf),
)
PROTOCOL = {"pano": "preblurred_dont_care"}


def parse_candidate(text: str) -> tuple[str, list[str]]:
    """``name=a+b`` -> ``("name", ["a", "b"])``."""
    name, sep, models = text.partition("=")
    if not sep or not name or not models:
        raise argparse.ArgumentTypeError(f"candidate must be name=model[+model]: {text!r}")
    return name, [m for m in models.split("+") if m]


def write_config(path: Path, models: list[str], base: Path, batch: int) -> Path:
    """A config that extends ``base`` and runs only ``models``."""
    lines = [f"extends: {base.resolve()}", "models:"]
    for m in models:
        if ".onnx" in m:  # an ONNX file given by path: PATH.onnx:class[,class...]
            onnx_path, _, classes = m.partition(".onnx:")
            if not classes:
                raise ValueError(f"a model path needs its classes, e.g. m.onnx:face: {m!r}")
            lines.append(
                f"  - {{path: {onnx_path}.onnx, classes: [{classes}], batch_size: {batch}}}"
            )
        else:
            lines.append(f"  - {{name: {m}, batch_size: {batch}}}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def summarize(report: dict, protocol: str) -> dict[str, dict[str, float | int | None]]:
    """Per class: n, recall@0.3/0.5, recall@0.5 per size bin, precision@0.5 (+ fp area)."""
    result = next(r for r in report["results"] if r["protocol"] == protocol)
    dont_care = set(result["dont_care_flags"])
    out: dict[str, dict[str, float | int | None]] = {}
    for cls, body in result["classes"].items():
        objs = [
            o for o in report["objects"] if o["class"] == cls and not (set(o["flags"]) & dont_care)
        ]
        row: dict[str, float | int | None] = {"n": len(objs)}
        for iou in ("0.3", "0.5"):
            hits = sum(bool(o[f"matched_iou{iou}"]) for o in objs)
            row[f"recall@{iou}"] = hits / len(objs) if objs else None
        for label, lo, hi in SIZES:
            sub = [o for o in objs if lo <= o["height_px"] < hi]
            row[f"n{label}"] = len(sub)
            row[f"recall{label}"] = (
                sum(bool(o["matched_iou0.5"]) for o in sub) / len(sub) if sub else None
            )
        det = body["detections"]
        row["detections"] = det["n_blurred_detections"]
        row["precision@0.5"] = det["precision_iou0.5"]
        out[cls] = row
    out["_image"] = {
        "fp_area_mean": result["fp_area"]["mean"],
        "n_images": result["fp_area"]["n_images"],
    }
    return out


def _fmt(v: float | int | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    if pct:
        return f"{100 * float(v):.2f}%"
    return f"{float(v):.3f}" if isinstance(v, float) else str(v)


def markdown(table: dict[str, dict[str, dict]], seconds: dict[str, float]) -> str:
    """One row per (set, class, candidate)."""
    head = (
        "| set | class | detector | n | R@0.3 | R@0.5 | "
        + " | ".join(f"R@0.5 {s[0]} px" for s in SIZES)
        + " | precision@0.5 | FP area | run s |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    sets = sorted({s for cand in table.values() for s in cand})
    for set_name in sets:
        classes = sorted(
            {c for cand in table.values() for c in cand.get(set_name, {}) if not c.startswith("_")}
        )
        for cls in classes:
            for cand, per_set in table.items():
                row = per_set.get(set_name, {}).get(cls)
                if row is None or not row["n"] or (not row["detections"] and not row["recall@0.3"]):
                    continue  # no label of this class, or a detector of another class
                sizes = " | ".join(
                    f"{_fmt(row[f'recall{s[0]}'])} ({row[f'n{s[0]}']})" for s in SIZES
                )
                fp = per_set[set_name]["_image"]["fp_area_mean"]
                lines.append(
                    f"| {set_name} | {cls} | {cand} | {row['n']} | {_fmt(row['recall@0.3'])} | "
                    f"{_fmt(row['recall@0.5'])} | {sizes} | {_fmt(row['precision@0.5'])} | "
                    f"{_fmt(fp, pct=True)} | {seconds.get(cand, 0):.0f} |"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/redact_compare"))
    ap.add_argument("--candidate", action="append", type=parse_candidate, default=None)
    ap.add_argument("--base-config", type=Path, default=REPO / "configs" / "default.yaml")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", type=Path, help="write the table as JSON")
    ap.add_argument("--markdown", type=Path, help="write the table as Markdown")
    args = ap.parse_args(argv)
    from eval_dev import DATA, link_inputs

    if not DATA.is_dir():
        print(f"no shared data at {DATA}", file=sys.stderr)
        return 2
    candidates = args.candidate or [parse_candidate(c) for c in DEFAULT_CANDIDATES]
    labels = link_inputs(args.work)
    table: dict[str, dict[str, dict]] = {}
    seconds: dict[str, float] = {}
    for name, models in candidates:
        cfg = write_config(
            args.work / "configs" / f"{name}.yaml", models, args.base_config, args.batch
        )
        out = args.work / "output" / name
        t0 = time.perf_counter()
        _redact(
            "run", "--input", str(args.work / "input"), "--output", str(out), "--config", str(cfg)
        )
        seconds[name] = time.perf_counter() - t0
        table[name] = {}
        for set_name, lab in labels.items():
            js = args.work / "eval" / name / f"{set_name}.json"
            js.parent.mkdir(parents=True, exist_ok=True)
            _redact(
                "eval", "--labels", str(lab), "--originals", str(args.work / "input"),
                "--published", str(out), "--json", str(js),
            )  # fmt: skip
            report = json.loads(js.read_text())
            table[name][set_name] = summarize(report, PROTOCOL.get(set_name, "primary"))
    text = markdown(table, seconds)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"table": table, "run_seconds": seconds}, indent=1) + "\n")
    return 0


def _redact(*args: str) -> None:
    print("$ redact " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "redact.cli", *args], check=True, cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
