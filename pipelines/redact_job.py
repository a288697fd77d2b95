"""Beam job entry point: ``python -m pipelines.redact_job --input SRC --output DST [beam options]``.

A thin wrapper over ``redact run`` so Dataflow templates / schedulers can call a module.
"""

from __future__ import annotations

import sys

from redact.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
