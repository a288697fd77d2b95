"""Build the seeded ultralytics YOLO dataset for redact's own face + plate detector.

Output (default ``.cache/train_data``, git-ignored): ``images/{train,dev}``,
``labels/{train,dev}``, ``data.yaml`` (classes 0 face, 1 license_plate), per-domain dev lists
``dev_maskon.txt`` / ``dev_openalpr.txt`` / ``dev_pano.txt`` and the source split lists in
``splits/``. Sources (``../shared/data``):

* MaskON faces (VOC; every object is a face); a seeded 15 % of the images is dev only.
* openalpr us + br plates (one labelled plate per image). The other plates are unlabelled:
  the plate teachers (``$REDACT_CACHE/teachers/*.onnx``, from ``scripts/export_teachers.py``)
  run over each image; a teacher box >= ``--pseudo-conf`` becomes a plate label, a weaker one
  (>= ``--grey-conf``) is greyed out, so no real plate is ever taught as background.
* Panorama-domain composites: crops of the train photos are pasted into the non-dev
  Amsterdam panoramas through a pinhole camera at a random yaw, pitch, roll and distance
  (the equirectangular distortion is the real one), then a 640x640 gnomonic tile is cut
  around them; labels are the projected box outlines, clipped at the tile edge. Tiles get
  domain augmentation (downscale, motion blur, exposure, JPEG). Plates the teacher sees in
  the background are labelled / greyed out the same way.
* Plain background tiles of the non-dev panoramas (teacher-labelled plates only).

The 12 panoramas of ``panoramas/dev_labels.json`` (and any file naming one of them) are never
read. Deterministic for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _train_common import (
    CLASS_NAMES,
    FACE,
    PLATE,
    REPO,
    SHARED_DATA,
    PinholeView,
    cache_dir,
    clip_box,
    dutch_items,
    format_yolo_labels,
    iou,
    maskon_items,
    openalpr_items,
    paste_view,
    project_box,
    render_view,
    split_dev,
    uc3m_items,
)

Box = tuple[float, float, float, float]


@dataclass
class Sample:
    """A labelled source photo."""

    name: str
    path: Path
    boxes: list[tuple[int, Box]] = field(default_factory=list)
    grey: list[Box] = field(default_factory=list)  # regions to grey out (uncertain plates)


# ------------------------------------------------------------------------------ teacher


class PlateTeacher:
    """Minimal ONNX Runtime runner for YOLOv8 teachers (no NMS in the graph).

    ``rows``: per model, the output row of the wanted class's score (4 = the first class;
    default 4 for every model).
    """

    def __init__(self, paths: list[Path], threads: int = 1, rows: list[int] | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sessions = [
            ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in paths
        ]
        self.rows = rows if rows is not None else [4] * len(paths)
        if len(self.rows) != len(self.sessions):
            raise ValueError(f"{len(self.rows)} score rows for {len(self.sessions)} teachers")

    def __call__(self, img: np.ndarray, conf: float) -> list[tuple[Box, float]]:
        """Boxes (xyxy, score) of all teachers on a BGR image, NMS-merged."""
        h, w = img.shape[:2]
        s = 640 / max(h, w)
        nh, nw = round(h * s), round(w * s)
        canvas = np.full((640, 640, 3), 114, np.uint8)
        canvas[:nh, :nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
        x = canvas[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        boxes, scores = [], []
        for sess, row in zip(self.sessions, self.rows, strict=True):
            out = sess.run(None, {sess.get_inputs()[0].name: x})[0][0]  # [4 + classes, 8400]
            keep = out[row] >= conf
            cx, cy, bw, bh = out[:4, keep]
            sc = out[row, keep]
            boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1) / s)
            scores.append(sc)
        b = np.concatenate(boxes)
        sc = np.concatenate(scores)
        order = np.argsort(-sc)
        kept: list[tuple[Box, float]] = []
        for i in order:
            bi = tuple(float(v) for v in b[i])
            if all(iou(bi, k[0]) < 0.5 for k in kept):
                kept.append((bi, float(sc[i])))  # type: ignore[arg-type]
        return kept


def apply_teacher(
    img: np.ndarray,
    boxes: list[tuple[int, Box]],
    teacher: PlateTeacher,
    pseudo_conf: float,
    grey_conf: float,
    max_width: float = 1.0,
    cls: int = PLATE,
) -> tuple[list[tuple[int, Box]], list[Box]]:
    """Teacher boxes of class ``cls`` not already labelled: -> (extra labels, regions to grey
    out).

    Plates wider than ``max_width`` of the image or taller than wide are ignored (teacher
    false positives on windows and signs). A box that overlaps a label, given or added here,
    is never greyed out (a grey patch inside a labelled plate would damage the label).
    """
    extra: list[tuple[int, Box]] = []
    grey: list[Box] = []
    for box, score in teacher(img, grey_conf):
        if any(iou(box, b) > 0.2 for _, b in boxes):
            continue
        bw, bh = box[2] - box[0], box[3] - box[1]
        if cls == PLATE and (bw > max_width * img.shape[1] or bh > bw * 1.2):
            continue
        if score >= pseudo_conf:
            extra.append((cls, box))
        else:
            grey.append(box)
    labels = boxes + extra
    return extra, [g for g in grey if not any(_overlaps(g, b) for _, b in labels)]


def _overlaps(a: Box, b: Box) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def grey_out(img: np.ndarray, regions: list[Box]) -> None:
    """Fill regions with a flat mean colour (neither plate nor background is taught there)."""
    h, w = img.shape[:2]
    for r in regions:
        c = clip_box(r, w, h)
        if c is None:
            continue
        x1, y1, x2, y2 = (round(v) for v in c)
        if x2 > x1 and y2 > y1:
            img[y1:y2, x1:x2] = img[y1:y2, x1:x2].reshape(-1, 3).mean(0).astype(np.uint8)


# ------------------------------------------------------------------------------ sources


def load_maskon(root: Path) -> list[Sample]:
    return [Sample(*item) for item in maskon_items(root)]


def load_openalpr(roots: list[Path]) -> list[Sample]:
    return [Sample(*item) for item in openalpr_items(roots)]


def background_panos(pano_dir: Path, dev_json: Path) -> list[Path]:
    """Non-dev panoramas (a file naming a dev panorama's stem anywhere is excluded too)."""
    dev_stems = [Path(n).stem for n in json.loads(dev_json.read_text())]
    return [
        p for p in sorted(pano_dir.glob("*.jpg")) if not any(stem in p.stem for stem in dev_stems)
    ]


# ------------------------------------------------------------------------- augmentation


def motion_blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k = int(rng.integers(3, 10))
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0 / k
    rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    kernel /= max(kernel.sum(), 1e-6)
    return cv2.filter2D(img, -1, kernel)


def domain_augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Panorama-domain degradations: resolution loss, motion blur, exposure, JPEG."""
    if rng.random() < 0.35:
        f = float(rng.uniform(0.35, 0.8))
        h, w = img.shape[:2]
        small = cv2.resize(
            img, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA
        )
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.3:
        img = motion_blur(img, rng)
    if rng.random() < 0.5:
        gamma = float(rng.uniform(0.6, 1.6))
        gain = float(rng.uniform(0.7, 1.25))
        lut = np.clip(((np.arange(256) / 255.0) ** gamma) * 255 * gain, 0, 255).astype(np.uint8)
        img = cv2.LUT(img, lut)
    if rng.random() < 0.5:
        q = int(rng.integers(25, 80))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            raise RuntimeError("JPEG encode failed")
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img


# --------------------------------------------------------------------------- composites


def pick_crop(
    sample: Sample, img: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, Box]]]:
    """A random crop around one labelled object (with context) and the labels inside it."""
    h, w = img.shape[:2]
    _, anchor = sample.boxes[int(rng.integers(len(sample.boxes)))]
    bw, bh = anchor[2] - anchor[0], anchor[3] - anchor[1]
    if rng.random() < 0.3 and sample.boxes[0][0] == FACE:
        x1, y1, x2, y2 = 0.0, 0.0, float(w), float(h)  # the whole photo
    else:
        m = float(rng.uniform(1.5, 5.0))
        cw, ch = max(bw * m, 32.0), max(bh * m * (1.0 if sample.boxes[0][0] == FACE else 2.0), 32.0)
        cx = (anchor[0] + anchor[2]) / 2 + float(rng.uniform(-0.25, 0.25)) * cw
        cy = (anchor[1] + anchor[3]) / 2 + float(rng.uniform(-0.25, 0.25)) * ch
        x1, y1 = max(0.0, cx - cw / 2), max(0.0, cy - ch / 2)
        x2, y2 = min(float(w), cx + cw / 2), min(float(h), cy + ch / 2)
    ix1, iy1, ix2, iy2 = int(x1), int(y1), math.ceil(x2), math.ceil(y2)
    crop = img[iy1:iy2, ix1:ix2]
    labels = []
    for cls, b in sample.boxes:
        shifted = (b[0] - ix1, b[1] - iy1, b[2] - ix1, b[3] - iy1)
        c = clip_box(shifted, ix2 - ix1, iy2 - iy1)
        if c is None:
            continue
        area = (b[2] - b[0]) * (b[3] - b[1])
        if area > 0 and (c[2] - c[0]) * (c[3] - c[1]) / area >= 0.4:
            labels.append((cls, c))
    return crop, labels


def make_composite(
    pano: np.ndarray,
    sources: list[tuple[Sample, np.ndarray]],
    rng: np.random.Generator,
    tile: int = 640,
) -> tuple[np.ndarray, list[tuple[int, Box]]]:
    """Paste 1-3 photo crops into a copy of the panorama and cut a gnomonic tile."""
    work = np.roll(pano, int(rng.integers(pano.shape[1])), axis=1)  # random background yaw
    fov = float(rng.uniform(35.0, 80.0))
    pitch0 = float(rng.uniform(-35.0, 20.0))
    tile_view = PinholeView.from_fov(
        float(rng.uniform(-5, 5)), pitch0, fov, tile, roll=float(rng.normal(0, 2))
    )
    pasted: list[tuple[PinholeView, list[tuple[int, Box]]]] = []
    for sample, img in sources:
        crop, labels = pick_crop(sample, img, rng)
        if not labels or crop.shape[0] < 4 or crop.shape[1] < 4:
            continue
        # size: the anchor object's height in tile pixels, log-uniform (small objects favoured)
        ref = min(labels, key=lambda lb: lb[1][3] - lb[1][1])[1]
        lo, hi = (6.0, 90.0) if labels[0][0] == FACE else (5.0, 60.0)
        target = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        src_h = max(ref[3] - ref[1], 1.0)
        focal = src_h * tile_view.focal / target
        # place it somewhere in (or partly off) the tile: tile-edge cuts happen
        half = math.degrees(math.atan(tile / 2 / tile_view.focal))
        dyaw = float(rng.uniform(-1.05, 1.05)) * half
        dpitch = float(rng.uniform(-1.05, 1.05)) * half
        view = PinholeView(
            yaw_deg=tile_view.yaw_deg + dyaw / max(math.cos(math.radians(pitch0)), 0.3),
            pitch_deg=float(np.clip(pitch0 + dpitch, -80, 80)),
            focal=focal,
            width=crop.shape[1],
            height=crop.shape[0],
            roll_deg=float(rng.normal(0, 4)),
        )
        try:
            paste_view(work, crop, view)
        except ValueError:
            continue
        pasted.append((view, labels))
    img = render_view(work, tile_view)
    # footprints of the pastes in the tile, to drop labels that a later paste covers
    feet = [project_box((0, 0, v.width, v.height), v, tile_view) for v, _ in pasted]
    out: list[tuple[int, Box]] = []
    for k, (view, labels) in enumerate(pasted):
        for cls, b in labels:
            pr = project_box(b, view, tile_view)
            if pr is None:
                continue
            box, frac = pr
            if frac < 0.35 or box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            if any(f is not None and _covered(box, f[0]) for f in feet[k + 1 :]):
                continue
            out.append((cls, box))
    return img, out


def _covered(box: Box, cover: Box) -> bool:
    """True if more than a third of ``box`` lies under ``cover``."""
    ix = max(0.0, min(box[2], cover[2]) - max(box[0], cover[0]))
    iy = max(0.0, min(box[3], cover[3]) - max(box[1], cover[1]))
    area = (box[2] - box[0]) * (box[3] - box[1])
    return area > 0 and ix * iy / area > 1 / 3


def pack_grid(
    items: list[tuple[np.ndarray, list[tuple[int, Box]]]], tile: int = 640
) -> tuple[np.ndarray, list[tuple[int, Box]]]:
    """Up to 4 small photos (BGR) in the cells of a 2 x 2 grid, ``tile`` pixels square.

    Each photo keeps its native scale (shrunk only if larger than a cell), top-left in its
    cell, pad 114; labels (class, xyxy) are shifted with it and clipped to the photo.
    """
    if not 1 <= len(items) <= 4:
        raise ValueError(f"pack_grid takes 1-4 photos, got {len(items)}")
    cell = tile // 2
    canvas = np.full((tile, tile, 3), 114, np.uint8)
    labels: list[tuple[int, Box]] = []
    for k, (img, boxes) in enumerate(items):
        h, w = img.shape[:2]
        s = min(1.0, cell / max(h, w))
        if s < 1.0:
            img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
        ox, oy = (k % 2) * cell, (k // 2) * cell
        canvas[oy : oy + h, ox : ox + w] = img
        for cls, b in boxes:
            c = clip_box(tuple(v * s for v in b), w, h)  # type: ignore[arg-type]
            if c is not None:
                labels.append((cls, (c[0] + ox, c[1] + oy, c[2] + ox, c[3] + oy)))
    return canvas, labels


def background_tile(pano: np.ndarray, rng: np.random.Generator, tile: int = 640) -> np.ndarray:
    view = PinholeView.from_fov(
        float(rng.uniform(-180, 180)), float(rng.uniform(-35, 25)), float(rng.uniform(35, 80)), tile
    )
    return render_view(pano, view)


# --------------------------------------------------------------------------------- main


def write_sample(
    out: Path,
    split: str,
    stem: str,
    img: np.ndarray,
    labels: list[tuple[int, Box]],
    quality: int = 92,
) -> None:
    h, w = img.shape[:2]
    ok = cv2.imwrite(
        str(out / "images" / split / f"{stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise RuntimeError(f"cannot write {stem}.jpg")
    (out / "labels" / split / f"{stem}.txt").write_text(format_yolo_labels(labels, w, h))


def read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot read image {path}")
    return img


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", type=Path, default=SHARED_DATA)
    ap.add_argument("--out", type=Path, default=REPO / ".cache" / "train_data")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--dev-fraction", type=float, default=0.15)
    ap.add_argument(
        "--maskon-train", type=int, default=450, help="MaskON train images used (of ~725)"
    )
    ap.add_argument("--composites", type=int, default=450, help="panorama composite tiles (train)")
    ap.add_argument("--dev-composites", type=int, default=80, help="composites of dev photos (dev)")
    ap.add_argument("--backgrounds", type=int, default=60, help="plain panorama tiles (train)")
    ap.add_argument("--pseudo-conf", type=float, default=0.35)
    ap.add_argument("--grey-conf", type=float, default=0.10)
    ap.add_argument("--teachers", type=Path, default=None, help="folder of teacher ONNX files")
    ap.add_argument(
        "--face-teachers",
        type=Path,
        nargs="*",
        default=None,
        help="face teacher ONNX files, face score in output row 4 (default: faceghost from the "
        "teacher folder and redact-faceplate-yolov8n 0.2.1, the recipe's model)",
    )
    # Checked by eye (2026-12-02): every face the teachers scored >= 0.5 on these car photos
    # (8 of 8) was a wheel, a bumper or a headlight, so by default they only grey out there.
    ap.add_argument(
        "--face-pseudo-conf",
        type=float,
        default=1.01,
        help="face teacher score that labels a face in UC3M-LP / Dutch (default: never)",
    )
    ap.add_argument("--face-grey-conf", type=float, default=0.15)
    ap.add_argument(
        "--no-eu-plates", action="store_true", help="leave UC3M-LP and the Dutch frames out"
    )
    ap.add_argument("--uc3m-dev-fraction", type=float, default=0.1)
    args = ap.parse_args(argv)
    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    root: Path = args.data_root
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    for sub in ("images/train", "images/dev", "labels/train", "labels/dev", "splits"):
        (out / sub).mkdir(parents=True)
    teacher_dir = args.teachers or cache_dir() / "teachers"
    teacher_files = sorted(teacher_dir.glob("*plate*.onnx"))
    if not teacher_files:
        raise FileNotFoundError(
            f"no plate teachers in {teacher_dir}; run scripts/export_teachers.py"
        )
    teacher = PlateTeacher(teacher_files, threads=2)
    print(f"teachers: {[p.name for p in teacher_files]}", flush=True)
    # the teachers are noisier on panorama tiles (windows, signs) and street photos: stricter
    pano_conf = (max(args.pseudo_conf, 0.5), max(args.grey_conf, 0.2))
    face_files = args.face_teachers
    if face_files is None:
        face_files = [
            p
            for p in (
                teacher_dir / "faceghost-yolov8n-face.onnx",
                REPO / "models" / "redact-faceplate-yolov8n-0.2.1.onnx",
            )
            if p.is_file()
        ]
    if not args.no_eu_plates and not face_files:
        raise FileNotFoundError("no face teacher for the unlabelled faces of UC3M-LP / Dutch")

    maskon = load_maskon(root / "faces" / "maskon")
    alpr = load_openalpr([root / "plates" / "openalpr_us", root / "plates" / "openalpr_br"])
    m_train, m_dev = split_dev([s.name for s in maskon], args.dev_fraction, args.seed)
    a_train, a_dev = split_dev([s.name for s in alpr], args.dev_fraction, args.seed + 1)
    for name, lst in (
        ("maskon_train", m_train),
        ("maskon_dev", m_dev),
        ("openalpr_train", a_train),
        ("openalpr_dev", a_dev),
    ):
        (out / "splits" / f"{name}.txt").write_text("".join(n + "\n" for n in lst))
    by_name = {s.name: s for s in maskon + alpr}
    m_used = sorted(
        rng.choice(m_train, size=min(args.maskon_train, len(m_train)), replace=False).tolist()
    )
    (out / "splits" / "maskon_train_used.txt").write_text("".join(n + "\n" for n in m_used))

    dev_lists: dict[str, list[str]] = {"maskon": [], "openalpr": [], "pano": [], "uc3m": []}
    counts = {"train": [0, 0, 0], "dev": [0, 0, 0]}  # images, faces, plates

    def emit(
        split: str, stem: str, img: np.ndarray, labels: list[tuple[int, Box]], domain: str = ""
    ) -> None:
        write_sample(out, split, stem, img, labels)
        c = counts[split]
        c[0] += 1
        c[1] += sum(1 for cl, _ in labels if cl == FACE)
        c[2] += sum(1 for cl, _ in labels if cl == PLATE)
        if split == "dev":
            dev_lists[domain].append(str((out / "images" / "dev" / f"{stem}.jpg").resolve()))

    # MaskON: copied as they are (re-encoded JPEG)
    for name in m_used + m_dev:
        s = by_name[name]
        emit("dev" if name in m_dev else "train", f"maskon_{name}", read(s.path), s.boxes, "maskon")
    print(f"maskon done {time.time() - t0:.0f}s", flush=True)

    # openalpr: teacher pseudo-labels / grey-outs for the unlabelled plates
    pseudo_n = grey_n = 0
    plate_imgs: dict[str, np.ndarray] = {}  # plate photos as taught (pseudo-labelled, greyed)
    for name in a_train + a_dev:
        s = by_name[name]
        img = read(s.path)
        extra, grey = apply_teacher(img, s.boxes, teacher, args.pseudo_conf, args.grey_conf)
        grey_out(img, grey)
        s.boxes = s.boxes + extra
        s.grey = grey
        pseudo_n += len(extra)
        grey_n += len(grey)
        stem = "alpr_" + name.replace("/", "_")
        emit("dev" if name in a_dev else "train", stem, img, s.boxes, "openalpr")
        plate_imgs[name] = img
    print(
        f"openalpr done {time.time() - t0:.0f}s: {pseudo_n} pseudo plates, {grey_n} greyed",
        flush=True,
    )

    # UC3M-LP (2 x 2 grids at native scale) and Dutch frames: EU plates, teacher faces
    u_train: list[str] = []
    eu = {"uc3m_grids": 0, "dutch": 0, "pseudo_plates": 0, "pseudo_faces": 0, "greyed": 0}
    if not args.no_eu_plates:
        face_teacher = PlateTeacher(face_files, threads=2)
        print(f"face teachers: {[p.name for p in face_files]}", flush=True)

        def teach(name: str, path: Path, boxes: list[tuple[int, Box]]) -> np.ndarray:
            img = read(path)
            plates, grey_p = apply_teacher(img, boxes, teacher, *pano_conf)
            faces, grey_f = apply_teacher(
                img,
                boxes + plates,
                face_teacher,
                args.face_pseudo_conf,
                args.face_grey_conf,
                cls=FACE,
            )
            labels = boxes + plates + faces
            greys = [g for g in grey_p + grey_f if not any(_overlaps(g, b) for _, b in labels)]
            grey_out(img, greys)
            by_name[name] = Sample(name, path, labels, greys)
            eu["pseudo_plates"] += len(plates)
            eu["pseudo_faces"] += len(faces)
            eu["greyed"] += len(greys)
            plate_imgs[name] = img
            return img

        uc3m = uc3m_items(root / "plates" / "uc3m_lp_es", "train")
        u_train, u_dev = split_dev([n for n, _, _ in uc3m], args.uc3m_dev_fraction, args.seed + 2)
        (out / "splits" / "uc3m_train.txt").write_text("".join(n + "\n" for n in u_train))
        (out / "splits" / "uc3m_dev.txt").write_text("".join(n + "\n" for n in u_dev))
        for name, path, boxes in uc3m:
            teach(name, path, boxes)
        for split, names in (("train", u_train), ("dev", u_dev)):
            order_u = [names[i] for i in rng.permutation(len(names))]
            for k in range(0, len(order_u), 4):
                group = [(plate_imgs[n], by_name[n].boxes) for n in order_u[k : k + 4]]
                img, labels = pack_grid(group)
                emit(split, f"uc3m_{split}_{k // 4:04d}", img, labels, "uc3m")
                eu["uc3m_grids"] += 1
        for name, path, boxes in dutch_items(root / "plates" / "dutch_nl", "train"):
            img = teach(name, path, boxes)
            emit("train", name, img, by_name[name].boxes)
            eu["dutch"] += 1
        print(f"uc3m + dutch done {time.time() - t0:.0f}s: {eu}", flush=True)

    # panorama composites
    panos = background_panos(
        root / "panoramas" / "amsterdam_street", root / "panoramas" / "dev_labels.json"
    )
    (out / "splits" / "background_panoramas.txt").write_text("".join(p.name + "\n" for p in panos))
    face_cache: dict[str, np.ndarray] = {}

    def source(name: str) -> tuple[Sample, np.ndarray]:
        s = by_name[name]
        if name in plate_imgs:
            return s, plate_imgs[name]
        if name not in face_cache:
            face_cache[name] = read(s.path)
        return s, face_cache[name]

    jobs: list[tuple[str, int]] = [("train", i) for i in range(args.composites)]
    jobs += [("dev", i) for i in range(args.dev_composites)]
    per_pano = math.ceil(len(jobs) / len(panos))
    bg_per_pano = math.ceil(args.backgrounds / len(panos))
    order = rng.permutation(len(jobs))
    bg_done = 0
    for pi, pano_path in enumerate(panos):
        pano = read(pano_path)
        for j in order[pi * per_pano : (pi + 1) * per_pano]:
            split, idx = jobs[j]
            faces_pool = m_used if split == "train" else m_dev
            plates_pool = a_train if split == "train" else a_dev
            if split == "train" and u_train and rng.random() < 0.5:
                plates_pool = u_train  # EU plates in half of the train composites' picks
            n = int(rng.integers(1, 4))
            names = [
                str(rng.choice(faces_pool if rng.random() < 0.55 else plates_pool))
                for _ in range(n)
            ]
            img, labels = make_composite(pano, [source(nm) for nm in names], rng)
            extra, grey = apply_teacher(img, labels, teacher, *pano_conf, max_width=0.15)
            grey_out(img, grey)
            img = domain_augment(img, rng)
            emit(split, f"pano_{split}_{idx:04d}", img, labels + extra, "pano")
        for _ in range(bg_per_pano):
            if bg_done >= args.backgrounds:
                break
            img = background_tile(pano, rng)
            extra, grey = apply_teacher(img, [], teacher, *pano_conf, max_width=0.15)
            grey_out(img, grey)
            emit("train", f"bg_{bg_done:04d}", domain_augment(img, rng), extra)
            bg_done += 1
        print(f"pano {pi + 1}/{len(panos)} {pano_path.name} {time.time() - t0:.0f}s", flush=True)

    for dom, files in dev_lists.items():
        (out / f"dev_{dom}.txt").write_text("".join(f + "\n" for f in sorted(files)))
    (out / "data.yaml").write_text(
        f"path: {out.resolve()}\ntrain: images/train\nval: images/dev\n"
        f"names:\n  0: {CLASS_NAMES[0]}\n  1: {CLASS_NAMES[1]}\n"
    )
    stats = {
        "seed": args.seed,
        "train": dict(zip(("images", "faces", "plates"), counts["train"], strict=True)),
        "dev": dict(zip(("images", "faces", "plates"), counts["dev"], strict=True)),
        "dev_domains": {k: len(v) for k, v in dev_lists.items()},
        "openalpr_pseudo_plates": pseudo_n,
        "openalpr_greyed": grey_n,
        "background_panoramas": len(panos),
        "eu_plates": eu,
        "seconds": round(time.time() - t0, 1),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
