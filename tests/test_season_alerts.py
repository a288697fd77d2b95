"""Per-shard alerts (hand-computed cases)."""

from __future__ import annotations

from redact.config import SeasonConfig
from redact.season.alerts import (
    AlertKind,
    detections_of,
    image_alerts,
    shard_alerts,
    shard_of,
    shard_stats,
)

CFG = SeasonConfig(alert_min_images=3, alert_zero_median=2.0, alert_rate_drop=0.3)


def _rows(shard, counts, manual=0):
    return [
        {
            "relative_path": f"{shard}/{i}.jpg",
            "status": "published",
            "n_blurred": c + manual,
            "n_manual": manual,
        }
        for i, c in enumerate(counts)
    ]


def test_shard_and_counts():
    assert shard_of("drive1/cam0/x.jpg") == "drive1/cam0" and shard_of("x.jpg") == "."
    assert detections_of({"n_blurred": 5, "n_manual": 2}) == 3
    failed = {"relative_path": "s/f.jpg", "status": "failed", "n_blurred": 0, "n_manual": 0}
    st = shard_stats("s", [*_rows("s", [1, 2]), failed])
    assert st.counts == (1, 2) and st.rate == 1.5 and st.median == 1.5


def test_zero_detection_image_in_busy_shard():
    st = shard_stats("s", _rows("s", [4, 5, 0, 3], manual=1))  # manual regions do not count
    (a,) = image_alerts(st, CFG)
    assert a.kind is AlertKind.ZERO_IN_BUSY_SHARD and a.relative_path == "s/2.jpg"
    assert image_alerts(shard_stats("q", _rows("q", [1, 0, 1, 2])), CFG) == []  # median 1 < 2
    assert image_alerts(shard_stats("t", _rows("t", [4, 0])), CFG) == []  # too few images


def test_shard_rate_drop():
    stats = [
        shard_stats("a", _rows("a", [4, 4, 4])),
        shard_stats("b", _rows("b", [3, 5, 4])),
        shard_stats("c", _rows("c", [5, 5, 2])),
        shard_stats("d", _rows("d", [1, 0, 0])),  # rate 0.33 < 0.3 x median(4, 4, 4, 0.33)=1.2
        shard_stats("e", _rows("e", [0])),  # too small to judge
    ]
    (a,) = shard_alerts(stats, CFG)
    assert a.kind is AlertKind.SHARD_RATE_DROP and a.shard == "d"
    assert shard_alerts(stats[:2], CFG) == []  # fewer than 3 shards: no median to compare
