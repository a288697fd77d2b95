"""Capture-season features: idempotent re-runs (:mod:`~redact.season.markers`), manual regions
(:mod:`~redact.season.manual`) and republishing them (:mod:`~redact.season.republish`), the
review queue (:mod:`~redact.season.review`), alerts (:mod:`~redact.season.alerts`), image
location and S2 cells (:mod:`~redact.season.location`, :mod:`~redact.season.cells`). Nothing
here decides what a detector finds; the pipeline (:mod:`redact.pipeline`) and the commands
(:mod:`redact.commands`) call into it."""
