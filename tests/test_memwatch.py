"""scripts/bench/memwatch.py: the RSS watchdog that stops a run with evidence instead of an OOM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.scripts import load_script

load_script("benchmark")  # puts scripts/ (the bench package) on sys.path

from bench import memwatch  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")

GROW = (
    "import time\n"
    "blocks = []\n"
    "for _ in range(400):\n"
    "    blocks.append(bytearray(8 << 20))\n"  # 8 MB, touched by bytearray's zero fill
    "    time.sleep(0.01)\n"
    "time.sleep(30)\n"
)


def _args(log: Path, limit_mb: int) -> list[str]:
    return ["--limit-mb", str(limit_mb), "--log", str(log), "--interval", "0.05", "--"]


def test_stops_a_growing_child_and_writes_evidence(tmp_path: Path) -> None:
    rc = memwatch.main([*_args(tmp_path, 300), sys.executable, "-c", GROW])
    assert rc == memwatch.KILLED_RC
    rows = (tmp_path / "rss.csv").read_text().splitlines()
    assert rows[0] == "seconds,rss_mb,processes"
    # the watchdog compares the exact RSS (> 300 MB); the row holds it rounded to the MB
    assert float(rows[-1].split(",")[1]) >= 300
    evidence = tmp_path / "evidence"
    status = list(evidence.glob("*.status"))
    assert status and "VmRSS" in status[0].read_text()
    assert list(evidence.glob("*.cmdline"))


def test_passes_through_the_return_code_below_the_limit(tmp_path: Path) -> None:
    rc = memwatch.main(
        [
            *_args(tmp_path, 4000),
            sys.executable,
            "-c",
            "import time, sys; time.sleep(0.3); sys.exit(3)",
        ]
    )
    assert rc == 3
    assert not (tmp_path / "evidence").exists()
    assert len((tmp_path / "rss.csv").read_text().splitlines()) >= 2


def test_tree_includes_grandchildren_and_rss_sums_them() -> None:
    me = os.getpid()
    assert me in memwatch.children_of(os.getppid())
    # a shell (child) that starts a sleep (grandchild) and waits for it
    shell = subprocess.Popen(["sh", "-c", "sleep 5 & wait"], start_new_session=True)
    try:
        for _ in range(100):  # until the shell has started its sleep
            tree = memwatch.children_of(me)
            if len(tree) >= 2:
                break
            time.sleep(0.02)
        assert shell.pid in tree
        grandchildren = [p for p in tree if p != shell.pid]
        assert grandchildren and memwatch.children_of(shell.pid) == grandchildren
    finally:
        os.killpg(shell.pid, signal.SIGKILL)  # the sleep too
        shell.wait()
    assert memwatch.rss_mb([me]) > 1
    assert memwatch.rss_mb([me, me]) == pytest.approx(2 * memwatch.rss_mb([me]), rel=0.2)
    assert memwatch.rss_mb([2**22 + 12345]) == 0.0  # a pid that does not exist


def test_refuses_a_missing_command(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        memwatch.main(["--limit-mb", "100", "--log", str(tmp_path), "--"])


def test_the_child_is_stopped_when_gathering_evidence_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []

    def broken(pids: list[int], out: Path) -> None:
        seen.extend(pids)
        raise RuntimeError("evidence failed")

    monkeypatch.setattr(memwatch, "write_evidence", broken)
    with pytest.raises(RuntimeError, match="evidence failed"):
        memwatch.main([*_args(tmp_path, 300), sys.executable, "-c", GROW])
    assert seen
    with pytest.raises(ProcessLookupError):
        os.kill(seen[0], 0)  # killed and reaped, not left growing


def test_evidence_finds_py_spy_beside_the_interpreter_when_not_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``.venv/bin/python memwatch.py`` without the venv on PATH still dumps stacks."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "py-spy"
    fake.write_text('#!/bin/sh\necho "fake dump $*"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(memwatch.sys, "executable", str(bindir / "python"))
    memwatch.write_evidence([os.getpid()], tmp_path / "ev")
    text = (tmp_path / "ev" / f"{os.getpid()}.py-spy.txt").read_text()
    assert text.startswith("fake dump dump --pid") and not (tmp_path / "ev" / "NO_PY_SPY").exists()
    monkeypatch.setattr(memwatch.sys, "executable", str(tmp_path / "empty" / "python"))
    memwatch.write_evidence([os.getpid()], tmp_path / "ev2")
    assert (tmp_path / "ev2" / "NO_PY_SPY").exists()
