"""Which images are equirectangular panoramas (projection ``auto``)."""

from __future__ import annotations

import pytest

from redact.classes import Projection
from redact.config import IOConfig
from redact.io.xmp import gpano_projection
from redact.pipeline import resolve_projection

MIN_EQUIRECT_WIDTH = IOConfig().equirect_min_width  # the shipped default

EQ, PERSP, AUTO = Projection.EQUIRECTANGULAR, Projection.PERSPECTIVE, Projection.AUTO
_NS = (
    b'xmlns:x="adobe:ns:meta/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
    b'xmlns:GPano="http://ns.google.com/photos/1.0/panorama/"'
)


def _packet(description: bytes) -> bytes:
    return b"<x:xmpmeta " + _NS + b"><rdf:RDF>" + description + b"</rdf:RDF></x:xmpmeta>"


ATTR = _packet(
    b'<rdf:Description GPano:ProjectionType="equirectangular" GPano:UsePanoramaViewer="True"/>'
)
ELEM = _packet(
    b"<rdf:Description><GPano:ProjectionType> Equirectangular </GPano:ProjectionType>"
    b"</rdf:Description>"
)
CYL = _packet(b"<rdf:Description GPano:ProjectionType='cylindrical'/>")
# Matched by namespace URI, not by prefix: another prefix for GPano is GPano; "GPano:" bound
# to another namespace is not.
OTHER_PREFIX = ATTR.replace(b"GPano", b"p")
WRONG_NS = _packet(b'<rdf:Description GPano:ProjectionType="equirectangular"/>').replace(
    b"photos/1.0/panorama/", b"photos/1.0/not-panorama/"
)


@pytest.mark.parametrize(
    ("xmp", "expected"),
    [
        (ATTR, "equirectangular"),
        (ELEM, "equirectangular"),
        (CYL, "cylindrical"),
        (OTHER_PREFIX, "equirectangular"),
        (WRONG_NS, None),
        (b"<x/>", None),
        (b"GPano:ProjectionType='equirectangular' (not XML)", None),
        (None, None),
    ],
)
def test_gpano_projection(xmp, expected):
    assert gpano_projection(xmp) == expected


@pytest.mark.parametrize(
    ("w", "h", "xmp", "expected"),
    [
        (8000, 4000, None, EQ),
        (MIN_EQUIRECT_WIDTH, MIN_EQUIRECT_WIDTH // 2, None, EQ),
        (400, 200, None, PERSP),  # a small 2:1 photo (MaskON has such crowd shots)
        (1998, 999, None, PERSP),
        (400, 200, ATTR, EQ),  # tagged: trusted whatever the size
        (8000, 4000, CYL, PERSP),  # tagged as another projection
        (8000, 3000, ATTR, PERSP),  # a cropped panorama is not a full sphere
        (6000, 4000, None, PERSP),
        (8000, 4000 + 41, None, PERSP),  # outside the 1 % aspect tolerance
    ],
)
def test_auto_projection(w, h, xmp, expected):
    assert resolve_projection(AUTO, w, h, xmp, MIN_EQUIRECT_WIDTH) is expected


def test_explicit_projection_wins_and_min_width_is_configurable():
    assert resolve_projection(PERSP, 8000, 4000, ATTR, MIN_EQUIRECT_WIDTH) is PERSP
    assert resolve_projection(EQ, 300, 100, None, MIN_EQUIRECT_WIDTH) is EQ
    assert resolve_projection(AUTO, 512, 256, None, 64) is EQ
    assert resolve_projection(AUTO, 512, 256, None, MIN_EQUIRECT_WIDTH) is PERSP
