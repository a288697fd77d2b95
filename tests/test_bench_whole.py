"""The whole-image baseline of the benchmark (scripts/bench/whole_image.py) and its table."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from bench import report
from bench.whole_image import MODES, _views


def test_views_resize_and_cut_into_halves_with_offsets() -> None:
    img = np.zeros((400, 800, 3), np.uint8)
    img[:, 400:] = 255
    views = _views(img, (1024, 512), 2)
    assert [(v.shape, x0) for v, x0 in views] == [((512, 512, 3), 0), ((512, 512, 3), 512)]
    assert views[0][0][:, :500].max() == 0 and views[1][0][:, 12:].min() == 255
    assert MODES["two 4096x4096 halves"] == ((8192, 4096), 2)


def test_whole_image_table_lists_every_mode() -> None:
    rc = {"found": 3, "total": 4, "recall": 0.75, "missed": []}
    res = {
        "whole_image": {
            "model": "m@1",
            "modes": {
                m: {
                    "panoramas": 12,
                    "s_per_panorama": 0.5,
                    "recall": {"face": rc, "license_plate (not preblurred)": rc},
                }
                for m in MODES
            },
        }
    }
    table = report.whole_image_table(res)
    assert table is not None
    title, _, rows = table
    assert "whole equirectangular" in title and len(rows) == len(MODES)
    assert rows[0][1:] == ["12", "0.50", "3/4", "3/4"]
