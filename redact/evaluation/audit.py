"""A stratified random sample of published images for human review, and its review sheet.

Strata (from the manifest alone, no image is read):

* **place** -- the S2 cell of the capture location (the manifest's ``s2_cell``, coarsened to
  ``s2_level`` when given) for rows that have one; otherwise the image's folder
  (``relative_path`` without the file name, cut to ``folder_depth`` components; 0 = one
  stratum): capture systems write one folder per drive, area or day. :class:`PlaceKey`
  forces one or the other;
* **detection count** -- blurred detections per image: 0, 1-2, 3-9, 10+;
* **review band** -- whether any detection was in the review band.

The sample size is split over the strata in proportion to their size (largest remainder),
each non-empty stratum getting at least ``min_per_stratum`` (strata with a review band
first when ``n`` is too small for all). Every sampled row carries ``weight`` = stratum size /
stratum sample size, so miss rates found by reviewers can be weighted back to the whole run.
"""

from __future__ import annotations

import csv
import enum
import html
import math
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from redact.classes import ObjectClass
from redact.evaluation.dataset import ManifestImage
from redact.manifest import Status

COUNT_BINS: tuple[tuple[str, int, float], ...] = (
    ("0", 0, 1),
    ("1-2", 1, 3),
    ("3-9", 3, 10),
    ("10+", 10, math.inf),
)
REVIEW_COLUMNS = ("missed_faces", "missed_plates", "insufficient_blur", "false_blurs", "notes")


class PlaceKey(enum.Enum):
    AUTO = "auto"  # S2 cell where the row has a location, else folder
    S2 = "s2"  # S2 cell ("no-location" for rows without one)
    FOLDER = "folder"


@dataclass(frozen=True)
class Stratum:
    place: str
    detections: str
    review_band: bool

    @property
    def name(self) -> str:
        return (
            f"{self.place or '.'}|{self.detections}|{'review' if self.review_band else 'no-review'}"
        )


@dataclass(frozen=True)
class Sampled:
    row: ManifestImage
    stratum: Stratum
    weight: float


def count_bin(n: int) -> str:
    for label, lo, hi in COUNT_BINS:
        if lo <= n < hi:
            return label
    return COUNT_BINS[-1][0]


def coarsen_cell(token: str, level: int | None) -> str:
    """The token of ``token``'s ancestor at ``level`` (itself when ``level`` is None or not
    coarser)."""
    if level is None or not token:
        return token
    import s2sphere

    cell = s2sphere.CellId.from_token(token)
    if not cell.is_valid():
        raise ValueError(f"manifest s2_cell {token!r} is not a valid S2 cell token")
    return str(cell.parent(level).to_token()) if level < cell.level() else token


def stratum_of(
    row: ManifestImage,
    folder_depth: int,
    place_key: PlaceKey = PlaceKey.AUTO,
    s2_level: int | None = None,
) -> Stratum:
    if place_key is PlaceKey.S2 or (place_key is PlaceKey.AUTO and row.s2_cell):
        place = "s2:" + (coarsen_cell(row.s2_cell, s2_level) or "no-location")
    else:
        parts = [p for p in posixpath.dirname(row.relative_path).split("/") if p]
        place = "/".join(parts[:folder_depth])
    return Stratum(place, count_bin(int(row.det_blurred.sum())), bool(row.det_review.any()))


def allocate(sizes: Mapping[Stratum, int], n: int, min_per_stratum: int = 1) -> dict[Stratum, int]:
    """Sample size per stratum: proportional (largest remainder) with a minimum, never more
    than the stratum holds, summing to ``min(n, total)``."""
    total = sum(sizes.values())
    n = min(n, total)
    order = sorted(sizes, key=lambda s: (not s.review_band, -sizes[s], s.name))
    alloc = dict.fromkeys(sizes, 0)
    left = n
    for s in order:  # minimums first, review-band strata first
        give = min(min_per_stratum, sizes[s], left)
        alloc[s] += give
        left -= give
    if left > 0:
        room = {s: sizes[s] - alloc[s] for s in sizes}
        quota = {s: left * room[s] / max(sum(room.values()), 1) for s in sizes}
        for s in sizes:
            alloc[s] += min(int(quota[s]), room[s])
        left = n - sum(alloc.values())
        by_rem = sorted(sizes, key=lambda s: (-(quota[s] - int(quota[s])), s.name))
        while left > 0:
            for s in by_rem:
                if left and alloc[s] < sizes[s]:
                    alloc[s] += 1
                    left -= 1
    return alloc


def draw_sample(
    rows: Sequence[ManifestImage],
    n: int,
    *,
    seed: int = 0,
    folder_depth: int = 1,
    min_per_stratum: int = 1,
    place_key: PlaceKey = PlaceKey.AUTO,
    s2_level: int | None = None,
) -> list[Sampled]:
    """A stratified sample without replacement of the published rows (deterministic per seed)."""
    if n < 1:
        raise ValueError(f"sample size must be >= 1, got {n}")
    pub = [r for r in rows if r.status is Status.PUBLISHED]
    groups: dict[Stratum, list[ManifestImage]] = {}
    for r in sorted(pub, key=lambda r: r.relative_path):
        groups.setdefault(stratum_of(r, folder_depth, place_key, s2_level), []).append(r)
    alloc = allocate({s: len(g) for s, g in groups.items()}, n, min_per_stratum)
    rng = np.random.default_rng(seed)
    out: list[Sampled] = []
    for s in sorted(groups, key=lambda s: s.name):
        k = alloc[s]
        if k == 0:
            continue
        idx = np.sort(rng.choice(len(groups[s]), size=k, replace=False))
        out.extend(Sampled(groups[s][i], s, len(groups[s]) / k) for i in idx)
    return out


def link(uri: str) -> str:
    """A clickable link for a published copy (file://, or the cloud console's object URL)."""
    if uri.startswith("gs://"):
        return "https://storage.cloud.google.com/" + quote(uri[len("gs://") :])
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
        return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={quote(key)}"
    if "://" in uri:
        return uri
    return Path(os.path.abspath(uri)).as_uri()


def write_review_sheet(samples: Sequence[Sampled], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``review_sheet.csv`` (one row per sampled image, empty reviewer columns) and
    ``links.html``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sheet = out / "review_sheet.csv"
    page = out / "links.html"
    fields = (
        "sample_id",
        "stratum",
        "place",
        "detections_bin",
        "review_band",
        "weight",
        "relative_path",
        "published_link",
        "output_uri",
        "n_faces_blurred",
        "n_plates_blurred",
        "n_review",
        "blurred_fraction",
        "run_id",
        *REVIEW_COLUMNS,
    )
    with open(sheet, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for i, s in enumerate(samples, 1):
            r = s.row
            blurred_cls = r.det_class[r.det_blurred]
            w.writerow(
                {
                    "sample_id": i,
                    "stratum": s.stratum.name,
                    "place": s.stratum.place,
                    "detections_bin": s.stratum.detections,
                    "review_band": int(s.stratum.review_band),
                    "weight": f"{s.weight:.4f}",
                    "relative_path": r.relative_path,
                    "published_link": link(r.output_uri),
                    "output_uri": r.output_uri,
                    "n_faces_blurred": int(np.sum(blurred_cls == int(ObjectClass.FACE))),
                    "n_plates_blurred": int(np.sum(blurred_cls == int(ObjectClass.LICENSE_PLATE))),
                    "n_review": int(r.det_review.sum()),
                    "blurred_fraction": f"{r.blurred_fraction:.5f}",
                    "run_id": r.run_id,
                    **dict.fromkeys(REVIEW_COLUMNS, ""),
                }
            )
    items = "\n".join(
        f"<li>{i}. <a href='{html.escape(link(s.row.output_uri))}'>"
        f"{html.escape(s.row.relative_path)}</a> <small>{html.escape(s.stratum.name)}</small></li>"
        for i, s in enumerate(samples, 1)
    )
    page.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>redact audit sample</title>"
        f"</head><body><h1>Audit sample ({len(samples)} published images)</h1>"
        "<p>Record findings in review_sheet.csv (same sample_id).</p>"
        f"<ol style='list-style:none'>{items}</ol></body></html>\n"
    )
    return sheet, page
