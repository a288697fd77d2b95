"""Markers: the skip decision of idempotent runs, and their JSON round trip."""

from __future__ import annotations

import datetime
from dataclasses import replace

import pytest

from redact.core import PIXEL_VERSION
from redact.season.markers import (
    Marker,
    SourceFingerprint,
    Verdict,
    delete_marker,
    fingerprint,
    marker_uri,
    models_hash,
    read_marker,
    reattributed,
    row_from_json,
    row_to_json,
    verdict,
    write_marker,
)

MODELS = [{"name": "face", "version": "1", "sha256": "a" * 64, "backend": "onnx"}]


def _marker(**kw) -> Marker:
    base = Marker(
        source_uri="/src/a/b.jpg",
        relative_path="a/b.jpg",
        size_bytes=1000,
        last_updated=1700000000.5,
        sha256="s" * 64,
        models_hash=models_hash(MODELS),
        config_hash="c" * 64,
        run_id="r1",
        output_uri="/dst/a/b.jpg",
        output_sha256="o" * 64,
        manual_hash="",
        published_at="2024-01-01T00:00:00+00:00",
        pixel_version=PIXEL_VERSION,
    )
    return replace(base, **kw)


def _v(
    marker,
    size=1000,
    mtime=1700000000.5,
    *,
    force=False,
    run_id="r2",
    config="c" * 64,
    manual="",
    pixel_version=PIXEL_VERSION,
    output_exists=True,
):
    return verdict(
        marker,
        SourceFingerprint(size, mtime),
        models=models_hash(MODELS),
        config=config,
        manual=manual,
        pixel_version=pixel_version,
        output_exists=output_exists,
        force=force,
        run_id=run_id,
    )


def test_verdicts():
    m = _marker()
    assert _v(m) is Verdict.CURRENT and Verdict.CURRENT.skip
    assert _v(None) is Verdict.NO_MARKER and not Verdict.NO_MARKER.skip
    assert _v(m, size=999) is Verdict.SOURCE_CHANGED
    assert _v(m, mtime=1700000001.5) is Verdict.SOURCE_CHANGED
    assert _v(m, mtime=None) is Verdict.CURRENT  # a filesystem without mtimes: size decides
    assert _v(m, config="d" * 64) is Verdict.CONFIG_CHANGED
    # A set of current hashes (one per projection + the whole config's): any one of them.
    assert _v(m, config=frozenset({"d" * 64, "c" * 64})) is Verdict.CURRENT
    assert _v(m, config=frozenset({"d" * 64, "e" * 64})) is Verdict.CONFIG_CHANGED
    other = replace(m, models_hash=models_hash([{**MODELS[0], "version": "2"}]))
    assert _v(other) is Verdict.MODELS_CHANGED
    assert _v(m, force=True) is Verdict.FORCED
    # A region reported after the marker was written (e.g. by a job that had read the manual
    # table before `report add`): the image is re-done with it.
    assert _v(m, manual="h" * 64) is Verdict.MANUAL_CHANGED
    assert _v(replace(m, manual_hash="h" * 64), manual="") is Verdict.MANUAL_CHANGED
    # Code that changes published pixels re-does old outputs.
    assert _v(m, pixel_version=PIXEL_VERSION + 1) is Verdict.CODE_CHANGED
    # A deleted published copy is restored.
    assert _v(m, output_exists=False) is Verdict.OUTPUT_MISSING
    # A forced run skips what it published itself: a killed reprocess resumes.
    assert _v(m, force=True, run_id="r1") is Verdict.CURRENT


def test_models_hash_is_order_and_content_sensitive():
    a = {"name": "a", "version": "1", "sha256": "", "backend": "onnx"}
    b = {"name": "b", "version": "1", "sha256": "", "backend": "onnx"}
    assert models_hash([a, b]) != models_hash([b, a])
    assert models_hash([a]) != models_hash([{**a, "sha256": "x"}])
    assert models_hash([{**a, "index": 3, "uri": "/elsewhere"}]) == models_hash([a])


def test_fingerprint_treats_zero_mtime_as_unknown():
    assert fingerprint(5, 0.0) == SourceFingerprint(5, None)
    assert fingerprint(5, 12.5) == SourceFingerprint(5, 12.5)


def test_marker_files_round_trip(tmp_path):
    uri = marker_uri(str(tmp_path / "_markers"), "a/b.jpg")
    assert uri == str(tmp_path / "_markers" / "a" / "b.jpg.json")
    assert read_marker(uri) is None
    ts = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc)
    row = {"run_id": "r1", "processed_at": ts, "timings_s": [("read", 0.5)], "detections": []}
    m = _marker(row=row_to_json(row))
    write_marker(uri, m)
    got = read_marker(uri)
    assert got == m
    back = row_from_json(got.row, "r9")
    assert back == {**row, "run_id": "r9"}
    assert reattributed(m, "r9").run_id == "r9" and reattributed(m, "r9").row["run_id"] == "r9"
    assert delete_marker(uri) and not delete_marker(uri)


def test_corrupt_marker_counts_as_missing(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    assert read_marker(str(p)) is None
    p.write_text('{"version": 99}')
    assert read_marker(str(p)) is None


def test_marker_paths_cannot_escape(tmp_path):
    with pytest.raises(ValueError):
        marker_uri(str(tmp_path), "../outside.jpg")
