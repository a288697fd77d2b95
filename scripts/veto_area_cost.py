#!/usr/bin/env python3
"""What the stage-2 fusion settings blur on imagery WITHOUT real faces or plates.

Reads the manifest of a two-stage run (``redact run``: the default config runs stage 2) over
negatives-only images, e.g. the non-dev, publisher-anonymised Amsterdam panoramas, and for
every (``postprocess.stage1_keep``, ``postprocess.veto_min_area``) pair (at each
``--veto-below``) re-applies the fusion
(:class:`redact.postprocess.FusionRules`, as the job applies them, with the ``--config``'s
``postprocess.veto_min_elevation`` rule) to the
recorded stage-1 and stage-2 scores and prints the mean share of the image that would be
blurred (every blurred candidate there is a false positive). Candidates on the publisher's own
blurred patches (low detail, ``scripts/mine_candidates.box_detail``) are left out: a blurred
face is not a non-face. Candidates the size prior drops stay dropped.

The blurred area is drawn from the boxes (dilated by ``blur.dilate``, ellipses for faces) at
1/4 resolution: an estimate of the published copies' changed pixels, for comparing settings,
not a measurement of them (``redact eval`` measures those).

    .venv/bin/redact run --input BG --output /tmp/bg/out
    .venv/bin/python scripts/veto_area_cost.py --run /tmp/bg/out --input BG
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from redact.classes import ObjectClass

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

SCALE = 4  # area drawn at 1/SCALE resolution
KEEPS = (0.1, 0.2, 0.3, 0.5, 1.0)
AREAS = (0.0, 1e-5, 2.5e-5, 5e-5, 1e-4)


def blurred_share(
    xyxy: np.ndarray, is_face: np.ndarray, shape: tuple[int, int], dilate: float
) -> float:
    """Share of an (H, W) image covered by the dilated (N, 4) boxes (pixels); faces as the
    ellipse through the dilated box's edges, plates as the box (clipped at the image edges:
    a seam-crossing box is not wrapped, fine for an estimate)."""
    h, w = shape
    m = np.zeros((max(h // SCALE, 1), max(w // SCALE, 1)), np.uint8)
    for b, face in zip(np.asarray(xyxy, np.float64).reshape(-1, 4), is_face, strict=True):
        bw, bh = b[2] - b[0], b[3] - b[1]
        x1, y1, x2, y2 = (b + np.array([-bw, -bh, bw, bh]) * dilate) / SCALE
        if face:
            centre = (round((x1 + x2) / 2), round((y1 + y2) / 2))
            axes = (max(round((x2 - x1) / 2), 1), max(round((y2 - y1) / 2), 1))
            cv2.ellipse(m, centre, axes, 0, 0, 360, 1, -1)
        else:
            r0, r1 = (int(np.clip(v, 0, m.shape[0])) for v in (np.floor(y1), np.ceil(y2)))
            c0, c1 = (int(np.clip(v, 0, m.shape[1])) for v in (np.floor(x1), np.ceil(x2)))
            m[r0:r1, c0:c1] = 1
    return float(m.mean())


def parse_veto(token: str, vetoed: list[ObjectClass]) -> dict[ObjectClass, float]:
    """``postprocess.veto_below`` from one ``--veto-below`` token: a number for every class in
    ``vetoed``, or per class, e.g. ``face=0.02/license_plate=0.002`` (classes not named are
    never vetoed)."""
    from redact.classes import ObjectClass

    if "=" not in token:
        out = dict.fromkeys(vetoed, float(token))
    else:
        pairs = (item.split("=", 1) for item in token.split("/"))
        out = {ObjectClass.parse(c): float(v) for c, v in pairs}
    for c, v in out.items():
        if not 0.0 <= v <= 1.0:  # also NaN
            raise ValueError(f"--veto-below {token!r}: {c.label}={v} is not a score in [0, 1]")
    return out


def main(argv: list[str] | None = None) -> int:
    from mine_candidates import DETAIL_IGNORE, box_detail

    from redact.classes import ObjectClass, Projection
    from redact.cli import load_config
    from redact.decision import giant_mask
    from redact.detections import Detections
    from redact.evaluation.dataset import load_manifest_images, load_rgb
    from redact.postprocess import FusionRules

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="output folder of the two-stage run")
    ap.add_argument("--input", type=Path, required=True, help="its input folder")
    ap.add_argument("--config", help="the run's config (default: the packaged default)")
    ap.add_argument("--keeps", default=",".join(map(str, KEEPS)))
    ap.add_argument("--areas", default=",".join(map(str, AREAS)))
    ap.add_argument(
        "--veto-below",
        default="1",
        help="comma-separated postprocess.veto_below: numbers (for --veto-classes) or per-class "
        "tokens such as face=0.02/license_plate=0.002",
    )
    ap.add_argument(
        "--veto-classes",
        default="face,license_plate",
        help="classes --veto-below applies to; the others are never vetoed (default: both)",
    )
    args = ap.parse_args(argv)
    keeps = [float(k) for k in args.keeps.split(",")]
    areas = [float(a) for a in args.areas.split(",")]
    vetoed = [ObjectClass.parse(c) for c in args.veto_classes.split(",")]
    belows = args.veto_below.split(",")
    veto_of = {b: parse_veto(b, vetoed) for b in belows}
    cfg = load_config(args.config)
    dilate = cfg.blur.dilate
    base = FusionRules.of(cfg.postprocess)
    rules = {
        (k, a, b): replace(base, stage1_keep=k, veto_min_area=a, veto_below=veto_of[b])
        for b in belows
        for k in keeps
        for a in areas
    }

    combos = list(rules)
    share: dict[tuple[float, float, str], list[float]] = {c: [] for c in combos}
    count: dict[tuple[float, float, str], list[int]] = {c: [] for c in combos}
    rows = load_manifest_images(str(args.run / "_manifest"))
    for row in rows:
        if len(row.det_score) and np.isnan(row.det_stage2).all():
            raise SystemExit(f"{row.relative_path}: no stage-2 scores (not a two-stage run)")
        pix = load_rgb(str(args.input / row.relative_path))
        gray = cv2.cvtColor(pix, cv2.COLOR_RGB2GRAY)
        wrap = row.projection is Projection.EQUIRECTANGULAR
        s1, s2 = row.det_stage1, np.nan_to_num(row.det_stage2, nan=0.0)
        # everything >= review is blurred (the run's recorded thresholds)
        thr = np.array(
            [row.thresholds[ObjectClass(int(c))].review for c in row.det_class], np.float32
        )
        raw = Detections(
            row.det_xyxy.astype(np.float32), s1.astype(np.float32), row.det_class.astype(np.int32)
        )
        ok = ~giant_mask(raw, cfg.thresholds, row.height) & (s1 >= thr)
        ok &= np.array([box_detail(gray, b, wrap) >= DETAIL_IGNORE for b in row.det_xyxy], bool)
        for combo, rule in rules.items():
            final = rule.final(
                s1,
                s2,
                row.det_xyxy,
                row.det_class,
                image_px=gray.size,
                image_height=row.height,
                equirect=wrap,
            )
            blurred = ok & (final >= thr)
            is_face = row.det_class[blurred] == int(ObjectClass.FACE)
            share[combo].append(blurred_share(row.det_xyxy[blurred], is_face, gray.shape, dilate))
            count[combo].append(int(blurred.sum()))
    print(f"{len(rows)} images; mean share of the image blurred (all false positives), %;")
    print("blurred candidates per image in brackets")
    print(
        "| veto_below | stage1_keep | " + " | ".join(f"veto_min_area {a:g}" for a in areas) + " |"
    )
    print("|---|---|" + "---|" * len(areas))
    for b in belows:
        for k in keeps:
            cells = [
                f"{100 * np.mean(share[(k, a, b)]):.3f} ({np.mean(count[(k, a, b)]):.0f})"
                for a in areas
            ]
            print(f"| {b} | {k:g} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
