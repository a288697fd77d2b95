"""Prioritised S2 cells: which images to reprocess when a better model ships (used by
``redact reprocess``). A cell selects every image located in it, children included."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CellPriority:
    token: str
    priority: int


def read_cells(path: str) -> list[CellPriority]:
    """Parse a ``token,priority`` CSV (validating every token); raises ValueError."""
    from redact.season.location import CellRange

    out = []
    with open(path, newline="") as f:
        for i, rec in enumerate(csv.reader(f)):
            if not rec or not rec[0].strip() or rec[0].strip().startswith("#"):
                continue
            token = rec[0].strip()
            if i == 0 and token.lower() in ("token", "cell", "s2_cell"):
                continue
            try:
                CellRange.parse(token)
                prio = int(rec[1]) if len(rec) > 1 and rec[1].strip() else 0
            except ValueError as e:
                raise ValueError(f"{path}:{i + 1}: {e}") from None
            out.append(CellPriority(token.lower(), prio))
    if not out:
        raise ValueError(f"{path}: no cell tokens")
    return out


def _leaf_ids(rows: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: (lo, hi) leaf-id range of its location (a point: lo == hi; only a stored cell:
    that cell's range), and whether it has any location. uint64 arrays."""
    from redact.season.location import CellRange, leaf_cell_id

    n = len(rows)
    lo = np.zeros(n, np.uint64)
    hi = np.zeros(n, np.uint64)
    has = np.zeros(n, bool)
    for i, r in enumerate(rows):
        if r.get("latitude") is not None and r.get("longitude") is not None:
            lo[i] = hi[i] = leaf_cell_id(float(r["latitude"]), float(r["longitude"]))
            has[i] = True
        elif r.get("s2_cell"):
            c = CellRange.parse(str(r["s2_cell"]))
            lo[i], hi[i], has[i] = c.lo, c.hi, True
    return lo, hi, has


def select(
    rows: Sequence[Mapping[str, Any]],
    cells: Sequence[CellPriority],
    *,
    models_hash: str | None = None,
    config_hash: str | frozenset[str] | None = None,
    config_hashes: Sequence[str] = (),
) -> dict[str, int]:
    """Images to reprocess: relative path -> priority (the highest of the cells holding it).

    Args:
        rows: the newest manifest row of each image.
        cells: tokens with priorities; an image is in a cell when its position lies in the
            cell's leaf range (so parent cells match everything in their children).
        models_hash, config_hash: with ``--outdated``, keep only rows produced by another
            model set or config (``config_hash``: the current hash, or the set of them, see
            :meth:`redact.config.RedactConfig.current_hashes`).
        config_hashes: keep only rows produced with one of these config hashes.
    """
    from redact.season.location import CellRange
    from redact.season.markers import models_hash as hash_models

    lo, hi, has = _leaf_ids(rows)
    best = np.full(len(rows), np.iinfo(np.int64).min, np.int64)
    for c in cells:
        r = CellRange.parse(c.token)
        inside = has & (lo >= np.uint64(r.lo)) & (hi <= np.uint64(r.hi))
        best = np.where(inside, np.maximum(best, c.priority), best)
    keep = best > np.iinfo(np.int64).min
    if models_hash is not None or config_hash is not None:
        current = {config_hash} if isinstance(config_hash, str) else config_hash
        outdated = np.array(
            [
                (models_hash is not None and hash_models(r.get("models") or []) != models_hash)
                or (current is not None and r.get("config_hash") not in current)
                for r in rows
            ],
            bool,
        )
        keep &= outdated
    if config_hashes:
        keep &= np.array([r.get("config_hash") in set(config_hashes) for r in rows], bool)
    return {str(rows[int(i)]["relative_path"]): int(best[i]) for i in np.flatnonzero(keep)}
