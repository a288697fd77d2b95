"""Capture-season features: idempotent re-runs (markers), manual regions, the review queue,
alerts and image location (S2 cells). Nothing here decides what a detector finds; the pipeline
(:mod:`redact.pipeline`) and the commands (:mod:`redact.commands`) call into it."""
