"""Per-projection config hashes in the Beam DAG (fake detector, TestPipeline): a change to
the photo tiling re-does photos only, a change to the panorama tiling panoramas only, and
markers written with the whole config's hash (before per-projection hashes) stay current
while the config is unchanged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import apache_beam as beam
import cv2
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from redact.classes import Projection
from redact.manifest import read_manifest
from redact.pipeline import add_sinks, build_pipeline
from redact.season.markers import marker_uri, read_marker
from tests.conftest import FakeHandler, tiny_config

pytestmark = pytest.mark.slow

PANO, PHOTO = "pano/p.png", "photo.png"
BASE_TILING = {
    "tile_size": 32,
    "levels": [{"scale": 0.5, "pitch_min_deg": -30, "pitch_max_deg": 30, "max_object_deg": 5}],
    "perspective": {"overlap_px": 8, "global_view": False},
}


def _config(levels: dict | None = None, perspective: dict | None = None):
    """The tiny config (256x128 images count as panoramas) with tiling changes."""
    tiling = {
        **BASE_TILING,
        "levels": [{**BASE_TILING["levels"][0], **(levels or {})}],
        "perspective": {**BASE_TILING["perspective"], **(perspective or {})},
    }
    return tiny_config(io={"equirect_min_width": 200}, tiling=tiling)


def _shard(src: Path) -> None:
    rng = np.random.default_rng(1)
    (src / "pano").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(src / PANO), rng.integers(8, 200, (128, 256, 3), np.uint8))
    cv2.imwrite(str(src / PHOTO), rng.integers(8, 200, (90, 120, 3), np.uint8))


def _run(job, run, expected) -> None:
    with BeamTestPipeline() as p:
        outs = build_pipeline(p, job, run, FakeHandler())
        add_sinks(outs["rows"], outs["quarantine"], job)
        rows = outs["rows"] | beam.Map(lambda r: (r["relative_path"], r["status"]))
        assert_that(rows, equal_to(expected))


def _hashes(job, status: str = "published") -> dict[str, str]:
    """relative path -> config hash of the job's rows with ``status``."""
    return {
        r["relative_path"]: r["config_hash"]
        for r in read_manifest(job.manifest).to_pylist()
        if r["run_id"] == job.run_id and r["status"] == status
    }


def test_rows_of_unknown_projection_record_the_whole_config_hash(make_job):
    job, run = make_job(_config())
    assert run.config_hash_for("") == run.config_hash == job.config.hash()
    assert run.config_hash_for("equirectangular") == job.config.hash(Projection.EQUIRECTANGULAR)
    assert run.current_config_hashes() == job.config.current_hashes()


def test_a_tiling_change_re_does_only_the_projection_it_affects(tmp_path, make_job):
    _shard(tmp_path / "src")
    markers = str(tmp_path / "dst" / "_markers")
    job, run = make_job(_config(), markers=markers)
    _run(job, run, [(PANO, "published"), (PHOTO, "published")])
    cfg = job.config
    assert _hashes(job) == {
        PANO: cfg.hash(Projection.EQUIRECTANGULAR),
        PHOTO: cfg.hash(Projection.PERSPECTIVE),
    }
    assert read_marker(marker_uri(markers, PANO)).config_hash == cfg.hash(
        Projection.EQUIRECTANGULAR
    )

    photo_change = _config(perspective={"overlap_px": 4})
    job2, run2 = make_job(photo_change, markers=markers, run_id="r2")
    _run(job2, run2, [(PANO, "skipped"), (PHOTO, "published")])
    # the skipped row names the standing copy's config (its marker's hash)
    assert _hashes(job2, "skipped") == {PANO: cfg.hash(Projection.EQUIRECTANGULAR)}

    pano_change = _config(levels={"max_object_deg": 6}, perspective={"overlap_px": 4})
    job3, run3 = make_job(pano_change, markers=markers, run_id="r3")
    _run(job3, run3, [(PANO, "published"), (PHOTO, "skipped")])


def test_markers_with_the_whole_config_hash_stay_current(tmp_path, make_job):
    _shard(tmp_path / "src")
    markers = str(tmp_path / "dst" / "_markers")
    job, run = make_job(_config(), markers=markers)
    legacy = dataclasses.replace(run, config_hashes={})  # as runs before per-projection hashes
    _run(job, legacy, [(PANO, "published"), (PHOTO, "published")])
    assert set(_hashes(job).values()) == {job.config.hash()}

    job2, run2 = make_job(_config(), markers=markers, run_id="r2")
    _run(job2, run2, [(PANO, "skipped"), (PHOTO, "skipped")])
    assert set(_hashes(job2, "skipped").values()) == {job.config.hash()}
    job3, run3 = make_job(_config(perspective={"overlap_px": 4}), markers=markers, run_id="r3")
    _run(job3, run3, [(PANO, "published"), (PHOTO, "published")])  # the whole hash changed
