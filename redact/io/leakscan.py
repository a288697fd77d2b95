"""Last-line leak scan: find secondary pictures hidden in an image file's bytes.

The published copy must carry one picture: its own (blurred) pixels. :func:`embedded_images`
reports anything else that looks like a picture, so :func:`redact.io.codec.encode_image` can
refuse to publish (fail closed) even if a metadata sanitiser missed something:

* raw image signatures (JPEG SOI ``FF D8 FF``, PNG, GIF, WebP, HEIF/AVIF, JPEG XL) anywhere in
  metadata (JPEG APPn/COM segments, PNG ancillary chunks), a second SOI marker in the JPEG
  marker stream, and any data after the JPEG EOI / PNG IEND (appended images, motion photos);
* base64 runs (>= :data:`MIN_TEXT_RUN` characters, line breaks, XML character references and
  the URL-safe alphabet allowed) and hex runs that decode to such a signature;
* zlib/gzip streams (compressed PNG text, iCCP, or hidden in a blob) that inflate to any of the
  above (bounded: at most :data:`MAX_INFLATE` bytes per stream);
* APNG frames (``acTL``/``fcTL``/``fdAT``).

Image data itself is not scanned for text encodings: JPEG entropy-coded data cannot contain
``FF D8`` (0xFF is byte-stuffed) and is only checked for raw signatures; PNG ``IDAT`` (and
``PLTE``/``tRNS``) payloads are skipped. Encoder-written JPEG tables (DQT, DHT, SOF, SOS)
cannot form a 4-byte JPEG signature for libjpeg's tables at any quality (checked by the
tests). A clean encoder output therefore gives no finding.

:func:`payload_images` scans one metadata blob (no container structure; a signature at
offset 0 counts). Neither function raises for any input; both return human-readable findings
(empty list = nothing found).
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib

MIN_TEXT_RUN = 200  # characters of base64/hex before a run is decoded and checked
MAX_INFLATE = 16 << 20  # bytes inflated per compressed stream
_MAX_STREAMS = 32  # zlib/gzip candidates tried per blob
_MAX_DEPTH = 2  # nested encodings followed (base64 of zlib of ...)

# Raw signatures of pictures (a JPEG SOI must be followed by a marker byte).
_RAW_MAGIC = re.compile(
    rb"\xff\xd8\xff[\xc0-\xfe]"
    rb"|\x89PNG\r\n\x1a\n"
    rb"|GIF8[79]a"
    rb"|RIFF[\x00-\xff]{4}WEBP"
    rb"|ftyp(?:heic|heix|hevc|mif1|msf1|avif|avis)"
    rb"|\x00\x00\x00\x0cJXL \r\n\x87\n"
)
_MAGIC_NAMES = (
    (b"\xff\xd8", "JPEG"),
    (b"\x89PNG", "PNG"),
    (b"GIF8", "GIF"),
    (b"RIFF", "WebP"),
    (b"ftyp", "HEIF/AVIF"),
    (b"\x00\x00\x00\x0cJXL", "JPEG XL"),
)
# Base64 (standard and URL-safe) with line breaks, XML character references, \n escapes.
_SEP = rb"[\t\n\r ]|&#[xX]?[0-9A-Fa-f]{1,5};|\\[nrt]"
_B64_RUN = re.compile(rb"(?:[A-Za-z0-9+/=_\-]|" + _SEP + rb"){%d,}" % MIN_TEXT_RUN)
_HEX_RUN = re.compile(rb"(?:[0-9A-Fa-f]|" + _SEP + rb"){%d,}" % MIN_TEXT_RUN)
_SEP_RE = re.compile(_SEP)
_ZLIB_HEAD = re.compile(rb"\x78[\x01\x5e\x9c\xda]|\x1f\x8b\x08")

SOI = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A marker inside entropy-coded data: 0xFF not followed by stuffing 0x00, fill 0xFF or RSTn.
_ENTROPY_END = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")
# PNG chunks holding image data (not metadata).
_PNG_IMAGE_CHUNKS = frozenset({b"IHDR", b"IDAT", b"PLTE", b"tRNS", b"IEND"})
_APNG_CHUNKS = frozenset({b"acTL", b"fcTL", b"fdAT"})


def _magic_name(sig: bytes) -> str:
    for prefix, name in _MAGIC_NAMES:
        if sig.startswith(prefix):
            return name
    return "image"


def _raw(blob: bytes, where: str, start: int = 0) -> list[str]:
    return [
        f"{_magic_name(m.group())} signature at byte {m.start()} of {where}"
        for m in _RAW_MAGIC.finditer(blob, start)
    ]


def _inflate(blob: bytes | memoryview, limit: int = MAX_INFLATE) -> bytes | None:
    """Inflate a zlib (or gzip) stream at the start of ``blob``; at most ``limit`` bytes.

    ``None`` if the data is not a valid stream. Trailing bytes are ignored.
    """
    wbits = 31 if bytes(blob[:2]) == b"\x1f\x8b" else 15
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(blob, limit)
    except zlib.error:
        return None
    return out


def _decoded_text_runs(blob: bytes) -> list[bytes]:
    """Every decoding of each long base64 or hex run (4 base64 alignments, 2 hex ones)."""
    out: list[bytes] = []
    for m in _B64_RUN.finditer(blob):
        s = _SEP_RE.sub(b"", m.group()).replace(b"=", b"")
        if len(s) < MIN_TEXT_RUN:
            continue
        s = s.replace(b"-", b"+").replace(b"_", b"/")
        for k in range(4):
            t = s[k:]
            t = t[: len(t) // 4 * 4]
            try:
                out.append(base64.b64decode(t, validate=True))
            except (binascii.Error, ValueError):  # pragma: no cover - alphabet checked
                continue
    for m in _HEX_RUN.finditer(blob):
        s = _SEP_RE.sub(b"", m.group())
        if len(s) < MIN_TEXT_RUN:
            continue
        for k in range(2):
            t = s[k:]
            try:
                out.append(bytes.fromhex(t[: len(t) // 2 * 2].decode("ascii")))
            except ValueError:  # pragma: no cover - alphabet checked
                continue
    return out


def payload_images(blob: bytes, where: str = "payload", *, _depth: int = 0) -> list[str]:
    """Pictures in one metadata blob: raw signatures (offset 0 included), base64/hex runs
    and zlib/gzip streams that decode to pictures. Never raises."""
    blob = bytes(blob)
    found = _raw(blob, where)
    if _depth >= _MAX_DEPTH:
        return found
    for decoded in _decoded_text_runs(blob):
        inner = payload_images(decoded, f"text-encoded data in {where}", _depth=_depth + 1)
        if inner:
            found.extend(inner)
            break
    view = memoryview(blob)
    for n, m in enumerate(_ZLIB_HEAD.finditer(blob)):
        if n >= _MAX_STREAMS:
            break
        inflated = _inflate(view[m.start() :])
        if inflated:
            found.extend(payload_images(inflated, f"compressed data in {where}", _depth=_depth + 1))
    return found


def embedded_images(data: bytes) -> list[str]:
    """Secondary pictures in an image file's bytes (JPEG and PNG structure-aware; other
    data is scanned as one blob, ignoring a signature at offset 0). Never raises."""
    data = bytes(data)
    if data[:3] == SOI:
        return _scan_jpeg(data)
    if data[:8] == PNG_SIGNATURE:
        return _scan_png(data)
    found = payload_images(data, "file")
    return [f for f in found if not f.endswith("at byte 0 of file")]


def _scan_jpeg(data: bytes) -> list[str]:
    found: list[str] = []
    n = len(data)
    pos = 2
    while pos < n:
        if data[pos] != 0xFF:
            found.extend(payload_images(data[pos:], f"unparsed JPEG data at byte {pos}"))
            return found
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            return found
        marker = data[pos]
        pos += 1
        if marker == 0xD8:
            found.append(f"second JPEG SOI marker at byte {pos - 2}")
            continue
        if marker == 0xD9:
            if pos < n:
                found.append(f"{n - pos} bytes after the JPEG EOI marker")
            return found
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        if pos + 2 > n:
            return found
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2 or pos + length > n:
            found.extend(payload_images(data[pos:], f"malformed JPEG segment at byte {pos}"))
            return found
        payload = data[pos + 2 : pos + length]
        found.extend(payload_images(payload, f"JPEG segment 0x{marker:02X} at byte {pos - 2}"))
        pos += length
        if marker == 0xDA:  # entropy-coded data up to the next non-RST marker
            m = _ENTROPY_END.search(data, pos)
            end = n if m is None else m.start()
            found.extend(_raw(data[pos:end], f"JPEG entropy-coded data at byte {pos}"))
            pos = end
    return found


def _png_text(ctype: bytes, body: bytes) -> bytes | None:
    """The inflated payload of a compressed PNG chunk (zTXt, compressed iTXt, iCCP), or
    ``None`` when the chunk is not compressed (or too malformed to locate the stream)."""
    k = body.find(b"\x00")
    if k < 0:
        return None
    if ctype in (b"zTXt", b"iCCP"):
        stream = body[k + 2 :]
    elif ctype == b"iTXt" and len(body) > k + 2 and body[k + 1] != 0:
        lang = body.find(b"\x00", k + 3)
        trans = body.find(b"\x00", lang + 1) if lang >= 0 else -1
        if trans < 0:
            return None
        stream = body[trans + 1 :]
    else:
        return None
    return _inflate(stream) or b""


def _scan_png(data: bytes) -> list[str]:
    found: list[str] = []
    n = len(data)
    pos = 8
    while pos < n:
        if pos + 8 > n:
            found.extend(payload_images(data[pos:], f"unparsed PNG data at byte {pos}"))
            return found
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > n:
            found.extend(payload_images(data[pos:], f"malformed PNG chunk at byte {pos}"))
            return found
        body = data[pos + 8 : pos + 8 + length]
        where = f"PNG {ctype!r} chunk at byte {pos}"
        if ctype in _APNG_CHUNKS:
            found.append(f"APNG frame data ({where})")
        elif ctype not in _PNG_IMAGE_CHUNKS:
            found.extend(payload_images(body, where))
            text = _png_text(ctype, body)
            if text is not None:
                found.extend(payload_images(text, f"inflated {where}"))
        pos = end
        if ctype == b"IEND":
            if pos < n:
                found.append(f"{n - pos} bytes after the PNG IEND chunk")
            return found
    return found
