#!/usr/bin/env python
"""Benchmark redact against deface on the sample shard (+ ../shared panoramas when present).

    .venv/bin/python scripts/benchmark.py --json out/bench.json --markdown out/bench.md

The entry point of ``make bench``; the code is the ``scripts/bench/`` package (not part of the
runtime ``redact`` package). See ``--help`` and docs/performance.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.cli import main  # needs scripts/ on sys.path (above)

if __name__ == "__main__":
    sys.exit(main())
