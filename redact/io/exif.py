"""EXIF (TIFF structure) reading, and rebuilding by allowlist.

EXIF blocks are TIFF files: a byte-order header, IFD0 (the main image), sub-IFDs (Exif, GPS,
Interoperability), an optional IFD1 holding a *thumbnail* (an unblurred copy of the image),
MakerNotes (vendor previews), free-form comments, serial numbers, owner names, and whatever
else a writer put in unreferenced space. :func:`rebuild_exif` never patches that block: it
reads the few tags of the allowlist (:data:`EXIF_GROUPS`), validates each one's type, count
and value, and writes a FRESH TIFF block holding only those (IFD0, Exif IFD, GPS IFD; no IFD1,
no MakerNote, no unknown tag, no trailing data).

Groups (tag names as in the EXIF 2.32 standard):

``orientation``
    Orientation (IFD0 0x0112), SHORT 1..8.
``capture_time``
    DateTime (0x0132), DateTimeOriginal/Digitized (0x9003/0x9004), OffsetTime,
    OffsetTimeOriginal/Digitized (0x9010..0x9012), SubSecTime, SubSecTimeOriginal/Digitized
    (0x9290..0x9292).
``gps``
    GPS IFD: GPSVersionID, Latitude(Ref), Longitude(Ref), AltitudeRef, Altitude, TimeStamp,
    DateStamp, Track(Ref), ImgDirection(Ref), MapDatum, HPositioningError.
``camera``
    Make, Model.
``size``
    PixelXDimension/PixelYDimension (Exif IFD), XResolution, YResolution, ResolutionUnit.
``copyright`` (not in the default policy)
    Artist, Copyright.

Never written whatever the policy: thumbnails (IFD1), MakerNote, UserComment, serial numbers
(BodySerialNumber, LensSerialNumber, CameraSerialNumber), OwnerName/CameraOwnerName,
ImageUniqueID, and every tag not listed above. The generated block also holds ExifVersion
(``0232``) in a non-empty Exif IFD and GPSVersionID in a non-empty GPS IFD.

Robustness: a block whose structure (header, IFD0, Exif/GPS IFD tables) cannot be read is
dropped entirely (``None``); a single tag whose value is out of range, of the wrong type or
count, or not plain printable ASCII is dropped. Nothing here raises for any input bytes.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from redact.io.leakscan import payload_images

# TIFF field type -> size in bytes of one value.
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED = 1, 2, 3, 4, 5, 7

TAG_ORIENTATION = 0x0112
TAG_EXIF_IFD = 0x8769
TAG_GPS_IFD = 0x8825
TAG_EXIF_VERSION = 0x9000
TAG_GPS_VERSION = 0x0000
TAG_MAKE = 0x010F
TAG_MODEL = 0x0110
TAG_DATETIME_ORIGINAL = 0x9003

_MAX_ENTRIES = 4096
MAX_ASCII = 256  # longest text value ever kept (characters)


class ExifParseError(ValueError):
    """The TIFF structure is malformed."""


@dataclass(frozen=True)
class _Entry:
    tag: int
    type: int
    count: int
    value_pos: int  # absolute offset of the value bytes in the TIFF block; -1: out of range
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
    """Entries of the IFD at ``off``, the position of its next-IFD pointer, and that pointer.

    Raises :class:`ExifParseError` if the table itself is out of range; an entry whose value
    lies outside the block gets ``value_pos = -1`` (unreadable, callers skip it).
    """
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
            if value_pos < 8 or value_pos + size > len(tiff):
                value_pos = -1
        entries.append(_Entry(tag, typ, count, value_pos, size))
    (nxt,) = struct.unpack(e + "I", tiff[end : end + 4])
    return entries, end, nxt


def _first(entries: list[_Entry]) -> dict[int, _Entry]:
    """Tag -> its first readable entry."""
    out: dict[int, _Entry] = {}
    for ent in entries:
        if ent.value_pos >= 0 and ent.tag not in out:
            out[ent.tag] = ent
    return out


def _ints(tiff: bytes, e: str, entry: _Entry) -> list[int]:
    """Integer values of a BYTE/SHORT/LONG/IFD entry."""
    fmt = {1: "B", 3: "H", 4: "I", 13: "I"}.get(entry.type)
    if fmt is None or entry.value_pos < 0:
        raise ExifParseError(f"tag 0x{entry.tag:04x}: not a readable integer")
    raw = tiff[entry.value_pos : entry.value_pos + entry.size]
    return list(struct.unpack(e + fmt * entry.count, raw))


def exif_orientation(tiff: bytes) -> int:
    """EXIF Orientation (1..8) from IFD0 of a TIFF/EXIF block; 1 when absent or invalid.

    Lenient (like viewers): only IFD0 has to be readable.
    """
    try:
        e, off = _header(tiff)
        entries, _, _ = _read_ifd(tiff, e, off)
        ent = _first(entries).get(TAG_ORIENTATION)
        if ent is not None and ent.count >= 1 and ent.type in (SHORT, LONG):
            value = _ints(tiff, e, ent)[0]
            return value if 1 <= value <= 8 else 1
    except (ExifParseError, struct.error):
        return 1
    return 1


# --- the allowlist -----------------------------------------------------------------------------

_DATE_TIME = re.compile(r"[0-9 ]{4}:[0-9 ]{2}:[0-9 ]{2} [0-9 ]{2}:[0-9 ]{2}:[0-9 ]{2}")
_OFFSET = re.compile(r"[+-][0-9]{2}:[0-9]{2}|   :  ")
_SUBSEC = re.compile(r"[0-9 ]{1,9}")
_GPS_DATE = re.compile(r"[0-9]{4}:[0-9]{2}:[0-9]{2}")
_PRINTABLE = re.compile(r"[\x20-\x7e]+")


@dataclass(frozen=True)
class TagSpec:
    """One allowlisted tag: where it lives, what it may hold.

    ``types``: accepted TIFF types (the first one is written for integers); ``count``: exact
    value count (0: ASCII of at most ``max_len`` characters); ``values``: allowed integer
    range (inclusive) for BYTE/SHORT/LONG; ``pattern``: full-match regex for ASCII.
    """

    tag: int
    name: str
    ifd: str  # "ifd0", "exif" or "gps"
    types: tuple[int, ...]
    count: int = 1
    max_len: int = 0
    values: tuple[int, int] | None = None
    pattern: re.Pattern[str] | None = None


def _ascii(tag: int, name: str, ifd: str, max_len: int, pattern: str | None = None) -> TagSpec:
    return TagSpec(
        tag, name, ifd, (ASCII,), 0, max_len, None, re.compile(pattern) if pattern else None
    )


def _rat(tag: int, name: str, ifd: str, count: int = 1) -> TagSpec:
    return TagSpec(tag, name, ifd, (RATIONAL,), count)


EXIF_GROUPS: dict[str, tuple[TagSpec, ...]] = {
    "orientation": (TagSpec(TAG_ORIENTATION, "Orientation", "ifd0", (SHORT, LONG), 1, 0, (1, 8)),),
    "capture_time": (
        _ascii(0x0132, "DateTime", "ifd0", 19, _DATE_TIME.pattern),
        _ascii(0x9003, "DateTimeOriginal", "exif", 19, _DATE_TIME.pattern),
        _ascii(0x9004, "DateTimeDigitized", "exif", 19, _DATE_TIME.pattern),
        _ascii(0x9010, "OffsetTime", "exif", 6, _OFFSET.pattern),
        _ascii(0x9011, "OffsetTimeOriginal", "exif", 6, _OFFSET.pattern),
        _ascii(0x9012, "OffsetTimeDigitized", "exif", 6, _OFFSET.pattern),
        _ascii(0x9290, "SubSecTime", "exif", 9, _SUBSEC.pattern),
        _ascii(0x9291, "SubSecTimeOriginal", "exif", 9, _SUBSEC.pattern),
        _ascii(0x9292, "SubSecTimeDigitized", "exif", 9, _SUBSEC.pattern),
    ),
    "gps": (
        TagSpec(TAG_GPS_VERSION, "GPSVersionID", "gps", (BYTE,), 4, 0, (0, 9)),
        _ascii(0x0001, "GPSLatitudeRef", "gps", 1, "[NS]"),
        _rat(0x0002, "GPSLatitude", "gps", 3),
        _ascii(0x0003, "GPSLongitudeRef", "gps", 1, "[EW]"),
        _rat(0x0004, "GPSLongitude", "gps", 3),
        TagSpec(0x0005, "GPSAltitudeRef", "gps", (BYTE,), 1, 0, (0, 3)),
        _rat(0x0006, "GPSAltitude", "gps"),
        _rat(0x0007, "GPSTimeStamp", "gps", 3),
        _ascii(0x000E, "GPSTrackRef", "gps", 1, "[TM]"),
        _rat(0x000F, "GPSTrack", "gps"),
        _ascii(0x0010, "GPSImgDirectionRef", "gps", 1, "[TM]"),
        _rat(0x0011, "GPSImgDirection", "gps"),
        _ascii(0x0012, "GPSMapDatum", "gps", 32),
        _ascii(0x001D, "GPSDateStamp", "gps", 10, _GPS_DATE.pattern),
        _rat(0x001F, "GPSHPositioningError", "gps"),
    ),
    "camera": (
        _ascii(TAG_MAKE, "Make", "ifd0", 64),
        _ascii(TAG_MODEL, "Model", "ifd0", 64),
    ),
    "size": (
        _rat(0x011A, "XResolution", "ifd0"),
        _rat(0x011B, "YResolution", "ifd0"),
        TagSpec(0x0128, "ResolutionUnit", "ifd0", (SHORT,), 1, 0, (1, 3)),
        TagSpec(0xA002, "PixelXDimension", "exif", (SHORT, LONG), 1, 0, (1, 0xFFFFFFFF)),
        TagSpec(0xA003, "PixelYDimension", "exif", (SHORT, LONG), 1, 0, (1, 0xFFFFFFFF)),
    ),
    "copyright": (
        _ascii(0x013B, "Artist", "ifd0", MAX_ASCII),
        _ascii(0x8298, "Copyright", "ifd0", MAX_ASCII),
    ),
}
DEFAULT_EXIF_GROUPS: tuple[str, ...] = ("orientation", "capture_time", "gps", "camera", "size")

# Tags the rebuilt block may contain besides the groups' tags (structure).
STRUCTURE_TAGS: dict[str, frozenset[int]] = {
    "ifd0": frozenset({TAG_EXIF_IFD, TAG_GPS_IFD}),
    "exif": frozenset({TAG_EXIF_VERSION}),
    "gps": frozenset({TAG_GPS_VERSION}),
}


def allowed_tags(groups: tuple[str, ...]) -> dict[str, frozenset[int]]:
    """IFD name -> tags a block rebuilt with ``groups`` may hold (structure tags included).

    Raises ``KeyError`` for an unknown group name."""
    out = {k: set(v) for k, v in STRUCTURE_TAGS.items()}
    for g in groups:
        for spec in EXIF_GROUPS[g]:
            out[spec.ifd].add(spec.tag)
    return {k: frozenset(v) for k, v in out.items()}


# A kept value: (tag, type, count, packed-independent value: ints or ASCII bytes).
_Value = tuple[int, int, int, "tuple[int, ...] | bytes"]


def _read_value(tiff: bytes, e: str, ent: _Entry, spec: TagSpec) -> _Value | None:
    """The validated value of ``ent`` per ``spec``, or ``None`` (drop the tag)."""
    if ent.type not in spec.types or ent.value_pos < 0:
        return None
    raw = tiff[ent.value_pos : ent.value_pos + ent.size]
    if ent.type == ASCII:
        if ent.count == 0:
            return None
        text_b = raw.split(b"\x00", 1)[0]
        try:
            text = text_b.decode("ascii")
        except UnicodeDecodeError:
            return None
        if not text or len(text) > spec.max_len or not _PRINTABLE.fullmatch(text):
            return None
        if spec.pattern is not None and not spec.pattern.fullmatch(text):
            return None
        if payload_images(text_b):
            return None
        return (spec.tag, ASCII, len(text_b) + 1, text_b)
    if ent.count != spec.count:
        return None
    if ent.type == RATIONAL:
        vals = struct.unpack(e + "II" * ent.count, raw)
        return (spec.tag, RATIONAL, ent.count, tuple(vals))
    fmt = {BYTE: "B", SHORT: "H", LONG: "I"}[ent.type]
    ints = struct.unpack(e + fmt * ent.count, raw)
    if spec.values is not None and not all(spec.values[0] <= v <= spec.values[1] for v in ints):
        return None
    out_type = spec.types[0]
    if out_type == SHORT and any(v > 0xFFFF for v in ints):
        out_type = LONG
    return (spec.tag, out_type, ent.count, tuple(ints))


def _pack(e: str, value: _Value) -> bytes:
    _, typ, count, v = value
    if isinstance(v, bytes):
        return v + b"\x00"
    fmt = {BYTE: "B", SHORT: "H", LONG: "I", RATIONAL: "II", UNDEFINED: "B"}[typ]
    return struct.pack(e + fmt * count, *v)


def _layout(e: str, ifd0: list[_Value], exif: list[_Value], gps: list[_Value]) -> bytes:
    """Serialise IFD0, Exif IFD and GPS IFD, in that order (an empty sub-IFD is left out,
    IFD0 gets the pointers). Each IFD's value area follows it; everything starts on an even
    offset; no next-IFD (IFD1)."""

    def size(entries: list[_Value]) -> int:
        if not entries:
            return 0
        packed = (_pack(e, v) for v in entries)
        return 2 + 12 * len(entries) + 4 + sum(len(p) + len(p) % 2 for p in packed if len(p) > 4)

    pointers = [(TAG_EXIF_IFD, LONG, 1, (0,))] if exif else []
    pointers += [(TAG_GPS_IFD, LONG, 1, (0,))] if gps else []
    exif_off = 8 + size([*ifd0, *pointers])  # placeholder values: same size
    gps_off = exif_off + size(exif)
    where = {TAG_EXIF_IFD: exif_off, TAG_GPS_IFD: gps_off}
    pointers = [(t, LONG, 1, (where[t],)) for t, _, _, _ in pointers]
    out = bytearray((b"II" if e == "<" else b"MM") + struct.pack(e + "HI", 42, 8))
    for entries in ([*ifd0, *pointers], exif, gps):
        if not entries:
            continue
        entries = sorted(entries, key=lambda v: v[0])
        data_pos = len(out) + 2 + 12 * len(entries) + 4
        table = bytearray(struct.pack(e + "H", len(entries)))
        data = bytearray()
        for value in entries:
            packed = _pack(e, value)
            tag, typ, count, _ = value
            if len(packed) <= 4:
                field = packed.ljust(4, b"\x00")
            else:
                field = struct.pack(e + "I", data_pos + len(data))
                data += packed + b"\x00" * (len(packed) % 2)
            table += struct.pack(e + "HHI", tag, typ, count) + field
        out += table + struct.pack(e + "I", 0) + data
    return bytes(out)


def _sub_ifd(tiff: bytes, e: str, ifd0: dict[int, _Entry], tag: int) -> dict[int, _Entry]:
    """The entries of the sub-IFD that IFD0's pointer ``tag`` names ({} if none)."""
    ent = ifd0.get(tag)
    if ent is None:
        return {}
    if ent.type not in (LONG, 13) or ent.count != 1:
        raise ExifParseError(f"bad sub-IFD pointer 0x{tag:04x}")
    off = _ints(tiff, e, ent)[0]
    entries, _, _ = _read_ifd(tiff, e, off)
    return _first(entries)


def rebuild_exif(tiff: bytes, groups: tuple[str, ...] = DEFAULT_EXIF_GROUPS) -> bytes | None:
    """A fresh TIFF/EXIF block holding only the allowlisted, validated tags of ``groups``.

    ``tiff`` is the block as stored (after the ``Exif\\0\\0`` header of JPEG APP1, or a PNG
    eXIf payload). Returns ``None`` when the block's structure cannot be read, when nothing
    is kept, or when the result would still hold something image-like (fail closed). The
    byte order of the source is kept. Unknown group names raise ``KeyError``
    (:class:`redact.io.metadata.MetadataPolicy` validates them first).
    """
    specs = [spec for g in groups for spec in EXIF_GROUPS[g]]
    try:
        tiff = bytes(tiff)
        e, off = _header(tiff)
        ifd0_entries, _, _ = _read_ifd(tiff, e, off)
        ifds = {"ifd0": _first(ifd0_entries)}
        ifds["exif"] = _sub_ifd(tiff, e, ifds["ifd0"], TAG_EXIF_IFD)
        ifds["gps"] = _sub_ifd(tiff, e, ifds["ifd0"], TAG_GPS_IFD)
        kept: dict[str, list[_Value]] = {"ifd0": [], "exif": [], "gps": []}
        seen: set[tuple[str, int]] = set()
        for spec in specs:
            ent = ifds[spec.ifd].get(spec.tag)
            if ent is None or (spec.ifd, spec.tag) in seen:
                continue
            value = _read_value(tiff, e, ent, spec)
            if value is not None:
                kept[spec.ifd].append(value)
                seen.add((spec.ifd, spec.tag))
    except (ExifParseError, struct.error):
        return None
    if kept["exif"]:
        kept["exif"].append((TAG_EXIF_VERSION, UNDEFINED, 4, tuple(b"0232")))
    if kept["gps"] and not any(v[0] == TAG_GPS_VERSION for v in kept["gps"]):
        kept["gps"].append((TAG_GPS_VERSION, BYTE, 4, (2, 3, 0, 0)))
    if not any(kept.values()):
        return None
    out = _layout(e, kept["ifd0"], kept["exif"], kept["gps"])
    return None if payload_images(out) else out


def list_tags(tiff: bytes) -> dict[str, list[int]] | None:
    """IFD name ("ifd0", "exif", "gps", "ifd1") -> tags present (strict structure read), or
    ``None`` when unreadable. For checking rebuilt blocks (tests, audits)."""
    try:
        tiff = bytes(tiff)
        e, off = _header(tiff)
        entries, _, nxt = _read_ifd(tiff, e, off)
        ifd0 = _first(entries)
        out = {"ifd0": [x.tag for x in entries]}
        out["exif"] = list(_sub_ifd(tiff, e, ifd0, TAG_EXIF_IFD))
        out["gps"] = list(_sub_ifd(tiff, e, ifd0, TAG_GPS_IFD))
        out["ifd1"] = [x.tag for x in _read_ifd(tiff, e, nxt)[0]] if nxt else []
    except (ExifParseError, struct.error):
        return None
    return out


# --- capture information (GPS, time, camera): read-only -----------------------------------------

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


def _text(tiff: bytes, entry: _Entry) -> str:
    raw = tiff[entry.value_pos : entry.value_pos + entry.size]
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


def _rationals(tiff: bytes, e: str, entry: _Entry) -> list[float]:
    """Values of a RATIONAL (5) / SRATIONAL (10) entry (a zero denominator is an error)."""
    if entry.type not in (5, 10) or entry.value_pos < 0:
        raise ExifParseError(f"tag 0x{entry.tag:04x}: not a readable rational")
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
    return -deg if ref is not None and _text(tiff, ref).upper() == neg else deg


def exif_capture_info(tiff: bytes) -> CaptureInfo:
    """GPS position, capture time and camera from a TIFF/EXIF block (never raises).

    A malformed or out-of-range GPS position, or exactly (0, 0) (written without a fix),
    yields ``latitude = longitude = None``; an all-zero date yields ``captured_at = ""``; the
    fields are read independently.
    """
    try:
        tiff = bytes(tiff)
        e, off = _header(tiff)
        ifd0, _, _ = _read_ifd(tiff, e, off)
    except (ExifParseError, struct.error):
        return CaptureInfo()
    tags = _first(ifd0)
    camera = " ".join(
        _text(tiff, tags[t]) for t in (TAG_MAKE, TAG_MODEL) if t in tags and tags[t].type == 2
    ).strip()
    captured_at = ""
    lat = lng = None
    try:
        for ent in _sub_ifd(tiff, e, tags, TAG_EXIF_IFD).values():
            if ent.tag == TAG_DATETIME_ORIGINAL and ent.type == 2:
                d, _, t = _text(tiff, ent).partition(" ")
                if d and t:
                    captured_at = f"{d.replace(':', '-')}T{t}"
    except (ExifParseError, struct.error):
        captured_at = ""
    try:
        gps = _sub_ifd(tiff, e, tags, TAG_GPS_IFD)
        if GPS_LAT in gps and GPS_LNG in gps:
            lat = _degrees(tiff, e, gps[GPS_LAT], gps.get(GPS_LAT_REF), "S")
            lng = _degrees(tiff, e, gps[GPS_LNG], gps.get(GPS_LNG_REF), "W")
            # Out of range, or exactly (0, 0): receivers write "null island" without a fix.
            if not (-90.0 <= lat <= 90.0 and -180.0 <= lng <= 180.0) or lat == lng == 0.0:
                lat = lng = None
        if GPS_DATE in gps and GPS_TIME in gps and gps[GPS_DATE].type == 2:
            hms = _rationals(tiff, e, gps[GPS_TIME])
            date = _text(tiff, gps[GPS_DATE]).replace(":", "-")
            if len(hms) == 3 and len(date) == 10:
                h, m, s = int(hms[0]), int(hms[1]), hms[2]
                captured_at = f"{date}T{h:02d}:{m:02d}:{s:06.3f}Z"
    except (ExifParseError, struct.error):
        lat = lng = None
    if captured_at.startswith("0000"):  # an unset clock ("0000:00:00 00:00:00")
        captured_at = ""
    return CaptureInfo(lat, lng, captured_at, camera)
