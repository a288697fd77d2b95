"""The project's error types: what quarantines an image, what the user must fix."""

from __future__ import annotations

import enum


class Stage(enum.Enum):
    READ = "read"
    DECODE = "decode"
    TILE = "tile"
    INFER = "infer"
    MERGE = "merge"
    BLUR = "blur"
    ENCODE = "encode"
    WRITE = "write"


class ImageError(Exception):
    """This image cannot be processed; it must be quarantined, never published unblurred.

    ``reason`` is a short machine-readable code (e.g. ``"truncated"``, ``"unsupported_format"``),
    ``str(err)`` a one-line human explanation.
    """

    def __init__(self, reason: str, message: str, stage: Stage = Stage.DECODE) -> None:
        super().__init__(message)
        self.reason = reason
        self.stage = stage


class UsageError(Exception):
    """A bad argument or set-up the user can fix: reported in one line, exit status 2."""


class ConfigError(ValueError):
    """A configuration file or value is invalid (reported in one line, exit status 2)."""
