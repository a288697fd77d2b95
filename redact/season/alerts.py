"""Alert-worthy conditions of a run, judged per shard (the folder an image sits in: one capture
sequence / drive). Logged at WARNING by the pipeline and listed in the run summary.

* ``zero_in_busy_shard``: an image with no detections in a shard whose median is high (a
  blank/black frame, a decoding problem, or a model that silently stopped firing).
* ``shard_rate_drop``: a shard whose detections per image are a small fraction of the run's
  median shard rate (a camera fault, a wrong projection, a broken tiling for that sequence).
"""

from __future__ import annotations

import enum
import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from redact.config import SeasonConfig


class AlertKind(enum.Enum):
    ZERO_IN_BUSY_SHARD = "zero_in_busy_shard"
    SHARD_RATE_DROP = "shard_rate_drop"


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    shard: str
    relative_path: str  # "" for a shard alert
    message: str

    def to_json(self) -> str:
        d = asdict(self)
        d["kind"] = self.kind.value
        return json.dumps(d, sort_keys=True)


@dataclass(frozen=True)
class ShardStats:
    """Published images of one shard: ``counts`` detections (blurred, not manual) per image."""

    shard: str
    relative_paths: tuple[str, ...]
    counts: tuple[int, ...]

    @property
    def rate(self) -> float:
        return float(np.mean(self.counts)) if self.counts else 0.0

    @property
    def median(self) -> float:
        return float(np.median(self.counts)) if self.counts else 0.0


def shard_of(relative_path: str) -> str:
    """The shard of an image: its folder ("." at the top)."""
    return posixpath.dirname(relative_path) or "."


def detections_of(row: Mapping[str, Any]) -> int:
    """Detector detections blurred in a manifest row (manual regions do not count)."""
    return int(row.get("n_blurred") or 0) - int(row.get("n_manual") or 0)


def shard_stats(shard: str, rows: Iterable[Mapping[str, Any]]) -> ShardStats:
    pub = sorted(
        (r["relative_path"], detections_of(r)) for r in rows if r.get("status") == "published"
    )
    return ShardStats(shard, tuple(p for p, _ in pub), tuple(c for _, c in pub))


def image_alerts(stats: ShardStats, cfg: SeasonConfig) -> list[Alert]:
    """Images with zero detections in a shard whose median is >= ``alert_zero_median``."""
    if len(stats.counts) < cfg.alert_min_images or stats.median < cfg.alert_zero_median:
        return []
    return [
        Alert(
            AlertKind.ZERO_IN_BUSY_SHARD,
            stats.shard,
            rel,
            f"{rel}: 0 detections in shard {stats.shard!r} whose median is {stats.median:g} "
            f"per image ({len(stats.counts)} images)",
        )
        for rel, n in zip(stats.relative_paths, stats.counts, strict=True)
        if n == 0
    ]


def shard_alerts(all_stats: Sequence[ShardStats], cfg: SeasonConfig) -> list[Alert]:
    """Shards whose rate is below ``alert_rate_drop`` x the median rate of the judged shards
    (shards with >= ``alert_min_images`` images; at least 3 are needed for a median)."""
    judged = [s for s in all_stats if len(s.counts) >= cfg.alert_min_images]
    if len(judged) < 3:
        return []
    ref = float(np.median([s.rate for s in judged]))
    if ref <= 0:
        return []
    return [
        Alert(
            AlertKind.SHARD_RATE_DROP,
            s.shard,
            "",
            f"shard {s.shard!r}: {s.rate:.2f} detections per image, under "
            f"{cfg.alert_rate_drop:g} x the run's median shard rate {ref:.2f}",
        )
        for s in sorted(judged, key=lambda s: s.shard)
        if s.rate < cfg.alert_rate_drop * ref
    ]
