"""Benchmark: redact per stage and end to end, against deface (``scripts/benchmark.py``,
``make bench``). See docs/performance.md.

Not part of the runtime package: it reads the repository's ``tests/data``, ``../shared`` and a
deface venv. Importable as ``bench`` once ``scripts/`` is on ``sys.path`` (as it is for
``python scripts/benchmark.py``).
"""

from pathlib import Path

#: The repository checkout this benchmark belongs to.
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The folder holding this package (``scripts/``): children put it on ``PYTHONPATH``.
SCRIPTS_DIR = Path(__file__).resolve().parents[1]
