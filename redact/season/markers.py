"""Idempotent runs: one small marker object per published image.

``MARKERS/<relative path>.json`` (default ``DST/_markers``) is written atomically *after* the
published copy, and says which source (size, last-modified time, sha256), which model set,
which config (its pixel-affecting hash), which manual regions and which pixel algorithm
(:data:`redact.core.PIXEL_VERSION`) produced it. A later run skips a matched file whose marker
agrees on all of those and whose published copy still exists, *before reading or decoding it*,
so re-running a season is a listing plus two small metadata calls per image. Anything changed
re-does the image; a deleted published copy is restored; an image whose job was killed before
its marker was written has no marker, so the re-run finishes exactly those. Quarantined images
get no marker (they are retried). The manual regions are compared with the table as the
re-run reads it, so a region reported while a job that had already read the table was
running (that job writes a marker without it) is still blurred by the next run.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from apache_beam.io.filesystems import FileSystems

from redact.io.storage import output_uri, write_atomic

_LOG = logging.getLogger(__name__)
MARKER_VERSION = 2  # 1: no pixel_version (such markers count as none: the image is re-done)
MTIME_TOLERANCE_S = 1e-3


@dataclass(frozen=True)
class SourceFingerprint:
    """What the listing says about a source object (no read needed).

    ``last_updated`` is seconds since the epoch (None when the filesystem does not say).
    """

    size_bytes: int
    last_updated: float | None


@dataclass(frozen=True)
class Marker:
    """Proof that ``relative_path`` was published from this source with this model/config."""

    source_uri: str
    relative_path: str
    size_bytes: int
    last_updated: float | None
    sha256: str
    models_hash: str
    config_hash: str
    run_id: str
    output_uri: str
    output_sha256: str
    manual_hash: str  # regions_hash of the manual regions blurred ("" = none)
    published_at: str  # ISO 8601 UTC
    pixel_version: int  # redact.core.PIXEL_VERSION of the code that published
    # The image's manifest row (JSON form, see row_to_json): re-emitted by a later run when
    # the run that published it was killed before its manifest was written.
    row: dict[str, Any] = field(default_factory=dict)
    version: int = MARKER_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, default=_plain).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Marker:
        """Parse a marker; raises ValueError if it is not one (wrong keys or version)."""
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"marker is not JSON: {e}") from e
        if not isinstance(raw, dict) or raw.get("version") != MARKER_VERSION:
            raise ValueError("marker has an unknown version")
        try:
            return cls(**raw)
        except TypeError as e:
            raise ValueError(f"marker has unexpected fields: {e}") from e


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars in manifest rows."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class Verdict(enum.Enum):
    """Whether a matched file must be processed, and why."""

    CURRENT = "current"  # published from this source with this model set and config: skip
    NO_MARKER = "no_marker"
    SOURCE_CHANGED = "source_changed"
    MODELS_CHANGED = "models_changed"
    CONFIG_CHANGED = "config_changed"
    MANUAL_CHANGED = "manual_changed"
    CODE_CHANGED = "code_changed"
    OUTPUT_MISSING = "output_missing"
    RENDITIONS_MISSING = "renditions_missing"  # a rendition listed in the marker's row is gone
    FORCED = "forced"

    @property
    def skip(self) -> bool:
        return self is Verdict.CURRENT


def models_hash(models: Iterable[Mapping[str, Any]]) -> str:
    """sha256 hex of the ensemble's (name, version, sha256, backend), in ensemble order."""
    keys = ("name", "version", "sha256", "backend")
    canon = [[str(m.get(k, "")) for k in keys] for m in models]
    return hashlib.sha256(json.dumps(canon).encode()).hexdigest()


def fingerprint(size_bytes: int, last_updated_in_seconds: float | None) -> SourceFingerprint:
    """From Beam ``FileMetadata`` fields (0.0 there means "unknown")."""
    t = last_updated_in_seconds
    return SourceFingerprint(int(size_bytes), float(t) if t else None)


def row_to_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest row in JSON-safe form (timestamps as ISO 8601, map entries as pairs)."""
    out = dict(row)
    ts = out.get("processed_at")
    if isinstance(ts, datetime.datetime):
        out["processed_at"] = ts.isoformat()
    out["timings_s"] = [list(kv) for kv in (out.get("timings_s") or [])]
    return out


def row_from_json(data: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """Inverse of :func:`row_to_json`, re-attributed to ``run_id`` (the run recording it)."""
    out = dict(data)
    ts = out.get("processed_at")
    if isinstance(ts, str) and ts:
        out["processed_at"] = datetime.datetime.fromisoformat(ts)
    out["timings_s"] = [(str(k), float(v)) for k, v in (out.get("timings_s") or [])]
    out["run_id"] = run_id
    return out


def reattributed(marker: Marker, run_id: str) -> Marker:
    """The marker with its row re-emitted by ``run_id``."""
    return replace(marker, run_id=run_id, row={**marker.row, "run_id": run_id})


MARKER_SUFFIX = ".json"


def marker_uri(markers_dir: str, relative_path: str) -> str:
    """``markers_dir/<relative path>.json`` (refuses unsafe names, like the output path)."""
    return output_uri(markers_dir, relative_path + MARKER_SUFFIX)


def verdict(
    marker: Marker | None,
    source: SourceFingerprint,
    *,
    models: str,
    config: str | frozenset[str],
    manual: str,
    pixel_version: int,
    output_exists: bool,
    force: bool = False,
    run_id: str = "",
    renditions_exist: bool = True,
) -> Verdict:
    """Decide from a marker whether a file needs processing.

    ``config`` is the current config hash, or the set of them under which an image counts as
    current (:meth:`redact.manifest.RunInfo.current_config_hashes`: one per projection, plus
    the whole config's that markers recorded before); ``manual`` is the regions_hash of the
    image's manual regions in the table now,
    ``pixel_version`` this code's :data:`redact.core.PIXEL_VERSION`, ``output_exists`` whether
    the published copy is still there, ``renditions_exist`` whether every rendition the
    marker's row lists is (:func:`renditions_present`; True when renditions are off).

    With ``force`` everything is re-done except images this very run (``run_id``) already
    published: so a killed forced job (a reprocess) resumes when re-run with the same run id.
    """
    if marker is None:
        return Verdict.NO_MARKER
    if marker.size_bytes != source.size_bytes or (
        marker.last_updated is not None
        and source.last_updated is not None
        and abs(marker.last_updated - source.last_updated) > MTIME_TOLERANCE_S
    ):
        return Verdict.SOURCE_CHANGED
    if marker.models_hash != models:
        return Verdict.MODELS_CHANGED
    if marker.config_hash not in ({config} if isinstance(config, str) else config):
        return Verdict.CONFIG_CHANGED
    if marker.manual_hash != manual:
        return Verdict.MANUAL_CHANGED
    if marker.pixel_version != pixel_version:
        return Verdict.CODE_CHANGED
    if not output_exists:
        return Verdict.OUTPUT_MISSING
    if not renditions_exist:
        return Verdict.RENDITIONS_MISSING
    if force and not (run_id and marker.run_id == run_id):
        return Verdict.FORCED
    return Verdict.CURRENT


def renditions_present(marker: Marker, folder: str) -> bool:
    """Whether every rendition the marker's row lists is still in ``folder`` (one listing, no
    read). A marker whose row lists none (written without renditions) has none present."""
    listed = {r["uri"] for r in marker.row.get("renditions") or ()}
    if not listed:
        return False
    found = FileSystems.match([FileSystems.join(folder, "**")])[0].metadata_list
    return listed <= {m.path for m in found}


def read_marker(uri: str) -> Marker | None:
    """The marker at ``uri``; None if there is none. A corrupt marker counts as none (the image
    is re-done: the safe direction) and is logged."""
    if not FileSystems.exists(uri):
        return None
    with FileSystems.open(uri, mime_type="application/json", compression_type="uncompressed") as f:
        data = f.read()
    try:
        return Marker.from_json(data)
    except ValueError as e:
        _LOG.warning("ignoring corrupt marker %s (the image will be re-done): %s", uri, e)
        return None


def write_marker(uri: str, marker: Marker, *, retries: int = 3, backoff_s: float = 0.5) -> None:
    write_atomic(uri, marker.to_json(), retries=retries, backoff_s=backoff_s)


def delete_marker(uri: str) -> bool:
    """Delete a marker (so the next run re-does that image); True if one existed."""
    if not FileSystems.exists(uri):
        return False
    FileSystems.delete([uri])
    return True
