#!/usr/bin/env python3
"""Mine stage-1 candidates for training the stage-2 post-processor (``redact.postprocess``).

Runs the real job (``redact run``, ``configs/experimental/stage1-only.yaml``: the default
config with stage 2 off, everything down to the 0.03 floor recorded) over TRAINING images
only, then labels every merged candidate the manifest recorded and stores its crop and
features exactly as the runtime computes them (:func:`redact.postprocess.candidate_features`),
so training and inference see the same inputs.

Sets (``../shared/data``; dev splits and the 12 dev panoramas are never read):

* ``maskon``: MaskON train split (``scripts/_train_common.split_dev``, seed 20261123, 15 %
  dev, as ``scripts/build_train_data.py``). Face candidates matching a labelled face are
  positives; candidates far from every label are negatives (weight 0.5: a few background
  faces are unlabelled).
* ``openalpr``: openalpr us+br train split (seed 20261124). One plate per image is labelled:
  matching plate candidates are positives, nothing else is used.
* ``uc3m``: UC3M-LP ``train`` (published split). Plate positives, plate negatives (0.5).
* ``dutch``: Dutch ``train`` folders. Plate positives, plate negatives (0.5).
* ``bg``: the non-dev Amsterdam panoramas (publisher-anonymised) and ``no_people``: every
  candidate is a hard negative, except IGNORE regions: a candidate whose box has almost no
  detail (the publisher's blurred people and flat plate patches; a blurred face is not a
  non-face) is left out.
* ``comp``: composites: MaskON/openalpr/UC3M/Dutch TRAIN crops (with context) pasted into the
  non-dev panoramas through a pinhole camera (real equirectangular distortion). A share of
  the faces (``--poster-share``, 0.3) is PRINTED (:func:`make_poster`: print look on a
  poster sheet with bars of text, hung 5 deg below to 25 deg above the horizon, 0.8-10 deg
  tall); of the rest 75 % are placed on a ground plane seen from a camera 2.5 m up (faces
  1.0-1.85 m, plates 0.3-1.1 m above the ground, 1.5-30 m away: below the horizon), 25 %
  anywhere from 25 deg above to 30 deg below it (windows, balconies); 1 in 4 at 8000x4000.
  Candidates matching a pasted object are positives, the rest are negatives like ``bg``.
  ``--near-composites`` adds composites (own seeded generator, half at 8000x4000) holding only
  plates close to the capture car (:func:`near_plate_view`: 1.5-8 m, 10-56 deg below the
  horizon, 0-70 deg oblique), the plates a plate veto must not lose.

Matching: a candidate is a positive when its IoU with a labelled box of its class is >= 0.3
or it holds >= 60 % of a labelled box and is at most 9x its size; a negative when its IoU
with every labelled box (either class) is < 0.1 and it holds < 20 % of any; else ignored.
Sample weight (training loss) = set weight x clip(sqrt(box area) / 24, 0.5, 4).

Teacher pseudo-labels (``--teacher``, default the CenterFace teacher: a detector built
independently of stage 1, which was initialised from faceghost): the teacher runs through the
same job over the sets whose faces are not (all) labelled (``TEACHER_SETS``). A face candidate
that is not a labelled positive becomes a PSEUDO positive when the teacher finds a face there
at >= ``TEACHER_POSITIVE`` and stage 1 scored it >= ``PSEUDO_STAGE1`` (two differently built
detectors agree: real faces in UC3M-LP's streets, faces and posters the panorama publisher did
not blur, MaskON's unlabelled background faces); one the teacher scores >= ``TEACHER_IGNORE``
there is IGNORED instead of a negative (a face-like box two detectors half agree on is not a
trustworthy negative). Low-detail boxes of the panoramas stay ignored either way.

    nice -n 5 .venv/bin/python scripts/mine_candidates.py --work /tmp/mine

Writes WORK/candidates.npz (crops uint8 (N, S, S, 3), features, label, weight, class,
stage-1 score, set, image (index), image_name (relative path), box (pixels), image_px = the
image's width x height, image_h (pixels), equirect (bool): what the fusion rules need,
``redact.postprocess.FusionRules``) and WORK/mine_summary.json. Outputs stay in WORK (outside the repo): they hold crops of real
people.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _train_common import (  # noqa: E402
    FACE,
    PLATE,
    SHARED_DATA,
    PinholeView,
    box_outline,
    centre_on_box,
    dirs_to_equirect,
    dutch_items,
    maskon_items,
    openalpr_items,
    paste_view,
    split_dev,
    uc3m_items,
)

Box = tuple[float, float, float, float]
SPLIT_SEED = 20261123  # scripts/build_train_data.py --seed (MaskON; openalpr = seed + 1)
DEV_FRACTION = 0.15
SPLITS = REPO / ".cache" / "train_data" / "splits"
# Candidates are mined from stage 1 ALONE (the default config runs stage 2, which would veto
# and rescore what the post-processor is to learn from): the default with postprocess off.
STAGE1_CONFIG = REPO / "configs" / "experimental" / "stage1-only.yaml"
CROP_SIZE = 48
CONTEXT = 2.0
PASTE_CONTEXT = 2.6  # pasted source crop = object box x this (the 2x window is real context)
DETAIL_IGNORE = 2.5  # mean |Laplacian| (8-bit levels) of a box scaled to 32 px tall
TEACHER_SETS = ("maskon", "uc3m", "bg", "comp")  # sets with unlabelled faces
TEACHER_POSITIVE = 0.5  # teacher score that, with stage 1 >= PSEUDO_STAGE1, makes a positive
# The job's floor (everything recorded): teacher-confirmed faces stage 1 scores just above it
# are the ones a veto would lose, so they must be in training (0.2.0 took them from 0.1 =
# its stage1_keep, where the fusion keeps stage 1 anyway and they never taught the veto).
PSEUDO_STAGE1 = 0.03
TEACHER_IGNORE = 0.2  # teacher score that turns a would-be face negative into IGNORE


# ------------------------------------------------------------------------------- sources


def dev_pano_stems() -> list[str]:
    return [
        Path(n).stem
        for n in json.loads((SHARED_DATA / "panoramas" / "dev_labels.json").read_text())
    ]


def background_panoramas() -> list[Path]:
    dev = dev_pano_stems()
    panos = [
        p
        for p in sorted((SHARED_DATA / "panoramas" / "amsterdam_street").glob("*.jpg"))
        if not any(s in p.stem for s in dev)
    ]
    return panos + sorted((SHARED_DATA / "panoramas" / "no_people").glob("*.jpg"))


def write_splits() -> dict[str, list[str]]:
    """The dev/train splits of scripts/build_train_data.py (written to .cache/... if absent,
    where scripts/eval_dev.py reads them)."""
    m = maskon_items(SHARED_DATA / "faces" / "maskon")
    a = openalpr_items(
        [SHARED_DATA / "plates" / "openalpr_us", SHARED_DATA / "plates" / "openalpr_br"]
    )
    m_train, m_dev = split_dev([s for s, _, _ in m], DEV_FRACTION, SPLIT_SEED)
    a_train, a_dev = split_dev([s for s, _, _ in a], DEV_FRACTION, SPLIT_SEED + 1)
    out = {
        "maskon_train": m_train,
        "maskon_dev": m_dev,
        "openalpr_train": a_train,
        "openalpr_dev": a_dev,
    }
    SPLITS.mkdir(parents=True, exist_ok=True)
    for name, lst in out.items():
        f = SPLITS / f"{name}.txt"
        text = "".join(n + "\n" for n in lst)
        if f.exists() and f.read_text() != text:
            raise SystemExit(f"{f} differs from the seeded split: refusing to mix splits")
        f.write_text(text)
    return out


# ---------------------------------------------------------------------------- composites


def ground_view(cls: int, rng: np.random.Generator) -> tuple[float, float]:
    """(pitch deg, angular height deg) of an object on a ground plane, camera 2.5 m up.

    The pitch is :class:`PinholeView`'s: positive BELOW the horizon (every such object is
    lower than the camera). Before 2026-12-02 it had the opposite sign, which put the ground-
    plane composites of rescorer 0.1.0 above the horizon, mirrored."""
    if cls == FACE:
        size, centre, d = (
            rng.uniform(0.19, 0.25),
            rng.uniform(1.0, 1.85),
            math.exp(rng.uniform(math.log(1.5), math.log(30))),
        )
    else:
        size, centre, d = (
            rng.uniform(0.10, 0.16),
            rng.uniform(0.3, 1.1),
            math.exp(rng.uniform(math.log(2.0), math.log(30))),
        )
    pitch = math.degrees(math.atan2(2.5 - centre, d))
    return pitch, math.degrees(2 * math.atan(size / 2 / d))


def near_plate_view(rng: np.random.Generator) -> tuple[float, float, float]:
    """(pitch deg, angular height deg, horizontal squeeze) of a plate close to the capture car,
    camera 2.5 m up: the plate 0.3-1.1 m above the ground, 1.5-8 m away (10-56 deg below the
    horizon), seen 0-70 deg off its normal (parked cars beside the car: the box is narrowed
    by the cosine of that angle, the tall narrow plates the black-box report says are missed).
    The pitch is :class:`PinholeView`'s (positive below the horizon)."""
    size, centre = rng.uniform(0.10, 0.16), rng.uniform(0.3, 1.1)
    d = math.exp(rng.uniform(math.log(1.5), math.log(8.0)))
    pitch = math.degrees(math.atan2(2.5 - centre, d))
    squeeze = math.cos(math.radians(rng.uniform(0.0, 70.0)))
    return pitch, math.degrees(2 * math.atan(size / 2 / d)), squeeze


def make_poster(crop: np.ndarray, box: Box, rng: np.random.Generator) -> tuple[np.ndarray, Box]:
    """A printed face: ``crop`` (H, W, 3) BGR with its face ``box`` (crop pixels) given a
    print look (contrast, saturation, sometimes fewer levels) on a poster: a solid-colour sheet
    1.3-2.2x its height and 1.2-1.8x its width with a few bars of "text" (which may overlap the
    print). Returns the poster and the face box in it."""
    h, w = crop.shape[:2]
    img = cv2.convertScaleAbs(
        crop, alpha=float(rng.uniform(1.05, 1.4)), beta=float(rng.uniform(-20, 20))
    )
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(1.1, 1.7), 0, 255)
    img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
    if rng.random() < 0.5:
        step = int(rng.choice([16, 24, 32]))
        img = ((img // step) * step + step // 2).astype(np.uint8)
    ph, pw = int(h * rng.uniform(1.3, 2.2)), int(w * rng.uniform(1.2, 1.8))
    sheet = np.empty((ph, pw, 3), np.uint8)
    sheet[:] = rng.integers(0, 256, 3)
    ox, oy = int(rng.integers(0, pw - w + 1)), int(rng.integers(0, max(1, (ph - h) // 2) + 1))
    sheet[oy : oy + h, ox : ox + w] = img
    ink = tuple(int(v) for v in rng.integers(0, 256, 3))
    for _ in range(int(rng.integers(1, 4))):  # bars of "text" in the free part of the sheet
        ty = int(rng.uniform(oy + h, ph)) if oy + h < ph - 4 else int(rng.uniform(0, max(oy, 1)))
        tx = int(rng.uniform(0, pw * 0.3))
        th = max(2, int(ph * rng.uniform(0.02, 0.06)))
        cv2.rectangle(sheet, (tx, ty), (int(tx + pw * rng.uniform(0.3, 0.7)), ty + th), ink, -1)
    return sheet, (box[0] + ox, box[1] + oy, box[2] + ox, box[3] + oy)


def compose(
    pano: np.ndarray,
    faces: list[tuple[Path, Box]],
    plates: list[tuple[Path, Box]],
    rng: np.random.Generator,
    n_faces: int,
    n_plates: int,
    poster_share: float = 0.0,
    near_plates: bool = False,
) -> tuple[np.ndarray, list[tuple[int, Box]]]:
    """Paste train objects (with context) into a copy of the panorama; returns the composite
    (BGR) and the projected boxes (equirect pixels; never across the seam). A share
    ``poster_share`` of the faces are printed (:func:`make_poster`) and hung anywhere from
    just below the horizon up (-5..+25 deg), 0.8-10 deg tall. ``near_plates``: every plate is
    placed by :func:`near_plate_view` instead (close to the capture car, often oblique)."""
    h, w = pano.shape[:2]
    out = pano.copy()
    labels: list[tuple[int, Box]] = []
    kinds = [FACE] * n_faces + [PLATE] * n_plates
    rng.shuffle(kinds)
    slot = 340.0 / len(kinds)
    for k, cls in enumerate(kinds):
        path, box = (faces if cls == FACE else plates)[
            int(rng.integers(len(faces if cls == FACE else plates)))
        ]
        img = cv2.imread(str(path))
        if img is None:
            continue
        bw, bh = box[2] - box[0], box[3] - box[1]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half_w = PASTE_CONTEXT * max(bw, bh / 2 if cls == PLATE else bw) / 2
        half_h = PASTE_CONTEXT * max(bh, bw / 2 if cls == PLATE else bh) / 2
        x1, y1 = max(0, int(cx - half_w)), max(0, int(cy - half_h))
        x2, y2 = (
            min(img.shape[1], math.ceil(cx + half_w)),
            min(img.shape[0], math.ceil(cy + half_h)),
        )
        crop = img[y1:y2, x1:x2]
        if crop.shape[0] < 4 or crop.shape[1] < 4:
            continue
        local = (box[0] - x1, box[1] - y1, box[2] - x1, box[3] - y1)
        if cls == PLATE and near_plates:
            pitch, deg, squeeze = near_plate_view(rng)
            new_w = max(4, round(crop.shape[1] * squeeze))
            fx = new_w / crop.shape[1]
            crop = cv2.resize(crop, (new_w, crop.shape[0]), interpolation=cv2.INTER_AREA)
            local = (local[0] * fx, local[1], local[2] * fx, local[3])
        elif cls == FACE and rng.random() < poster_share:
            crop, local = make_poster(crop, local, rng)
            pitch = float(rng.uniform(-25.0, 5.0))  # PinholeView: positive = below the horizon
            deg = math.exp(rng.uniform(math.log(0.8), math.log(10.0)))
        elif rng.random() < 0.75:
            pitch, deg = ground_view(cls, rng)
        else:
            pitch = float(rng.uniform(-25.0, 30.0))  # 25 deg above .. 30 below the horizon
            deg = math.exp(rng.uniform(math.log(0.5), math.log(8.0 if cls == FACE else 4.0)))
        focal = bh / (2 * math.tan(math.radians(deg) / 2))
        yaw = float(np.clip(-170 + slot * (k + 0.5) + rng.uniform(-0.2, 0.2) * slot, -170, 170))
        shifted, local = centre_on_box(crop, local)
        view = PinholeView(
            yaw, pitch, focal, crop.shape[1], crop.shape[0], roll_deg=float(rng.normal(0, 3))
        )
        try:
            paste_view(out, shifted, view, feather=0.12)
        except ValueError:
            continue
        xs, ys = box_outline(local, 16)
        ex, ey = dirs_to_equirect(view.pixels_to_dirs(xs, ys), w, h)
        labels.append((cls, (float(ex.min()), float(ey.min()), float(ex.max()), float(ey.max()))))
    return out, labels


# ------------------------------------------------------------------------------- matching


def _iou_ios(
    a: np.ndarray, b: np.ndarray, period: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, M) IoU, share of each label inside each candidate, share of each candidate inside
    each label; seam-aware with ``period`` (boxes shifted by +-period are tried)."""
    if len(a) == 0 or len(b) == 0:
        z = np.zeros((len(a), len(b)))
        return z, z, z
    best_inter = np.zeros((len(a), len(b)))
    shifts = (0.0, -period, period) if period else (0.0,)
    for s in shifts:
        bx = b + np.array([s, 0, s, 0])
        ix = np.clip(
            np.minimum(a[:, None, 2], bx[None, :, 2]) - np.maximum(a[:, None, 0], bx[None, :, 0]),
            0,
            None,
        )
        iy = np.clip(
            np.minimum(a[:, None, 3], bx[None, :, 3]) - np.maximum(a[:, None, 1], bx[None, :, 1]),
            0,
            None,
        )
        best_inter = np.maximum(best_inter, ix * iy)
    aa = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
    ab = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :]
    iou = best_inter / np.maximum(aa + ab - best_inter, 1e-9)
    return iou, best_inter / np.maximum(ab, 1e-9), best_inter / np.maximum(aa, 1e-9)


def label_candidates(
    xyxy: np.ndarray, cls: np.ndarray, gt: list[tuple[int, Box]], period: float | None
) -> np.ndarray:
    """(N,) int8: 1 positive, 0 negative, -1 ignore (see the module docstring)."""
    out = np.full(len(xyxy), -1, np.int8)
    if not len(xyxy):
        return out
    gb = np.array([b for _, b in gt], np.float64).reshape(-1, 4)
    gc = np.array([c for c, _ in gt], np.int64)
    iou, label_in, cand_in = _iou_ios(xyxy, gb, period)
    area_c = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    area_g = (gb[:, 2] - gb[:, 0]) * (gb[:, 3] - gb[:, 1])
    same = cls[:, None] == gc[None, :]
    pos = same & ((iou >= 0.3) | ((label_in >= 0.6) & (area_c[:, None] <= 9 * area_g[None, :])))
    neg = (
        (iou < 0.1).all(axis=1) & (label_in < 0.2).all(axis=1) & (cand_in < 0.2).all(axis=1)
        if len(gb)
        else np.ones(len(xyxy), bool)
    )
    out[neg] = 0
    out[pos.any(axis=1)] = 1
    return out


def apply_teacher(
    lab: np.ndarray,
    xyxy: np.ndarray,
    cls: np.ndarray,
    stage1: np.ndarray,
    teacher_xyxy: np.ndarray,
    teacher_score: np.ndarray,
    period: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Teacher pseudo-labels of one image's FACE candidates (see the module docstring).

    Args:
        lab: (N,) int8 labels from :func:`label_candidates` (1, 0, -1).
        xyxy, cls, stage1: (N, 4) candidate boxes (pixels), (N,) classes, (N,) stage-1 scores.
        teacher_xyxy, teacher_score: (M, 4) and (M,) the teacher's face detections.
        period: image width on panoramas (seam-aware matching), else None.

    Returns:
        (N,) int8 new labels and (N,) bool: which candidates became pseudo positives.
    """
    out = lab.astype(np.int8).copy()
    pseudo = np.zeros(len(lab), bool)
    tb = np.asarray(teacher_xyxy, np.float64).reshape(-1, 4)
    ts = np.asarray(teacher_score, np.float64).reshape(-1)
    if not len(lab) or not len(tb):
        return out, pseudo
    face = (cls == FACE) & (lab != 1)
    strong = [(FACE, tuple(b)) for b in tb[ts >= TEACHER_POSITIVE]]
    weak = [(FACE, tuple(b)) for b in tb[ts >= TEACHER_IGNORE]]
    if strong:
        hit = label_candidates(xyxy, cls, strong, period) == 1
        pseudo = face & hit & (stage1 >= PSEUDO_STAGE1)
    if weak:
        near = label_candidates(xyxy, np.full(len(xyxy), FACE), weak, period) != 0
        out[face & near & (out == 0)] = -1
    out[pseudo] = 1
    return out, pseudo


def box_detail(gray: np.ndarray, box: np.ndarray, wrap: bool) -> float:
    """Mean |Laplacian| (8-bit levels) of the box scaled to 32 px tall (seam-aware)."""
    h, w = gray.shape
    x1, y1, x2, y2 = box
    xs = np.arange(math.floor(x1), max(math.ceil(x2), math.floor(x1) + 1))
    xs = np.mod(xs, w) if wrap else np.clip(xs, 0, w - 1)
    ys = np.clip(np.arange(math.floor(y1), max(math.ceil(y2), math.floor(y1) + 1)), 0, h - 1)
    patch = gray[ys[:, None], xs[None, :]]
    s = 32.0 / max(patch.shape[0], 1)
    nw = max(2, round(patch.shape[1] * s))
    patch = cv2.resize(patch, (nw, 32), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return float(np.abs(cv2.Laplacian(patch, cv2.CV_32F, ksize=1)).mean())


# ----------------------------------------------------------------------------------- main


def street_background(path: Path, big: bool, rng: np.random.Generator) -> np.ndarray:
    """A composite's background: the panorama (BGR), upsampled to 8000x4000 when ``big``,
    rolled by a random yaw."""
    pano = cv2.imread(str(path))
    if pano is None:
        raise FileNotFoundError(f"cannot decode background panorama {path}")
    if big and pano.shape[1] < 8000:
        pano = cv2.resize(pano, (8000, 4000), interpolation=cv2.INTER_LINEAR)
    return np.roll(pano, int(rng.integers(pano.shape[1])), axis=1)


def prepare(work: Path, args: argparse.Namespace) -> dict[str, dict]:
    """Link / write every set's images under WORK/input/<set>/; labels per relative path."""
    rng = np.random.default_rng(args.seed)
    splits = write_splits()
    inp = work / "input"
    labels: dict[str, dict] = {}

    def link(set_name: str, items: list[tuple[str, Path, list[tuple[int, Box]]]]) -> None:
        d = inp / set_name
        d.mkdir(parents=True, exist_ok=True)
        for stem, path, boxes in items:
            name = stem.replace("/", "_") + path.suffix
            dst = d / name
            if not dst.exists():
                dst.symlink_to(path.resolve())
            labels[f"{set_name}/{name}"] = {"set": set_name, "boxes": boxes}

    m = {s: (s, p, b) for s, p, b in maskon_items(SHARED_DATA / "faces" / "maskon")}
    m_train = [m[s] for s in splits["maskon_train"]]
    a = {
        s: (s, p, b)
        for s, p, b in openalpr_items(
            [SHARED_DATA / "plates" / "openalpr_us", SHARED_DATA / "plates" / "openalpr_br"]
        )
    }
    a_train = [a[s] for s in splits["openalpr_train"]]
    u_train = uc3m_items(SHARED_DATA / "plates" / "uc3m_lp_es", "train")
    if args.uc3m_max and len(u_train) > args.uc3m_max:
        idx = sorted(rng.choice(len(u_train), args.uc3m_max, replace=False).tolist())
        u_train = [u_train[i] for i in idx]
    d_train = dutch_items(SHARED_DATA / "plates" / "dutch_nl", "train")
    bgs = background_panoramas()
    for name, items in (
        ("maskon", m_train),
        ("openalpr", a_train),
        ("uc3m", u_train),
        ("dutch", d_train),
        ("bg", [(p.stem, p, []) for p in bgs]),
    ):
        if name in args.sets:
            link(name, items)
    # composites: faces >= 12 px, plates >= 8 px tall, of the TRAIN splits only
    faces = [(p, b) for _, p, bs in m_train for c, b in bs if b[3] - b[1] >= 12]
    plates = [
        (p, b) for _, p, bs in (*a_train, *u_train, *d_train) for c, b in bs if b[3] - b[1] >= 8
    ]
    cdir = inp / "comp"
    cdir.mkdir(parents=True, exist_ok=True)
    street = [p for p in bgs if "amsterdam_street" in str(p)]
    jobs = [  # (name, background, at 8000x4000, generator, compose kwargs)
        (
            f"comp_{i:03d}.jpg",
            street[i % len(street)],
            i % 4 == 3,
            rng,
            {"n_faces": 6, "n_plates": 4, "poster_share": args.poster_share},
        )
        for i in range(args.composites if "comp" in args.sets else 0)
    ]
    # near-plate composites: their own generator, so the composites above stay as they were
    near_rng = np.random.default_rng([args.seed, 1])
    jobs += [
        (
            f"near_{i:03d}.jpg",
            street[(i * 7 + 3) % len(street)],
            i % 2 == 1,
            near_rng,
            {"n_faces": 0, "n_plates": 8, "near_plates": True},
        )
        for i in range(args.near_composites if "comp" in args.sets else 0)
    ]
    for name, bg, big, gen, kwargs in jobs:
        comp, boxes = compose(street_background(bg, big, gen), faces, plates, gen, **kwargs)
        if not (cdir / name).exists():
            cv2.imwrite(str(cdir / name), comp, [cv2.IMWRITE_JPEG_QUALITY, 90])
        labels[f"comp/{name}"] = {"set": "comp", "boxes": boxes}
    (work / "labels.json").write_text(json.dumps(labels))
    print(
        f"prepared {len(labels)} images: "
        + ", ".join(
            f"{s} {sum(v['set'] == s for v in labels.values())}"
            for s in ("maskon", "openalpr", "uc3m", "dutch", "bg", "comp")
        ),
        flush=True,
    )
    return labels


ALL_SETS = ("maskon", "openalpr", "uc3m", "dutch", "bg", "comp")
SET_NEG_WEIGHT = {"maskon": 0.5, "openalpr": 0.0, "uc3m": 0.5, "dutch": 0.5, "bg": 1.0, "comp": 1.0}
# classes whose negatives a set may give (openalpr: only one plate per image is labelled;
# plate sets: people in the street are not labelled as faces)
SET_NEG_CLASSES = {
    "maskon": (FACE, PLATE),
    "openalpr": (),
    "uc3m": (PLATE,),
    "dutch": (PLATE,),
    "bg": (FACE, PLATE),
    "comp": (FACE, PLATE),
}


def teacher_faces(work: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """relative path -> ((M, 4) boxes, (M,) scores) of the teacher run's face detections
    (empty when the teacher did not run).

    Raises:
        SystemExit: WORK holds a teacher run of the old one-job layout
            (``teacher_output/_manifest``), whose paths this function would not match.
    """
    out = {}
    for rel, row in per_set_rows(work / "teacher_output"):
        face = row.det_class == FACE
        out[rel] = (row.det_xyxy[face], row.det_stage1[face])
    return out


def per_set_rows(root: Path) -> list[tuple[str, Any]]:
    """(``<set>/<relative path>``, manifest image row) of every per-set job under ROOT
    (``ROOT/<set>/_manifest``: one job per set, whose paths are relative to the set).

    Raises:
        SystemExit: ROOT holds a run of the old one-job layout (``ROOT/_manifest``), whose
            paths would not match the labels.
    """
    from redact.evaluation.dataset import load_manifest_images

    if (root / "_manifest").exists():
        raise SystemExit(
            f"{root} holds a one-job run (before the per-set jobs): remove it and re-run, "
            "or its rows would not match the labels"
        )
    return [
        (f"{manifest.parent.name}/{row.relative_path}", row)
        for manifest in sorted(root.glob("*/_manifest"))
        for row in load_manifest_images(str(manifest))
    ]


def extract(work: Path, labels: dict[str, dict]) -> None:
    from redact.classes import Projection
    from redact.detections import Detections
    from redact.evaluation.dataset import load_rgb
    from redact.postprocess import candidate_features

    rows = per_set_rows(work / "output")
    teacher = teacher_faces(work)
    crops_all, feats_all, lab_all, w_all, cls_all, s1_all, set_all, img_all, box_all = (
        [] for _ in range(9)
    )
    image_px_all, name_all, height_all, equirect_all = [], [], [], []
    pseudo_all = []
    stats: dict[str, dict[str, int]] = {}
    for k, (rel, row) in enumerate(rows):
        info = labels.get(rel)
        if info is None or not len(row.det_score):
            continue
        set_name = info["set"]
        pix = load_rgb(str(work / "input" / rel))
        wrap = row.projection is Projection.EQUIRECTANGULAR
        dets = Detections(
            row.det_xyxy.astype(np.float32),
            row.det_stage1.astype(np.float32),  # stage 1's, whatever the run fused
            row.det_class.astype(np.int32),
        )
        gt = [(int(c), tuple(b)) for c, b in info["boxes"]]
        lab = label_candidates(row.det_xyxy, row.det_class, gt, float(row.width) if wrap else None)
        neg_ok = np.isin(row.det_class, SET_NEG_CLASSES[set_name])
        lab = np.where((lab == 0) & ~neg_ok, -1, lab).astype(np.int8)
        pseudo = np.zeros(len(lab), bool)
        if set_name in TEACHER_SETS and rel in teacher:
            tb, ts = teacher[rel]
            lab, pseudo = apply_teacher(
                lab,
                row.det_xyxy,
                row.det_class,
                row.det_stage1,
                tb,
                ts,
                float(row.width) if wrap else None,
            )
        if set_name in ("bg", "comp"):  # pre-anonymised patches are IGNORE, never negatives
            gray = cv2.cvtColor(pix, cv2.COLOR_RGB2GRAY)
            for i in np.nonzero((lab == 0) | pseudo)[0]:
                if box_detail(gray, row.det_xyxy[i], wrap) < DETAIL_IGNORE:
                    lab[i] = -1
                    pseudo[i] = False
        keep = lab >= 0
        st = stats.setdefault(
            set_name, {"candidates": 0, "positive": 0, "pseudo": 0, "negative": 0, "ignored": 0}
        )
        st["candidates"] += len(lab)
        st["pseudo"] += int(pseudo.sum())
        st["positive"] += int((lab == 1).sum())
        st["negative"] += int((lab == 0).sum())
        st["ignored"] += int((lab < 0).sum())
        if not keep.any():
            continue
        sel = dets[keep]
        crops, feats = candidate_features(pix, sel, row.projection, context=CONTEXT, size=CROP_SIZE)
        area = np.sqrt(np.maximum(sel.area, 1.0)) / 24.0
        wt = np.clip(area, 0.5, 4.0) * np.where(lab[keep] == 1, 1.0, SET_NEG_WEIGHT[set_name])
        crops_all.append(crops)
        feats_all.append(feats)
        lab_all.append(lab[keep])
        w_all.append(wt.astype(np.float32))
        cls_all.append(sel.class_id)
        s1_all.append(sel.confidence)
        set_all.append(np.full(len(sel), set_name))
        img_all.append(np.full(len(sel), k, np.int32))
        name_all.append(np.full(len(sel), rel))
        box_all.append(sel.xyxy)
        image_px_all.append(np.full(len(sel), row.width * row.height, np.int64))
        height_all.append(np.full(len(sel), row.height, np.int64))
        equirect_all.append(np.full(len(sel), wrap, bool))
        pseudo_all.append(pseudo[keep])
        if k % 200 == 0:
            print(f"  {k}/{len(rows)} images", flush=True)
    np.savez_compressed(
        work / "candidates.npz",
        crops=np.concatenate(crops_all),
        features=np.concatenate(feats_all),
        label=np.concatenate(lab_all),
        weight=np.concatenate(w_all),
        cls=np.concatenate(cls_all),
        stage1=np.concatenate(s1_all),
        set=np.concatenate(set_all),
        image=np.concatenate(img_all),
        image_name=np.concatenate(name_all),
        xyxy=np.concatenate(box_all),
        image_px=np.concatenate(image_px_all),
        image_h=np.concatenate(height_all),
        equirect=np.concatenate(equirect_all),
        pseudo=np.concatenate(pseudo_all),
    )
    (work / "mine_summary.json").write_text(json.dumps(stats, indent=1))
    print(json.dumps(stats, indent=1), flush=True)


def teacher_config(work: Path, teacher: str) -> Path:
    """WORK/teacher.yaml: the default config with the teacher as the only detector, its face
    floor at 0.1 (what :func:`apply_teacher` reads starts at ``TEACHER_IGNORE``)."""
    cfg = work / "teacher.yaml"
    cfg.write_text(
        f"extends: {STAGE1_CONFIG}\n"
        f"models:\n  - name: {teacher}\n    batch_size: 8\n"
        "thresholds: {face: {blur: 0.1, review: 0.1, floor: 0.1}}\n"
    )
    return cfg


def run_stage1(work: Path, labels: dict[str, dict], config: str) -> None:
    """Run stage 1 over WORK/input/<set>/, ONE JOB PER SET (outputs in WORK/output/<set>/; a
    set whose manifest exists is not re-run, so a stopped mining resumes). One job over all
    1,999 images ran away in the DirectRunner's CoGroupByKey in 2 of 3 runs (docs/performance.md,
    "an intermittent memory runaway"); the largest set is about 800 images."""
    for set_name in sorted({info["set"] for info in labels.values()}):
        out = work / "output" / set_name
        if not (out / "_manifest").exists():
            redact_run(work / "input" / set_name, out, config)


def run_teacher(work: Path, labels: dict[str, dict], teacher: str) -> None:
    """Run the teacher over the TEACHER_SETS images, ONE JOB PER SET (symlinked under
    WORK/teacher_input/<set>/, outputs in WORK/teacher_output/<set>/; a set whose manifest
    exists is not re-run). One job over all sets was killed by the kernel at 24 GB RSS while
    per-set jobs peak at 2.0-3.3 GB (0.3.0 card, "Known problems")."""
    config = str(teacher_config(work, teacher))
    for set_name in TEACHER_SETS:
        rels = [rel for rel, info in labels.items() if info["set"] == set_name]
        out = work / "teacher_output" / set_name
        if not rels or (out / "_manifest").exists():
            continue
        for rel in rels:
            dst = work / "teacher_input" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                dst.symlink_to((work / "input" / rel).resolve())
        redact_run(work / "teacher_input" / set_name, out, config)


def redact_run(inp: Path, out: Path, config: str | None) -> None:
    """``redact run --input INP --output OUT [--config CONFIG]`` in a child process."""
    cmd = [sys.executable, "-m", "redact.cli", "run", "--input", str(inp), "--output", str(out)]
    if config:
        cmd += ["--config", config]
    print("$ " + " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/redact_mine", help="work folder (outside the repo)")
    ap.add_argument("--composites", type=int, default=60)
    ap.add_argument(
        "--near-composites",
        type=int,
        default=0,
        help="extra composites holding only plates close to the capture car (near_plate_view)",
    )
    ap.add_argument("--uc3m-max", type=int, default=800, help="UC3M-LP train images used (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--sets",
        type=lambda v: tuple(x for x in v.split(",") if x),
        default=ALL_SETS,
        help=f"sets to mine (default {','.join(ALL_SETS)})",
    )
    ap.add_argument(
        "--poster-share", type=float, default=0.3, help="share of composite faces printed"
    )
    ap.add_argument("--skip-run", action="store_true", help="reuse WORK/output")
    ap.add_argument(
        "--config",
        help="config of the stage-1 run (default: configs/experimental/stage1-only.yaml)",
    )
    ap.add_argument(
        "--teacher",
        default="centerface",
        help="registry name of the face teacher for pseudo-labels ('' = none)",
    )
    args = ap.parse_args()
    work = Path(args.work)
    t0 = time.time()
    labels = prepare(work, args)
    if not args.skip_run:
        run_stage1(work, labels, args.config or str(STAGE1_CONFIG))
        print(f"  run {time.time() - t0:.0f} s", flush=True)
    if args.teacher:
        run_teacher(work, labels, args.teacher)
        print(f"  teacher {time.time() - t0:.0f} s", flush=True)
    extract(work, labels)
    print(f"done in {time.time() - t0:.0f} s -> {work / 'candidates.npz'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
