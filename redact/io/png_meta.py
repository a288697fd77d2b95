"""PNG chunk parsing, structural validation and metadata selection.

:func:`parse_png` checks the signature, every chunk CRC, IHDR first, IEND present, and that
the concatenated IDAT zlib stream is complete and inflates to exactly the size IHDR implies
(a truncated or partly decodable file raises). The inflation is streamed and bounded: it
never holds the decompressed image.

:func:`select_metadata` keeps only what a viewer needs, each chunk validated and REBUILT:
iCCP (inflated with a bound, :func:`redact.io.metadata.validate_icc`, re-compressed), sRGB,
gAMA, cHRM, pHYs (fixed sizes and ranges checked), eXIf (:func:`redact.io.exif.rebuild_exif`),
XMP (from the first ``XML:com.adobe.xmp`` text chunk of any type, rebuilt by
:func:`redact.io.xmp.sanitize_xmp`, written as an uncompressed iTXt), and text chunks whose
keyword the policy allows (re-written uncompressed, only without an embedded picture).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from redact.errors import ImageError, Stage
from redact.io.exif import rebuild_exif
from redact.io.leakscan import payload_images
from redact.io.metadata import MetadataPolicy, validate_icc
from redact.io.xmp import sanitize_xmp

SIGNATURE = b"\x89PNG\r\n\x1a\n"

XMP_KEYWORD = b"XML:com.adobe.xmp"
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
MAX_TEXT = 64 << 10  # bytes of an allowed text chunk's (inflated) text
# Fixed-size colour/density chunks: type -> payload length.
_FIXED = {b"sRGB": 1, b"gAMA": 4, b"cHRM": 32, b"pHYs": 9}
_GAMMA_RANGE = (20_000, 100_000)  # gAMA x 100000: file gamma 0.2 .. 1.0

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


def inflate_bounded(data: bytes, limit: int) -> bytes | None:
    """Inflate a complete zlib stream of at most ``limit`` output bytes, else ``None``."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error:
        return None
    if len(out) > limit or not d.eof:
        return None
    return out


def parse_text(ctype: bytes, body: bytes, limit: int = MAX_TEXT) -> tuple[bytes, bytes] | None:
    """(keyword, text) of a tEXt/zTXt/iTXt chunk, the text inflated (at most ``limit``
    bytes) if compressed; Latin-1 bytes for tEXt/zTXt, UTF-8 for iTXt. ``None`` if
    malformed."""
    k = body.find(b"\x00")
    if not 1 <= k <= 79:
        return None
    keyword = body[:k]
    if ctype == b"tEXt":
        text: bytes | None = body[k + 1 :]
    elif ctype == b"zTXt":
        if len(body) < k + 2 or body[k + 1] != 0:
            return None
        text = inflate_bounded(body[k + 2 :], limit)
    elif ctype == b"iTXt":
        if len(body) < k + 3 or body[k + 1] not in (0, 1) or body[k + 2] != 0:
            return None
        lang_end = body.find(b"\x00", k + 3)
        trans_end = body.find(b"\x00", lang_end + 1) if lang_end >= 0 else -1
        if trans_end < 0:
            return None
        text = body[trans_end + 1 :]
        if body[k + 1]:
            text = inflate_bounded(text, limit)
    else:
        return None
    if text is None or len(text) > limit:
        return None
    return keyword, text


def itxt(keyword: bytes, text: bytes) -> bytes:
    """An uncompressed iTXt payload (no language tag, no translated keyword)."""
    return keyword + b"\x00\x00\x00\x00\x00" + text


def _fixed_chunk(ctype: bytes, body: bytes) -> bytes | None:
    """A validated copy of sRGB/gAMA/cHRM/pHYs, or ``None``."""
    if len(body) != _FIXED[ctype]:
        return None
    if ctype == b"sRGB" and body[0] > 3:
        return None
    if ctype == b"gAMA":
        (g,) = struct.unpack(">I", body)
        if not _GAMMA_RANGE[0] <= g <= _GAMMA_RANGE[1]:
            return None
    if ctype == b"cHRM" and any(v > 0x7FFFFFFF for v in struct.unpack(">8I", body)):
        return None
    if ctype == b"pHYs" and body[8] > 1:
        return None
    return bytes(body)


def _iccp(body: bytes, color_space: bytes, max_bytes: int) -> bytes | None:
    k = body.find(b"\x00")
    if not 1 <= k <= 79 or len(body) < k + 2 or body[k + 1] != 0:
        return None
    profile = inflate_bounded(body[k + 2 :], max_bytes)
    if profile is None:
        return None
    checked = validate_icc(profile, color_space, max_bytes)
    if checked is None:
        return None
    return b"ICC profile\x00\x00" + zlib.compress(checked, 9)


def select_metadata(
    structure: PngStructure,
    policy: MetadataPolicy | None = None,
    *,
    color_space: bytes = b"RGB ",
) -> tuple[tuple[bytes, bytes], ...]:
    """Allowlisted, rebuilt ancillary chunks (type, data) to write after IHDR.

    The first valid chunk of each of iCCP (if ``policy.keep_icc``; for ``color_space``,
    ``b"RGB "`` or ``b"GRAY"``), sRGB, gAMA (file gamma 0.2..1.0), cHRM, pHYs and eXIf
    (rebuilt from ``policy.exif_groups``); the XMP of the first ``XML:com.adobe.xmp`` text
    chunk rebuilt as an uncompressed iTXt; text chunks with a keyword in
    ``policy.png_text_keywords`` (uncompressed, without an embedded picture). Everything else
    (other text, tIME, bKGD, tRNS, sBIT, APNG frames, private chunks) is dropped. Never raises.
    """
    policy = policy or MetadataPolicy()
    allowed_text = {kw.encode("latin-1", "replace") for kw in policy.png_text_keywords}
    out: dict[bytes, bytes] = {}
    texts: list[tuple[bytes, bytes]] = []
    seen_xmp = False
    for ctype, body in structure.chunks:
        if ctype in _FIXED:
            if ctype not in out:
                fixed = _fixed_chunk(ctype, body)
                if fixed is not None:
                    out[ctype] = fixed
        elif ctype == b"iCCP":
            if policy.keep_icc and ctype not in out:
                iccp = _iccp(body, color_space, policy.max_icc_bytes)
                if iccp is not None:
                    out[ctype] = iccp
        elif ctype == b"eXIf":
            if ctype not in out:
                clean = rebuild_exif(body, policy.exif_groups)
                if clean is not None:
                    out[ctype] = clean
        elif ctype in TEXT_CHUNKS:
            keyword = body.split(b"\x00", 1)[0]
            if keyword == XMP_KEYWORD:
                if seen_xmp:
                    continue
                seen_xmp = True
                parsed = parse_text(ctype, body, policy.max_xmp_bytes)
                packet = (
                    None
                    if parsed is None
                    else sanitize_xmp(parsed[1], policy.xmp_namespaces, policy.max_xmp_bytes)
                )
                if packet is not None:
                    texts.insert(0, (b"iTXt", itxt(XMP_KEYWORD, packet)))
            elif keyword in allowed_text:
                kept = _allowed_text(ctype, body)
                if kept is not None:
                    texts.append(kept)
    order = (b"iCCP", b"sRGB", b"gAMA", b"cHRM", b"pHYs", b"eXIf")
    return (*((c, out[c]) for c in order if c in out), *texts)


def _allowed_text(ctype: bytes, body: bytes) -> tuple[bytes, bytes] | None:
    """An allowed text chunk re-written uncompressed, or ``None`` (malformed, not valid
    Latin-1/UTF-8 text, or holding an embedded picture)."""
    parsed = parse_text(ctype, body)
    if parsed is None or payload_images(parsed[1]):
        return None
    keyword, text = parsed
    if ctype == b"iTXt":
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return (b"iTXt", itxt(keyword, text))
    if b"\x00" in text:
        return None
    return (b"tEXt", keyword + b"\x00" + text)


def chunk(ctype: bytes, body: bytes) -> bytes:
    """Serialise one chunk (length, type, data, CRC)."""
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def insert_chunks(png: bytes, chunks: tuple[tuple[bytes, bytes], ...]) -> bytes:
    """Insert ``chunks`` right after IHDR of an encoder's output, replacing same-type chunks."""
    own = iter_chunks(png)
    types = {c for c, _ in chunks}
    body = [chunk(c, b) for c, b in own[1:] if c not in types]
    return SIGNATURE + chunk(*own[0]) + b"".join(chunk(c, b) for c, b in chunks) + b"".join(body)
