"""The run-level circuit breaker: publication waits until the run's detection is complete and
stops when the run looks broken (config ``breaker``, :class:`redact.config.BreakerConfig`).

Every processed image (admitted, not skipped, recognised as an image) adds one
:class:`Tally`; the run's sum decides a :class:`BreakerState`, a singleton side input of
the publishing step, so no image is published before every image has been detected and
judged. Bounds are absolute, not relative to the run's own median: a run where the detector
finds nothing anywhere must not look normal to itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import apache_beam as beam

from redact.config import BreakerConfig

# Reasons of files that are not images at all: a folder of sidecars says nothing about the
# detector, so they count neither way.
NOT_IMAGES = frozenset({"unknown_format", "empty"})


@dataclass(frozen=True)
class Tally:
    """Counts over processed images."""

    images: int = 0
    quarantined: int = 0
    no_candidates: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.images + other.images,
            self.quarantined + other.quarantined,
            self.no_candidates + other.no_candidates,
        )


@dataclass(frozen=True)
class BreakerState:
    """``open``: publication is stopped; ``reason`` says why (one line, for the summary)."""

    open: bool
    reason: str
    tally: Tally


def tally_of_failed(row: dict) -> Tally:
    """One quarantined image (a failed manifest row); files that are not images count zero."""
    if row.get("error_reason") in NOT_IMAGES:
        return Tally()
    return Tally(images=1, quarantined=1)


def tally_of_detected(n_candidates: int) -> Tally:
    """One fully detected image with ``n_candidates`` raw detections over all its tiles."""
    return Tally(images=1, no_candidates=int(n_candidates == 0))


def judge(tally: Tally, cfg: BreakerConfig) -> BreakerState:
    """The breaker's decision on a run's tally."""
    n = tally.images
    if n < cfg.min_images:
        return BreakerState(False, f"not judged: {n} image(s) < breaker.min_images", tally)
    q, e = tally.quarantined / n, tally.no_candidates / n
    if q > cfg.max_quarantined_share:
        return BreakerState(
            True,
            f"{tally.quarantined} of {n} images quarantined ({q:.0%} > "
            f"breaker.max_quarantined_share {cfg.max_quarantined_share:.0%})",
            tally,
        )
    if e > cfg.max_no_candidate_share:
        return BreakerState(
            True,
            f"no candidate at all on {tally.no_candidates} of {n} images ({e:.0%} > "
            f"breaker.max_no_candidate_share {cfg.max_no_candidate_share:.0%}): is the detector "
            "broken?",
            tally,
        )
    return BreakerState(
        False,
        f"closed: {tally.quarantined} quarantined, {tally.no_candidates} without candidates of {n}",
        tally,
    )


class SumTallies(beam.CombineFn):
    """Sum :class:`Tally` elements (an empty run sums to ``Tally()``)."""

    def create_accumulator(self) -> Tally:
        return Tally()

    def add_input(self, acc: Tally, t: Tally) -> Tally:
        return acc + t

    def merge_accumulators(self, accs: Iterable[Tally]) -> Tally:
        out = Tally()
        for a in accs:
            out = out + a
        return out

    def extract_output(self, acc: Tally) -> Tally:
        return acc
