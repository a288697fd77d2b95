"""Decode and encode JPEG/PNG images: what is published is what a viewer sees, minus metadata.

Decoding validates the whole file structure first (a truncated or partly decodable file
raises :class:`redact.errors.ImageError`, never yields half an image), refuses images larger
than ``max_pixels`` from the header alone (decompression bombs), and returns the picture AS A
VIEWER SHOWS IT, which is also what the detector sees and what gets blurred and published:

* EXIF orientation applied (upright pixels);
* PNG transparency (alpha channel, tRNS colour key, gray+alpha) flattened onto WHITE (a page
  background): the copy is published opaque, so nothing hidden in the alpha channel can
  reappear in a viewer;
* CMYK/YCCK JPEG converted to RGB (Adobe "inverted" CMYK, as browsers read every 4-channel
  JPEG) and published as an ordinary RGB JPEG;
* 16-bit PNG rounded to 8 bits.

Encoding writes the same format, size, JPEG quality and chroma subsampling and grayscale-ness.
The stored pixel order follows the Orientation tag that is actually written: when the rebuilt
EXIF keeps the tag, pixels are stored as in the original with the tag; when it does not (no
EXIF, EXIF dropped as malformed, policy without ``orientation``, ``keep_metadata=False``) the
pixels are stored upright. Every output is checked by :func:`redact.io.leakscan.embedded_images`
and refused (``ImageError("metadata_leak", stage ENCODE)``: quarantined, not published) if it
would carry any secondary picture.

Metadata ALLOWLIST (:class:`redact.io.metadata.MetadataPolicy`; everything else is dropped).
Each kept item is REBUILT from parsed, validated values, never copied as bytes:

EXIF (JPEG APP1 ``Exif``, PNG eXIf; :func:`redact.io.exif.rebuild_exif`)
    A fresh TIFF block with only the tags of ``exif_groups`` (default ``orientation``,
    ``capture_time``, ``gps``, ``camera``, ``size``; opt-in ``copyright``), each type/count/
    value-checked. Never: thumbnails (IFD1), MakerNote, UserComment, serial numbers, owner
    names, ImageUniqueID, unknown tags, trailing data. An unparsable block is dropped whole.
XMP (JPEG APP1 ``http://ns.adobe.com/xap/1.0/``, PNG ``XML:com.adobe.xmp``;
    :func:`redact.io.xmp.sanitize_xmp`)
    Parsed as XML (no DTD/entities, bounded); simple properties of the allowlisted namespace
    URIs (default GPano only) re-serialised into a minimal packet; PNG: uncompressed iTXt.
    Extended XMP is always dropped.
ICC profile (JPEG APP2 ``ICC_PROFILE``, PNG iCCP; ``keep_icc``)
    Reassembled, checked (:func:`redact.io.metadata.validate_icc`: header, size, tag table,
    colour space of the published pixels, no embedded picture, unreferenced bytes zeroed),
    re-split / re-compressed.
PNG colour and density
    sRGB, gAMA (file gamma 0.2..1.0), cHRM, pHYs: size and range checked.
Text
    JPEG COM only if ``keep_jpeg_comments``; PNG tEXt/zTXt/iTXt only for keywords in
    ``png_text_keywords`` (re-written uncompressed); either only without an embedded picture.
Always dropped
    JFIF/Adobe APPn (re-written by the encoder), MPF (secondary images), Photoshop IRB, every
    other APPn, anything after EOI/IEND (motion photos, appended images), APNG frames, tIME,
    bKGD, tRNS, sBIT, private chunks.

With ``keep_metadata=False`` no metadata is written and the pixels are stored upright.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
import simplejpeg

from redact.errors import ImageError, Stage
from redact.io import jpeg_meta, png_meta
from redact.io.exif import exif_orientation
from redact.io.leakscan import embedded_images
from redact.io.metadata import MetadataPolicy

DEFAULT_JPEG_QUALITY = 92


class ImageFormat(enum.Enum):
    JPEG = "jpeg"
    PNG = "png"


@dataclass(frozen=True)
class JpegMetadata:
    """Sanitised JPEG segments to re-insert (complete: marker, length, payload)."""

    segments: tuple[bytes, ...] = ()

    def xmp(self) -> bytes | None:
        """The (rebuilt) standard XMP packet, if any."""
        for seg in self.segments:
            if seg[1] == jpeg_meta.APP1 and seg[4:].startswith(jpeg_meta.XMP_ID):
                return seg[4 + len(jpeg_meta.XMP_ID) :]
        return None

    def exif(self) -> bytes | None:
        """The (rebuilt) TIFF/EXIF block, if any."""
        for seg in self.segments:
            if seg[1] == jpeg_meta.APP1 and seg[4:].startswith(jpeg_meta.EXIF_ID):
                return seg[4 + len(jpeg_meta.EXIF_ID) :]
        return None


@dataclass(frozen=True)
class PngMetadata:
    """Sanitised PNG ancillary chunks to re-insert: (type, data)."""

    chunks: tuple[tuple[bytes, bytes], ...] = ()

    def xmp(self) -> bytes | None:
        """The (rebuilt) XMP packet of the ``XML:com.adobe.xmp`` iTXt chunk, if any."""
        for ctype, body in self.chunks:
            if ctype == b"iTXt" and body.startswith(png_meta.XMP_KEYWORD + b"\x00"):
                parsed = png_meta.parse_text(ctype, body, 16 << 20)
                return None if parsed is None else parsed[1]
        return None

    def exif(self) -> bytes | None:
        """The (rebuilt) eXIf TIFF block, if any."""
        for ctype, body in self.chunks:
            if ctype == b"eXIf":
                return body
        return None


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """A decoded image as a viewer shows it, and what is needed to re-encode it.

    Attributes:
        pixels: (H, W, 3) uint8 RGB, 0..255, upright (EXIF orientation applied), H x W in
            upright pixels. Gray sources are replicated to 3 channels; transparency is
            flattened onto white; CMYK is converted to RGB; 16-bit samples are rounded to 8.
        format: source format (the copy is written in the same one).
        orientation: EXIF orientation (1..8) the source declares: applied to get ``pixels``.
        stored_orientation: orientation the published copy is written with (1..8):
            ``orientation`` when the rebuilt EXIF keeps the tag, else 1 (pixels stored
            upright, so the copy displays like the source whatever the tag's fate).
        grayscale: the source was single-channel (gray or gray+alpha); written back gray.
        quality: estimated JPEG quality 1..100 (IJG scale) or None.
        subsampling: JPEG chroma subsampling ("444", "422", "420", "440", "411", "Gray").
        metadata: rebuilt, allowlisted segments/chunks to re-insert (opaque).
        qtables_exact: JPEG only: re-encoding at ``quality`` uses exactly the original's
            quantisation tables (:func:`redact.io.jpeg_meta.qtables_match_quality`); False
            when the original has non-IJG tables (the nearest IJG quality is used instead).
        conversions: what was done to show the source as a viewer does, e.g.
            ``("alpha_flattened",)``, ``("cmyk_to_rgb",)``, ``("16_to_8_bit",)``.
    """

    pixels: npt.NDArray[np.uint8]
    format: ImageFormat
    orientation: int = 1
    stored_orientation: int = 1
    grayscale: bool = False
    quality: int | None = None
    subsampling: str | None = None
    metadata: JpegMetadata | PngMetadata | None = None
    qtables_exact: bool | None = None
    conversions: tuple[str, ...] = ()

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def xmp(self) -> bytes | None:
        """The (sanitised) standard XMP packet, e.g. to read ``GPano:ProjectionType``."""
        return None if self.metadata is None else self.metadata.xmp()


# --- orientation -------------------------------------------------------------------------------


def to_upright(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF ``orientation`` (1..8) to stored pixels (H, W, ...) -> upright (view)."""
    if orientation == 2:
        return img[:, ::-1]
    if orientation == 3:
        return img[::-1, ::-1]
    if orientation == 4:
        return img[::-1]
    if orientation == 5:
        return np.swapaxes(img, 0, 1)
    if orientation == 6:
        return np.rot90(img, k=-1)
    if orientation == 7:
        return np.rot90(img[:, ::-1], k=-1)
    if orientation == 8:
        return np.rot90(img, k=1)
    return img


def from_upright(img: np.ndarray, orientation: int) -> np.ndarray:
    """Inverse of :func:`to_upright`: upright pixels -> stored pixel order (view)."""
    if orientation in (2, 3, 4, 5):  # involutions
        return to_upright(img, orientation)
    if orientation == 6:
        return np.rot90(img, k=1)
    if orientation == 7:
        return np.rot90(img, k=1)[:, ::-1]
    if orientation == 8:
        return np.rot90(img, k=-1)
    return img


# --- decode ------------------------------------------------------------------------------------


def _err(reason: str, message: str, stage: Stage = Stage.DECODE) -> ImageError:
    return ImageError(reason, message, stage)


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise _err("too_large", f"image is {width}x{height}, more than {max_pixels} pixels")


def decode_image(
    data: bytes,
    *,
    max_pixels: int,
    fast_upsample: bool = False,
    metadata: MetadataPolicy | None = None,
) -> DecodedImage:
    """Decode JPEG or PNG bytes (format from magic bytes) into upright RGB as a viewer shows it.

    ``fast_upsample`` (JPEG with subsampled chroma only): replicate chroma samples instead of
    libjpeg's smooth ("fancy") upsampling. Use it for the pixels that are RE-ENCODED with the
    same subsampling: the encoder's 2x2 averaging then gives back the original chroma
    samples, so untouched areas come out closer to the original (+1 to 2 dB PSNR on 4:2:0
    sources) and decoding is a few percent faster. Keep the default for detection.
    ``metadata``: what metadata the copy may carry (``None``: :class:`MetadataPolicy` defaults).

    Raises :class:`ImageError` (stage DECODE) with reason ``empty``, ``unknown_format``,
    ``truncated``, ``corrupt``, ``too_large`` or ``unsupported_format``.
    """
    policy = metadata if metadata is not None else MetadataPolicy()
    if not data:
        raise _err("empty", "file is empty")
    data = bytes(data)
    if data[:3] == b"\xff\xd8\xff":
        return _decode_jpeg(data, max_pixels, fast_upsample, policy)
    if data[:8] == png_meta.SIGNATURE:
        return _decode_png(data, max_pixels, policy)
    if len(data) < 8:
        raise _err("truncated", f"file is only {len(data)} bytes")
    raise _err("unknown_format", "not a JPEG or PNG file (unrecognised magic bytes)")


def _cmyk_to_rgb(cmyk: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 Adobe-inverted CMYK (255 = no ink) -> (H, W, 3) uint8 RGB:
    R = C * K / 255 (rounded), likewise G from M and B from Y (no colour management)."""
    c = cmyk.astype(np.uint16)
    k = c[:, :, 3:4]
    return ((c[:, :, :3] * k + 127) // 255).astype(np.uint8)


def _decode_jpeg(
    data: bytes, max_pixels: int, fast_upsample: bool, policy: MetadataPolicy
) -> DecodedImage:
    st = jpeg_meta.parse_jpeg(data)
    fr = st.frame
    _check_size(fr.width, fr.height, max_pixels)
    if fr.width == 0 or fr.height == 0:
        raise _err("unsupported_format", "JPEG with height defined by DNL is not supported")
    if fr.precision != 8:
        raise _err("unsupported_format", f"{fr.precision}-bit JPEG is not supported")
    ncomp = len(fr.components)
    if ncomp not in (1, 3, 4):
        raise _err("unsupported_format", f"JPEG with {ncomp} components is not supported")
    gray = ncomp == 1
    colorspace = {1: "GRAY", 3: "RGB", 4: "CMYK"}[ncomp]
    try:
        img = simplejpeg.decode_jpeg(
            data[: st.end], colorspace=colorspace, fastupsample=fast_upsample, strict=True
        )
    except (ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        reason = "unsupported_format" if "Unsupported" in msg else "corrupt"
        raise _err(reason, f"JPEG decode failed: {msg}") from e
    if img.shape[:2] != (fr.height, fr.width):
        raise _err("corrupt", "JPEG decoded size differs from its header")
    conversions: tuple[str, ...] = ()
    if gray:
        img = np.repeat(img.reshape(fr.height, fr.width, 1), 3, axis=2)
    elif ncomp == 4:
        img = _cmyk_to_rgb(img)
        conversions = ("cmyk_to_rgb",)
    orient = jpeg_meta.orientation(st)
    pixels = np.ascontiguousarray(to_upright(img, orient))
    quality = jpeg_meta.estimate_quality(jpeg_meta.luma_qtable(st))
    meta = JpegMetadata(
        jpeg_meta.select_metadata(st, policy, color_space=b"GRAY" if gray else b"RGB ")
    )
    return DecodedImage(
        pixels=pixels,
        format=ImageFormat.JPEG,
        orientation=orient,
        stored_orientation=_kept_orientation(meta.exif()),
        grayscale=gray,
        quality=quality,
        subsampling=jpeg_meta.subsampling(fr),
        metadata=meta,
        qtables_exact=jpeg_meta.qtables_match_quality(st, quality),
        conversions=conversions,
    )


def _kept_orientation(tiff: bytes | None) -> int:
    """The Orientation the rebuilt EXIF block writes (1 when there is no block or no tag)."""
    return 1 if tiff is None else exif_orientation(tiff)


def _to_8bit(img: np.ndarray) -> np.ndarray:
    """uint16 samples -> uint8, rounded (v / 257 to the nearest integer)."""
    return ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _flatten_on_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite (H, W, C) uint8 samples with (H, W) uint8 alpha onto white:
    ``(c * a + 255 * (255 - a)) / 255`` rounded, uint8 (uint16 temporaries: the numerator
    plus 127 is at most 65152)."""
    c = color.astype(np.uint16)
    a = alpha.astype(np.uint16)[:, :, None]
    return ((c * a + (255 - a) * 255 + 127) // 255).astype(np.uint8)


def _gray_trns_alpha(img: np.ndarray, hdr: png_meta.PngHeader, chunks: tuple) -> np.ndarray | None:
    """Alpha (0/max) for a gray PNG with a tRNS colour key, which OpenCV does not apply."""
    for ctype, body in chunks:
        if ctype == b"tRNS" and len(body) >= 2:
            (key,) = struct.unpack(">H", body[:2])
            if hdr.bit_depth < 8:  # OpenCV scales 1/2/4-bit gray to 0..255
                key *= 255 // ((1 << hdr.bit_depth) - 1)
            top = 65535 if img.dtype == np.uint16 else 255
            return np.where(img == key, 0, top).astype(img.dtype)
    return None


def _decode_png(data: bytes, max_pixels: int, policy: MetadataPolicy) -> DecodedImage:
    hdr = png_meta.read_header(data)
    _check_size(hdr.width, hdr.height, max_pixels)
    st = png_meta.parse_png(data)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise _err("corrupt", f"PNG decode failed: {str(e).strip().splitlines()[-1]}") from e
    if img is None:
        raise _err("corrupt", "PNG decode failed")
    if img.dtype not in (np.uint8, np.uint16):
        raise _err("unsupported_format", f"PNG decodes to {img.dtype}")
    if img.shape[:2] != (hdr.height, hdr.width):
        raise _err("corrupt", "PNG decoded size differs from its header")
    conversions: list[str] = []
    if img.ndim == 2:
        img = img[:, :, None]
    alpha = None
    if img.shape[2] == 4:
        alpha = img[:, :, 3]
        img = img[:, :, 2::-1]  # BGRA -> RGB
    elif img.shape[2] == 3:
        img = img[:, :, ::-1]
    elif img.shape[2] == 1:
        alpha = _gray_trns_alpha(img[:, :, 0], hdr, st.chunks)
    else:
        raise _err("unsupported_format", f"PNG decodes to {img.shape[2]} channels")
    if img.dtype == np.uint16:  # rounded first: the flattening below then works in 8 bits
        img = _to_8bit(img)
        alpha = None if alpha is None else _to_8bit(alpha)
        conversions.append("16_to_8_bit")
    if alpha is not None:
        if bool(np.any(alpha != 255)):
            conversions.append("alpha_flattened")
        img = _flatten_on_white(img, alpha)
    gray = hdr.color_type in (0, 4)
    if gray and img.shape[2] == 3:
        img = img[:, :, :1]  # OpenCV expands gray+alpha to BGRA
    rgb = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
    orient = 1
    for ctype, body in st.chunks:
        if ctype == b"eXIf":
            orient = exif_orientation(body)
            break
    pixels = np.ascontiguousarray(to_upright(rgb, orient), dtype=np.uint8)
    meta = PngMetadata(
        png_meta.select_metadata(st, policy, color_space=b"GRAY" if gray else b"RGB ")
    )
    return DecodedImage(
        pixels=pixels,
        format=ImageFormat.PNG,
        orientation=orient,
        stored_orientation=_kept_orientation(meta.exif()),
        grayscale=gray,
        metadata=meta,
        conversions=tuple(conversions),
    )


# --- encode ------------------------------------------------------------------------------------


def encode_image(
    decoded: DecodedImage,
    pixels: npt.NDArray[np.uint8],
    *,
    jpeg_quality: int = 0,
    keep_metadata: bool = True,
) -> bytes:
    """Encode upright RGB ``pixels`` (same shape as ``decoded.pixels``) like the original.

    ``jpeg_quality`` 0 means the original's estimated quality (fallback 92). The output is
    opaque; its stored pixel order follows ``decoded.stored_orientation`` (upright when
    ``keep_metadata`` is False). Raises ``ValueError`` for a wrong shape/dtype,
    :class:`ImageError` (stage ENCODE) if encoding fails (``encode_failed``) or if the output
    would carry an embedded picture (``metadata_leak``: never published).
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.shape != decoded.pixels.shape:
        raise ValueError(
            f"pixels must be uint8 {decoded.pixels.shape}, got {pixels.dtype} {pixels.shape}"
        )
    if not 0 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [0, 100], got {jpeg_quality}")
    orient = decoded.stored_orientation if keep_metadata else 1
    if decoded.grayscale:
        img = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)[:, :, None]
    else:
        img = pixels
    if decoded.format is ImageFormat.JPEG:
        out = _encode_jpeg(decoded, img, orient, jpeg_quality, keep_metadata)
    else:
        out = _encode_png(decoded, img, orient, keep_metadata)
    found = embedded_images(out)
    if found:
        raise _err(
            "metadata_leak",
            f"the encoded copy would carry {len(found)} embedded picture(s): {found[0]}",
            Stage.ENCODE,
        )
    return out


def _encode_jpeg(
    decoded: DecodedImage, img: np.ndarray, orient: int, jpeg_quality: int, keep: bool
) -> bytes:
    stored = np.ascontiguousarray(from_upright(img, orient))
    quality = jpeg_quality or decoded.quality or DEFAULT_JPEG_QUALITY
    gray = stored.shape[2] == 1
    sub = "Gray" if gray else (decoded.subsampling or "420")
    if not gray and sub == "Gray":
        sub = "444"
    try:
        out = simplejpeg.encode_jpeg(
            stored, quality=quality, colorspace="GRAY" if gray else "RGB", colorsubsampling=sub
        )
    except (ValueError, RuntimeError) as e:
        raise _err("encode_failed", f"JPEG encode failed: {e}", Stage.ENCODE) from e
    if keep and isinstance(decoded.metadata, JpegMetadata):
        out = jpeg_meta.insert_segments(out, decoded.metadata.segments)
    return bytes(out)


def _encode_png(decoded: DecodedImage, img: np.ndarray, orient: int, keep: bool) -> bytes:
    bgr = img[:, :, ::-1] if img.shape[2] == 3 else img
    stored = np.ascontiguousarray(from_upright(bgr, orient))
    ok, buf = cv2.imencode(".png", stored)
    if not ok:
        raise _err("encode_failed", "PNG encode failed", Stage.ENCODE)
    out = buf.tobytes()
    if keep and isinstance(decoded.metadata, PngMetadata) and decoded.metadata.chunks:
        out = png_meta.insert_chunks(out, decoded.metadata.chunks)
    return out
