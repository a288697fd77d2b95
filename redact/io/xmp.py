"""XMP privacy scrubbing: remove embedded images, keep everything else byte-identical.

XMP may carry unblurred copies of the picture: ``xmp:Thumbnails`` (``xmpGImg:image``,
base64 JPEG), Google's ``GImage:Data`` (the original of a Lens Blur / portrait photo) and
``GDepth:Data`` / ``GDepth:Confidence`` (depth maps). They are removed; the panorama tags
(``GPano:*``) and all other properties are left untouched. A packet with nothing to remove is
returned unchanged (same bytes).
"""

from __future__ import annotations

import re

# Property names (with their customary prefixes) whose values are embedded images.
IMAGE_PROPERTIES: tuple[str, ...] = (
    "xmp:Thumbnails",
    "xapGImg:image",
    "xmpGImg:image",
    "GImage:Data",
    "GDepth:Data",
    "GDepth:Confidence",
)

_names = "|".join(re.escape(n) for n in IMAGE_PROPERTIES)
# <prefix:Name ...>...</prefix:Name> (element form, possibly nested rdf:Alt/li), and
# <prefix:Name .../> (empty element), and  prefix:Name="..." (attribute form).
_ELEMENT = re.compile(rf"<({_names})\b[^>]*?(?:/>|>.*?</\1\s*>)".encode(), re.DOTALL)
_ATTRIBUTE = re.compile(rf"\s(?:{_names})\s*=\s*(?:\"[^\"]*\"|'[^']*')".encode())


def contains_embedded_image(xmp: bytes) -> bool:
    """True if the XMP text names any property that holds an image."""
    return any(n.encode() in xmp for n in IMAGE_PROPERTIES)


def scrub_xmp(xmp: bytes) -> bytes:
    """Remove embedded-image properties from an XMP packet (UTF-8 bytes).

    Returns the input object itself when nothing had to be removed.
    """
    if not contains_embedded_image(xmp):
        return xmp
    out = _ELEMENT.sub(b"", xmp)
    out = _ATTRIBUTE.sub(b"", out)
    return out


_GPANO_PROJECTION = re.compile(
    rb"GPano:ProjectionType\s*(?:=\s*[\"']\s*|>\s*)([A-Za-z_-]+)", re.IGNORECASE
)


def gpano_projection(xmp: bytes | None) -> str | None:
    """The lower-cased ``GPano:ProjectionType`` of an XMP packet (attribute or element form),
    or ``None`` when the packet has none."""
    if not xmp:
        return None
    m = _GPANO_PROJECTION.search(xmp)
    return m.group(1).decode("ascii").lower() if m else None
