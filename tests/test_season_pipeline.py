"""A capture season end to end on the DirectRunner with the tiny colour detector: idempotent
re-runs, kill-and-resume, manual regions (report loop), the review queue and reprocessing by
S2 cell (parent and child tokens, priorities), with locations from a catalog and EXIF GPS."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("s2sphere")

from redact.cli import main
from redact.season.location import cell_token
from redact.season.manual import read_regions
from redact.season.markers import marker_uri, read_marker
from redact.season.review import read_hard_negatives, read_review_items
from tests.test_season_support import (
    PALE_RED,
    RED,
    by_path,
    changed,
    destroyed,
    exif_with_gps,
    jpeg_with_exif,
    read_rgb,
    rows,
    square,
    textured,
    write_config,
    write_png,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
AMS_A, AMS_B = (52.3700, 4.8900), (52.3800, 4.9000)  # ~1.3 km apart: one level-8 cell
PARIS_C, PARIS_D = (48.8500, 2.3500), (48.8600, 2.3600)


def _cli(*argv: str) -> str:
    """Run ``redact`` in-process; returns what it printed (asserting exit status 0)."""
    out = io.StringIO()
    with redirect_stdout(out):
        rc = main(list(argv))
    assert rc == 0, out.getvalue()
    return out.getvalue()


@pytest.fixture
def season(tmp_path):
    """Four panoramas in two shards; a catalog locates three, EXIF GPS the fourth (a JPEG)."""
    cfg = write_config(tmp_path)
    src, dst = tmp_path / "src", tmp_path / "dst"
    imgs = {
        "north/a.png": square(textured(256, 512, 1), 100, 110, 16, RED),
        "north/b.png": textured(256, 512, 2),
        "south/c.png": square(
            square(textured(256, 512, 3), 100, 110, 16, PALE_RED), 300, 120, 16, PALE_RED
        ),
    }
    for rel, img in imgs.items():
        write_png(src / rel, img)
    (src / "south").mkdir(exist_ok=True)
    (src / "south/d.jpg").write_bytes(
        jpeg_with_exif(textured(256, 512, 4), exif_with_gps(*PARIS_D))
    )
    catalog = tmp_path / "catalog.csv"
    with catalog.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["relative_path", "lat", "lng", "captured_at", "camera"])
        for rel, (lat, lng) in (
            ("north/a.png", AMS_A),
            ("north/b.png", AMS_B),
            ("south/c.png", PARIS_C),
        ):
            w.writerow([rel, lat, lng, "2024-05-17T10:00:00Z", "pano-rig-1"])
    base = ["--input", str(src), "--output", str(dst), "--config", str(cfg)]
    return {"src": src, "dst": dst, "cfg": cfg, "imgs": imgs, "base": base, "catalog": catalog}


def _run(season, run_id: str, *extra: str) -> str:
    return _cli(
        "run", *season["base"], "--catalog", str(season["catalog"]), "--run-id", run_id, *extra
    )


def test_rerun_is_a_no_op_and_a_changed_source_is_redone(season, caplog):
    dst = season["dst"]
    caplog.set_level(logging.INFO, logger="redact.pipeline")
    t0 = time.perf_counter()
    first = _run(season, "r1")
    t1 = time.perf_counter()
    assert "4 image(s) read, 4 published" in first
    assert any("progress r1:" in m for m in caplog.messages)
    r1 = by_path(rows(dst, "r1"))
    assert set(r1) == {"north/a.png", "north/b.png", "south/c.png", "south/d.jpg"}
    for rel in ("north/a.png", "north/b.png", "south/c.png"):
        assert r1[rel]["location_source"] == "catalog" and r1[rel]["camera"] == "pano-rig-1"
    d = r1["south/d.jpg"]
    assert d["location_source"] == "exif" and d["camera"] == "Ladybug LB5"
    assert (d["latitude"], d["longitude"]) == pytest.approx(PARIS_D, abs=1e-6)
    assert r1["north/a.png"]["s2_cell"] == cell_token(*AMS_A, 16)
    assert r1["north/a.png"]["s2_level"] == 16
    assert r1["south/d.jpg"]["s2_cell"] == cell_token(*PARIS_D, 16)
    assert r1["south/c.png"]["n_review"] == 2
    items = read_review_items(str(dst / "_review"), "r1").to_pylist()
    assert sorted(i["relative_path"] for i in items) == ["south/c.png", "south/c.png"]
    assert all(0.3 <= i["score"] < 0.5 for i in items)
    mtimes = {
        p: p.stat().st_mtime_ns for p in dst.rglob("*.*") if "_" not in p.parts[len(dst.parts)][0]
    }

    second = _run(season, "r2")
    t2 = time.perf_counter()
    assert "0 image(s) read, 0 published" in second
    assert "skipped: 4 already published" in second
    # Every input is accounted for: a skipped row each, naming the run whose copy stands.
    r2 = rows(dst, "r2")
    assert sorted(r["relative_path"] for r in r2) == sorted(r1)
    assert {(r["status"], r["error_reason"]) for r in r2} == {("skipped", "current")}
    assert all("published by run r1" in r["error_message"] for r in r2)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # nothing re-written
    print(f"first run {t1 - t0:.2f} s, no-op re-run {t2 - t1:.2f} s")

    # A changed original is re-done (decided from size/mtime in the listing), the rest skipped.
    write_png(season["src"] / "north/b.png", textured(256, 512, 9))
    third = _run(season, "r3")
    assert "1 image(s) read, 1 published" in third and "skipped: 3" in third
    r3 = rows(dst, "r3")
    assert {r["relative_path"] for r in r3 if r["status"] == "published"} == {"north/b.png"}
    assert sum(r["status"] == "skipped" for r in r3) == 3


def test_killed_run_resumes_where_it_stopped(season, tmp_path):
    dst = season["dst"]
    for i in range(2):  # six images in all
        write_png(season["src"] / f"extra/e{i}.png", textured(256, 512, 20 + i))
    argv = ["run", *season["base"], "--run-id", "k1"]
    code = (
        "import sys, time\n"
        "import redact.pipeline.publish as P\n"
        "orig = P.write_atomic\n"
        "def slow(*a, **k):\n"
        "    time.sleep(0.4)\n"
        "    return orig(*a, **k)\n"
        "P.write_atomic = slow\n"
        "from redact.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env)
    markers = dst / "_markers"
    deadline = time.monotonic() + 120
    while not list(markers.rglob("*.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the job ended before it could be killed"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    done = {str(p.relative_to(markers))[: -len(".json")] for p in markers.rglob("*.json")}
    assert 1 <= len(done) < 6, done
    assert not list((dst / "_manifest").glob("run-k1-*.parquet"))  # killed before its manifest

    out = _cli("run", *season["base"], "--run-id", "k2")
    assert f"{6 - len(done)} image(s) read, {6 - len(done)} published" in out
    assert f"skipped: {len(done)}" in out and f"{len(done)} manifest row(s) recovered" in out
    k2 = by_path(rows(dst, "k2"))
    assert len(k2) == 6 and all(r["status"] == "published" for r in k2.values())
    for rel in done:  # published by the killed run, recorded by this one
        assert read_marker(marker_uri(str(markers), rel)).run_id == "k2"
    out = read_rgb(dst / "north/a.png")
    assert destroyed(season["imgs"]["north/a.png"][110:126, 100:116], out[110:126, 100:116])
    # Everything is recorded now: a third run has nothing to do or record.
    assert "0 image(s) read" in _cli("run", *season["base"], "--run-id", "k3")
    assert {r["status"] for r in rows(dst, "k3")} == {"skipped"}


def test_report_review_and_reprocess_by_cell(season, tmp_path):
    dst, src = season["dst"], season["src"]
    _run(season, "s1")
    b_before = read_rgb(dst / "north/b.png")
    assert np.array_equal(b_before, season["imgs"]["north/b.png"])  # nothing detected in b

    # Report loop: a missed face in b, which the detector does not see.
    out = _cli(
        "report",
        "add",
        "--output",
        str(dst),
        "--image",
        str(src / "north/b.png"),
        "--box",
        "200,100,240,140",
        "--reason",
        "face behind glass",
        "--by",
        "qa",
    )
    assert "1 manual region(s)" in out and "1 marker(s) invalidated" in out
    out = _cli(
        "report",
        "apply",
        "--output",
        str(dst),
        "--config",
        str(season["cfg"]),
        "--run-id",
        "apply1",
    )
    assert "1 image(s) read, 1 published" in out
    b_after = read_rgb(dst / "north/b.png")
    diff = changed(season["imgs"]["north/b.png"], b_after)
    assert destroyed(season["imgs"]["north/b.png"][100:140, 200:240], b_after[100:140, 200:240])
    assert not diff[:, :180].any() and not diff[:, 260:].any()
    (b_row,) = rows(dst, "apply1")
    assert b_row["n_manual"] == 1 and b_row["manual_regions"][0]["reason"] == "face behind glass"
    assert [d["decision"] for d in b_row["detections"]] == ["manual"]
    assert b_row["location_source"] == "catalog"  # the apply job keeps the known location
    assert "nothing to republish" in _cli(
        "report", "apply", "--output", str(dst), "--config", str(season["cfg"])
    )

    # Review queue: c's two review-band faces; one was a real face, one a false positive.
    listing = tmp_path / "review.csv"
    _cli("review", "list", "--output", str(dst), "--run", "s1", "--csv", str(listing))
    items = list(csv.DictReader(listing.open()))
    assert len(items) == 2
    real, fp = sorted(items, key=lambda i: float(i["x1"]))
    decisions = tmp_path / "decisions.csv"
    with decisions.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review_id", "decision", "x1", "y1", "x2", "y2"])
        w.writerow([real["review_id"], "missed", 90, 100, 126, 136])
        w.writerow([fp["review_id"], "false_positive", "", "", "", ""])
    out = _cli("review", "decide", "--output", str(dst), "--csv", str(decisions), "--by", "rev")
    assert "1 manual region(s)" in out and "1 hard negative(s)" in out
    assert read_hard_negatives(str(dst / "_review"))["review_id"].to_pylist() == [fp["review_id"]]
    pending = tmp_path / "pending.csv"
    _cli("review", "list", "--output", str(dst), "--pending", "--csv", str(pending))
    assert list(csv.DictReader(pending.open())) == []

    # The next plain run re-does c only (its marker was invalidated) and pins the region.
    out = _run(season, "s2")
    assert "1 image(s) read, 1 published" in out and "skipped: 3" in out
    (c_row,) = [r for r in rows(dst, "s2") if r["status"] == "published"]
    manual = [d for d in c_row["detections"] if d["decision"] == "manual"]
    assert [(d["x1"], d["y1"], d["x2"], d["y2"]) for d in manual] == [(90, 100, 126, 136)]
    assert c_row["manual_regions"][0]["source"] == "review"

    # Reprocess: the level-8 parent of a and b (priority 1) and c's own level-16 cell (5).
    parent, child = cell_token(*AMS_A, 8), cell_token(*PARIS_C, 16)
    assert parent == cell_token(*AMS_B, 8) and child != cell_token(*PARIS_D, 16)
    cells = tmp_path / "cells.csv"
    cells.write_text(f"token,priority\n{parent},1\n{child},5\n")
    out = _cli(
        "reprocess",
        "--manifest",
        str(dst / "_manifest"),
        "--originals",
        str(src),
        "--cells",
        str(cells),
        "--config",
        str(season["cfg"]),
        "--run-id",
        "rp",
    )
    assert "3 of 4 image(s) selected" in out
    p5, p1 = by_path(rows(dst, "rp-p5")), by_path(rows(dst, "rp-p1"))
    assert set(p5) == {"south/c.png"} and set(p1) == {"north/a.png", "north/b.png"}
    assert max(r["processed_at"] for r in p5.values()) <= min(
        r["processed_at"] for r in p1.values()
    )
    # Manual regions survive the reprocess, in the pixels and in the manifest.
    assert p1["north/b.png"]["n_manual"] == 1 and p5["south/c.png"]["n_manual"] == 1
    b_again = read_rgb(dst / "north/b.png")
    assert destroyed(season["imgs"]["north/b.png"][100:140, 200:240], b_again[100:140, 200:240])
    c_out = read_rgb(dst / "south/c.png")
    assert destroyed(season["imgs"]["south/c.png"][100:136, 90:126], c_out[100:136, 90:126])
    assert p1["north/a.png"]["location_source"] == "catalog"
    assert {r.relative_path for r in read_regions(str(dst / "_manual"))} == {
        "north/b.png",
        "south/c.png",
    }
    # The selection list is kept for audit; the old copies were replaced atomically.
    assert (dst / "_reprocess" / "rp-p5.txt").read_text().split() == [str(src / "south/c.png")]
    assert not list(dst.rglob("*.redact-tmp-*"))
    marker = json.loads((dst / "_markers" / "north/b.png.json").read_text())
    assert marker["run_id"] == "rp-p1" and marker["manual_hash"]


def test_region_reported_during_a_running_job_is_still_blurred(season):
    """The race: `report add` deletes b's marker while a job that had already read the manual
    table is running; that job then writes a fresh marker without the region. The next run
    compares the marker's manual-regions hash with the table and re-does b."""
    dst, src = season["dst"], season["src"]
    _run(season, "m1")
    marker_path = dst / "_markers" / "north/b.png.json"
    stale = marker_path.read_bytes()  # what the racing job writes back
    _cli(
        "report", "add", "--output", str(dst), "--image", str(src / "north/b.png"),
        "--box", "200,100,240,140", "--reason", "face", "--by", "qa",
    )  # fmt: skip
    assert not marker_path.exists()
    marker_path.write_bytes(stale)
    out = _run(season, "m2")
    assert "1 image(s) read, 1 published" in out and "skipped: 3" in out
    b = read_rgb(dst / "north/b.png")
    assert destroyed(season["imgs"]["north/b.png"][100:140, 200:240], b[100:140, 200:240])


def test_a_deleted_published_copy_is_restored(season):
    dst = season["dst"]
    _run(season, "d1")
    (dst / "north/a.png").unlink()
    out = _run(season, "d2")
    assert "1 image(s) read, 1 published" in out and "skipped: 3" in out
    assert (dst / "north/a.png").exists()
    (row,) = [r for r in rows(dst, "d2") if r["status"] == "published"]
    assert row["relative_path"] == "north/a.png"
