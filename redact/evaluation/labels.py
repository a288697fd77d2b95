"""Ground-truth readers: COCO json, YOLO txt, Pascal VOC xml, openalpr txt and the project's own
``dev_labels.json``. Every reader returns a :class:`LabelSet`: boxes in image pixels (``xyxy``),
one :class:`ImageLabels` per image, keyed by the image path as the labels name it.

Class names map to :class:`~redact.classes.ObjectClass` through a class map
(``{"name": ObjectClass | None}``; ``None`` ignores the name, key ``"*"`` catches the rest). Names
``ObjectClass.parse`` understands need no entry, nor do the MaskON face names
(with/without mask, in English and Spanish). An unknown name is an error listing the names.
"""

from __future__ import annotations

import enum
import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from redact.classes import ObjectClass

ClassMap = Mapping[str, ObjectClass | None]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

# MaskON (Face Mask Detection) names: every one is a face.
_FACE_NAMES = frozenset(
    {
        "with_mask",
        "without_mask",
        "mask_weared_incorrect",
        "con_mascarilla",
        "sin_mascarilla",
        "mascarilla_mal_puesta",
    }
)


class LabelFormat(enum.Enum):
    COCO = "coco"
    YOLO = "yolo"
    VOC = "voc"
    OPENALPR = "openalpr"
    DEV = "dev"  # the project's dev_labels.json
    AUTO = "auto"


class GtFlag(enum.Enum):
    """Annotator flags (``dev_labels.json``; COCO ``iscrowd`` and VOC ``difficult`` map to
    UNCERTAIN, VOC ``truncated`` to PARTIAL)."""

    UNCERTAIN = "uncertain"  # don't care: neither a hit nor a miss, its detections not FPs
    PREBLURRED = "preblurred"  # already anonymised by the source; scored normally + as don't care
    PRINTED = "printed"  # a face on a poster: blurred like a real one, reported separately
    TINY = "tiny"
    PROFILE = "profile"
    PARTIAL = "partial"
    OCCLUDED = "occluded"

    @classmethod
    def parse(cls, name: str) -> GtFlag:
        try:
            return cls(name.strip().lower())
        except ValueError:
            valid = ", ".join(f.value for f in cls)
            raise ValueError(f"unknown label flag {name!r} (expected one of: {valid})") from None


@dataclass(frozen=True)
class GtObject:
    """One labelled object.

    ``box`` is ``(x1, y1, x2, y2)`` in pixels of the upright image. On a panorama a box
    crossing the 0/360 seam is unwrapped (``x2 > W``; see :func:`join_seam_halves`).
    ``text`` is the plate text where the labels carry it.
    """

    box: tuple[float, float, float, float]
    cls: ObjectClass
    flags: frozenset[GtFlag] = frozenset()
    text: str = ""

    def __post_init__(self) -> None:
        x1, y1, x2, y2 = (float(v) for v in self.box)
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise ValueError(f"non-finite box {self.box}")
        if x2 < x1 or y2 < y1:
            raise ValueError(f"box {self.box} has x2 < x1 or y2 < y1")
        object.__setattr__(self, "box", (x1, y1, x2, y2))

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]


@dataclass(frozen=True)
class ImageLabels:
    """The labels of one image. ``width``/``height`` are 0 when the format does not say."""

    key: str
    width: int
    height: int
    objects: tuple[GtObject, ...] = ()


@dataclass(frozen=True)
class LabelSet:
    """Labels of many images, by key (the image path as the labels give it, '/'-separated).

    ``exhaustive`` is False when not every object of the classes is labelled (openalpr labels
    one plate per image): precision and false-positive area are then not meaningful.
    """

    images: Mapping[str, ImageLabels]
    format: LabelFormat
    source: str
    exhaustive: bool = True
    classes: frozenset[ObjectClass] = field(default_factory=lambda: frozenset(ObjectClass))

    def __len__(self) -> int:
        return len(self.images)


def resolve_class(name: str, class_map: ClassMap | None = None) -> ObjectClass | None:
    """Map a label's class name to an ObjectClass (``None``: ignore); ValueError if unknown."""
    cmap = class_map or {}
    if name in cmap:
        return cmap[name]
    key = name.strip().lower()
    if key in cmap:
        return cmap[key]
    try:
        return ObjectClass.parse(name)
    except ValueError:
        pass
    if key in _FACE_NAMES:
        return ObjectClass.FACE
    if "*" in cmap:
        return cmap["*"]
    raise ValueError(
        f"label class {name!r} maps to no object class: pass --class-map {name}=face|license_plate|ignore"
    )


def parse_class_map(items: Iterable[str]) -> dict[str, ObjectClass | None]:
    """``["0=face", "car=ignore", "*=license_plate"]`` -> class map."""
    out: dict[str, ObjectClass | None] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--class-map {item!r}: expected NAME=CLASS (e.g. with_mask=face)")
        name, value = (s.strip() for s in item.split("=", 1))
        out[name] = None if value.lower() == "ignore" else ObjectClass.parse(value)
    return out


def _flags(names: Iterable[str]) -> frozenset[GtFlag]:
    return frozenset(GtFlag.parse(n) for n in names)


# --- readers -----------------------------------------------------------------------------------


def read_dev_labels(path: str | Path) -> LabelSet:
    """``dev_labels.json``: ``{file: {width, height, faces: [{box, flags}], plates: [...]}}``."""
    data = _load_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of file -> labels")
    images: dict[str, ImageLabels] = {}
    for key, entry in data.items():
        objs: list[GtObject] = []
        for group, cls in (("faces", ObjectClass.FACE), ("plates", ObjectClass.LICENSE_PLATE)):
            for item in entry.get(group, []):
                box = item["box"]
                if len(box) != 4:
                    raise ValueError(f"{path}: {key}: box {box} is not [x1, y1, x2, y2]")
                objs.append(
                    GtObject(
                        tuple(float(v) for v in box),  # type: ignore[arg-type]
                        cls,
                        _flags(item.get("flags", [])),
                        str(item.get("text", "")),
                    )
                )
        images[key] = ImageLabels(key, int(entry["width"]), int(entry["height"]), tuple(objs))
    return LabelSet(images, LabelFormat.DEV, str(path))


def read_coco(path: str | Path, class_map: ClassMap | None = None) -> LabelSet:
    """COCO detection json (``bbox`` = x, y, w, h). ``iscrowd`` -> UNCERTAIN; an optional
    ``flags`` list and ``text`` string per annotation are read too."""
    data = _load_json(path)
    try:
        cats = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        imgs = {int(i["id"]): i for i in data["images"]}
        anns = data.get("annotations", [])
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a COCO detection file ({e})") from None
    cls_of = _map_names(cats.values(), class_map, path)
    per_image: dict[int, list[GtObject]] = {i: [] for i in imgs}
    for a in anns:
        cls = cls_of[cats[int(a["category_id"])]]
        if cls is None:
            continue
        x, y, w, h = (float(v) for v in a["bbox"])
        flags = set(_flags(a.get("flags", [])))
        if a.get("iscrowd"):
            flags.add(GtFlag.UNCERTAIN)
        per_image[int(a["image_id"])].append(
            GtObject((x, y, x + w, y + h), cls, frozenset(flags), str(a.get("text", "")))
        )
    images = {}
    for iid, info in imgs.items():
        key = str(info["file_name"]).replace("\\", "/")
        images[key] = ImageLabels(
            key, int(info.get("width", 0)), int(info.get("height", 0)), tuple(per_image[iid])
        )
    return LabelSet(images, LabelFormat.COCO, str(path), classes=_classes(cls_of))


def read_voc(folder: str | Path, class_map: ClassMap | None = None) -> LabelSet:
    """A folder of Pascal VOC xml files (searched recursively). The key is ``<filename>``;
    ``difficult`` -> UNCERTAIN, ``truncated`` -> PARTIAL."""
    files = sorted(Path(folder).rglob("*.xml"))
    if not files:
        raise ValueError(f"{folder}: no Pascal VOC .xml files")
    parsed = []
    names: set[str] = set()
    for f in files:
        try:
            root = ET.parse(f).getroot()
        except ET.ParseError as e:
            raise ValueError(f"{f}: invalid XML: {e}") from None
        objs = root.findall("object")
        names.update((o.findtext("name") or "").strip() for o in objs)
        parsed.append((f, root, objs))
    cls_of = _map_names(names, class_map, folder)
    images = {}
    for f, root, objs in parsed:
        key = (root.findtext("filename") or f.stem + ".jpg").strip()
        out = []
        for o in objs:
            cls = cls_of[(o.findtext("name") or "").strip()]
            if cls is None:
                continue
            bb = o.find("bndbox")
            if bb is None:
                raise ValueError(f"{f}: <object> without <bndbox>")
            box = tuple(float(bb.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
            flags = set()
            if (o.findtext("difficult") or "0").strip() == "1":
                flags.add(GtFlag.UNCERTAIN)
            if (o.findtext("truncated") or "0").strip() == "1":
                flags.add(GtFlag.PARTIAL)
            out.append(GtObject(box, cls, frozenset(flags)))  # type: ignore[arg-type]
        w = int(float(root.findtext("size/width") or 0))
        h = int(float(root.findtext("size/height") or 0))
        images[key] = ImageLabels(key, w, h, tuple(out))
    return LabelSet(images, LabelFormat.VOC, str(folder), classes=_classes(cls_of))


def read_openalpr(folder: str | Path) -> LabelSet:
    """openalpr benchmark ``.txt`` files: ``file<TAB>x<TAB>y<TAB>w<TAB>h<TAB>plate_text``.

    Only one plate per image is labelled, so the set is not exhaustive.
    """
    files = sorted(Path(folder).rglob("*.txt"))
    images: dict[str, ImageLabels] = {}
    for f in files:
        rel_dir = os.path.relpath(f.parent, folder).replace(os.sep, "/")
        for line in f.read_text().splitlines():
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 5:
                raise ValueError(f"{f}: expected file, x, y, w, h, text separated by tabs")
            name = parts[0].strip()
            key = name if rel_dir == "." else f"{rel_dir}/{name}"
            x, y, w, h = (float(v) for v in parts[1:5])
            text = parts[5].strip() if len(parts) > 5 else ""
            prev = images.get(key)
            obj = GtObject((x, y, x + w, y + h), ObjectClass.LICENSE_PLATE, frozenset(), text)
            objs = (*prev.objects, obj) if prev else (obj,)
            images[key] = ImageLabels(key, 0, 0, objs)
    if not images:
        raise ValueError(f"{folder}: no openalpr .txt labels")
    return LabelSet(
        images,
        LabelFormat.OPENALPR,
        str(folder),
        exhaustive=False,
        classes=frozenset({ObjectClass.LICENSE_PLATE}),
    )


def read_yolo(
    folder: str | Path,
    image_size: Callable[[str], tuple[int, int] | None],
    class_map: ClassMap | None = None,
) -> LabelSet:
    """YOLO ``.txt`` files (``class cx cy w h``, normalised to [0, 1]).

    The key is the label's path relative to ``folder`` without extension; ``image_size(key)``
    returns the image's ``(width, height)`` in pixels (None: no such image, label skipped).
    Class ids map through ``class_map`` (default: id = ObjectClass value).
    """
    files = sorted(Path(folder).rglob("*.txt"))
    rows: list[tuple[str, list[list[str]]]] = []
    ids: set[str] = set()
    for f in files:
        if f.name == "classes.txt":
            continue
        lines = [ln.split() for ln in f.read_text().splitlines() if ln.strip()]
        for ln in lines:
            if len(ln) < 5:
                raise ValueError(f"{f}: expected 'class cx cy w h' per line, got {' '.join(ln)!r}")
        ids.update(ln[0] for ln in lines)
        key = os.path.relpath(f, folder).replace(os.sep, "/")[: -len(".txt")]
        rows.append((key, lines))
    if not rows:
        raise ValueError(f"{folder}: no YOLO .txt labels")
    cmap = dict(class_map or {})
    for i in ids:
        if i not in cmap and "*" not in cmap:
            try:
                cmap[i] = ObjectClass(int(i))
            except ValueError:
                raise ValueError(
                    f"YOLO class id {i} maps to no object class: pass --class-map {i}=face|license_plate|ignore"
                ) from None
    cls_of = _map_names(ids, cmap, folder)
    images = {}
    for key, lines in rows:
        size = image_size(key)
        if size is None:
            continue
        w, h = size
        objs = []
        for ln in lines:
            cls = cls_of[ln[0]]
            if cls is None:
                continue
            cx, cy, bw, bh = (float(v) for v in ln[1:5])
            objs.append(
                GtObject(
                    ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h),
                    cls,
                )
            )
        images[key] = ImageLabels(key, w, h, tuple(objs))
    return LabelSet(images, LabelFormat.YOLO, str(folder), classes=_classes(cls_of))


def detect_format(path: str | Path) -> LabelFormat:
    """Guess the label format of a file or folder from its content."""
    p = Path(path)
    if p.is_file():
        if p.suffix.lower() != ".json":
            raise ValueError(f"{p}: a label file must be COCO or dev_labels .json")
        data = _load_json(p)
        if isinstance(data, dict) and {"images", "annotations", "categories"} <= set(data):
            return LabelFormat.COCO
        return LabelFormat.DEV
    if not p.is_dir():
        raise FileNotFoundError(f"labels {p}: no such file or directory")
    if next(p.rglob("*.xml"), None) is not None:
        return LabelFormat.VOC
    for f in sorted(p.rglob("*.txt")):
        if f.name == "classes.txt":
            continue
        first = next((ln for ln in f.read_text().splitlines() if ln.strip()), "")
        if not first:
            continue
        return LabelFormat.OPENALPR if "\t" in first else LabelFormat.YOLO
    raise ValueError(f"{p}: no label files (.xml, .txt) found")


def load_labels(
    path: str | Path,
    fmt: LabelFormat = LabelFormat.AUTO,
    *,
    class_map: ClassMap | None = None,
    image_size: Callable[[str], tuple[int, int] | None] | None = None,
) -> LabelSet:
    """Read labels in any supported format (``image_size`` is needed for YOLO only)."""
    if fmt is LabelFormat.AUTO:
        fmt = detect_format(path)
    if fmt is LabelFormat.DEV:
        return read_dev_labels(path)
    if fmt is LabelFormat.COCO:
        return read_coco(path, class_map)
    if fmt is LabelFormat.VOC:
        return read_voc(path, class_map)
    if fmt is LabelFormat.OPENALPR:
        return read_openalpr(path)
    if image_size is None:
        raise ValueError("YOLO labels are normalised: the image sizes are needed (--originals)")
    return read_yolo(path, image_size, class_map)


# --- seam ----------------------------------------------------------------------------------------


def join_seam_halves(labels: ImageLabels, width: int, tol_px: float = 1.0) -> ImageLabels:
    """Join the two halves of panorama objects labelled on both sides of the 0/360 seam.

    A box touching the right edge (``x2 >= W - tol``) and a box of the same class touching the
    left edge (``x1 <= tol``) whose y ranges overlap by at least half the shorter one become one
    unwrapped box ``[x1_right, min y1, W + x2_left, max y2]`` with the union of their flags.
    Each half joins at most once (closest vertical overlap first).
    """
    W = float(width)
    objs = list(labels.objects)
    right = [i for i, o in enumerate(objs) if o.box[2] >= W - tol_px and o.box[0] > tol_px]
    left = [i for i, o in enumerate(objs) if o.box[0] <= tol_px and o.box[2] < W - tol_px]
    pairs: list[tuple[float, int, int]] = []
    for i in right:
        for j in left:
            a, b = objs[i], objs[j]
            if a.cls != b.cls:
                continue
            inter = min(a.box[3], b.box[3]) - max(a.box[1], b.box[1])
            shorter = min(a.height, b.height)
            if shorter > 0 and inter >= 0.5 * shorter:
                pairs.append((-inter / shorter, i, j))
    used: set[int] = set()
    joined: list[GtObject] = []
    for _, i, j in sorted(pairs):
        if i in used or j in used:
            continue
        used.update((i, j))
        a, b = objs[i], objs[j]
        joined.append(
            GtObject(
                (a.box[0], min(a.box[1], b.box[1]), W + b.box[2], max(a.box[3], b.box[3])),
                a.cls,
                a.flags | b.flags,
                a.text or b.text,
            )
        )
    if not joined:
        return labels
    rest = [o for k, o in enumerate(objs) if k not in used]
    return replace(labels, objects=tuple(rest + joined))


# --- helpers -------------------------------------------------------------------------------------


def _load_json(path: str | Path) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON: {e}") from None


def _map_names(
    names: Iterable[str], class_map: ClassMap | None, where: str | Path
) -> dict[str, ObjectClass | None]:
    out: dict[str, ObjectClass | None] = {}
    unknown = []
    for n in sorted(set(names)):
        try:
            out[n] = resolve_class(n, class_map)
        except ValueError:
            unknown.append(n)
    if unknown:
        raise ValueError(
            f"{where}: label class(es) {unknown} map to no object class: pass "
            f"--class-map NAME=face|license_plate|ignore"
        )
    return out


def _classes(cls_of: Mapping[str, ObjectClass | None]) -> frozenset[ObjectClass]:
    """Classes a label set speaks for (a class no name maps to has no ground truth)."""
    return frozenset(c for c in cls_of.values() if c is not None)
