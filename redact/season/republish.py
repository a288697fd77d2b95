"""Republishing reported images: which images a manual-regions change leaves stale, where
their originals are, and the newest manifest row of each image (used by ``redact report`` and
``redact reprocess``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from redact.errors import UsageError
from redact.manifest import SCHEMA, Status
from redact.season.manual import read_regions, regions_hash
from redact.season.markers import delete_marker, marker_uri, read_marker

RowT = TypeVar("RowT", bound=Mapping[str, Any])

ROW_COLUMNS = (
    "run_id",
    "image_uri",
    "relative_path",
    "output_uri",
    "status",
    "width",
    "height",
    "projection",
    "models",
    "config_hash",
    "processed_at",
    "latitude",
    "longitude",
    "captured_at",
    "camera",
    "s2_cell",
)


def latest_rows(manifest_dir: str) -> dict[str, dict[str, Any]]:
    """The newest manifest row of every image (by processed_at), keyed by relative path; only
    the columns selection needs (:data:`ROW_COLUMNS`: not the detections). Skipped rows only
    say an earlier row stands, so they are passed over."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(manifest_dir, format="parquet", schema=SCHEMA)
    return newest_per_image(dataset.to_table(columns=list(ROW_COLUMNS)).to_pylist())


def newest_per_image(rows: Iterable[RowT]) -> dict[str, RowT]:
    """The newest of ``rows`` (manifest rows) per relative path, by (processed_at, run_id);
    skipped rows only say an earlier row stands, so they are passed over."""
    out: dict[str, RowT] = {}
    for row in rows:
        if row["status"] == Status.SKIPPED.value:
            continue
        cur = out.get(row["relative_path"])
        if cur is None or (row["processed_at"], row["run_id"]) >= (
            cur["processed_at"],
            cur["run_id"],
        ):
            out[row["relative_path"]] = row
    return out


def absolute_uri(uri: str) -> str:
    """A local path made absolute (how manifests record uris); remote uris unchanged."""
    return uri if "://" in uri else os.path.abspath(uri)


def resolve_image(rows: dict[str, dict[str, Any]], image: str) -> dict[str, Any]:
    """The manifest row of an image named by original uri, published uri or relative path."""
    if image in rows:
        return rows[image]
    key = absolute_uri(image)
    for row in rows.values():
        if key in (row["image_uri"], row["output_uri"]):
            return row
    raise UsageError(f"{image!r} is not in the manifest (give its original or published uri)")


def invalidate(markers_dir: str, relative_paths: Sequence[str]) -> int:
    """Delete the markers of these images; returns how many existed."""
    return sum(delete_marker(marker_uri(markers_dir, rel)) for rel in sorted(set(relative_paths)))


def pending_images(layout: Any, *, everything: bool = False) -> dict[str, str]:
    """Reported images whose published copy does not include their current regions:
    relative path -> image uri (from the table)."""
    by_image: dict[str, list[Any]] = {}
    for r in read_regions(layout.manual):
        by_image.setdefault(r.relative_path, []).append(r)
    out = {}
    for rel, regions in sorted(by_image.items()):
        marker = read_marker(marker_uri(layout.markers, rel))
        if everything or marker is None or marker.manual_hash != regions_hash(regions):
            out[rel] = regions[-1].image_uri
    return out


def originals_base(images: dict[str, str], originals: str | None) -> str:
    """The input base of these images: ``--originals``, or derived from the table's uris."""
    if originals:
        return originals
    bases = set()
    for rel, uri in images.items():
        if not uri.endswith("/" + rel):
            raise UsageError(f"cannot derive the originals folder from {uri!r}: give --originals")
        bases.add(uri[: -len(rel) - 1])
    if len(bases) != 1:
        raise UsageError(f"the reported images come from {len(bases)} folders: give --originals")
    return bases.pop()
