"""PNG chunk parsing, structural validation and metadata selection.

:func:`parse_png` checks the signature, every chunk CRC, IHDR first, IEND present, and that
the concatenated IDAT zlib stream is complete and inflates to exactly the size IHDR implies
(a truncated or partly decodable file raises). The inflation is streamed and bounded: it
never holds the decompressed image.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from redact.errors import ImageError, Stage
from redact.io.exif import sanitize_exif
from redact.io.xmp import contains_embedded_image, scrub_xmp

SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Chunks copied to the output (after IHDR). Everything else is dropped.
KEPT_CHUNKS = frozenset(
    {b"iCCP", b"sRGB", b"gAMA", b"cHRM", b"pHYs", b"tEXt", b"zTXt", b"iTXt", b"eXIf"}
)
# Text keywords that hold raw metadata dumps (ImageMagick "Raw profile type exif/8bim/...":
# may contain thumbnails): dropped.
_RAW_PROFILE = re.compile(rb"^Raw profile type", re.IGNORECASE)
_XMP_KEYWORD = b"XML:com.adobe.xmp"

_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    color_type: int
    interlace: int


@dataclass(frozen=True)
class PngStructure:
    header: PngHeader
    chunks: tuple[tuple[bytes, bytes], ...]  # (type, data) of every ancillary chunk, in order
    idat: tuple[bytes, ...]  # IDAT payloads, in order


def _err(reason: str, message: str) -> ImageError:
    return ImageError(reason, message, Stage.DECODE)


def _expected_raw_size(h: PngHeader) -> int:
    """Bytes of filtered scanlines IHDR implies (filter byte + packed row, per pass)."""
    bpp = h.bit_depth * _CHANNELS[h.color_type]

    def rows(w: int, n: int) -> int:
        return 0 if w == 0 or n == 0 else n * (1 + (w * bpp + 7) // 8)

    if h.interlace == 0:
        return rows(h.width, h.height)
    return sum(
        rows((h.width - x0 + dx - 1) // dx, (h.height - y0 + dy - 1) // dy)
        for x0, y0, dx, dy in _ADAM7
    )


def read_header(data: bytes) -> PngHeader:
    """IHDR fields, validated (cheap: reads 33 bytes; use before decoding)."""
    if len(data) < 33 or data[:8] != SIGNATURE:
        raise _err("truncated" if data[:8] == SIGNATURE else "unknown_format", "PNG header missing")
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise _err("corrupt", "PNG: first chunk is not a valid IHDR")
    w, h, depth, color, _comp, _filt, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if w == 0 or h == 0:
        raise _err("corrupt", "PNG: zero width or height")
    if color not in _CHANNELS or interlace not in (0, 1):
        raise _err("corrupt", f"PNG: invalid color type {color} or interlace {interlace}")
    valid_depths = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
    if depth not in valid_depths[color]:
        raise _err("corrupt", f"PNG: invalid bit depth {depth} for color type {color}")
    return PngHeader(w, h, depth, color, interlace)


def iter_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """All chunks up to and including IEND, CRC-checked. Bytes after IEND are ignored."""
    pos = 8
    n = len(data)
    out: list[tuple[bytes, bytes]] = []
    while True:
        if pos + 12 > n:
            raise _err("truncated", "PNG ends before the IEND chunk")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        if length > 0x7FFFFFFF:
            raise _err("corrupt", "PNG: invalid chunk length")
        end = pos + 12 + length
        if end > n:
            raise _err("truncated", f"PNG ends inside a {ctype!r} chunk")
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(ctype + body) != crc:
            raise _err("corrupt", f"PNG: CRC mismatch in {ctype!r} chunk")
        out.append((ctype, body))
        pos = end
        if ctype == b"IEND":
            return out


def _check_idat(header: PngHeader, idat: tuple[bytes, ...]) -> None:
    """Inflate the IDAT stream (streamed, bounded) and check its size and completeness."""
    expected = _expected_raw_size(header)
    d = zlib.decompressobj()
    total = 0
    step = 1 << 22
    try:
        for part in idat:
            buf = part
            while buf:
                total += len(d.decompress(buf, step))
                buf = d.unconsumed_tail
                if total > expected:
                    raise _err("corrupt", "PNG: image data larger than IHDR implies")
        total += len(d.flush())
    except zlib.error as e:
        raise _err("corrupt", f"PNG: zlib error in image data ({e})") from e
    if not d.eof or total != expected:
        raise _err("truncated", f"PNG: image data incomplete ({total} of {expected} bytes)")


def parse_png(data: bytes) -> PngStructure:
    """Validate a PNG's chunk structure and image data stream. Raises :class:`ImageError`."""
    header = read_header(data)
    chunks = iter_chunks(data)
    idat = tuple(body for ctype, body in chunks if ctype == b"IDAT")
    if not idat:
        raise _err("corrupt", "PNG has no IDAT chunk")
    if header.color_type == 3 and not any(c == b"PLTE" for c, _ in chunks):
        raise _err("corrupt", "PNG: palette image without PLTE")
    _check_idat(header, idat)
    ancillary = tuple((c, b) for c, b in chunks if c not in (b"IHDR", b"IDAT", b"IEND", b"PLTE"))
    return PngStructure(header, ancillary, idat)


def parse_itxt(body: bytes) -> tuple[bytes, bytes, bytes]:
    """Split an iTXt chunk into (header up to the text, keyword, text); text inflated if
    compressed. Raises ``ValueError`` if malformed."""
    k = body.index(b"\x00")
    if len(body) < k + 3:
        raise ValueError("iTXt chunk too short")
    compressed = body[k + 1] != 0
    lang_end = body.index(b"\x00", k + 3)
    trans_end = body.index(b"\x00", lang_end + 1)
    text = body[trans_end + 1 :]
    if compressed:
        try:
            text = zlib.decompress(text)
        except zlib.error as e:
            raise ValueError(f"iTXt: bad compressed text ({e})") from e
    return body[: trans_end + 1], body[:k], text


def _scrub_itxt_xmp(body: bytes) -> bytes | None:
    """Scrub the XMP of an ``XML:com.adobe.xmp`` iTXt chunk; ``None`` = drop it."""
    try:
        head, _, text = parse_itxt(body)
    except ValueError:
        return None
    if body[len(_XMP_KEYWORD) + 1] != 0:  # compressed: keep only if it is clean as is
        return None if contains_embedded_image(text) else body
    packet = scrub_xmp(text)
    if contains_embedded_image(packet):
        return None
    return body if packet is text else head + packet


def select_metadata(structure: PngStructure) -> tuple[tuple[bytes, bytes], ...]:
    """Whitelisted, sanitised ancillary chunks (type, data), in order.

    Kept: iCCP, sRGB, gAMA, cHRM (colour rendering), pHYs, tEXt/zTXt/iTXt (XMP scrubbed of
    embedded images; "Raw profile type ..." dumps dropped), eXIf (thumbnail removed).
    """
    out: list[tuple[bytes, bytes]] = []
    for ctype, body in structure.chunks:
        if ctype not in KEPT_CHUNKS:
            continue
        if ctype == b"eXIf":
            clean = sanitize_exif(body)
            if clean is not None:
                out.append((ctype, clean))
            continue
        if ctype in (b"tEXt", b"zTXt", b"iTXt"):
            keyword = body.split(b"\x00", 1)[0]
            if _RAW_PROFILE.match(keyword) or b"\x00" not in body:
                continue
            if ctype == b"iTXt" and keyword == _XMP_KEYWORD:
                scrubbed = _scrub_itxt_xmp(body)
                if scrubbed is not None:
                    out.append((ctype, scrubbed))
                continue
        out.append((ctype, body))
    return tuple(out)


def chunk(ctype: bytes, body: bytes) -> bytes:
    """Serialise one chunk (length, type, data, CRC)."""
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def insert_chunks(png: bytes, chunks: tuple[tuple[bytes, bytes], ...]) -> bytes:
    """Insert ``chunks`` right after IHDR of an encoder's output, replacing same-type chunks."""
    own = iter_chunks(png)
    types = {c for c, _ in chunks}
    body = [chunk(c, b) for c, b in own[1:] if c not in types]
    return SIGNATURE + chunk(*own[0]) + b"".join(chunk(c, b) for c, b in chunks) + b"".join(body)
