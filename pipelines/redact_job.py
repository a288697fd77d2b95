"""Beam job entry point: ``python -m pipelines.redact_job --input SRC --output DST [options]``.

A thin wrapper over ``redact run`` so Dataflow templates / schedulers can call a module.
Standard Beam/Dataflow options pass through, e.g.::

    python -m pipelines.redact_job --input gs://B/season/2024 --output gs://B/published/2024 \\
        --catalog gs://B/season/2024/catalog.parquet \\
        --runner DataflowRunner --project P --region europe-west4 \\
        --temp_location gs://B/tmp --sdk_container_image REGION-docker.pkg.dev/P/redact/worker:TAG \\
        --sdk_location container --experiments use_runner_v2 --machine_type n2-standard-8

The inference step carries the accelerator resource hint (``--accelerator``, default
``season.accelerator`` of the config), so only its workers get GPUs (docs/season.md).
"""

from __future__ import annotations

import sys

from redact.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
