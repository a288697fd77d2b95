"""Shared helpers for the training scripts (teacher export, data build, training).

Pure Python + numpy/OpenCV; nothing here imports torch or ultralytics, so the label
conversion helpers are testable in the runtime venv.
"""

from __future__ import annotations

import hashlib
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CLASS_NAMES = ("face", "license_plate")
FACE, PLATE = 0, 1


def cache_dir() -> Path:
    """``$REDACT_CACHE`` or ``~/.cache/redact``."""
    return Path(os.environ.get("REDACT_CACHE", str(Path.home() / ".cache" / "redact"))).expanduser()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- labels


def parse_voc(xml_text: str) -> tuple[int, int, list[tuple[float, float, float, float]]]:
    """Parse a Pascal VOC annotation: ``(width, height, [x1, y1, x2, y2] boxes)``."""
    root = ET.fromstring(xml_text)
    size = root.find("size")
    if size is None:
        raise ValueError("VOC annotation without <size>")
    w = int(float(size.findtext("width", "0")))
    h = int(float(size.findtext("height", "0")))
    boxes = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        boxes.append(tuple(float(bb.findtext(k, "0")) for k in ("xmin", "ymin", "xmax", "ymax")))
    return w, h, boxes  # type: ignore[return-value]


def parse_openalpr(line: str) -> tuple[str, tuple[float, float, float, float], str]:
    """Parse one openalpr benchmark line ``file\\tx\\ty\\tw\\th\\ttext`` -> (file, xyxy, text)."""
    parts = line.rstrip("\n").split("\t")
    if len(parts) < 5:
        raise ValueError(f"bad openalpr label line: {line!r}")
    x, y, w, h = (float(v) for v in parts[1:5])
    text = parts[5] if len(parts) > 5 else ""
    return parts[0], (x, y, x + w, y + h), text


Box = tuple[float, float, float, float]
LabelledItem = tuple[str, Path, list[tuple[int, Box]]]
"""(stem, image path, [(class, xyxy box in pixels), ...])."""


def maskon_items(root: Path) -> list[LabelledItem]:
    """Every MaskON image with its face boxes (Pascal VOC; every object is a face)."""
    out = []
    for xml in sorted((root / "annotations").glob("*.xml")):
        _, _, boxes = parse_voc(xml.read_text())
        img = root / "images" / f"{xml.stem}.png"
        if not img.exists():
            img = root / "images" / f"{xml.stem}.jpg"
        out.append((xml.stem, img, [(FACE, b) for b in boxes]))
    return out


def openalpr_items(roots: list[Path]) -> list[LabelledItem]:
    """Every openalpr image with its one labelled plate (stem ``<folder>/<name>``)."""
    out = []
    for root in roots:
        for txt in sorted(root.glob("*.txt")):
            fname, box, _ = parse_openalpr(txt.read_text().strip().splitlines()[0])
            out.append((f"{root.name}/{Path(fname).stem}", root / fname, [(PLATE, box)]))
    return out


def uc3m_items(root: Path, split: str) -> list[LabelledItem]:
    """UC3M-LP images of ``split`` (train | val) with their plates (YOLO txt, one class)."""
    import cv2

    out = []
    for img in sorted((root / "images" / split).glob("*.jpg")):
        lab = root / "labels" / split / f"{img.stem}.txt"
        im = cv2.imread(str(img))
        if im is None:
            continue
        h, w = im.shape[:2]
        boxes = []
        if lab.exists():
            for ln in lab.read_text().splitlines():
                p = ln.split()
                if len(p) == 5:
                    boxes.append((PLATE, yolo_to_xyxy([float(v) for v in p[1:]], w, h)))
        out.append((f"uc3m_{split}_{img.stem}", img, boxes))
    return out


def dutch_items(root: Path, split: str) -> list[LabelledItem]:
    """Dutch frames of ``split`` (train | val): one plate each (``AABBGroundTruth.csv``)."""
    import csv

    out = []
    for cat in sorted((root / split).iterdir()):
        gt = cat / "AABBGroundTruth.csv"
        if not gt.is_file():
            continue
        tag = "".join(ch for ch in cat.name if ch.isalnum())
        with open(gt, newline="", encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                frame = row.get("Frame", row.get("Plate", ""))
                img = cat / f"{str(frame).strip()}.jpg"
                if not img.exists():
                    continue
                box = tuple(float(row[k]) for k in ("MinX", "MinY", "MaxX", "MaxY"))
                out.append((f"dutch_{split}_{tag}_{img.stem}", img, [(PLATE, box)]))
    return out


def centre_on_box(
    crop: np.ndarray, box: tuple[float, float, float, float]
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Shift ``crop`` (H, W, C) so that ``box`` (xyxy, crop pixels) is centred (borders
    reflected): a pinhole view looking at the crop's centre then looks at the object. Returns
    the shifted crop and the box in its pixels."""
    import cv2

    off_u = (box[0] + box[2]) / 2 - crop.shape[1] / 2
    off_v = (box[1] + box[3]) / 2 - crop.shape[0] / 2
    shifted = cv2.warpAffine(
        crop,
        np.float32([[1, 0, -off_u], [0, 1, -off_v]]),
        (crop.shape[1], crop.shape[0]),
        borderMode=cv2.BORDER_REFLECT,
    )
    return shifted, (box[0] - off_u, box[1] - off_v, box[2] - off_u, box[3] - off_v)


def clip_box(
    box: Sequence[float], width: int, height: int
) -> tuple[float, float, float, float] | None:
    """Clip an xyxy box to the image; ``None`` if nothing is left."""
    x1, y1, x2, y2 = box
    x1, x2 = max(0.0, min(x1, x2)), min(float(width), max(x1, x2))
    y1, y2 = max(0.0, min(y1, y2)), min(float(height), max(y1, y2))
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        return None
    return x1, y1, x2, y2


def xyxy_to_yolo(
    box: Sequence[float], width: int, height: int
) -> tuple[float, float, float, float]:
    """xyxy pixels -> normalised (cx, cy, w, h), clipped to the image."""
    c = clip_box(box, width, height)
    if c is None:
        raise ValueError(f"box {box} lies outside a {width}x{height} image")
    x1, y1, x2, y2 = c
    return ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)


def yolo_to_xyxy(
    yolo: Sequence[float], width: int, height: int
) -> tuple[float, float, float, float]:
    """Normalised (cx, cy, w, h) -> xyxy pixels."""
    cx, cy, w, h = yolo
    return (
        (cx - w / 2) * width,
        (cy - h / 2) * height,
        (cx + w / 2) * width,
        (cy + h / 2) * height,
    )


def format_yolo_labels(
    labels: Iterable[tuple[int, Sequence[float]]], width: int, height: int, min_px: float = 2.0
) -> str:
    """``(class, xyxy)`` pairs -> ultralytics label text; boxes under ``min_px`` are dropped."""
    lines = []
    for cls, box in labels:
        c = clip_box(box, width, height)
        if c is None or c[2] - c[0] < min_px or c[3] - c[1] < min_px:
            continue
        cx, cy, w, h = xyxy_to_yolo(c, width, height)
        lines.append(f"{int(cls)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return "".join(line + "\n" for line in lines)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two xyxy boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def split_dev(names: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded whole-image split -> (train, dev); independent of the input order."""
    ordered = sorted(names)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(ordered))
    n_dev = round(len(ordered) * fraction)
    dev = sorted(ordered[i] for i in perm[:n_dev])
    dev_set = set(dev)
    return [n for n in ordered if n not in dev_set], dev


# ------------------------------------------------------------------ spherical geometry
# Convention: equirect x in [0, W) maps to yaw in [-180, 180) (x = (yaw/360 + 0.5) * W),
# y in [0, H) maps to pitch in [90, -90] (up is positive). Camera frame: x right, y down,
# z forward.


def rotation(yaw_deg: float, pitch_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """Camera-to-world rotation for a camera looking at (yaw, pitch)."""
    y, p, r = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def dirs_to_equirect(d: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """World unit directions (..., 3) -> equirect pixel coordinates (x, y)."""
    yaw = np.arctan2(d[..., 0], d[..., 2])
    pitch = np.arcsin(np.clip(-d[..., 1], -1.0, 1.0))
    x = (yaw / (2 * np.pi) + 0.5) * width
    y = (0.5 - pitch / np.pi) * height
    return x, y


def equirect_to_dirs(x: np.ndarray, y: np.ndarray, width: int, height: int) -> np.ndarray:
    """Equirect pixel coordinates -> world unit directions (..., 3)."""
    yaw = (x / width - 0.5) * 2 * np.pi
    pitch = (0.5 - y / height) * np.pi
    cp = np.cos(pitch)
    return np.stack([cp * np.sin(yaw), -np.sin(pitch), cp * np.cos(yaw)], axis=-1)


@dataclass(frozen=True)
class PinholeView:
    """A pinhole camera on the sphere: direction, roll, focal length (px) and image size.

    ``pitch_deg`` is positive *below* the horizon (the camera's y axis points down): a view
    at pitch +30 looks at latitude -30 of the equirectangular image."""

    yaw_deg: float
    pitch_deg: float
    focal: float
    width: int
    height: int
    roll_deg: float = 0.0

    @classmethod
    def from_fov(
        cls, yaw: float, pitch: float, fov_deg: float, size: int, roll: float = 0.0
    ) -> PinholeView:
        """A square gnomonic tile with horizontal field of view ``fov_deg``."""
        f = size / 2 / math.tan(math.radians(fov_deg) / 2)
        return cls(yaw, pitch, f, size, size, roll)

    @property
    def rot(self) -> np.ndarray:
        return rotation(self.yaw_deg, self.pitch_deg, self.roll_deg)

    def pixels_to_dirs(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Pixel coordinates -> world unit directions."""
        cam = np.stack(
            [
                (u - self.width / 2) / self.focal,
                (v - self.height / 2) / self.focal,
                np.ones_like(u),
            ],
            axis=-1,
        )
        cam /= np.linalg.norm(cam, axis=-1, keepdims=True)
        return cam @ self.rot.T

    def dirs_to_pixels(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World directions -> (u, v, in_front) pixel coordinates."""
        cam = d @ self.rot
        z = cam[..., 2]
        front = z > 1e-6
        zs = np.where(front, z, 1.0)
        u = cam[..., 0] / zs * self.focal + self.width / 2
        v = cam[..., 1] / zs * self.focal + self.height / 2
        return u, v, front


def render_view(pano: np.ndarray, view: PinholeView) -> np.ndarray:
    """Render a pinhole view (gnomonic tile) from an equirectangular panorama."""
    import cv2

    h, w = pano.shape[:2]
    u, v = np.meshgrid(np.arange(view.width) + 0.5, np.arange(view.height) + 0.5)
    x, y = dirs_to_equirect(view.pixels_to_dirs(u, v), w, h)
    mx = (np.mod(x - 0.5, w)).astype(np.float32)
    my = np.clip(y - 0.5, 0, h - 1).astype(np.float32)
    return cv2.remap(pano, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def box_outline(box: Sequence[float], n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Points along an xyxy box outline (n per side)."""
    x1, y1, x2, y2 = box
    t = np.linspace(0.0, 1.0, n)
    xs = np.concatenate([x1 + (x2 - x1) * t, np.full(n, x2), x2 - (x2 - x1) * t, np.full(n, x1)])
    ys = np.concatenate([np.full(n, y1), y1 + (y2 - y1) * t, np.full(n, y2), y2 - (y2 - y1) * t])
    return xs, ys


def project_box(
    box: Sequence[float], src: PinholeView, dst: PinholeView
) -> tuple[tuple[float, float, float, float], float] | None:
    """Project a box from view ``src`` into view ``dst`` through the sphere.

    Returns ``(clipped_xyxy, visible_fraction)`` where the fraction is the clipped area over
    the unclipped projected area, or ``None`` if the box is behind ``dst`` or off it.
    """
    xs, ys = box_outline(box)
    u, v, front = dst.dirs_to_pixels(src.pixels_to_dirs(xs, ys))
    if not front.all():
        return None
    full = (float(u.min()), float(v.min()), float(u.max()), float(v.max()))
    c = clip_box(full, dst.width, dst.height)
    if c is None:
        return None
    area = (full[2] - full[0]) * (full[3] - full[1])
    frac = (c[2] - c[0]) * (c[3] - c[1]) / area if area > 0 else 0.0
    return c, frac


def paste_view(
    pano: np.ndarray, photo: np.ndarray, view: PinholeView, feather: float = 0.08
) -> None:
    """Paste a perspective ``photo`` seen through ``view`` into ``pano`` in place.

    Every panorama pixel whose direction falls inside the photo's frustum is resampled from
    the photo (real equirectangular distortion); the photo's border is feathered.
    """
    import cv2

    ph, pw = pano.shape[:2]
    hh, ww = photo.shape[:2]
    xs, ys = box_outline((0, 0, ww, hh), 24)
    ex, ey = dirs_to_equirect(view.pixels_to_dirs(xs, ys), pw, ph)
    # the paste never straddles the seam: callers keep |yaw| small (roll the pano instead)
    x0, x1 = int(max(0, math.floor(ex.min()) - 2)), int(min(pw, math.ceil(ex.max()) + 2))
    y0, y1 = int(max(0, math.floor(ey.min()) - 2)), int(min(ph, math.ceil(ey.max()) + 2))
    if x1 - x0 > pw / 2 or x1 <= x0 or y1 <= y0:
        raise ValueError("paste footprint crosses the seam or is empty")
    gx, gy = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    u, v, front = view.dirs_to_pixels(equirect_to_dirs(gx, gy, pw, ph))
    u = np.where(front, u, -1e4).astype(np.float32) - 0.5
    v = np.where(front, v, -1e4).astype(np.float32) - 0.5
    src = cv2.remap(photo, u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # feathered alpha: distance to the photo border in units of its size
    du = np.minimum(u + 0.5, ww - u - 0.5) / (feather * ww + 1e-6)
    dv = np.minimum(v + 0.5, hh - v - 0.5) / (feather * hh + 1e-6)
    alpha = np.clip(np.minimum(du, dv), 0.0, 1.0)[..., None].astype(np.float32)
    region = pano[y0:y1, x0:x1].astype(np.float32)
    pano[y0:y1, x0:x1] = (region * (1 - alpha) + src.astype(np.float32) * alpha).astype(pano.dtype)


# ---------------------------------------------------------------------------- registry


def _yaml_scalar(value: object) -> str:
    import yaml

    return (
        yaml.safe_dump(value, default_flow_style=True, width=10_000)
        .strip()
        .removesuffix("...")
        .strip()
    )


def format_registry_entry(name: str, fields: dict[str, object]) -> str:
    """One ``models:`` entry as YAML text (2-space indented under ``models:``)."""
    lines = [f"  {name}:"]
    for key, value in fields.items():
        if isinstance(value, str) and "\n" in value:
            lines.append(f"    {key}: >-")
            lines.extend(f"      {part}" for part in value.strip().splitlines())
        else:
            lines.append(f"    {key}: {_yaml_scalar(value)}")
    return "\n".join(lines) + "\n"


def upsert_registry_entry(registry: Path, name: str, fields: dict[str, object]) -> None:
    """Append (or replace in place) the entry ``name`` under ``models:``.

    Other entries are left byte for byte as they are. The file must already exist and have a
    top-level ``models:`` mapping whose entries are indented by two spaces.
    """
    import yaml

    text = registry.read_text()
    data = yaml.safe_load(text) or {}
    if "models" not in data:
        raise ValueError(f"{registry}: no top-level 'models:' mapping")
    entry = format_registry_entry(name, fields)
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == f"  {name}:"), None)
    if start is None:
        if text and not text.endswith("\n"):
            text += "\n"
        if not data["models"]:  # "models: {}" or "models:" with nothing under it
            text = text.replace("models: {}", "models:")
        new = text + entry
    else:
        end = start + 1
        while end < len(lines) and (
            not lines[end].strip() or lines[end].startswith("    ") or lines[end].startswith("   #")
        ):
            end += 1
        new = "".join(lines[:start]) + entry + "".join(lines[end:])
    parsed = yaml.safe_load(new)
    if name not in (parsed.get("models") or {}):
        raise ValueError(f"{registry}: entry {name!r} did not land under 'models:'")
    registry.write_text(new)
