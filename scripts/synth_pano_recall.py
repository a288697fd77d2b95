#!/usr/bin/env python3
"""Face recall in panoramas by angular size, on synthetic composites of held-out faces.

Real panoramas hold few raw faces, none close to the camera. This pastes faces of the MaskON
**dev** split (never trained on) into the 12 dev panoramas (never trained on) through a
pinhole camera (the equirectangular distortion is the real one) at a chosen angular height,
a random yaw and a pitch in [-35, +10] deg, writes the composites with COCO labels (the
projected face boxes), runs ``redact run`` and ``redact eval`` on them and prints, per
angular-size bin, box recall@0.3, pixel recall and the scores the detector gave (any
decision, manifest floor and up), so size rules can be checked against real near faces.

    nice -n 5 .venv/bin/python scripts/synth_pano_recall.py --work /tmp/synth

``--ground-plane=LO,HI`` (with ``=``: LO is negative) places faces as a street camera sees them instead: a pitch in
[LO, HI] deg (below the horizon), a camera 2.0-3.0 m above the ground and a face centre
1.0-1.8 m above it (children to tall adults), so the face's angular size follows from its
distance (:func:`ground_plane_face`); with ``--plates`` the objects are UC3M-LP val / Dutch
val plates 0.3-1.0 m above the ground instead. This checks a tiling that lowers the resolution away
from the horizon against faces of the sizes that physics puts there.

Outputs stay in WORK (outside the repo): they hold real faces.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _train_common import (
    SHARED_DATA,
    PinholeView,
    box_outline,
    centre_on_box,
    dirs_to_equirect,
    dutch_items,
    parse_voc,
    paste_view,
    uc3m_items,
)

REPO = Path(__file__).resolve().parents[1]
# Face height bins in degrees of the panorama's 180 deg height; a pano holds faces of one bin.
BINS = ((0.6, 1.2), (1.2, 2.5), (2.5, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, 35.0))
CONTEXT = 1.8  # pasted crop = face box x CONTEXT (hair, shoulders, neighbours)


def maskon_dev_faces(min_px: float) -> list[tuple[Path, tuple[float, float, float, float]]]:
    """(image, face box) of the MaskON dev split with faces at least ``min_px`` tall."""
    split = REPO / ".cache" / "train_data" / "splits" / "maskon_dev.txt"
    if not split.is_file():
        raise SystemExit(f"{split} missing: run scripts/build_train_data.py first (dev split)")
    root = SHARED_DATA / "faces" / "maskon"
    out = []
    for stem in split.read_text().split():
        _, _, boxes = parse_voc((root / "annotations" / f"{stem}.xml").read_text())
        for box in boxes:
            if box[3] - box[1] >= min_px:
                out.append((root / "images" / f"{stem}.jpg", box))
    return out


FACE_HEIGHT_M = 0.18  # chin to brow of a MaskON-style face box (small adult)
PLATE_HEIGHT_M = 0.11  # an EU plate (US plates are 0.15 m: larger)
PLATE_Z_M = (0.3, 1.0)  # plate centre above the ground: cars to vans
FACE_Z_M = (1.0, 1.8)  # face centre above the ground: children to tall adults


def dev_plates(min_px: float) -> list[tuple[Path, tuple[float, float, float, float]]]:
    """(image, plate box) of UC3M-LP val and the Dutch val frames (never trained on), plates
    at least ``min_px`` tall."""
    root = SHARED_DATA / "plates"
    items = uc3m_items(root / "uc3m_lp_es", "val") + dutch_items(root / "dutch_nl", "val")
    return [(img, b) for _, img, boxes in items for _, b in boxes if b[3] - b[1] >= min_px]


def ground_plane_face(
    pitch_deg: float, camera_m: float, face_m: float, face_height_m: float = FACE_HEIGHT_M
) -> float:
    """Angular height (deg) of an upright face (or plate) whose centre is seen at
    ``pitch_deg`` (< 0: below the horizon) by a camera ``camera_m`` above flat ground, the
    centre ``face_m`` above it.

    The object is ``(camera_m - face_m) / sin(-pitch)`` metres away along the ray and, being
    vertical, is seen foreshortened by ``cos(pitch)`` (the crop is still pasted square-on to
    the ray: only its size follows the geometry).
    """
    drop = camera_m - face_m
    if pitch_deg >= 0 or drop <= 0:
        raise ValueError(
            f"a face below the camera needs pitch < 0 and drop > 0, got {pitch_deg}, {drop}"
        )
    slant = drop / math.sin(math.radians(-pitch_deg))
    return math.degrees(
        2 * math.atan(face_height_m * math.cos(math.radians(pitch_deg)) / 2 / slant)
    )


def _stats_row(sel: list[dict]) -> str:
    """Table cells for eval objects: n, box recall@0.3, mean pixel coverage, best scores."""
    rec = np.mean([o["matched_iou0.3"] for o in sel])
    pix = np.mean([o["pixel_coverage"] or 0 for o in sel])
    sc = np.array([o["best_candidate_score"] or 0.0 for o in sel])
    return (
        f"| {len(sel):3d} |  {rec:.3f}  | {pix:.3f} | "
        f"{sc.min():.3f} / {np.quantile(sc, 0.1):.3f} / {np.median(sc):.3f}"
    )


def _width(path: Path) -> int:
    """Pixel width of a JPEG from its header (no full decode)."""
    from PIL import Image

    with Image.open(path) as im:
        return int(im.size[0])


def projected_box(view: PinholeView, box: tuple[float, float, float, float], w: int, h: int):
    xs, ys = box_outline(box, 16)
    ex, ey = dirs_to_equirect(view.pixels_to_dirs(xs, ys), w, h)
    return [float(ex.min()), float(ey.min()), float(ex.max()), float(ey.max())]


def compose(
    pano: np.ndarray,
    faces: list,
    lo: float,
    hi: float,
    n: int,
    rng: np.random.Generator,
    ground: tuple[float, float] | None = None,
    plates: bool = False,
) -> tuple[np.ndarray, list[list[float]]]:
    """Paste ``n`` faces of angular height in [lo, hi) deg at evenly spread yaws; with
    ``ground`` = (pitch lo, pitch hi) the pitch is drawn there and the size follows from
    :func:`ground_plane_face` (``lo``/``hi`` unused); ``plates``: the objects are plates
    (:data:`PLATE_HEIGHT_M` at :data:`PLATE_Z_M`) instead of faces."""
    h, w = pano.shape[:2]
    out = pano.copy()
    boxes = []
    slot = 360.0 / n
    for k in range(n):
        path, box = faces[int(rng.integers(len(faces)))]
        img = cv2.imread(str(path))
        bw, bh = box[2] - box[0], box[3] - box[1]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x1 = max(0, int(cx - CONTEXT * bw / 2))
        y1 = max(0, int(cy - CONTEXT * bh / 2))
        x2 = min(img.shape[1], math.ceil(cx + CONTEXT * bw / 2))
        y2 = min(img.shape[0], math.ceil(cy + CONTEXT * bh / 2))
        crop = img[y1:y2, x1:x2]
        local = (box[0] - x1, box[1] - y1, box[2] - x1, box[3] - y1)
        if ground is None:
            deg = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            pitch = float(rng.uniform(-35.0, 10.0))
        else:
            pitch = float(rng.uniform(*ground))
            z_range, height_m = (PLATE_Z_M, PLATE_HEIGHT_M) if plates else (FACE_Z_M, FACE_HEIGHT_M)
            deg = ground_plane_face(
                pitch, float(rng.uniform(2.0, 3.0)), float(rng.uniform(*z_range)), height_m
            )
        # focal so the face spans `deg` degrees: bh / focal = 2 tan(deg / 2)
        focal = bh / (2 * math.tan(math.radians(deg) / 2))
        # yaw in its slot, away from the seam (the paste helper does not wrap)
        yaw = -180 + slot * (k + 0.5) + float(rng.uniform(-0.15, 0.15)) * slot
        yaw = float(np.clip(yaw, -170, 170))
        # the crop's centre is the face centre: the view looks at the face. PinholeView's
        # pitch is positive *below* the horizon (_train_common.rotation), so it gets -pitch;
        # before 2026-12-02 this passed `pitch` and the faces landed at latitudes -10..+35.
        view = PinholeView(
            yaw, -pitch, focal, crop.shape[1], crop.shape[0], roll_deg=float(rng.normal(0, 3))
        )
        shifted, local = centre_on_box(crop, local)
        try:
            paste_view(out, shifted, view)
        except ValueError:
            continue
        boxes.append(projected_box(view, local, w, h))
    return out, boxes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/redact_synth", help="work folder (outside repo)")
    ap.add_argument("--per-bin", type=int, default=4, help="panoramas per size bin")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--config", help="config for the run (default: configs/default.yaml)")
    ap.add_argument("--skip-run", action="store_true", help="reuse WORK/output")
    ap.add_argument("--bins", help="only these size bins, e.g. 10-20,20-35 (default: all of BINS)")
    ap.add_argument(
        "--ground-plane",
        metavar="LO,HI",
        help="pitch band in deg (e.g. -45,-25): faces sized by a street camera's geometry",
    )
    ap.add_argument(
        "--plates",
        action="store_true",
        help="paste UC3M-LP val / Dutch val plates instead of faces (needs --ground-plane)",
    )
    ap.add_argument(
        "--min-width", type=int, default=0, help="only dev panoramas at least this wide (px)"
    )
    args = ap.parse_args()
    if args.plates and not args.ground_plane:
        ap.error("--plates needs --ground-plane (plates are sized by the street geometry)")
    ground = None
    if args.ground_plane:
        ground = tuple(float(v) for v in args.ground_plane.split(","))
        if len(ground) != 2 or not ground[0] < ground[1] < 0:
            ap.error("--ground-plane LO,HI: two pitches below the horizon, LO < HI < 0")
    bins = BINS
    if ground is not None:
        bins = ((0.0, 90.0),)  # one set of composites; sizes come from the geometry
    elif args.bins:
        bins = tuple(
            (float(a), float(b)) for a, b in (item.split("-") for item in args.bins.split(","))
        )
    work = Path(args.work)
    rng = np.random.default_rng(args.seed)
    names = sorted(json.loads((SHARED_DATA / "panoramas" / "dev_labels.json").read_text()))
    backgrounds = [SHARED_DATA / "panoramas" / "amsterdam_street" / n for n in names]
    backgrounds = [bg for bg in backgrounds if _width(bg) >= args.min_width]
    if not backgrounds:
        ap.error(f"no dev panorama is at least {args.min_width} px wide")
    cls_name, cls_id = ("license_plate", 1) if args.plates else ("face", 0)
    if args.plates:
        small = large = dev_plates(10)
        print(f"plates: {len(small)} >= 10 px tall (UC3M-LP val, Dutch val)")
    else:
        small = maskon_dev_faces(16)
        large = maskon_dev_faces(64)
        print(f"faces: {len(small)} >= 16 px, {len(large)} >= 64 px (MaskON dev split)")
    images, anns = [], []
    (work / "input").mkdir(parents=True, exist_ok=True)
    for b, (lo, hi) in enumerate(bins):
        for i in range(args.per_bin):
            bg = backgrounds[(b * args.per_bin + i) % len(backgrounds)]
            pano = cv2.imread(str(bg))
            n = 8 if ground else 10 if hi <= 5 else 6 if hi <= 10 else 4 if hi <= 20 else 3
            comp, boxes = compose(
                pano,
                large if lo >= 10 and ground is None else small,
                lo,
                hi,
                n,
                rng,
                ground,
                args.plates,
            )
            tag = f"ground{ground[0]:g}_{ground[1]:g}" if ground else f"{lo:g}-{hi:g}deg"
            name = f"synth_{tag}_{b}_{i}.jpg"
            cv2.imwrite(str(work / "input" / name), comp, [cv2.IMWRITE_JPEG_QUALITY, 92])
            iid = len(images)
            images.append(
                {"id": iid, "file_name": name, "width": comp.shape[1], "height": comp.shape[0]}
            )
            for x1, y1, x2, y2 in boxes:
                anns.append(
                    {
                        "id": len(anns),
                        "image_id": iid,
                        "category_id": cls_id,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                    }
                )
    labels = work / "labels.json"
    cats = [{"id": 0, "name": "face"}, {"id": 1, "name": "license_plate"}]
    labels.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    print(f"{len(images)} composites, {len(anns)} {cls_name}s -> {work / 'input'}")
    py = [sys.executable, "-m", "redact.cli"]
    if not args.skip_run:
        cfg = ["--config", args.config] if args.config else []
        cmd = [*py, "run", "--input", str(work / "input"), "--output", str(work / "output"), *cfg]
        subprocess.run(cmd, check=True, cwd=REPO)
    ev = work / "eval.json"
    subprocess.run(
        [*py, "eval", "--labels", str(labels), "--originals", str(work / "input"),
         "--published", str(work / "output"), "--json", str(ev)],
        check=True, cwd=REPO, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    objs = [o for o in json.loads(ev.read_text())["objects"] if o["class"] == cls_name]
    heights = {im["file_name"]: im["height"] for im in images}
    head = "|   n | box@0.3 | pixel | best candidate score: min / p10 / median"
    print(f"{cls_name} height (deg) {head}")
    for lo, hi in (*(BINS if ground else bins), (14.4, 90.0)):
        sel = [o for o in objs if lo <= o["height_px"] / heights[Path(o["image"]).name] * 180 < hi]
        if sel:
            print(f"  {lo:5.1f}-{hi:<5.1f}       {_stats_row(sel)}")
    if ground is not None:
        print(f"{cls_name} pitch (deg) {head}")
        # 10 deg bins from below LO to above HI: box centres land a little off the drawn pitch
        edges = np.arange(
            math.floor(ground[0] / 10) * 10, math.ceil(ground[1] / 10) * 10 + 11, 10.0
        )
        for lo, hi in itertools.pairwise(edges):
            sel = [o for o in objs if o["lat_deg"] is not None and lo <= o["lat_deg"] < hi]
            if sel:
                print(f"  {lo:5.0f}..{hi:<5.0f}      {_stats_row(sel)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
