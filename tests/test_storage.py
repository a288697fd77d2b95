import os

import pytest

from redact.errors import ImageError, Stage
from redact.io.inputs import RejectedName
from redact.io.storage import (
    TMP_PREFIX,
    InputSpec,
    is_temp_name,
    is_under,
    output_uri,
    read_bytes,
    write_atomic,
)


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


@pytest.mark.parametrize(
    ("rel", "reason"),
    [
        ("x\\y.jpg", "name_backslash"),  # was rewritten to x/y.jpg: two inputs, one output
        ("a/../b.jpg", "name_parent_ref"),  # was silently published as b.jpg
        ("./b.jpg", "name_dot_component"),
        ("a//b.jpg", "name_empty_component"),
        ("/abs.jpg", "name_absolute"),
    ],
)
def test_output_uri_refuses_instead_of_normalising(rel, reason):
    with pytest.raises(RejectedName) as err:
        output_uri("/out", rel)
    assert err.value.reason == reason
    assert isinstance(err.value, ValueError)


def test_backslash_and_slash_names_no_longer_share_an_output():
    assert output_uri("/out", "x/y.jpg") == "/out/x/y.jpg"
    with pytest.raises(ValueError):
        output_uri("/out", "x\\y.jpg")


def test_relative_is_verbatim():
    spec = InputSpec(pattern="/in/**", base="/in")
    assert spec.relative("/in/a/b.jpg") == "a/b.jpg"
    assert spec.relative("/in//b.jpg") == "/b.jpg"  # refused later by output_uri (absolute)
    root = InputSpec.parse("/*.jpg")
    assert root.base == "/"
    assert root.relative("/x.jpg") == "x.jpg"
    assert root.relative("//x.jpg") == "/x.jpg"  # was lstripped to x.jpg: an alias


def test_relative_glob_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = InputSpec.parse("*.jpg")  # Beam matches nothing for a relative pattern
    assert spec.pattern == os.path.join(str(tmp_path), "*.jpg")
    assert spec.base == str(tmp_path)


def test_parse_accepts_a_special_file_to_quarantine(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    link = tmp_path / "broken.jpg"
    link.symlink_to(tmp_path / "nowhere.jpg")
    assert InputSpec.parse(str(fifo)).pattern == str(fifo)
    assert InputSpec.parse(str(link)).base == str(tmp_path)


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


def test_write_atomic_long_legal_name(tmp_path):
    # The old temp name ".{name}.redact-tmp-{uuid}" was 295 bytes here: ENAMETOOLONG.
    target = tmp_path / ("n" * 246 + ".jpg")
    assert len(target.name) == 250
    write_atomic(str(target), b"data", retries=1, backoff_s=0.0)
    assert target.read_bytes() == b"data"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_write_atomic_temp_name(tmp_path, monkeypatch):
    seen: list[str] = []
    real_rename = os.rename

    def spy(src, dst):
        seen.append(os.path.basename(src))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", spy)
    write_atomic(str(tmp_path / ("é" * 125 + ".jpg")), b"x")  # 254 bytes of UTF-8: legal
    (name,) = seen
    assert name.startswith(TMP_PREFIX) and len(name.encode()) == len(TMP_PREFIX) + 32
    assert is_temp_name(name)
    assert not is_temp_name(".redact-tmp-holiday.jpg")  # an input that merely contains it
    assert not is_temp_name(f"a{name}")


def test_read_bytes_local_and_missing(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    assert read_bytes(str(f)) == b"abc"
    with pytest.raises(ImageError) as err:
        read_bytes(str(tmp_path / "missing.jpg"), retries=2, backoff_s=0.0)
    assert err.value.stage is Stage.READ
    assert err.value.reason == "missing"


def test_read_bytes_follows_a_symlink_to_a_file(tmp_path):
    (tmp_path / "real.jpg").write_bytes(b"abc")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "real.jpg")
    assert read_bytes(str(tmp_path / "link.jpg")) == b"abc"


def test_read_bytes_retries_transient_errors_then_raises(tmp_path, monkeypatch):
    import errno

    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    calls = []
    real_open = os.open

    def flaky(path, flags, *args):
        calls.append(path)
        if len(calls) < 3:
            raise OSError(errno.EIO, "I/O error", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", flaky)
    assert read_bytes(str(f), retries=3, backoff_s=0.0) == b"abc"
    calls.clear()
    with pytest.raises(ImageError) as err:
        read_bytes(str(f), retries=2, backoff_s=0.0)
    assert (err.value.reason, len(calls)) == ("unreadable", 2)
