"""The object classes the system redacts, and the decisions it takes about them."""

from __future__ import annotations

import enum


class ObjectClass(enum.IntEnum):
    """Classes redact knows. Values are the ``class_id`` stored in :class:`Detections`."""

    FACE = 0
    LICENSE_PLATE = 1

    @classmethod
    def parse(cls, name: str) -> ObjectClass:
        """Parse ``"face"`` / ``"license_plate"`` (case-insensitive; ``plate`` is accepted)."""
        key = name.strip().lower().replace("-", "_").replace(" ", "_")
        aliases = {"plate": "license_plate", "licence_plate": "license_plate", "faces": "face"}
        key = aliases.get(key, key)
        try:
            return cls[key.upper()]
        except KeyError:
            valid = ", ".join(c.label for c in cls)
            raise ValueError(f"unknown object class {name!r} (expected one of: {valid})") from None

    @property
    def label(self) -> str:
        return self.name.lower()


class Decision(enum.Enum):
    """What the pipeline does with a merged detection."""

    BLUR = "blur"  # score >= blur threshold
    REVIEW = "review"  # review <= score < blur: blurred AND listed for human review
    DROPPED = "dropped"  # floor <= score < review: kept in the manifest only, not blurred
    MANUAL = "manual"  # a region reported by a person: always blurred

    @property
    def blurs(self) -> bool:
        return self is not Decision.DROPPED


class Reason(enum.Enum):
    """Why a candidate got its decision (the manifest's ``reason``; with a post-processor
    the score compared is the final one)."""

    ABOVE_BLUR = "above_blur"  # score >= the class's blur threshold: blurred
    REVIEW_BAND = "review_band"  # review <= score < blur: blurred and queued for review
    BELOW_REVIEW = "below_review"  # floor <= score < review: recorded, not blurred
    SIZE_PRIOR = "size_prior"  # a giant box below giant_min_score: dropped
    MANUAL_REGION = "manual_region"  # a region reported by a person: blurred


class Projection(enum.Enum):
    """How an input image maps to directions."""

    AUTO = "auto"
    EQUIRECTANGULAR = "equirectangular"
    PERSPECTIVE = "perspective"
