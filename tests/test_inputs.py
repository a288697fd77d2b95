"""Every input accounted for: names, special files, listing, collisions, output location."""

from __future__ import annotations

import os
import posixpath
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redact.errors import ImageError, Stage
from redact.io import inputs
from redact.io.inputs import (
    NAME_MAX,
    REASONS,
    LocalEntry,
    RejectedName,
    case_collisions,
    check_output_location,
    check_relative_name,
    classify_local,
    is_under_real,
    list_local,
    output_collisions,
    safe_text,
    sniff_format,
)
from redact.io.storage import output_uri, read_bytes

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False

# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("rel", "reason"),
    [
        ("x\\y.jpg", "name_backslash"),
        ("a/../b.jpg", "name_parent_ref"),
        ("..", "name_parent_ref"),
        ("a/..", "name_parent_ref"),
        ("../x\\y", "name_parent_ref"),  # the first reason in the documented order
        ("/abs.jpg", "name_absolute"),
        ("a\x00b", "name_control_char"),
        ("a\nb.jpg", "name_control_char"),
        ("a\rb.jpg", "name_control_char"),
        ("\x7f", "name_control_char"),
        ("a\x85b.jpg", "name_control_char"),  # C1 (NEL)
        ("a\u2028b.jpg", "name_control_char"),  # a line break for str.splitlines
        ("\udcff.jpg", "name_not_utf8"),  # os.fsdecode of the byte 0xff
        ("a//b.jpg", "name_empty_component"),
        ("a/", "name_empty_component"),
        ("", "name_empty_component"),
        ("./b.jpg", "name_dot_component"),
        ("a/./b.jpg", "name_dot_component"),
        ("a" * 256, "name_too_long"),
        ("d/" + "é" * 128, "name_too_long"),  # 256 bytes of UTF-8
    ],
)
def test_rejected_names(rel, reason):
    assert check_relative_name(rel) == reason
    assert reason in REASONS
    with pytest.raises(RejectedName) as err:
        output_uri("/out", rel)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    "rel",
    [
        "a.jpg",
        "a/b/c.JPG",
        "noext",
        ".hidden.jpg",
        "...",
        "a..b.jpg",
        "holiday.redact-tmp-1.jpg",
        "é/日本語 ファイル.jpg",
        "family 👨\u200d👩\u200d👧.png",  # zero-width joiners (Cf) are legal
        " leading and trailing .jpg ",
        "a" * NAME_MAX,
        "é" * 127 + "a",  # 255 bytes
        "C:/x.jpg",  # a legal POSIX name
    ],
)
def test_legal_names(rel):
    assert check_relative_name(rel) is None
    assert output_uri("/out", rel) == "/out/" + rel
    assert output_uri("gs://b/out/", rel) == "gs://b/out/" + rel


def test_max_component_bytes_leaves_room_for_a_suffix():
    name = "a" * 251
    assert check_relative_name(name) is None
    assert check_relative_name(name, max_component_bytes=NAME_MAX - len(".json")) == (
        "name_too_long"
    )


def test_safe_text():
    assert safe_text("\udcff.jpg") == "\\xff.jpg"
    assert safe_text("a\nb\x00") == "a\\nb\\x00"
    assert safe_text("é/日本.jpg") == "é/日本.jpg"


# Hypothesis: any accepted name maps injectively to a normal path under dst; any rejected
# name raises with the same reason.
_NASTY = ["a", "é", "日", " ", ".", "..", "/", "\\", "\x00", "\n", "\x7f", "\x85", "\u2028"]
_names = st.one_of(
    st.text(max_size=30),
    st.lists(st.sampled_from([*_NASTY, "\udcff"]), max_size=8).map("".join),
)
_component = st.text(
    alphabet=st.characters(
        whitelist_categories=("L", "M", "N", "P", "S", "Zs", "Cf"), blacklist_characters="/\\"
    ),
    min_size=1,
    max_size=20,
).filter(lambda c: c not in (".", ".."))


@given(_names)
def test_property_rejected_raise_accepted_map_verbatim(rel):
    reason = check_relative_name(rel)
    if reason is not None:
        assert reason in REASONS
        with pytest.raises(RejectedName) as err:
            output_uri("/dst", rel)
        assert err.value.reason == reason
        return
    out = output_uri("/dst", rel)
    assert out == "/dst/" + rel
    assert posixpath.normpath(out) == out  # nothing for a filesystem to normalise: no alias
    assert out.startswith("/dst/")
    assert out.count("/") == rel.count("/") + 2
    rel.encode("utf-8")  # every accepted name can be stored in the manifest


@given(st.lists(_names, max_size=12, unique=True))
def test_property_accepted_names_are_injective(rels):
    accepted = [r for r in rels if check_relative_name(r) is None]
    outs = {output_uri("gs://b/dst", r) for r in accepted}
    assert len(outs) == len(accepted)


@given(st.lists(_component, min_size=1, max_size=5))
def test_property_legal_components_are_accepted(parts):
    rel = "/".join(parts)
    assert check_relative_name(rel) is None
    assert output_uri("/dst", rel).split("/")[2:] == parts


# ---------------------------------------------------------------- collisions, content


def test_output_collisions():
    rels = ["a.jpg", "b/c.jpg", "a.jpg", "x\\y.jpg", "x/y.jpg"]
    assert output_collisions(rels) == {"a.jpg": ["a.jpg", "a.jpg"]}
    assert output_collisions(["a.jpg", "A.jpg"]) == {}
    assert output_collisions(iter(["z", "z", "z"])) == {"z": ["z", "z", "z"]}


def test_case_collisions():
    nfd = "e\u0301.jpg"  # é decomposed, as macOS writes it
    rels = ["A.jpg", "a.jpg", "b.jpg", "\u00e9.jpg", nfd, "a.jpg"]
    assert case_collisions(rels) == {"a.jpg": ["A.jpg", "a.jpg"], "é.jpg": [nfd, "é.jpg"]}


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "jpeg"),
        (b"\xff\xd8\xff", "jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "png"),
        (b"\x89PNG\r\n\x1a", None),  # truncated signature
        (b"", None),
        (b"GIF89a", None),
        (b"hello world, not an image", None),
        (b"\xff\xd8", None),
    ],
)
def test_sniff_format(head, fmt):
    assert sniff_format(head) == fmt
    assert sniff_format(memoryview(head + b"\x00" * 64)) == fmt  # only the head counts


def test_sniff_format_agrees_with_the_decoder():
    from redact.io.codec import decode_image
    from redact.io.png_meta import SIGNATURE

    assert sniff_format(SIGNATURE) == "png"
    for data in (b"plain text here", b"\x00" * 20, b"BM\x00\x00", b"\x89PNG\r\n\x1a\x0a"[:7]):
        assert sniff_format(data) is None
        with pytest.raises(ImageError) as err:
            decode_image(data, max_pixels=10**6)
        assert err.value.reason in ("unknown_format", "truncated")


# ---------------------------------------------------------------- special files


def _no_open(monkeypatch):
    """Make any attempt to open a file for reading fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"opened {args[0]!r}")

    monkeypatch.setattr(os, "open", refuse)
    monkeypatch.setattr("builtins.open", refuse)


def _special(tmp_path: Path) -> dict[str, Path]:
    """One of each kind of path, by expected verdict."""
    (tmp_path / "regular.jpg").write_bytes(b"\xff\xd8\xffdata")
    (tmp_path / "tolink.jpg").symlink_to(tmp_path / "regular.jpg")
    os.mkfifo(tmp_path / "fifo.jpg")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    (tmp_path / "folder.jpg").mkdir()
    paths = {
        "regular": tmp_path / "regular.jpg",
        "link": tmp_path / "tolink.jpg",
        "fifo": tmp_path / "fifo.jpg",
        "dangling": tmp_path / "dangling.jpg",
        "loop": tmp_path / "loop_a",
        "folder": tmp_path / "folder.jpg",
    }
    if os.path.exists("/dev/null"):
        (tmp_path / "null.jpg").symlink_to("/dev/null")
        paths["device"] = tmp_path / "null.jpg"
    return paths


EXPECTED = {
    "regular": None,
    "link": None,
    "fifo": "not_regular_fifo",
    "dangling": "dangling_symlink",
    "loop": "symlink_loop",
    "folder": "not_regular_directory",
    "device": "not_regular_device",
}


def test_classify_local_without_opening(tmp_path, monkeypatch):
    paths = _special(tmp_path)
    _no_open(monkeypatch)
    for kind, path in paths.items():
        assert classify_local(str(path)) == EXPECTED[kind], kind
    assert classify_local(str(tmp_path / "missing.jpg")) == "missing"
    assert classify_local("gs://bucket/fifo.jpg") is None


def test_classify_local_socket(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # AF_UNIX paths are limited to ~108 bytes: bind a short name
    with socket.socket(socket.AF_UNIX) as s:
        s.bind("s.jpg")
        assert classify_local(str(tmp_path / "s.jpg")) == "not_regular_socket"


def test_classify_local_permission(tmp_path, monkeypatch):
    f = tmp_path / "secret.jpg"
    f.write_bytes(b"x")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert classify_local(str(f)) == "unreadable_permission"


@pytest.mark.skipif(ROOT, reason="root reads any file")
def test_classify_local_real_permission(tmp_path):
    f = tmp_path / "secret.jpg"
    f.write_bytes(b"x")
    f.chmod(0)
    try:
        assert classify_local(str(f)) == "unreadable_permission"
        with pytest.raises(ImageError) as err:
            read_bytes(str(f), retries=1)
        assert err.value.reason == "unreadable_permission"
    finally:
        f.chmod(0o600)


def _within(seconds: float, fn: Callable[[], object]) -> object:
    """``fn()`` in a thread; fails (instead of hanging the suite) if it takes longer."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed back to the test below
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout=seconds)
    assert not t.is_alive(), f"still running after {seconds} s (blocked on a FIFO?)"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


def test_read_bytes_fifo_fails_fast(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError) as err:
        _within(5, lambda: read_bytes(str(fifo), retries=3, backoff_s=1.0))
    assert (err.value.reason, err.value.stage) == ("not_regular_fifo", Stage.READ)


def test_read_bytes_fifo_swapped_in_after_the_check(tmp_path, monkeypatch):
    """TOCTOU: even when the stat check passed, the opened descriptor is checked."""
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    monkeypatch.setattr("redact.io.storage.classify_local", lambda path: None)
    with pytest.raises(ImageError) as err:
        _within(5, lambda: read_bytes(str(fifo), retries=1))
    assert err.value.reason == "not_regular_fifo"


@pytest.mark.parametrize("kind", ["dangling", "loop", "folder", "device"])
def test_read_bytes_refuses_what_is_not_a_regular_file(tmp_path, kind):
    paths = _special(tmp_path)
    if kind not in paths:
        pytest.skip("no /dev/null")
    with pytest.raises(ImageError) as err:
        _within(5, lambda: read_bytes(str(paths[kind]), retries=3, backoff_s=1.0))
    assert (err.value.reason, err.value.stage) == (EXPECTED[kind], Stage.READ)


# ---------------------------------------------------------------- listing


def _tree(src: Path) -> None:
    (src / "sub" / "deep").mkdir(parents=True)
    for name in ["a.jpg", "b.txt", "C.JPG", "noext", ".hidden.jpg", "x.redact-tmp-1.jpg"]:
        (src / name).write_bytes(b"x")
    (src / "sub" / "deep" / "p.png").write_bytes(b"x")
    (src / "broken.jpg").symlink_to(src / "gone.jpg")
    (src / "loop_a").symlink_to(src / "loop_b")
    (src / "loop_b").symlink_to(src / "loop_a")
    os.mkfifo(src / "fifo.jpg")
    (src / "sub" / "up").symlink_to("..")  # a folder link back to an ancestor
    (src / "linked").symlink_to(src / "sub" / "deep")  # a symlinked folder: followed


def test_list_local_sees_everything(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    _no_open(monkeypatch)
    got = list_local(str(src))
    s = str(src)
    assert got == [
        LocalEntry(f"{s}/.hidden.jpg", None),
        LocalEntry(f"{s}/C.JPG", None),
        LocalEntry(f"{s}/a.jpg", None),
        LocalEntry(f"{s}/b.txt", None),
        LocalEntry(f"{s}/broken.jpg", "dangling_symlink"),
        LocalEntry(f"{s}/fifo.jpg", "not_regular_fifo"),
        LocalEntry(f"{s}/linked/p.png", None),
        LocalEntry(f"{s}/loop_a", "symlink_loop"),
        LocalEntry(f"{s}/loop_b", "symlink_loop"),
        LocalEntry(f"{s}/noext", None),
        LocalEntry(f"{s}/sub/deep/p.png", None),
        LocalEntry(f"{s}/sub/up", "symlink_loop"),
        LocalEntry(f"{s}/x.redact-tmp-1.jpg", None),
    ]
    assert list_local(os.path.join(s, "**")) == got  # InputSpec's pattern for a folder


def test_beam_match_drops_what_list_local_reports(tmp_path):
    """Why list_local exists (Beam 2.77): MatchFiles silently drops broken links and loops and
    does not descend symlinked folders; it lists FIFOs as 0-byte files."""
    from apache_beam.io.filesystems import FileSystems

    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    beam = {m.path for m in FileSystems.match([str(src / "**")])[0].metadata_list}
    ours = {e.path for e in list_local(str(src))}
    assert ours - beam == {
        str(src / n) for n in ["broken.jpg", "loop_a", "loop_b", "linked/p.png", "sub/up"]
    }
    assert str(src / "fifo.jpg") in beam


def test_list_local_globs(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    s = str(src)
    assert [e.path for e in list_local(f"{s}/*.jpg")] == [
        f"{s}/.hidden.jpg",
        f"{s}/a.jpg",
        f"{s}/broken.jpg",
        f"{s}/fifo.jpg",
        f"{s}/x.redact-tmp-1.jpg",
    ]
    assert [e.path for e in list_local(f"{s}/**/*.png")] == [
        f"{s}/linked/p.png",
        f"{s}/sub/deep/p.png",
    ]
    assert list_local(f"{tmp_path}/s?c/sub/**") == [
        LocalEntry(f"{s}/sub/deep/p.png", None),
        LocalEntry(f"{s}/sub/up", "symlink_loop"),
    ]


def test_list_local_relative_pattern(tmp_path, monkeypatch):
    (tmp_path / "a.jpg").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert list_local("*.jpg") == [LocalEntry(str(tmp_path / "a.jpg"), None)]


def test_list_local_single_paths(tmp_path):
    paths = _special(tmp_path)
    for kind, path in paths.items():
        if kind != "folder":
            assert list_local(str(path)) == [LocalEntry(str(path), EXPECTED[kind])]
    assert list_local(str(paths["folder"])) == []  # an empty folder


def test_list_local_empty_versus_missing(tmp_path):
    assert list_local(str(tmp_path)) == []
    assert list_local(f"{tmp_path}/*.jpg") == []
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        list_local(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no such folder"):
        list_local(f"{tmp_path}/missing/*.jpg")
    with pytest.raises(ValueError):
        list_local("gs://bucket/**")


def test_list_local_excludes_the_tools_folders(tmp_path):
    src = tmp_path / "src"
    (src / "out" / "x").mkdir(parents=True)
    (src / "out" / "x" / "published.jpg").write_bytes(b"x")
    (src / "a.jpg").write_bytes(b"x")
    (src / "via_link").symlink_to(src / "out")  # the output reached through a link
    (src / "pointer.jpg").symlink_to(src / "out" / "x" / "published.jpg")  # an input
    got = list_local(str(src), exclude=[str(src / "out"), "gs://elsewhere", ""])
    assert [e.path for e in got] == [str(src / "a.jpg"), str(src / "pointer.jpg")]


def test_list_local_unreadable_folder_is_reported(tmp_path, monkeypatch):
    (tmp_path / "ok.jpg").write_bytes(b"x")
    (tmp_path / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path):
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(inputs.os, "scandir", scandir)
    assert list_local(str(tmp_path)) == [
        LocalEntry(str(tmp_path / "locked"), "unreadable_permission"),
        LocalEntry(str(tmp_path / "ok.jpg"), None),
    ]


def test_list_local_non_utf8_name(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"\xff.jpg")
    with open(raw, "wb") as f:
        f.write(b"x")
    (entry,) = list_local(str(tmp_path))
    assert entry.reason is None
    rel = os.path.basename(entry.path)
    assert check_relative_name(rel) == "name_not_utf8"
    assert safe_text(rel) == "\\xff.jpg"


# ---------------------------------------------------------------- output location


def test_symlinked_output_pointing_at_the_input_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "out").symlink_to(src)
    msg = check_output_location(str(src), str(tmp_path / "out"))
    assert msg is not None and "originals would be overwritten" in msg
    # abspath (the old check) sees two different folders:
    assert os.path.abspath(tmp_path / "out") != os.path.abspath(src)


def test_output_location(tmp_path):
    src = tmp_path / "data" / "src"
    src.mkdir(parents=True)
    (tmp_path / "up").symlink_to(tmp_path / "data")
    s = str(src)
    assert check_output_location(s, s) is not None
    assert check_output_location(s, s + "/") is not None
    assert "contains the input" in (check_output_location(s, str(tmp_path / "data")) or "")
    assert "contains the input" in (check_output_location(s, str(tmp_path / "up")) or "")
    assert check_output_location(s, "/") is not None
    assert check_output_location(s, str(src / "out")) is None  # a distinct subfolder
    assert check_output_location(s, str(tmp_path / "data" / "src2")) is None  # a sibling
    assert check_output_location(s, str(tmp_path / "new" / "out")) is None  # not yet there
    assert check_output_location(str(tmp_path / "up" / "src"), s) is not None


def test_output_location_remote():
    assert check_output_location("gs://b/in", "gs://b/in/") is not None
    assert check_output_location("gs://b/in", "GS://b/in") is not None
    assert check_output_location("gs://b/in/season", "gs://b/in") is not None
    assert check_output_location("gs://b/in", "gs://b/in/out") is None
    assert check_output_location("gs://b/in", "gs://b/input") is None
    assert check_output_location("gs://b/in", "/local/out") is None
    assert check_output_location("/local/in", "s3://b/out") is None


def test_is_under_real(tmp_path):
    src = tmp_path / "src"
    (src / "out").mkdir(parents=True)
    (src / "out" / "p.jpg").write_bytes(b"x")
    (src / "link_dir").symlink_to(src / "out")
    (src / "link_file.jpg").symlink_to(src / "out" / "p.jpg")
    out = str(src / "out")
    assert is_under_real(str(src / "out" / "p.jpg"), out)
    assert is_under_real(str(src / "link_dir"), out)
    assert is_under_real(str(src / "link_dir" / "p.jpg"), out)
    assert not is_under_real(str(src / "link_file.jpg"), out)  # an input, not the tool's file
    assert is_under_real(out, str(tmp_path / "src" / "link_dir"))
    assert not is_under_real(str(src / "outside.jpg"), out)
    assert is_under_real("gs://b/out/x.jpg", "gs://b/out/")
    assert not is_under_real("gs://b/outx/x.jpg", "gs://b/out")
    assert not is_under_real("/b/out/x.jpg", "gs://b/out")


def test_folder_with_glob_characters_is_taken_literally(tmp_path):
    from redact.io.storage import InputSpec

    season = tmp_path / "[2024]"
    season.mkdir()
    (season / "a.jpg").write_bytes(b"x")
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "decoy.jpg").write_bytes(b"x")  # what "[2024]" means as a glob
    spec = InputSpec.parse(str(season))
    assert (spec.pattern, spec.base) == (str(season / "**"), str(season))
    assert list_local(spec.pattern) == [LocalEntry(str(season / "a.jpg"), None)]
    assert list_local(str(season / "a.jpg")) == [LocalEntry(str(season / "a.jpg"), None)]
    assert [e.path for e in list_local(f"{tmp_path}/[2]/*.jpg")] == [str(tmp_path / "2/decoy.jpg")]
