"""Minimal EXIF (TIFF structure) reading and privacy sanitising.

EXIF blocks are TIFF files: a byte-order header, IFD0 (the main image), sub-IFDs (Exif, GPS,
Interoperability) and an optional IFD1 holding a *thumbnail*: an unblurred copy of the image.
:func:`sanitize_exif` removes every embedded preview **in place** (offsets of the kept tags do
not move): it unlinks IFD1 and zeroes it and its image data, zeroes JPEG/strip image data of
any other IFD (SubIFDs previews) and zeroes the MakerNote (vendor previews live there). A
block that cannot be parsed safely is dropped (``None``): recall first.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# TIFF field type -> size in bytes of one value.
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}

TAG_ORIENTATION = 0x0112
TAG_STRIP_OFFSETS = 0x0111
TAG_STRIP_BYTE_COUNTS = 0x0117
TAG_JPEG_OFFSET = 0x0201  # JPEGInterchangeFormat
TAG_JPEG_LENGTH = 0x0202  # JPEGInterchangeFormatLength
TAG_SUB_IFDS = 0x014A
TAG_EXIF_IFD = 0x8769
TAG_GPS_IFD = 0x8825
TAG_INTEROP_IFD = 0xA005
TAG_MAKER_NOTE = 0x927C

_POINTER_TAGS = (TAG_EXIF_IFD, TAG_GPS_IFD, TAG_INTEROP_IFD, TAG_SUB_IFDS)
_MAX_IFDS = 64
_MAX_ENTRIES = 4096


class ExifParseError(ValueError):
    """The TIFF structure is malformed."""


@dataclass(frozen=True)
class _Entry:
    tag: int
    type: int
    count: int
    value_pos: int  # absolute offset of the value bytes in the TIFF block
    size: int  # total size of the value in bytes


def _header(tiff: bytes) -> tuple[str, int]:
    """Byte order (``"<"``/``">"``) and the IFD0 offset."""
    if len(tiff) < 8:
        raise ExifParseError("TIFF header too short")
    if tiff[:2] == b"II":
        e = "<"
    elif tiff[:2] == b"MM":
        e = ">"
    else:
        raise ExifParseError("bad TIFF byte order")
    magic, off = struct.unpack(e + "HI", tiff[2:8])
    if magic != 42:
        raise ExifParseError("bad TIFF magic")
    return e, off


def _read_ifd(tiff: bytes, e: str, off: int) -> tuple[list[_Entry], int, int]:
    """Entries of the IFD at ``off``, the position of its next-IFD pointer, and that pointer."""
    if off < 8 or off + 2 > len(tiff):
        raise ExifParseError(f"IFD offset {off} out of range")
    (n,) = struct.unpack(e + "H", tiff[off : off + 2])
    if n > _MAX_ENTRIES:
        raise ExifParseError("implausible IFD entry count")
    end = off + 2 + 12 * n
    if end + 4 > len(tiff):
        raise ExifParseError("IFD runs past the end")
    entries = []
    for i in range(n):
        p = off + 2 + 12 * i
        tag, typ, count = struct.unpack(e + "HHI", tiff[p : p + 8])
        size = _TYPE_SIZE.get(typ, 1) * count
        if size <= 4:
            value_pos = p + 8
        else:
            (value_pos,) = struct.unpack(e + "I", tiff[p + 8 : p + 12])
            if value_pos + size > len(tiff):
                raise ExifParseError(f"tag 0x{tag:04x} value out of range")
        entries.append(_Entry(tag, typ, count, value_pos, size))
    (nxt,) = struct.unpack(e + "I", tiff[end : end + 4])
    return entries, end, nxt


def _ints(tiff: bytes | bytearray, e: str, entry: _Entry) -> list[int]:
    """Integer values of a SHORT/LONG/IFD entry."""
    fmt = {3: "H", 4: "I", 13: "I"}.get(entry.type)
    if fmt is None:
        raise ExifParseError(f"tag 0x{entry.tag:04x}: not an integer type")
    raw = bytes(tiff[entry.value_pos : entry.value_pos + entry.size])
    return list(struct.unpack(e + fmt * entry.count, raw))


def exif_orientation(tiff: bytes) -> int:
    """EXIF Orientation (1..8) from IFD0 of a TIFF/EXIF block; 1 when absent or invalid."""
    try:
        e, off = _header(tiff)
        entries, _, _ = _read_ifd(tiff, e, off)
        for ent in entries:
            if ent.tag == TAG_ORIENTATION and ent.count >= 1:
                value = _ints(tiff, e, ent)[0]
                return value if 1 <= value <= 8 else 1
    except (ExifParseError, struct.error):
        return 1
    return 1


def sanitize_exif(tiff: bytes) -> bytes | None:
    """Return the TIFF/EXIF block with every embedded preview removed, or ``None``.

    IFD1 is unlinked and zeroed together with its thumbnail; JPEG/strip image data referenced
    from any other IFD and the MakerNote are zeroed. Offsets of everything kept are unchanged.
    A zero tail left by the removal is trimmed. ``None`` means the block is malformed and must
    be dropped.
    """
    try:
        return _sanitize(tiff)
    except (ExifParseError, struct.error):
        return None


def _zero(buf: bytearray, start: int, length: int) -> None:
    if start < 0 or length < 0 or start + length > len(buf):
        raise ExifParseError("image data out of range")
    buf[start : start + length] = bytes(length)


def _zero_image_data(buf: bytearray, e: str, entries: list[_Entry]) -> None:
    """Zero JPEG (0x0201/0x0202) and strip (0x0111/0x0117) image data referenced by an IFD."""
    by_tag = {ent.tag: ent for ent in entries}
    if TAG_JPEG_OFFSET in by_tag:
        start = _ints(buf, e, by_tag[TAG_JPEG_OFFSET])[0]
        if TAG_JPEG_LENGTH not in by_tag:
            raise ExifParseError("JPEG thumbnail without length")
        length = _ints(buf, e, by_tag[TAG_JPEG_LENGTH])[0]
        if start > len(buf):
            raise ExifParseError("thumbnail offset out of range")
        _zero(buf, start, min(length, len(buf) - start))  # a cut-short thumbnail is common
    if TAG_STRIP_OFFSETS in by_tag:
        if TAG_STRIP_BYTE_COUNTS not in by_tag:
            raise ExifParseError("strips without byte counts")
        offsets = _ints(buf, e, by_tag[TAG_STRIP_OFFSETS])
        counts = _ints(buf, e, by_tag[TAG_STRIP_BYTE_COUNTS])
        if len(offsets) != len(counts):
            raise ExifParseError("strip offsets/counts mismatch")
        for s, c in zip(offsets, counts, strict=True):
            _zero(buf, s, c)


def _sanitize(tiff: bytes) -> bytes:
    buf = bytearray(tiff)
    e, ifd0 = _header(tiff)
    needed_end = 8
    _, next_pos, ifd1 = _read_ifd(tiff, e, ifd0)
    # Walk IFD0 and every sub-IFD it points to (breadth first, bounded).
    queue = [ifd0]
    seen: set[int] = set()
    while queue:
        off = queue.pop()
        if off in seen:
            continue
        seen.add(off)
        if len(seen) > _MAX_IFDS:
            raise ExifParseError("too many IFDs")
        entries, end, _ = _read_ifd(tiff, e, off)
        needed_end = max(needed_end, end + 4)
        _zero_image_data(buf, e, entries)
        for ent in entries:
            if ent.tag == TAG_MAKER_NOTE:
                _zero(buf, ent.value_pos, ent.size)
            elif ent.size > 4:
                needed_end = max(needed_end, ent.value_pos + ent.size)
            if ent.tag in _POINTER_TAGS and ent.type in (4, 13):
                queue.extend(o for o in _ints(tiff, e, ent) if o)
    # IFD1 (and any chain after it): zero the directory and its image data, then unlink.
    chain = ifd1
    hops = 0
    while chain:
        hops += 1
        if hops > _MAX_IFDS:
            raise ExifParseError("IFD chain loop")
        entries, end, nxt = _read_ifd(tiff, e, chain)
        _zero_image_data(buf, e, entries)
        for ent in entries:
            if ent.size > 4:
                _zero(buf, ent.value_pos, ent.size)
        _zero(buf, chain, end + 4 - chain)
        chain = nxt
    buf[next_pos : next_pos + 4] = bytes(4)
    # Trim a tail that is now all zeros and referenced by nothing kept.
    stripped = len(buf.rstrip(b"\x00"))
    return bytes(buf[: max(stripped, needed_end)])


# --- capture information (GPS, time, camera): read-only, additive --------------------------------

TAG_MAKE = 0x010F
TAG_MODEL = 0x0110
TAG_DATETIME_ORIGINAL = 0x9003
GPS_LAT_REF, GPS_LAT, GPS_LNG_REF, GPS_LNG = 0x0001, 0x0002, 0x0003, 0x0004
GPS_TIME, GPS_DATE = 0x0007, 0x001D


@dataclass(frozen=True)
class CaptureInfo:
    """Where, when and with what an image was taken, as far as its EXIF says.

    ``latitude``/``longitude`` in signed decimal degrees (None when absent or invalid);
    ``captured_at`` ISO 8601 (``...Z`` when from GPS date/time, naive local time from
    DateTimeOriginal otherwise, "" when absent); ``camera`` "Make Model" ("" when absent).
    """

    latitude: float | None = None
    longitude: float | None = None
    captured_at: str = ""
    camera: str = ""


def _ascii(tiff: bytes, entry: _Entry) -> str:
    raw = tiff[entry.value_pos : entry.value_pos + entry.size]
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


def _rationals(tiff: bytes, e: str, entry: _Entry) -> list[float]:
    """Values of a RATIONAL (5) / SRATIONAL (10) entry (a zero denominator is an error)."""
    if entry.type not in (5, 10):
        raise ExifParseError(f"tag 0x{entry.tag:04x}: not a rational")
    fmt = e + ("II" if entry.type == 5 else "ii") * entry.count
    vals = struct.unpack(fmt, tiff[entry.value_pos : entry.value_pos + entry.size])
    if any(d == 0 for d in vals[1::2]):
        raise ExifParseError(f"tag 0x{entry.tag:04x}: zero denominator")
    return [n / d for n, d in zip(vals[0::2], vals[1::2], strict=True)]


def _degrees(tiff: bytes, e: str, value: _Entry, ref: _Entry | None, neg: str) -> float:
    dms = _rationals(tiff, e, value)
    if len(dms) != 3:
        raise ExifParseError("GPS coordinate needs 3 rationals")
    deg = dms[0] + dms[1] / 60.0 + dms[2] / 3600.0
    return -deg if ref is not None and _ascii(tiff, ref).upper() == neg else deg


def exif_capture_info(tiff: bytes) -> CaptureInfo:
    """GPS position, capture time and camera from a TIFF/EXIF block (never raises).

    A malformed or out-of-range GPS position, or exactly (0, 0) (written without a fix),
    yields ``latitude = longitude = None``; an all-zero date yields ``captured_at = ""``; the
    fields are read independently.
    """
    try:
        e, off = _header(tiff)
        ifd0, _, _ = _read_ifd(tiff, e, off)
    except (ExifParseError, struct.error):
        return CaptureInfo()
    tags = {ent.tag: ent for ent in ifd0}
    camera = " ".join(
        _ascii(tiff, tags[t]) for t in (TAG_MAKE, TAG_MODEL) if t in tags and tags[t].type == 2
    ).strip()
    captured_at = ""
    lat = lng = None
    try:
        if TAG_EXIF_IFD in tags:
            sub, _, _ = _read_ifd(tiff, e, _ints(tiff, e, tags[TAG_EXIF_IFD])[0])
            for ent in sub:
                if ent.tag == TAG_DATETIME_ORIGINAL and ent.type == 2:
                    d, _, t = _ascii(tiff, ent).partition(" ")
                    if d and t:
                        captured_at = f"{d.replace(':', '-')}T{t}"
    except (ExifParseError, struct.error):
        captured_at = ""
    try:
        if TAG_GPS_IFD in tags:
            gps_entries, _, _ = _read_ifd(tiff, e, _ints(tiff, e, tags[TAG_GPS_IFD])[0])
            gps = {ent.tag: ent for ent in gps_entries}
            if GPS_LAT in gps and GPS_LNG in gps:
                lat = _degrees(tiff, e, gps[GPS_LAT], gps.get(GPS_LAT_REF), "S")
                lng = _degrees(tiff, e, gps[GPS_LNG], gps.get(GPS_LNG_REF), "W")
                # Out of range, or exactly (0, 0): receivers write "null island" without a fix.
                if not (-90.0 <= lat <= 90.0 and -180.0 <= lng <= 180.0) or lat == lng == 0.0:
                    lat = lng = None
            if GPS_DATE in gps and GPS_TIME in gps and gps[GPS_DATE].type == 2:
                hms = _rationals(tiff, e, gps[GPS_TIME])
                date = _ascii(tiff, gps[GPS_DATE]).replace(":", "-")
                if len(hms) == 3 and len(date) == 10:
                    h, m, s = int(hms[0]), int(hms[1]), hms[2]
                    captured_at = f"{date}T{h:02d}:{m:02d}:{s:06.3f}Z"
    except (ExifParseError, struct.error):
        lat = lng = None
    if captured_at.startswith("0000"):  # an unset clock ("0000:00:00 00:00:00")
        captured_at = ""
    return CaptureInfo(lat, lng, captured_at, camera)
