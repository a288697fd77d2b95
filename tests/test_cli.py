import hashlib
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import yaml

from redact.cli import _parse_set, describe_error, main


def test_help_lists_run(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "run" in capsys.readouterr().out


def test_run_requires_input_and_output(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--output", "x"])
    assert e.value.code == 2
    assert "--input" in capsys.readouterr().err


def test_bad_projection_is_a_usage_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(
            [
                "run",
                "--input",
                str(tmp_path),
                "--output",
                str(tmp_path / "o"),
                "--projection",
                "fisheye",
            ]
        )
    assert e.value.code == 2
    assert "fisheye" in capsys.readouterr().err


def test_missing_input_one_line_error(capsys, tmp_path):
    rc = main(["run", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("redact: error:") and "no such file" in err and err.count("\n") == 1


def test_bad_config_value_names_the_key(capsys, tmp_path):
    rc = main(
        [
            "run",
            "--input",
            str(tmp_path),
            "--output",
            str(tmp_path / "o"),
            "--set",
            "merge.method=mean",
        ]
    )
    assert rc == 2
    assert "merge.method" in capsys.readouterr().err


def test_output_equal_to_input_is_refused(capsys, tmp_path):
    rc = main(["run", "--input", str(tmp_path), "--output", str(tmp_path)])
    assert rc == 2
    assert "originals would be overwritten" in capsys.readouterr().err


def test_output_symlinked_to_the_input_is_refused(capsys, tmp_path):
    """The same-folder check compared abspaths: a symlinked DST overwrote the originals."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"original")
    (tmp_path / "dst").symlink_to(src, target_is_directory=True)
    rc = main(["run", "--input", str(src), "--output", str(tmp_path / "dst")])
    assert rc == 2
    assert "originals would be overwritten" in capsys.readouterr().err
    assert (src / "a.jpg").read_bytes() == b"original"


@pytest.mark.parametrize("pattern", ["{root}/*.jpg", "{root}/nonexistent/*.jpg", "{root}/none"])
def test_an_empty_match_is_an_error(capsys, tmp_path, pattern):
    rc = main(["run", "--input", pattern.format(root=tmp_path), "--output", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("matches no file" in err or "no such" in err)
    assert not (tmp_path / "o").exists()


def test_parse_set():
    assert _parse_set(["a.b=0.3", "a.c=true", "d=x"]) == {"a": {"b": 0.3, "c": True}, "d": "x"}
    with pytest.raises(Exception, match="KEY=VALUE"):
        _parse_set(["novalue"])


def test_unknown_option_rejected_where_no_beam_job(capsys, monkeypatch):
    """Commands that do not run a Beam job must not silently swallow typos."""
    import argparse

    from redact import cli

    ran = []
    real = cli.build_parser

    def with_noop():
        parser = real()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.add_parser("noop").set_defaults(func=lambda args, extra: ran.append(extra) or 0)
        return parser

    monkeypatch.setattr(cli, "build_parser", with_noop)
    assert main(["noop"]) == 0 and ran == [[]]
    with pytest.raises(SystemExit) as e:
        main(["noop", "--bogus"])
    assert e.value.code == 2 and "--bogus" in capsys.readouterr().err
    assert ran == [[]]


def test_beam_options_pass_through(tmp_path, monkeypatch):
    seen = {}

    def fake_run_job(args, beam_args):
        seen["beam"] = list(beam_args)
        return 0

    monkeypatch.setattr("redact.runner.run_job", fake_run_job)
    rc = main(
        [
            "run",
            "--input",
            str(tmp_path),
            "--output",
            str(tmp_path / "o"),
            "--runner",
            "DirectRunner",
            "--direct_num_workers=2",
        ]
    )
    assert rc == 0
    assert seen["beam"] == ["--runner", "DirectRunner", "--direct_num_workers=2"]


# --- errors a person can read: one line, exit status 2, the traceback only with --debug ------


def _image_folder(root: Path) -> Path:
    """A folder with one small grey JPEG (the jobs below fail before or at the model)."""
    src = root / "src"
    src.mkdir()
    (src / "grey.jpg").write_bytes(simplejpeg.encode_jpeg(np.full((48, 64, 3), 128, np.uint8)))
    return src


def _registry(root: Path, *, data: bytes | None, sha256: str | None = None) -> Path:
    """A registry whose ``redact-faceplate-yolov8n`` (the default config's model) is
    ``root/weights/model.onnx`` holding ``data`` (None: no file), registered with ``sha256``
    (default: the digest of ``data``)."""
    weights = root / "weights"
    weights.mkdir()
    if data is not None:
        (weights / "model.onnx").write_bytes(data)
    digest = sha256 or hashlib.sha256(data or b"").hexdigest()
    path = root / "registry.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "models": {
                    "redact-faceplate-yolov8n": {
                        "version": "test",
                        "uri": "weights/model.onnx",
                        "sha256": digest,
                        "classes": ["face", "license_plate"],
                        "input_size": 640,
                    }
                },
            }
        )
    )
    return path


def _run_args(src: Path, dst: Path | str, *extra: str) -> list[str]:
    return ["run", "--input", str(src), "--output", str(dst), *extra]


def _assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("redact: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_corrupt_model_file_one_line(capsys, tmp_path):
    reg = _registry(tmp_path, data=b"these bytes are not an ONNX model")
    rc = main(_run_args(_image_folder(tmp_path), tmp_path / "out", "--registry", str(reg)))
    _assert_one_line_error(
        rc, capsys.readouterr().err, "cannot load model 'redact-faceplate-yolov8n'", "model.onnx"
    )


def test_missing_model_file_one_line(capsys, tmp_path):
    reg = _registry(tmp_path, data=None, sha256="0" * 64)
    rc = main(_run_args(_image_folder(tmp_path), tmp_path / "out", "--registry", str(reg)))
    _assert_one_line_error(rc, capsys.readouterr().err, "redact-faceplate-yolov8n", "model.onnx")


def test_wrong_sha256_one_line_and_traceback_with_debug(capsys, tmp_path):
    reg = _registry(tmp_path, data=b"weights", sha256="0" * 64)
    args = _run_args(_image_folder(tmp_path), tmp_path / "out", "--registry", str(reg))
    _assert_one_line_error(main(args), capsys.readouterr().err, "sha256", "expected " + "0" * 64)
    assert main([*args, "--debug"]) == 2  # --debug also after the subcommand
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ModelFileError" in err
    assert err.splitlines()[-1].startswith("redact: error: model 'redact-faceplate-yolov8n'")


def test_bad_config_key_one_line_and_traceback_with_debug(capsys, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("merge:\n  bogus: 1\n")
    args = _run_args(_image_folder(tmp_path), tmp_path / "out", "--config", str(cfg))
    _assert_one_line_error(main(args), capsys.readouterr().err, "merge", "bogus")
    assert main(["--debug", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConfigError" in err
    assert err.splitlines()[-1].startswith("redact: error: ")


def test_output_under_a_file_one_line(capsys, tmp_path):
    """A path under a regular file cannot be created, also by root."""
    (tmp_path / "file.txt").write_text("x")
    dst = tmp_path / "file.txt" / "sub"
    rc = main(_run_args(_image_folder(tmp_path), dst))
    _assert_one_line_error(rc, capsys.readouterr().err, str(dst))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_output_folder_one_line(capsys, tmp_path):
    parent = tmp_path / "readonly"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        rc = main(_run_args(_image_folder(tmp_path), parent / "out"))
    finally:
        parent.chmod(0o700)
    _assert_one_line_error(rc, capsys.readouterr().err, "Permission denied", str(parent))


def test_user_errors_found_through_beam_wrapping():
    from redact.detection.registry import ModelFileError, ModelRegistryError

    inner = ModelFileError(
        "model 'm' at /w/m.onnx has sha256 1, expected 2 [while running 'Infer']"
    )
    try:
        try:
            raise inner
        except ModelFileError as e:
            raise RuntimeError("Pipeline failed:\n  long chained message\n  ...") from e
    except RuntimeError as outer:
        assert describe_error(outer) == ("model 'm' at /w/m.onnx has sha256 1, expected 2", 2)
    # A runner that re-raises the worker's error as text (multi-processing DirectRunner).
    text = RuntimeError(
        "Error processing instruction bundle_1. Original traceback is\nTraceback (most recent "
        'call last):\n  File "x.py", line 1, in f\nredact.detection.registry.ModelRegistryError:'
        " unknown model 'y' [while running 'Detect']\n"
    )
    assert describe_error(text) == ("unknown model 'y'", 2)
    assert describe_error(ModelRegistryError("bad registry")) == ("bad registry", 2)
    err = PermissionError(13, "Permission denied", "/out/x")
    wrapped = OSError("[Errno 13] Permission denied: '/out/x'")
    wrapped.__context__ = err
    assert describe_error(wrapped) == ("Permission denied: /out/x", 2)


def test_canary_error_is_a_user_error(monkeypatch):
    """``redact.detection.canary.CanaryError`` counts once its module is loaded (and is
    recognised by name in a Beam runner's text before that)."""

    class CanaryError(RuntimeError):
        pass

    module = types.ModuleType("redact.detection.canary")
    module.CanaryError = CanaryError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "redact.detection.canary", module)
    assert describe_error(CanaryError("canary red.png: face missed")) == (
        "canary red.png: face missed",
        2,
    )
    monkeypatch.delitem(sys.modules, "redact.detection.canary")
    text = RuntimeError("Traceback ...\nredact.detection.canary.CanaryError: canary failed\n")
    assert describe_error(text) == ("canary failed", 2)


def test_unexpected_error_one_line_exit_1(capsys, monkeypatch):
    def boom(args, extra):
        raise KeyError("internal")

    monkeypatch.setattr("redact.runner.run_job", boom)
    rc = main(["run", "--input", "x", "--output", "y"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("redact: error: KeyError: 'internal'") and "--debug" in err
    assert main(["--debug", "run", "--input", "x", "--output", "y"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


@pytest.mark.slow
def test_allow_empty_runs_a_job_over_nothing(capsys, tmp_path):
    out = tmp_path / "o"
    rc = main(["run", "--input", f"{tmp_path}/*.jpg", "--output", str(out), "--allow-empty"])
    assert rc == 0
    assert "0 image(s) read, 0 published" in capsys.readouterr().out
    assert list((out / "_manifest").glob("run-*.parquet"))


def test_a_broken_post_processor_stops_the_job_at_launch(capsys, tmp_path):
    """Stage 2 proves itself in the launcher like the detectors: nothing is built or run."""
    src, bad = tmp_path / "src", tmp_path / "pp.onnx"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"\xff\xd8\xff not read")
    bad.write_bytes(b"not an onnx model")
    rc = main(
        [
            "run", "--input", str(src), "--output", str(tmp_path / "o"),
            "--set", f"postprocess.path={bad}", "--set", "postprocess.classes=[face, license_plate]",
        ]
    )  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "post-processor" in err
    assert not (tmp_path / "o" / "a.jpg").exists()


def test_the_post_processor_is_one_of_the_run_models():
    from redact.cli import load_config
    from redact.detection import ModelRegistry, describe_models
    from redact.season.markers import models_hash

    reg = ModelRegistry.load()
    one = describe_models(load_config(None, ['postprocess.model=""']), reg)
    two = describe_models(load_config(None), reg)  # the default runs stage 2
    assert [m["name"] for m in two] == [m["name"] for m in one] + ["redact-rescorer"]
    assert two[-1]["sha256"] == reg["redact-rescorer"].sha256
    assert models_hash(one) != models_hash(two)


_WORKER_TRACEBACK = """Traceback (most recent call last):
  File "x.py", line 1, in mkdirs
NotADirectoryError: [Errno 20] Not a directory: '/out/file.txt/sub'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "y.py", line 2, in process
{last}
"""


@pytest.mark.parametrize(
    ("last", "message", "status"),
    [
        # the last error line of a worker's traceback (the multi-threaded DirectRunner re-raises
        # it as text) decides, with Beam's RuntimeError wrapper taken off
        (
            "RuntimeError: OSError: [Errno 20] Not a directory: '/out/file.txt/sub' "
            "[while running 'WriteManifest']",
            "Not a directory: /out/file.txt/sub",
            2,
        ),
        ("ValueError: bad value here [while running 'Publish']", "bad value here", 2),
        # an unexpected error raised while handling a file-system error is not a user error
        ("KeyError: 'tiles'", "KeyError: 'tiles' (unexpected", 1),
    ],
)
def test_errors_reraised_as_worker_tracebacks(last, message, status):
    err = RuntimeError(_WORKER_TRACEBACK.format(last=last))
    got, code = describe_error(err)
    assert code == status
    assert got.startswith(message), got
    assert "\n" not in got and "Traceback" not in got


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (no folder can be made there)")
def test_a_sink_failure_in_a_two_worker_job_is_one_line(capsys, tmp_path):
    """The default local run has two worker threads; Beam's SDK worker prints a failed bundle's
    traceback straight to stderr there. The user still gets one line (and exit 2)."""
    dst = "/proc/redact_cannot_create_this"
    rc = main(_run_args(_image_folder(tmp_path), dst))
    _assert_one_line_error(rc, capsys.readouterr().err, dst)


def test_logging_is_configured_after_an_import_logged_through_the_root_logger() -> None:
    import logging

    from redact.cli import configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        root.handlers[:] = []
        logging.warning("apitools not found")  # what Beam does at import without [gcp]
        assert [type(h) for h in root.handlers] == [logging.StreamHandler]
        configure_logging(verbose=True)
        assert root.level == logging.DEBUG and len(root.handlers) == 1
        assert "%(name)s" in root.handlers[0].formatter._fmt  # type: ignore[union-attr]
        # a handler installed on purpose stays, and then basicConfig leaves the logger alone
        mine = logging.NullHandler()
        root.handlers[:] = [mine]
        configure_logging()
        assert root.handlers == [mine]
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
