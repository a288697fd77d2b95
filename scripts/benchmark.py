#!/usr/bin/env python
"""Benchmark redact against deface on the sample shard (+ ../shared panoramas when present).

    .venv/bin/python scripts/benchmark.py --json out/bench.json --markdown out/bench.md

Same as ``redact bench``; see ``--help`` and docs/performance.md.
"""

from __future__ import annotations

import sys

from redact.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
