"""What the review page shows, and the allowlist of what it may serve.

A :class:`Catalog` is built from a published tree (:class:`redact.runner.Layout`): the newest
published manifest row of every image, its candidates (every detection of that row, with its
class, score, decision and reason), the review items of the review store (and their latest
decisions), and, per image, the files the page may serve, keyed by a *name* chosen here
(``published``, ``original`` only with ``originals=True``, ``r/<path under the copy's
.renditions folder>``), never by a path from a request.

Geometry: candidate boxes are equirectangular pixel boxes (seam-unwrapped, so x may run past
the width); pannellum positions in degrees: yaw = (cx / W - 0.5) * 360 wrapped to
[-180, 180), pitch = (0.5 - cy / H) * 180.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from apache_beam.io.filesystems import FileSystems

from redact.classes import Projection
from redact.renditions import renditions_folder
from redact.season.republish import newest_per_image

#: Largest viewer.json the page reads (bytes).
MAX_VIEWER_JSON = 1 << 20
#: One path segment of a servable rendition (no "..", no separators, no odd characters).
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_MULTIRES_PATH = re.compile(r"(/%[lsxy]){1,4}|(/%l/%s%y_%x)")
_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def wrap_yaw(yaw: float) -> float:
    """Degrees -> the same direction in [-180, 180)."""
    return (yaw + 180.0) % 360.0 - 180.0


def pixel_to_pitch_yaw(x: float, y: float, width: int, height: int) -> tuple[float, float]:
    """An equirectangular pixel position (x right, y down, pixels of a ``width`` x ``height``
    image) -> (pitch, yaw) in degrees: yaw 0 = the centre column, +90 = right; pitch +90 =
    the top row. Raises ValueError for a non-positive size."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size {width}x{height} must be positive")
    return (0.5 - y / height) * 180.0, wrap_yaw((x / width - 0.5) * 360.0)


def pitch_yaw_to_pixel(pitch: float, yaw: float, width: int, height: int) -> tuple[float, float]:
    """Inverse of :func:`pixel_to_pitch_yaw`: degrees -> (x, y) pixels, x in [0, width)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size {width}x{height} must be positive")
    return (wrap_yaw(yaw) / 360.0 + 0.5) * width, (0.5 - pitch / 180.0) * height


def box_view(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """An equirectangular pixel box (x1, y1, x2, y2) -> (pitch, yaw, dpitch, dyaw) in degrees:
    its centre's direction and its angular height and width."""
    x1, y1, x2, y2 = (float(v) for v in box)
    pitch, yaw = pixel_to_pitch_yaw((x1 + x2) / 2, (y1 + y2) / 2, width, height)
    return pitch, yaw, (y2 - y1) / height * 180.0, (x2 - x1) / width * 360.0


def image_id(relative_path: str) -> str:
    """A short stable id for an image (the page's handle; never a path)."""
    return hashlib.sha256(relative_path.encode()).hexdigest()[:16]


def rendition_name(output_uri: str, uri: str) -> str:
    """The served name (``r/<path>``) of a rendition file under ``<output_uri>.renditions/``;
    "" when it is elsewhere or its path has a segment outside the allowlist."""
    prefix = renditions_folder(output_uri) + "/"
    if not output_uri or not uri.startswith(prefix):
        return ""
    parts = uri[len(prefix) :].split("/")
    if not parts or not all(_SEGMENT.fullmatch(p) and p not in (".", "..") for p in parts):
        return ""
    return "r/" + "/".join(parts)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One box drawn on an image: a manifest detection or a review item of another run."""

    cls: str
    score: float
    box: tuple[float, float, float, float]  # image pixels
    decision: str  # blur | review | dropped | manual
    reason: str  # "" in manifests written before reasons
    model: str
    review_id: str  # "" unless the review store has an item for it
    review_decision: str  # the latest reviewer decision ("" none)
    pitch: float | None  # degrees (equirectangular images only)
    yaw: float | None
    dpitch: float | None
    dyaw: float | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ImageEntry:
    image_id: str
    relative_path: str
    image_uri: str  # the original: never served unless the catalog has originals
    run_id: str
    status: str
    projection: str
    width: int
    height: int
    candidates: tuple[Candidate, ...]
    files: Mapping[str, str]  # served name -> uri (the allowlist)
    viewer_config: str  # uri of the viewer.json rendition ("" none)

    @property
    def equirectangular(self) -> bool:
        return self.projection == Projection.EQUIRECTANGULAR.value

    @property
    def pending(self) -> int:
        return sum(1 for c in self.candidates if c.review_id and not c.review_decision)

    @property
    def reviewable(self) -> int:
        return sum(1 for c in self.candidates if c.review_id)

    def panorama_name(self) -> str:
        """The file an equirectangular viewer opens without multires: the preview rendition
        when there is one (a smaller texture), else the published copy."""
        return "r/preview.jpg" if "r/preview.jpg" in self.files else "published"


@dataclasses.dataclass(frozen=True)
class Catalog:
    images: Mapping[str, ImageEntry]  # by image id, sorted by relative path
    items: Mapping[str, Mapping[str, Any]]  # review items by review id
    originals: bool

    def file_uri(self, image: str, name: str) -> str | None:
        """The uri behind a served name of an image, None unless the allowlist has it."""
        entry = self.images.get(image)
        if entry is None:
            return None
        if name == "original" and not self.originals:
            return None
        return entry.files.get(name)


def _candidate(
    det: Mapping[str, Any],
    width: int,
    height: int,
    equirect: bool,
    review_id: str,
    review_decision: str,
) -> Candidate:
    box = (float(det["x1"]), float(det["y1"]), float(det["x2"]), float(det["y2"]))
    view: tuple[float | None, ...] = (None,) * 4
    if equirect and width > 0 and height > 0:
        view = box_view(box, width, height)
    return Candidate(
        cls=str(det["class"]),
        score=float(det["score"]),
        box=box,
        decision=str(det.get("decision") or "review"),
        reason=str(det.get("reason") or ""),
        model=str(det.get("model") or ""),
        review_id=review_id,
        review_decision=review_decision,
        pitch=view[0],
        yaw=view[1],
        dpitch=view[2],
        dyaw=view[3],
    )


def build_catalog(
    rows: Sequence[Mapping[str, Any]],
    items: Sequence[Mapping[str, Any]],
    decisions: Mapping[str, Mapping[str, Any]],
    *,
    originals: bool = False,
) -> Catalog:
    """The catalog of manifest ``rows`` (every run's), review ``items`` (every run's) and the
    latest decision per review id. Images: the newest non-skipped row of every relative path
    (a failed newest row has no published file); review items of other runs than that row's
    are added as candidates of their image."""
    from redact.season.review import review_id as make_review_id

    by_id = {str(i["review_id"]): i for i in items}
    items_by_path: dict[str, list[Mapping[str, Any]]] = {}
    for it in items:
        items_by_path.setdefault(str(it["relative_path"]), []).append(it)
    images: dict[str, ImageEntry] = {}
    for rel, row in sorted(newest_per_image(rows).items()):
        width, height = int(row["width"] or 0), int(row["height"] or 0)
        equirect = row["projection"] == Projection.EQUIRECTANGULAR.value
        cands: list[Candidate] = []
        seen: set[str] = set()
        for det in row.get("detections") or ():
            rid = ""
            if det["decision"] == "review":
                rid = make_review_id(row["run_id"], rel, det)
                rid = rid if rid in by_id else ""
                seen.add(rid)
            dec = str(decisions.get(rid, {}).get("decision", "")) if rid else ""
            cands.append(_candidate(det, width, height, equirect, rid, dec))
        for it in items_by_path.get(rel, ()):
            rid = str(it["review_id"])
            if rid not in seen:
                dec = str(decisions.get(rid, {}).get("decision", ""))
                cands.append(_candidate(it, width, height, equirect, rid, dec))
        files: dict[str, str] = {}
        viewer = ""
        if row["status"] == "published" and row["output_uri"]:
            out_uri = str(row["output_uri"])
            files["published"] = out_uri
            for r in row.get("renditions") or ():
                name = rendition_name(out_uri, str(r["uri"]))
                if name:
                    files[name] = str(r["uri"])
                    if r["kind"] == "viewer_config":
                        viewer = str(r["uri"])
        if originals and row["image_uri"]:
            files["original"] = str(row["image_uri"])
        iid = image_id(rel)
        images[iid] = ImageEntry(
            image_id=iid,
            relative_path=rel,
            image_uri=str(row["image_uri"] or ""),
            run_id=str(row["run_id"]),
            status=str(row["status"]),
            projection=str(row["projection"] or ""),
            width=width,
            height=height,
            candidates=tuple(cands),
            files=files,
            viewer_config=viewer,
        )
    return Catalog(images=images, items=by_id, originals=originals)


def read_catalog(layout: Any, *, originals: bool = False) -> Catalog:
    """:func:`build_catalog` of a published tree (``layout``: :class:`redact.runner.Layout`)."""
    from redact.manifest import read_manifest
    from redact.season.review import latest_decisions, read_review_items

    rows = read_manifest(layout.manifest).to_pylist()
    items = read_review_items(layout.review).to_pylist()
    return build_catalog(rows, items, latest_decisions(layout.review), originals=originals)


def read_file(uri: str, *, limit: int | None = None) -> bytes:
    """The bytes of a listed file (local path or any Beam filesystem uri); ValueError when it
    is larger than ``limit`` bytes."""
    with FileSystems.open(uri, compression_type="uncompressed") as f:
        data = f.read() if limit is None else f.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise ValueError(f"{uri}: larger than {limit} bytes")
    return bytes(data)


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 1 << 20:
        raise ValueError(f"viewer.json: {what} must be a positive integer, not {value!r}")
    return value


def multires_config(viewer_json: bytes, base_url: str) -> dict[str, Any]:
    """A rendition's ``viewer.json`` (pannellum multires config, paths relative to the
    renditions folder) -> the ``multiRes`` part of a pannellum config whose tiles are served
    under ``base_url`` (the image's ``r`` name prefix). Only known keys are kept; ValueError
    for anything malformed."""
    try:
        cfg = json.loads(viewer_json)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"viewer.json: not JSON ({e})") from None
    mr = cfg.get("multiRes") if isinstance(cfg, dict) else None
    if not isinstance(mr, dict) or cfg.get("type") != "multires":
        raise ValueError("viewer.json: not a pannellum multires config")
    base = mr.get("basePath", "")
    parts = str(base).strip("/").split("/") if base else []
    if not isinstance(base, str) or not all(
        _SEGMENT.fullmatch(p) and p not in (".", "..") for p in parts
    ):
        raise ValueError(f"viewer.json: basePath {base!r} is not a plain relative folder")
    path, ext = mr.get("path"), mr.get("extension")
    if not isinstance(path, str) or not _MULTIRES_PATH.fullmatch(path):
        raise ValueError(f"viewer.json: unexpected tile path {path!r}")
    if ext not in _EXTENSIONS:
        raise ValueError(f"viewer.json: unexpected extension {ext!r}")
    return {
        "basePath": "/".join([base_url.rstrip("/"), *parts]),
        "path": path,
        "extension": ext,
        "tileResolution": _positive_int(mr.get("tileResolution"), "tileResolution"),
        "maxLevel": _positive_int(mr.get("maxLevel"), "maxLevel"),
        "cubeResolution": _positive_int(mr.get("cubeResolution"), "cubeResolution"),
    }


def viewer_settings(entry: ImageEntry, url_of: Any) -> dict[str, Any] | None:
    """The pannellum config (without hot spots) of an equirectangular image: multires from its
    viewer.json rendition when it has one that reads, else the equirectangular preview or
    published copy (``redactNote`` says why a listed pyramid was not used); None for a photo or an image without a published copy. ``url_of(name)``
    gives the url of a served name."""
    if not entry.equirectangular or "published" not in entry.files:
        return None
    base = {"autoLoad": True, "showZoomCtrl": True, "hfov": 100, "compass": False}
    note = ""
    if entry.viewer_config:
        try:
            mr = multires_config(read_file(entry.viewer_config, limit=MAX_VIEWER_JSON), url_of("r"))
            return {**base, "type": "multires", "multiRes": mr}
        except (OSError, ValueError) as e:
            # An unreadable pyramid: the flat copy still shows the published pixels; the page
            # says why.
            note = f"multires pyramid not used: {e}"
    return {
        **base,
        "type": "equirectangular",
        "panorama": url_of(entry.panorama_name()),
        "redactNote": note,
    }
