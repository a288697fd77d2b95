"""The detector canary's cost per worker start, with the shipped config and model.

Prints the median of N fresh opens: opening the model, running the canary, and the handler's
``load_model`` (open + canary: what each Beam worker pays once). Usage:
``python scripts/canary_cost.py [--repeat 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from redact.cli import load_config
from redact.detection import ModelRegistry, make_detector_handler
from redact.detection.canary import blur_thresholds, load_canary, run_canary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    cfg = load_config(None)
    handler = make_detector_handler(cfg, ModelRegistry.load())
    opens, canaries, loads = [], [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        model = handler.open_model()
        t1 = time.perf_counter()
        report = run_canary(handler, model, load_canary(None), blur_thresholds(cfg))
        t2 = time.perf_counter()
        report.raise_if_failed()
        opens.append(t1 - t0)
        canaries.append(t2 - t1)
        t3 = time.perf_counter()
        handler.load_model()
        loads.append(time.perf_counter() - t3)
    med = statistics.median
    print(
        f"open {med(opens):.3f} s, canary {med(canaries):.3f} s, "
        f"load_model (open + canary) {med(loads):.3f} s (median of {args.repeat})"
    )


if __name__ == "__main__":
    main()
