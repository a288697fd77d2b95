"""Report entry point: ``python -m pipelines.report_apply_job --output DST [options]``
(``redact report apply``: republish the images with new manual regions now). Beam/Dataflow
options pass through as for :mod:`pipelines.redact_job`."""

from __future__ import annotations

import sys

from redact.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", "apply", *sys.argv[1:]]))
