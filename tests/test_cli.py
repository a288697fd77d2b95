import pytest

from redact.cli import _parse_set, main


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
    assert "originals are never overwritten" in capsys.readouterr().err


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
