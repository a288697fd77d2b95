"""scripts/deface_eval.py: deface's driver result -> a manifest redact eval reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.fixtures.scripts import load_script


def test_deface_result_becomes_a_readable_manifest(tmp_path: Path) -> None:
    de = load_script("deface_eval")
    from redact.classes import Projection
    from redact.evaluation.dataset import load_manifest_images
    from redact.manifest import Status

    work = tmp_path / "w"
    (work / "input" / "pano").mkdir(parents=True)
    (work / "input" / "maskon").mkdir(parents=True)
    for rel in ("pano/a.jpg", "maskon/b.jpg", "maskon/c.jpg", "maskon/notes.txt"):
        (work / "input" / rel).write_bytes(b"x")
    job = de.deface_job(work, ["pano", "maskon"], 0.2)
    assert [Path(i["path"]).name for i in job["images"]] == ["a.jpg", "b.jpg", "c.jpg"]  # no .txt
    assert job["images"][0]["output"] == str(work / "output" / "pano" / "a.jpg")
    result = {
        "deface_version": "1.5.0",
        "images": [
            {
                "path": job["images"][0]["path"],
                "width": 4000,
                "height": 2000,
                "timings_s": {"total": 1.0, "detect": 0.7},
                "blurred": [
                    {"box": [8, 8, 52, 52], "det_box": [10.0, 10.0, 50.0, 50.0], "score": 0.9}
                ],
            },
            {
                "path": job["images"][1]["path"],
                "width": 300,
                "height": 200,
                "timings_s": {"total": 0.1},
                "blurred": [],
            },
            {  # 2:1 but small: a photo, as redact itself decides
                "path": job["images"][2]["path"],
                "width": 400,
                "height": 200,
                "timings_s": {"total": 0.1},
                "blurred": [],
            },
        ],
    }
    de.write_manifest(work, de.manifest_rows(work, result, 0.2))
    rows = {r.relative_path: r for r in load_manifest_images(str(work / "output" / "_manifest"))}
    assert set(rows) == {"pano/a.jpg", "maskon/b.jpg", "maskon/c.jpg"}
    assert rows["maskon/c.jpg"].projection is Projection.PERSPECTIVE
    a = rows["pano/a.jpg"]
    assert a.status is Status.PUBLISHED and a.projection is Projection.EQUIRECTANGULAR
    from redact.manifest import read_manifest

    table = read_manifest(str(work / "output" / "_manifest")).to_pylist()
    row = next(r for r in table if r["relative_path"] == "pano/a.jpg")
    timings = dict(row["timings_s"])
    assert timings["infer"] == 0.7  # what eval_dev.py reads as detection seconds
    np.testing.assert_allclose(a.det_xyxy, [[10, 10, 50, 50]])  # the raw box, not the scaled
    assert a.det_blurred.tolist() == [True] and a.det_class.tolist() == [0]
    b = rows["maskon/b.jpg"]
    assert b.projection is Projection.PERSPECTIVE and len(b.det_score) == 0
    assert b.output_uri.endswith("output/maskon/b.jpg")
