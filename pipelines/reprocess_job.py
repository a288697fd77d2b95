"""Reprocess entry point: ``python -m pipelines.reprocess_job --manifest M --originals SRC
--cells cells.csv [options]`` (``redact reprocess``: one forced job per priority, highest
first). Beam/Dataflow options pass through as for :mod:`pipelines.redact_job`."""

from __future__ import annotations

import sys

from redact.cli import main

if __name__ == "__main__":
    sys.exit(main(["reprocess", *sys.argv[1:]]))
