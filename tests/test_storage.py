import os

import pytest

from redact.errors import ImageError, Stage
from redact.io.storage import InputSpec, is_under, output_uri, read_bytes, write_atomic


def test_directory_input_is_recursive(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    spec = InputSpec.parse(str(tmp_path))
    assert spec.pattern == os.path.join(str(tmp_path), "**")
    assert spec.relative(str(tmp_path / "a" / "b" / "x.jpg")) == "a/b/x.jpg"


@pytest.mark.parametrize(
    ("src", "pattern", "base"),
    [
        ("gs://bucket/season/*.jpg", "gs://bucket/season/*.jpg", "gs://bucket/season"),
        ("gs://bucket/season/2024-*/**", "gs://bucket/season/2024-*/**", "gs://bucket/season"),
        ("s3://b/x/", "s3://b/x/**", "s3://b/x"),
        ("/data/pan?s/*.png", "/data/pan?s/*.png", "/data"),
    ],
)
def test_patterns(src, pattern, base):
    spec = InputSpec.parse(src)
    assert (spec.pattern, spec.base) == (pattern, base)


def test_single_file_and_missing(tmp_path):
    f = tmp_path / "one.jpg"
    f.write_bytes(b"x")
    spec = InputSpec.parse(str(f))
    assert spec.relative(str(f)) == "one.jpg"
    with pytest.raises(ValueError, match="no such file"):
        InputSpec.parse(str(tmp_path / "missing"))


def test_relative_outside_base_raises():
    spec = InputSpec(pattern="/a/**", base="/a")
    with pytest.raises(ValueError):
        spec.relative("/b/x.jpg")


def test_output_uri_never_escapes():
    assert output_uri("gs://out/x", "a/b.jpg") == "gs://out/x/a/b.jpg"
    assert output_uri("/out", "a/b.jpg") == "/out/a/b.jpg"
    with pytest.raises(ValueError):
        output_uri("/out", "../etc/passwd")


def test_is_under():
    assert is_under("/a/b/c.jpg", "/a/b")
    assert not is_under("/a/bc/d.jpg", "/a/b")
    assert is_under("gs://x/out/_manifest/m.parquet", "gs://x/out")


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "deep" / "dir" / "img.jpg"
    write_atomic(str(target), b"first")
    write_atomic(str(target), b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["img.jpg"]


def test_read_bytes_retries_then_raises(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    assert read_bytes(str(f)) == b"abc"
    with pytest.raises(ImageError) as err:
        read_bytes(str(tmp_path / "missing.jpg"), retries=2, backoff_s=0.0)
    assert err.value.stage is Stage.READ
    assert err.value.reason == "unreadable"
