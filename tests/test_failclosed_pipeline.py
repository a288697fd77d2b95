"""Fail closed at the DAG level (fake handler, real Beam DirectRunner): the breaker stops a run
whose detector finds nothing before anything is published; every listed path gets a row;
unsafe inputs (collisions, FIFOs, broken links) are quarantined without being read; a failure
in the last steps of an image publishes nothing."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import apache_beam as beam
import cv2
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

import redact.core
from redact.pipeline import build_pipeline
from tests.conftest import FakeHandler, tiny_config

pytestmark = pytest.mark.slow


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((64, 96, 3), value, np.uint8))


def _statuses(outs):
    return outs["rows"] | beam.Map(lambda r: (r["relative_path"], r["status"], r["error_reason"]))


def test_breaker_stops_a_run_that_finds_nothing_before_publishing(tmp_path, make_job):
    for i in range(4):
        _png(tmp_path / "src" / f"p{i}.png", 100)  # the fake finds nothing here
    cfg = tiny_config(breaker={"min_images": 3, "max_no_candidate_share": 0.5})
    job, run = make_job(cfg)
    with BeamTestPipeline() as p:
        outs = build_pipeline(p, job, run, FakeHandler())
        assert_that(
            _statuses(outs),
            equal_to([(f"p{i}.png", "failed", "breaker_open") for i in range(4)]),
        )
        assert_that(outs["breaker"] | beam.Map(lambda s: s.open), equal_to([True]), label="open")
    assert not list((tmp_path / "dst").glob("*.png"))


def test_breaker_closed_when_the_detector_finds_candidates(tmp_path, make_job):
    for i in range(4):
        _png(tmp_path / "src" / f"p{i}.png", FakeHandler.FACE)
    cfg = tiny_config(breaker={"min_images": 3, "max_no_candidate_share": 0.5})
    job, run = make_job(cfg)
    with BeamTestPipeline() as p:
        outs = build_pipeline(p, job, run, FakeHandler())
        assert_that(_statuses(outs), equal_to([(f"p{i}.png", "published", "") for i in range(4)]))
    assert len(list((tmp_path / "dst").glob("*.png"))) == 4


def test_breaker_counts_quarantined_images_with_an_absolute_bound(tmp_path, make_job):
    for i in range(3):
        _png(tmp_path / "src" / f"bad{i}.png", FakeHandler.POISON)  # inference fails
    _png(tmp_path / "src" / "good.png", FakeHandler.FACE)
    cfg = tiny_config(breaker={"min_images": 4, "max_quarantined_share": 0.5})
    job, run = make_job(cfg)
    with BeamTestPipeline() as p:
        outs = build_pipeline(p, job, run, FakeHandler())
        assert_that(
            _statuses(outs),
            equal_to(
                [(f"bad{i}.png", "failed", "inference_failed") for i in range(3)]
                + [("good.png", "failed", "breaker_open")]
            ),
        )
    assert not (tmp_path / "dst" / "good.png").exists()


def test_a_backslash_name_is_quarantined_not_rewritten_onto_another_output(tmp_path, make_job):
    """`x\\y.png` used to be rewritten to `x/y.png`: two inputs, one output, one copy lost."""
    src = tmp_path / "src"
    _png(src / "x" / "y.png", FakeHandler.FACE)
    _png(src / "x\\y.png", FakeHandler.FACE)  # a backslash is a legal POSIX name character
    job, run = make_job()
    with BeamTestPipeline() as p:
        outs = build_pipeline(p, job, run, FakeHandler())
        assert_that(
            _statuses(outs),
            equal_to([("x/y.png", "published", ""), ("x\\y.png", "failed", "name_backslash")]),
        )
    # The backslash name never reaches x/y.png: the one published there is x/y.png's own copy.
    assert (tmp_path / "dst" / "x" / "y.png").exists()
    assert not (tmp_path / "dst" / "x\\y.png").exists()


def test_inputs_claiming_one_output_are_all_rejected(make_job):
    """Admission's collision rule (defence in depth: verbatim names make it rare)."""
    from redact.pipeline.sources import Admit, Candidate

    job, _ = make_job()
    a = Candidate(job.uri_for("a.png"))
    b = Candidate("/elsewhere/a.png")
    out = list(Admit(job).process(("a.png", [a, b])))
    assert [o.tag for o in out] == [Admit.REJECTED, Admit.REJECTED]
    assert {o.value[1].reason for o in out} == {"output_collision"}
    (single,) = Admit(job).process(("a.png", [a, a]))  # the same path listed twice: one input
    assert single == a


def test_fifos_links_and_non_images_get_rows_and_never_hang(tmp_path, make_job):
    src = tmp_path / "src"
    _png(src / "ok.png", FakeHandler.FACE)
    os.mkfifo(src / "pipe.jpg")
    os.symlink(src / "missing.jpg", src / "dangling.jpg")
    os.symlink(src / "loop_b.jpg", src / "loop_a.jpg")
    os.symlink(src / "loop_a.jpg", src / "loop_b.jpg")
    (src / "notes.txt").write_text("not an image")
    (src / "tmp.redact-tmp-abc.png").write_bytes((src / "ok.png").read_bytes())
    job, run = make_job()
    done: list[bool] = []

    def go() -> None:
        with BeamTestPipeline() as p:
            outs = build_pipeline(p, job, run, FakeHandler())
            assert_that(
                _statuses(outs),
                equal_to(
                    [
                        ("ok.png", "published", ""),
                        ("tmp.redact-tmp-abc.png", "published", ""),
                        ("pipe.jpg", "failed", "not_regular_fifo"),
                        ("dangling.jpg", "failed", "dangling_symlink"),
                        ("loop_a.jpg", "failed", "symlink_loop"),
                        ("loop_b.jpg", "failed", "symlink_loop"),
                        ("notes.txt", "failed", "unknown_format"),
                    ]
                ),
            )
        done.append(True)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(timeout=120)
    assert not t.is_alive(), "the job hung (a FIFO was opened for reading?)"
    assert done == [True]


def test_a_failure_after_the_blur_publishes_nothing(tmp_path, make_job, monkeypatch):
    """The location lookup, the row and the metrics used to follow the atomic write."""
    _png(tmp_path / "src" / "p.png", FakeHandler.FACE)

    def broken(decoded):
        raise RuntimeError("location service down")

    monkeypatch.setattr(redact.core, "location_from_exif", broken)
    job, run = make_job()
    with BeamTestPipeline() as p:
        outs = build_pipeline(p, job, run, FakeHandler())
        assert_that(_statuses(outs), equal_to([("p.png", "failed", "internal_error")]))
    assert not (tmp_path / "dst" / "p.png").exists()
