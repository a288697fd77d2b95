"""JPEG marker parsing, structural validation, quality estimation and metadata selection.

:func:`parse_jpeg` walks every marker segment and the entropy-coded data up to EOI, so a
truncated file (no EOI) or a malformed one raises before any pixel is trusted.
:func:`select_metadata` keeps only the allowlisted segments (see :mod:`redact.io.codec`),
each REBUILT: EXIF from its allowlisted tags, XMP from its allowlisted namespaces, the ICC
profile reassembled, validated and re-split. Everything else is dropped.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np

from redact.errors import ImageError, Stage
from redact.io.exif import exif_orientation, rebuild_exif
from redact.io.leakscan import payload_images
from redact.io.metadata import MetadataPolicy, validate_icc
from redact.io.xmp import sanitize_xmp

SOI = 0xD8
EOI = 0xD9
SOS = 0xDA
DQT = 0xDB
APP1 = 0xE1
APP2 = 0xE2
APP14 = 0xEE
COM = 0xFE
# SOF markers: C0..CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}

EXIF_ID = b"Exif\x00\x00"
XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXT_ID = b"http://ns.adobe.com/xmp/extension/\x00"
ICC_ID = b"ICC_PROFILE\x00"
ICC_CHUNK = 0xFFFF - 2 - len(ICC_ID) - 2  # profile bytes per APP2 segment

# A marker inside entropy-coded data: 0xFF not followed by a stuffed 0x00, a fill 0xFF, or RSTn.
_ENTROPY_MARKER = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")

# IJG (libjpeg) standard luminance quantisation table, zig-zag order (as stored in DQT).
_STD_LUMA_ZIGZAG = np.array(
    [16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40,
     26, 24, 22, 22, 24, 49, 35, 37, 29, 40, 58, 51, 61, 60, 57, 51,
     56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80, 109, 81, 87,
     95, 98, 103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99],
    dtype=np.int64,
)  # fmt: skip


# Zig-zag order: ZIGZAG[k] is the natural (row-major 8x8) index of the k-th stored coefficient.
ZIGZAG = np.array(
    [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
     12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
     35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
     58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63],
    dtype=np.intp,
)  # fmt: skip

# IJG standard chrominance table, natural order (JPEG Annex K.2).
_STD_CHROMA_NATURAL = np.full(64, 99, dtype=np.int64)
_STD_CHROMA_NATURAL[[0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 24, 25]] = [
    17, 18, 24, 47, 18, 21, 26, 66, 24, 26, 56, 47, 66,
]  # fmt: skip
_STD_CHROMA_ZIGZAG = _STD_CHROMA_NATURAL[ZIGZAG]


@dataclass(frozen=True)
class JpegFrame:
    """The SOF segment: size in stored (not upright) pixels and the components."""

    marker: int
    precision: int
    height: int
    width: int
    components: tuple[tuple[int, int, int, int], ...]  # (id, h_samp, v_samp, quant_table)


@dataclass(frozen=True)
class JpegStructure:
    """A validated JPEG: header segments before the first SOS, frame, quantisation tables."""

    segments: tuple[tuple[int, bytes], ...]  # (marker, payload without length) before SOS
    frame: JpegFrame
    qtables: dict[int, tuple[int, ...]]  # table id -> 64 values, zig-zag order
    end: int  # offset just after EOI; bytes beyond it are trailing data (dropped)


def _err(reason: str, message: str) -> ImageError:
    return ImageError(reason, message, Stage.DECODE)


def _parse_sof(marker: int, p: bytes) -> JpegFrame:
    if len(p) < 6:
        raise _err("corrupt", "JPEG SOF segment too short")
    precision, height, width, nf = struct.unpack(">BHHB", p[:6])
    if len(p) < 6 + 3 * nf or nf == 0:
        raise _err("corrupt", "JPEG SOF component list malformed")
    comps = tuple(
        (p[6 + 3 * i], p[7 + 3 * i] >> 4, p[7 + 3 * i] & 15, p[8 + 3 * i]) for i in range(nf)
    )
    return JpegFrame(marker, precision, height, width, comps)


def _parse_dqt(p: bytes, tables: dict[int, tuple[int, ...]]) -> None:
    i = 0
    while i < len(p):
        pq, tq = p[i] >> 4, p[i] & 15
        size = 128 if pq else 64
        if i + 1 + size > len(p):
            raise _err("corrupt", "JPEG DQT segment too short")
        raw = p[i + 1 : i + 1 + size]
        tables[tq] = struct.unpack(">64H", raw) if pq else tuple(raw)
        i += 1 + size


def parse_jpeg(data: bytes) -> JpegStructure:
    """Validate the marker structure of a JPEG up to EOI. Raises :class:`ImageError`."""
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != SOI:
        raise _err("unknown_format", "not a JPEG (no SOI marker)")
    pos = 2
    segments: list[tuple[int, bytes]] = []
    qtables: dict[int, tuple[int, ...]] = {}
    frame: JpegFrame | None = None
    seen_sos = False
    while True:
        if pos >= n:
            raise _err("truncated", "JPEG ends before the EOI marker")
        if data[pos] != 0xFF:
            raise _err("corrupt", f"JPEG: expected a marker at byte {pos}")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise _err("truncated", "JPEG ends inside a marker")
        marker = data[pos]
        pos += 1
        if marker == EOI:
            if not seen_sos:
                raise _err("corrupt", "JPEG has no image data (EOI before SOS)")
            break
        if marker == SOI:
            raise _err("corrupt", "JPEG: unexpected SOI marker")
        if marker in _STANDALONE:
            continue
        if pos + 2 > n:
            raise _err("truncated", "JPEG ends inside a segment header")
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise _err("corrupt", f"JPEG: bad segment length for marker 0x{marker:02X}")
        if pos + length > n:
            raise _err("truncated", f"JPEG ends inside marker 0x{marker:02X} segment")
        payload = data[pos + 2 : pos + length]
        pos += length
        if not seen_sos:
            segments.append((marker, payload))
        if marker in _SOF:
            if frame is not None:
                raise _err("corrupt", "JPEG has more than one SOF segment")
            frame = _parse_sof(marker, payload)
        elif marker == DQT:
            _parse_dqt(payload, qtables)
        elif marker == SOS:
            if frame is None:
                raise _err("corrupt", "JPEG: SOS before SOF")
            seen_sos = True
            m = _ENTROPY_MARKER.search(data, pos)
            if m is None:
                raise _err("truncated", "JPEG entropy-coded data ends without EOI")
            pos = m.start()
    if frame is None:  # pragma: no cover - SOS requires a frame
        raise _err("corrupt", "JPEG has no SOF segment")
    return JpegStructure(tuple(segments), frame, qtables, pos)


def estimate_quality(qtable: tuple[int, ...] | None) -> int | None:
    """IJG quality (1..100) whose scaled standard luminance table best matches ``qtable``.

    ``qtable`` is 64 values in zig-zag order (as in DQT). ``None`` if no table.
    """
    if qtable is None or len(qtable) != 64:
        return None
    q = np.arange(1, 101, dtype=np.int64)
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)  # (100,)
    tables = np.clip((_STD_LUMA_ZIGZAG[None, :] * scale[:, None] + 50) // 100, 1, 255)
    err = np.abs(tables - np.asarray(qtable, dtype=np.int64)[None, :]).sum(axis=1)
    return int(q[int(np.argmin(err))])


def ijg_qtables(quality: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(luma, chroma) 64-value tables, zig-zag order, that libjpeg's ``jpeg_set_quality``
    (baseline, values clipped to 1..255) writes for ``quality`` 1..100: what the encoder
    (simplejpeg / libjpeg-turbo) uses when re-encoding at that quality."""
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    luma = np.clip((_STD_LUMA_ZIGZAG * scale + 50) // 100, 1, 255)
    chroma = np.clip((_STD_CHROMA_ZIGZAG * scale + 50) // 100, 1, 255)
    return tuple(int(v) for v in luma), tuple(int(v) for v in chroma)


def qtables_match_quality(structure: JpegStructure, quality: int | None) -> bool:
    """True when re-encoding at ``quality`` with libjpeg's standard tables reproduces the
    original's quantisation table of EVERY component exactly (luma table for the first
    component, chroma table for the others). Untouched areas then go through the same
    quantiser: the re-encode error is only IDCT/colour rounding, not requantisation."""
    if quality is None:
        return False
    luma, chroma = ijg_qtables(quality)
    for i, comp in enumerate(structure.frame.components):
        want = luma if i == 0 else chroma
        if structure.qtables.get(comp[3]) != want:
            return False
    return True


def luma_qtable(structure: JpegStructure) -> tuple[int, ...] | None:
    """The quantisation table of the first (luma) component."""
    tq = structure.frame.components[0][3]
    return structure.qtables.get(tq)


def subsampling(frame: JpegFrame) -> str:
    """Chroma subsampling as a simplejpeg string: ``444``, ``422``, ``420``, ``440``, ``411``
    or ``Gray``; unusual layouts map to ``444`` (never lose chroma resolution)."""
    if len(frame.components) == 1:
        return "Gray"
    h0, v0 = frame.components[0][1], frame.components[0][2]
    h1, v1 = frame.components[1][1], frame.components[1][2]
    if h1 == 0 or v1 == 0:
        return "444"
    ratio = (h0 // h1, v0 // v1)
    return {(1, 1): "444", (2, 1): "422", (2, 2): "420", (1, 2): "440", (4, 1): "411"}.get(
        ratio, "444"
    )


def orientation(structure: JpegStructure) -> int:
    """EXIF Orientation of the first Exif APP1 segment (1 when none)."""
    for marker, payload in structure.segments:
        if marker == APP1 and payload.startswith(EXIF_ID):
            return exif_orientation(payload[len(EXIF_ID) :])
    return 1


def adobe_transform(structure: JpegStructure) -> int | None:
    """The colour transform flag of an Adobe APP14 segment (0 none/CMYK, 1 YCbCr, 2 YCCK),
    or ``None`` when there is no Adobe segment."""
    for marker, payload in structure.segments:
        if marker == APP14 and payload.startswith(b"Adobe") and len(payload) >= 12:
            return payload[11]
    return None


def _segment(marker: int, payload: bytes) -> bytes:
    if len(payload) + 2 > 0xFFFF:
        raise ValueError(f"JPEG segment 0x{marker:02X} payload too large")
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _icc_profile(chunks: list[bytes]) -> bytes | None:
    """Reassemble APP2 ICC chunks (payload after ``ICC_PROFILE\\0``: sequence number 1..n,
    count n, data) in sequence order; ``None`` if the numbering is inconsistent."""
    if not chunks or len(chunks[0]) < 2:
        return None
    total = chunks[0][1]
    parts: dict[int, bytes] = {}
    for c in chunks:
        if len(c) < 2 or c[1] != total or not 1 <= c[0] <= total or c[0] in parts:
            return None
        parts[c[0]] = c[2:]
    if len(parts) != total:
        return None
    return b"".join(parts[i] for i in range(1, total + 1))


def icc_segments(profile: bytes) -> tuple[bytes, ...]:
    """Split an ICC profile into complete APP2 segments (at most 255)."""
    pieces = [profile[i : i + ICC_CHUNK] for i in range(0, len(profile), ICC_CHUNK)]
    if not pieces or len(pieces) > 255:
        return ()
    n = len(pieces)
    return tuple(_segment(APP2, ICC_ID + bytes((i + 1, n)) + p) for i, p in enumerate(pieces))


def select_metadata(
    structure: JpegStructure,
    policy: MetadataPolicy | None = None,
    *,
    color_space: bytes = b"RGB ",
) -> tuple[bytes, ...]:
    """Allowlisted, rebuilt metadata segments (complete, with marker and length).

    In order: APP1 Exif (first only, rebuilt from ``policy.exif_groups``), APP1 XMP (first
    standard packet, rebuilt from ``policy.xmp_namespaces``), APP2 ICC_PROFILE (if
    ``policy.keep_icc``: reassembled, validated for ``color_space`` (``b"RGB "``/``b"GRAY"``),
    re-split), COM (only if ``policy.keep_jpeg_comments``, and only without an embedded
    picture). Extended XMP, JFIF/Adobe (re-written by the encoder), MPF, Photoshop IRB and
    every other APPn are dropped. Never raises.
    """
    policy = policy or MetadataPolicy()
    exif: list[bytes] = []
    xmp: list[bytes] = []
    icc: list[bytes] = []
    comments: list[bytes] = []
    seen_exif = seen_xmp = False
    for marker, payload in structure.segments:
        if marker == APP1 and payload.startswith(EXIF_ID):
            if not seen_exif:
                seen_exif = True
                clean = rebuild_exif(payload[len(EXIF_ID) :], policy.exif_groups)
                if clean is not None and len(EXIF_ID + clean) + 2 <= 0xFFFF:
                    exif.append(_segment(APP1, EXIF_ID + clean))
        elif marker == APP1 and payload.startswith(XMP_ID):
            if not seen_xmp:
                seen_xmp = True
                packet = sanitize_xmp(
                    payload[len(XMP_ID) :], policy.xmp_namespaces, policy.max_xmp_bytes
                )
                if packet is not None and len(XMP_ID + packet) + 2 <= 0xFFFF:
                    xmp.append(_segment(APP1, XMP_ID + packet))
        elif marker == APP2 and payload.startswith(ICC_ID):
            icc.append(payload[len(ICC_ID) :])
        elif marker == COM and policy.keep_jpeg_comments and not payload_images(payload):
            comments.append(_segment(COM, payload))
    icc_out: tuple[bytes, ...] = ()
    if policy.keep_icc and icc:
        profile = _icc_profile(icc)
        if profile is not None:
            checked = validate_icc(profile, color_space, policy.max_icc_bytes)
            if checked is not None:
                icc_out = icc_segments(checked)
    return (*exif, *xmp, *icc_out, *comments)


def insert_segments(jpeg: bytes, segments: tuple[bytes, ...]) -> bytes:
    """Insert complete segments after SOI and the encoder's leading APP0 (JFIF), if any."""
    if not segments:
        return jpeg
    pos = 2
    if jpeg[2:4] == b"\xff\xe0":
        (length,) = struct.unpack(">H", jpeg[4:6])
        pos = 4 + length
    return jpeg[:pos] + b"".join(segments) + jpeg[pos:]
