"""Peak resident memory of a process, from ``/proc/self/status`` ``VmHWM``.

``getrusage(...).ru_maxrss`` of a child started by a large parent includes the parent's memory
at fork time (Linux keeps the high-water mark across ``exec``); ``VmHWM`` belongs to the
address space the process has after ``exec``, so it measures the child alone.

``python -m bench.peak OUT ARGS...`` (``scripts/`` on ``PYTHONPATH``) runs ``redact ARGS...`` and writes its peak RSS
(MB) to the file OUT when it exits.
"""

from __future__ import annotations

import atexit
import sys


def vm_hwm_mb() -> float | None:
    """Peak RSS (MB) of this process, or None where ``/proc`` is not available."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _record(path: str) -> None:
    peak = vm_hwm_mb()
    with open(path, "w", encoding="ascii") as f:
        f.write("" if peak is None else f"{peak:.1f}\n")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m bench.peak OUT REDACT_ARGS...", file=sys.stderr)
        return 2
    from redact.cli import main as redact_main

    atexit.register(_record, argv[0])
    return redact_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
