"""What metadata the published copy may carry: :class:`MetadataPolicy`, and ICC checking.

The policy is an ALLOWLIST (see :mod:`redact.io.codec` for the whole list): everything not
named here is dropped. This dataclass is the one source of its defaults; the config's
``metadata:`` section maps onto it field by field.

ICC profiles are kept only when they look like real profiles (:func:`validate_icc`): a
valid header (size, ``acsp`` signature, version, data colour space matching the published
pixels), a tag table whose entries lie inside the profile, no embedded picture; bytes not
referenced by the header or a tag are zeroed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from redact.errors import ConfigError
from redact.io.exif import DEFAULT_EXIF_GROUPS, EXIF_GROUPS
from redact.io.leakscan import payload_images
from redact.io.xmp import GPANO_NS, IMAGE_NAMESPACES, MAX_XMP_BYTES


@dataclass(frozen=True)
class MetadataPolicy:
    """Which metadata survives into the published copy (plain types only).

    Attributes:
        exif_groups: EXIF tag groups rebuilt into the copy (:data:`redact.io.exif.EXIF_GROUPS`:
            ``orientation``, ``capture_time``, ``gps``, ``camera``, ``size``, ``copyright``).
            When ``orientation`` is not kept the pixels are stored upright.
        xmp_namespaces: XMP namespace URIs whose simple properties are kept (default GPano
            only). Namespaces that carry images (GImage, GDepth, xmp thumbnails, ...) are
            refused.
        keep_icc: keep a validated ICC colour profile.
        keep_jpeg_comments: keep JPEG COM segments that hold no embedded picture.
        png_text_keywords: PNG tEXt/zTXt/iTXt keywords whose text is kept (re-written
            uncompressed) when it holds no embedded picture.
        max_xmp_bytes: larger XMP packets are dropped unparsed.
        max_icc_bytes: larger ICC profiles are dropped (also bounds iCCP inflation).
    """

    exif_groups: tuple[str, ...] = DEFAULT_EXIF_GROUPS
    xmp_namespaces: tuple[str, ...] = (GPANO_NS,)
    keep_icc: bool = True
    keep_jpeg_comments: bool = False
    png_text_keywords: tuple[str, ...] = ()
    max_xmp_bytes: int = MAX_XMP_BYTES
    max_icc_bytes: int = 4 << 20

    def _validate(self, where: str) -> None:
        """Raise :class:`ConfigError` naming the offending key."""
        for name in ("exif_groups", "xmp_namespaces", "png_text_keywords"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}.{name}: expected a list of strings")
        for g in self.exif_groups:
            if g not in EXIF_GROUPS:
                raise ConfigError(
                    f"{where}.exif_groups: unknown group {g!r} (known: {sorted(EXIF_GROUPS)})"
                )
        for ns in self.xmp_namespaces:
            if not ns or any(c.isspace() for c in ns) or ":" not in ns:
                raise ConfigError(f"{where}.xmp_namespaces: {ns!r} is not a namespace URI")
            if ns in IMAGE_NAMESPACES:
                raise ConfigError(
                    f"{where}.xmp_namespaces: {ns!r} carries images or structure; not allowed"
                )
        for kw in self.png_text_keywords:
            if not 1 <= len(kw) <= 79 or not all(0x20 <= ord(c) <= 0x7E for c in kw):
                raise ConfigError(f"{where}.png_text_keywords: {kw!r} is not a PNG keyword")
            if kw.startswith("XML:com.adobe.xmp") or kw.lower().startswith("raw profile type"):
                raise ConfigError(
                    f"{where}.png_text_keywords: {kw!r} is XMP or a raw profile dump; "
                    "use xmp_namespaces/exif_groups"
                )
        for name in ("keep_icc", "keep_jpeg_comments"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{where}.{name}: expected true or false")
        for name, hi in (("max_xmp_bytes", 16 << 20), ("max_icc_bytes", 64 << 20)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= hi:
                raise ConfigError(f"{where}.{name}: {value!r} is outside [1024, {hi}]")


# --- ICC ---------------------------------------------------------------------------------------

ICC_HEADER = 128
_MAX_ICC_TAGS = 1024


def validate_icc(profile: bytes, color_space: bytes, max_bytes: int) -> bytes | None:
    """A checked copy of an ICC profile, or ``None`` to drop it.

    ``color_space`` is the 4-byte ICC data colour space the published pixels use
    (``b"RGB "`` or ``b"GRAY"``). The profile must be at most ``max_bytes``, have a size field
    <= its length (bytes beyond the declared size are cut), the ``acsp`` signature, major
    version 2, 4 or 5, a tag table of at most 1024 entries lying inside the profile, and hold
    no embedded picture (:func:`redact.io.leakscan.payload_images`). Bytes referenced by
    neither the header, the tag table nor a tag are zeroed. Never raises.
    """
    profile = bytes(profile)
    if len(profile) < ICC_HEADER + 4 or len(profile) > max_bytes:
        return None
    (size,) = struct.unpack(">I", profile[:4])
    if size < ICC_HEADER + 4 or size > len(profile):
        return None
    profile = profile[:size]
    if profile[36:40] != b"acsp" or profile[8] not in (2, 4, 5):
        return None
    if profile[16:20] != color_space:
        return None
    (n,) = struct.unpack(">I", profile[ICC_HEADER : ICC_HEADER + 4])
    table_end = ICC_HEADER + 4 + 12 * n
    if n == 0 or n > _MAX_ICC_TAGS or table_end > size:
        return None
    used = np.zeros(size, dtype=bool)  # referenced bytes
    used[:table_end] = True
    for i in range(n):
        p = ICC_HEADER + 4 + 12 * i
        _sig, off, length = struct.unpack(">4sII", profile[p : p + 12])
        if off < table_end or length == 0 or off + length > size:
            return None
        used[off : off + length] = True
    out = np.where(used, np.frombuffer(profile, dtype=np.uint8), 0).astype(np.uint8).tobytes()
    if payload_images(out):
        return None
    return out
