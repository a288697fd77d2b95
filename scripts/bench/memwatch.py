"""Run a command under a memory watchdog: log its process tree's RSS, and stop it with evidence.

Two jobs in this project were killed by the kernel at 24 GB (docs/performance.md, "Open: an
intermittent memory runaway"): the machine's OOM killer leaves no trace of where the memory
went. Under this watchdog a run that crosses ``--limit-mb`` is stopped first, after the
watchdog has written, for every process of the tree, ``/proc/PID/status`` and ``smaps_rollup``
and (where ``py-spy`` is installed) a ``py-spy dump`` of every Python thread's stack, so the
next such event says which stage held the memory.

    python scripts/bench/memwatch.py --limit-mb 8000 --log /tmp/mw -- redact run --input ...

Writes LOG/rss.csv (seconds since start, RSS of the whole tree in MB, number of processes;
one row per ``--interval`` s) and, when the limit is crossed, LOG/evidence/. Exits with the
command's return code, or 137 when the watchdog stopped it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024  # Linux only, like /proc
KILLED_RC = 137


def children_of(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """Every descendant of ``pid`` (not ``pid`` itself), from ``/proc/*/stat`` parent ids."""
    kids: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended while we listed /proc
        # the command name (field 2) is in parentheses and may hold spaces: split after it
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1:
            kids.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    frontier = [pid]
    while frontier:
        direct = kids.get(frontier.pop(), [])
        found.extend(direct)
        frontier.extend(direct)
    return found


def rss_mb(pids: Iterable[int], proc: Path = Path("/proc")) -> float:
    """Summed resident set (MB) of ``pids`` from ``/proc/PID/statm``; ended processes count 0."""
    total_pages = 0
    for pid in pids:
        try:
            total_pages += int((proc / str(pid) / "statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total_pages * PAGE_KB / 1024.0


def write_evidence(pids: list[int], out: Path) -> None:
    """``status``, ``smaps_rollup``, the command line and a py-spy dump of each of ``pids``."""
    out.mkdir(parents=True, exist_ok=True)
    # beside this interpreter too: `.venv/bin/python memwatch.py` without the venv on PATH
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    for pid in pids:
        base = out / str(pid)
        for name in ("status", "smaps_rollup", "cmdline"):
            try:
                data = (Path("/proc") / str(pid) / name).read_bytes()
            except OSError as exc:
                data = f"unreadable: {exc}\n".encode()
            base.with_suffix(f".{name}").write_bytes(data.replace(b"\0", b" "))
        if py_spy:
            try:
                dump = subprocess.run(
                    [py_spy, "dump", "--pid", str(pid), "--locals"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                text = dump.stdout + dump.stderr
            except subprocess.TimeoutExpired:
                text = "py-spy dump timed out after 60 s\n"
            base.with_suffix(".py-spy.txt").write_text(text)
    if not py_spy:
        (out / "NO_PY_SPY").write_text(
            "py-spy not on PATH nor beside this Python: no Python stacks (pip install py-spy)\n"
        )


def _stop(child: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``child``'s process group (it leads its own session) and reap it."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone
    child.wait()


def watch(cmd: list[str], limit_mb: float, log: Path, interval: float) -> int:
    """Run ``cmd``; sample its tree's RSS every ``interval`` s; stop it above ``limit_mb``."""
    log.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    child = subprocess.Popen(cmd, start_new_session=True)
    try:
        return _watch(child, limit_mb, log, interval, t0)
    except BaseException:  # Ctrl-C or a failure of the watchdog itself: never leave it running
        _stop(child)
        raise


def _watch(
    child: subprocess.Popen[bytes], limit_mb: float, log: Path, interval: float, t0: float
) -> int:
    peak = 0.0
    with open(log / "rss.csv", "w", encoding="ascii") as csv:
        csv.write("seconds,rss_mb,processes\n")
        while child.poll() is None:
            tree = [child.pid, *children_of(child.pid)]
            mb = rss_mb(tree)
            peak = max(peak, mb)
            csv.write(f"{time.monotonic() - t0:.1f},{mb:.0f},{len(tree)}\n")
            csv.flush()
            if mb > limit_mb:
                try:
                    write_evidence(tree, log / "evidence")
                finally:  # the tree is stopped even if gathering evidence fails
                    _stop(child)
                print(
                    f"memwatch: stopped at {mb:.0f} MB > {limit_mb:.0f} MB after "
                    f"{time.monotonic() - t0:.0f} s; evidence in {log / 'evidence'}",
                    file=sys.stderr,
                )
                return KILLED_RC
            time.sleep(interval)
    print(f"memwatch: peak tree RSS {peak:.0f} MB (sampled every {interval} s)", file=sys.stderr)
    return child.returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit-mb", type=float, required=True, help="stop the tree above this RSS")
    ap.add_argument("--log", type=Path, required=True, help="folder for rss.csv and evidence/")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("no command given (memwatch ... -- COMMAND ARGS)")
    if args.limit_mb <= 0 or args.interval <= 0:
        ap.error("--limit-mb and --interval must be positive")
    return watch(cmd, args.limit_mb, args.log, args.interval)


if __name__ == "__main__":
    sys.exit(main())
