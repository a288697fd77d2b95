"""Renditions in the Beam DAG (fake detector, TestPipeline): the publish preset writes every
rendition and lists exactly the files on disk, re-runs are idempotent (a deleted tile makes
the image re-done), stale renditions go, and a rendition failure publishes nothing."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import apache_beam as beam
import cv2
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

import redact.renditions
from redact.config import RedactConfig
from redact.manifest import read_manifest
from redact.pipeline import add_sinks, build_pipeline
from redact.season.markers import (
    Marker,
    SourceFingerprint,
    Verdict,
    marker_uri,
    read_marker,
    renditions_present,
    verdict,
)
from tests.conftest import FakeHandler, tiny_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PANO, PHOTO = "pano/p.png", "photo.png"


def _config(**renditions):
    """The publish preset's renditions section (64 px tiles for small images) on the tiny
    config; 256x128 images count as panoramas."""
    preset = RedactConfig.load(REPO / "configs" / "publish.yaml").renditions
    assert preset.enabled
    section = {**dataclasses.asdict(preset), "tile_px": 64, **renditions}
    return tiny_config(io={"equirect_min_width": 200}, renditions=section)


def _shard(src: Path) -> None:
    rng = np.random.default_rng(0)
    pano = rng.integers(0, 255, (128, 256, 3), np.uint8)
    pano[:, :, 2] = FakeHandler.FACE  # the fake "finds" a face on every tile (BGR on disk)
    (src / "pano").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(src / PANO), pano)
    # pixel values clear of FakeHandler's POISON (7) and FACE (200): a magnified tile's corner
    # is an interpolated pixel and must not trip the fake by chance
    cv2.imwrite(str(src / PHOTO), rng.integers(8, 200, (90, 120, 3), np.uint8))


def _run(job, run, expected):
    """Run the DAG with its sinks (the manifest: a re-run sees it and skips)."""
    with BeamTestPipeline() as p:
        outs = build_pipeline(p, job, run, FakeHandler())
        add_sinks(outs["rows"], outs["quarantine"], job)
        rows = outs["rows"] | beam.Map(
            lambda r: (r["relative_path"], r["status"], r["error_reason"])
        )
        assert_that(rows, equal_to(expected))


def _on_disk(dst: Path) -> dict[str, str]:
    """Every file under a ``*.renditions`` folder: path -> sha256."""
    return {
        str(f): hashlib.sha256(f.read_bytes()).hexdigest()
        for d in dst.rglob("*.renditions")
        for f in d.rglob("*")
        if f.is_file()
    }


def _listed(job, rel: str) -> dict[str, str]:
    """The manifest's renditions of ``rel`` in ``job``'s run: uri -> sha256."""
    rows = [
        r
        for r in read_manifest(job.manifest).to_pylist()
        if r["run_id"] == job.run_id and r["relative_path"] == rel
    ]
    assert len(rows) == 1 and rows[0]["status"] == "published", rows
    return {r["uri"]: r["sha256"] for r in rows[0]["renditions"]}


def test_publish_preset_writes_every_rendition_listed_exactly_and_reruns_skip(tmp_path, make_job):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _shard(src)
    job, run = make_job(_config(), markers=str(dst / "_markers"))
    _run(job, run, [(PANO, "published", ""), (PHOTO, "published", "")])
    assert (dst / PANO).exists() and (dst / PHOTO).exists()
    listed = {**_listed(job, PANO), **_listed(job, PHOTO)}
    assert listed == _on_disk(dst)  # uri + sha256: exactly the files written
    pano_dir = dst / (PANO + ".renditions")
    for name in ("thumbnail.jpg", "preview.jpg", "viewer.json", "cube/f.jpg", "equirect/0/0_0.jpg"):
        assert (pano_dir / name).is_file(), name
    assert {p.name for p in (dst / (PHOTO + ".renditions")).iterdir()} == {"thumbnail.jpg"}
    kinds = {r["kind"] for r in read_marker(marker_uri(job.markers, PANO)).row["renditions"]}
    assert kinds == {
        "thumbnail",
        "preview",
        "equirect_tile",
        "cube_face",
        "cube_tile",
        "viewer_config",
    }

    job2, run2 = make_job(_config(), markers=str(dst / "_markers"), run_id="r2")
    _run(job2, run2, [(PANO, "skipped", "current"), (PHOTO, "skipped", "current")])

    tile = pano_dir / "equirect" / "1" / "0_1.jpg"
    tile.unlink()
    job3, run3 = make_job(_config(), markers=str(dst / "_markers"), run_id="r3")
    _run(job3, run3, [(PANO, "published", ""), (PHOTO, "skipped", "current")])
    assert tile.is_file()
    assert {**_listed(job3, PANO), **_listed(job, PHOTO)} == _on_disk(dst)


def test_stale_renditions_are_removed_when_the_tile_size_changes_or_renditions_go_off(
    tmp_path, make_job
):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _shard(src)
    job, run = make_job(_config(), markers=str(dst / "_markers"))
    _run(job, run, [(PANO, "published", ""), (PHOTO, "published", "")])
    before = set(_on_disk(dst))
    job2, run2 = make_job(_config(tile_px=128), markers=str(dst / "_markers"), run_id="r2")
    _run(job2, run2, [(PANO, "published", ""), (PHOTO, "published", "")])
    after = {**_listed(job2, PANO), **_listed(job2, PHOTO)}
    assert after == _on_disk(dst)
    assert before - set(after)  # some 64 px tiles existed and are gone
    off = tiny_config(io={"equirect_min_width": 200})
    job3, run3 = make_job(off, markers=str(dst / "_markers"), run_id="r3")
    _run(job3, run3, [(PANO, "published", ""), (PHOTO, "published", "")])
    assert _on_disk(dst) == {}
    assert _listed(job3, PANO) == {}


def test_a_rendition_failure_quarantines_the_image_and_publishes_nothing(
    tmp_path, make_job, monkeypatch
):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _shard(src)

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory in the cube")

    monkeypatch.setattr(redact.renditions, "render_face", broken)
    job, run = make_job(_config(), markers=str(dst / "_markers"))
    _run(job, run, [(PANO, "failed", "renditions_failed"), (PHOTO, "published", "")])
    assert not (dst / PANO).exists()
    assert not (dst / (PANO + ".renditions")).exists()
    assert read_marker(marker_uri(job.markers, PANO)) is None
    assert (dst / PHOTO).exists()


def test_a_failed_rendition_write_leaves_no_published_copy(tmp_path, make_job, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _shard(src)
    import redact.pipeline.publish as publish

    real = publish.write_atomic

    def flaky(uri, data, **kw):
        if uri.endswith("/cube/u.jpg"):
            raise OSError("bucket said no")
        real(uri, data, **kw)

    monkeypatch.setattr(publish, "write_atomic", flaky)
    job, run = make_job(_config(), markers=str(dst / "_markers"))
    with BeamTestPipeline() as p:
        outs = build_pipeline(p, job, run, FakeHandler())
        add_sinks(outs["rows"], outs["quarantine"], job)
        rows = outs["rows"] | beam.Map(lambda r: (r["relative_path"], r["status"]))
        assert_that(rows, equal_to([(PANO, "failed"), (PHOTO, "published")]))
    assert not (dst / PANO).exists()
    assert read_marker(marker_uri(job.markers, PANO)) is None


def test_an_input_inside_a_renditions_folder_name_is_quarantined(tmp_path, make_job):
    src = tmp_path / "src"
    _shard(src)
    (src / "photo.png.renditions").mkdir()
    cv2.imwrite(str(src / "photo.png.renditions" / "thumbnail.jpg"), np.zeros((8, 8, 3), np.uint8))
    job, run = make_job(tiny_config())
    _run(
        job,
        run,
        [
            (PANO, "published", ""),
            (PHOTO, "published", ""),
            ("photo.png.renditions/thumbnail.jpg", "failed", "name_reserved"),
        ],
    )


def _marker(row: dict) -> Marker:
    return Marker(
        source_uri="s",
        relative_path="a.jpg",
        size_bytes=1,
        last_updated=None,
        sha256="0",
        models_hash="m",
        config_hash="c",
        run_id="r",
        output_uri="o",
        output_sha256="x",
        manual_hash="",
        published_at="",
        pixel_version=1,
        row=row,
    )


def test_verdict_and_presence_of_renditions(tmp_path):
    folder = tmp_path / "a.jpg.renditions"
    (folder / "cube").mkdir(parents=True)
    (folder / "thumbnail.jpg").write_bytes(b"x")
    (folder / "cube" / "f.jpg").write_bytes(b"x")
    listed = [{"uri": str(folder / "thumbnail.jpg")}, {"uri": str(folder / "cube" / "f.jpg")}]
    assert renditions_present(_marker({"renditions": listed}), str(folder))
    (folder / "cube" / "f.jpg").unlink()
    assert not renditions_present(_marker({"renditions": listed}), str(folder))
    assert not renditions_present(_marker({"renditions": []}), str(folder))
    kw = dict(models="m", config="c", manual="", pixel_version=1, output_exists=True)
    src = SourceFingerprint(1, None)
    assert verdict(_marker({}), src, **kw) is Verdict.CURRENT
    assert verdict(_marker({}), src, **kw, renditions_exist=False) is Verdict.RENDITIONS_MISSING


def test_publish_preset_on_the_sample_shard_with_the_real_cli(tmp_path):
    """The issue's check: ``redact run --config configs/publish.yaml`` on the sample shard writes
    the copy, its thumbnail, pyramid and cube faces, all listed in the manifest (uri + sha256
    of exactly the files on disk)."""
    from redact.cli import main

    dst = tmp_path / "out"
    argv = ["run", "--config", str(REPO / "configs" / "publish.yaml")]
    argv += ["--input", str(REPO / "tests" / "data" / "sample_shard"), "--output", str(dst)]
    try:
        assert main(argv) == 0
        rows = {r["relative_path"]: r for r in read_manifest(str(dst / "_manifest")).to_pylist()}
        pano = rows["panoramas/pano_0001_000528.jpg"]
        photo = rows["photos/us_car_0b86cecf.jpg"]
        assert pano["status"] == photo["status"] == "published"
        listed = {r["uri"]: r["sha256"] for row in (pano, photo) for r in row["renditions"]}
        assert listed == _on_disk(dst)
        kinds = [r["kind"] for r in pano["renditions"]]
        assert {k: kinds.count(k) for k in set(kinds)} == {
            "thumbnail": 1,
            "preview": 1,
            "equirect_tile": 171,
            "cube_face": 6,
            "cube_tile": 126,
            "viewer_config": 1,
        }
        assert [r["kind"] for r in photo["renditions"]] == ["thumbnail"]
    finally:  # published copies of real imagery: do not leave them in the temp folder
        shutil.rmtree(dst, ignore_errors=True)
