"""Crafted metadata-leak files, and how many of them still leak a picture after the codec.

Usage::

    python scripts/leak_files.py OUTDIR            # the codec of this checkout
    python scripts/leak_files.py OUTDIR --rev REV  # redact/io/ as of git revision REV

writes every crafted file to ``OUTDIR/crafted/``, runs it through ``decode_image`` +
``encode_image`` (of this checkout, or of the ``redact/io`` modules of ``REV`` loaded as a
separate package), writes the published copies to ``OUTDIR/out-<label>/`` and prints, per
file, whether the original and the copy carry a recoverable secondary picture:
:func:`redact.io.leakscan.embedded_images`, a fingerprint of the secret picture found raw,
and (when installed) exiftool binary/preview tags. A copy refused by the codec
(``metadata_leak``) is not published and counts as no leak.

The builders are also used by the tests (``tests/test_metadata_*.py``): every case is one
a hostile tester reproduced against the old blocklist sanitisers.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import simplejpeg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from redact.errors import ImageError  # noqa: E402
from redact.io.leakscan import embedded_images  # noqa: E402

SECRET_MARK = b"SECRET-ORIGINAL-PIXELS"
GIMAGE_NS = "http://ns.google.com/photos/1.0/image/"
GPANO_NS = "http://ns.google.com/photos/1.0/panorama/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXT_ID = b"http://ns.adobe.com/xmp/extension/\x00"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# exiftool tags that hold pictures.
BINARY_TAGS = frozenset(
    {
        "ThumbnailImage",
        "PreviewImage",
        "ImageData",
        "JpgFromRaw",
        "OtherImage",
        "PreviewTIFF",
        "ThumbnailTIFF",
        "DepthImage",
        "ConfidenceMap",
        "EmbeddedImage",
        "MPImage2",
        "MPImage3",
        "PhotoshopThumbnail",
    }
)


# --- pictures --------------------------------------------------------------------------------


def smooth(h: int, w: int, seed: int) -> np.ndarray:
    """(h, w, 3) uint8 smooth colour image (JPEG friendly)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def secret_jpeg() -> bytes:
    """The 'unblurred original': a real 48x48 JPEG with :data:`SECRET_MARK` in a COM."""
    j = simplejpeg.encode_jpeg(smooth(48, 48, 7), quality=85)
    com = b"\xff\xfe" + struct.pack(">H", len(SECRET_MARK) + 2) + SECRET_MARK
    return j[:2] + com + j[2:]


def secret_png() -> bytes:
    ok, buf = cv2.imencode(".png", smooth(24, 24, 8))
    if not ok:
        raise RuntimeError("PNG encode failed")
    return buf.tobytes()


def fingerprints() -> tuple[bytes, ...]:
    """Byte windows of the secret pictures that no clean output can contain."""
    j, p = secret_jpeg(), secret_png()
    return (SECRET_MARK, j[len(j) // 2 : len(j) // 2 + 48], p[len(p) // 2 : len(p) // 2 + 48])


def b64_lines(data: bytes, width: int = 76) -> bytes:
    s = base64.b64encode(data)
    return b"\n".join(s[i : i + width] for i in range(0, len(s), width))


# --- containers ------------------------------------------------------------------------------


def seg(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def base_jpeg(h: int = 48, w: int = 64, seed: int = 0) -> bytes:
    return simplejpeg.encode_jpeg(smooth(h, w, seed), quality=90, colorsubsampling="420")


def jpeg_with(segments: list[bytes], base: bytes | None = None, trailer: bytes = b"") -> bytes:
    base = base or base_jpeg()
    return base[:2] + b"".join(segments) + base[2:] + trailer


def chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def png_with(chunks: list[tuple[bytes, bytes]], rgb: np.ndarray | None = None) -> bytes:
    rgb = smooth(48, 64, 1) if rgb is None else rgb
    ok, buf = cv2.imencode(".png", rgb[:, :, ::-1] if rgb.ndim == 3 else rgb)
    if not ok:
        raise RuntimeError("PNG encode failed")
    data = buf.tobytes()
    ihdr_end = 8 + 12 + 13
    return data[:ihdr_end] + b"".join(chunk(c, b) for c, b in chunks) + data[ihdr_end:]


def tiff(
    ifds: list[list[tuple]],
    next_of: dict[int, int] | None = None,
    blobs: list[bytes] | None = None,
    e: str = "<",
) -> bytes:
    """A TIFF block. Entry = (tag, type, count, value); value is packed bytes, or
    ("ifd", k) / ("blob", k) for a LONG offset to IFD k / blob k (blobs follow the IFDs)."""
    next_of = next_of or {}
    blobs = blobs or []

    def data_len(ents: list[tuple]) -> int:
        return sum(len(v) + len(v) % 2 for *_, v in ents if isinstance(v, bytes) and len(v) > 4)

    offs, pos = [], 8
    for ents in ifds:
        offs.append(pos)
        pos += 2 + 12 * len(ents) + 4 + data_len(ents)
    boffs = []
    for b in blobs:
        boffs.append(pos)
        pos += len(b)
    out = bytearray((b"II" if e == "<" else b"MM") + struct.pack(e + "HI", 42, 8))
    for k, ents in enumerate(ifds):
        data_pos = offs[k] + 2 + 12 * len(ents) + 4
        d = bytearray(struct.pack(e + "H", len(ents)))
        data = bytearray()
        for tag, typ, count, v in ents:
            if isinstance(v, tuple):
                val = struct.pack(e + "I", (offs if v[0] == "ifd" else boffs)[v[1]])
            elif len(v) <= 4:
                val = v.ljust(4, b"\x00")
            else:
                val = struct.pack(e + "I", data_pos + len(data))
                data += v + b"\x00" * (len(v) % 2)
            d += struct.pack(e + "HHI", tag, typ, count) + val
        nxt = offs[next_of[k]] if k in next_of else 0
        out += d + struct.pack(e + "I", nxt) + data
    for b in blobs:
        out += b
    return bytes(out)


def short(v: int) -> bytes:
    return struct.pack("<H", v)


def ascii_(s: str) -> bytes:
    return s.encode() + b"\x00"


def camera_ifds(orientation: int = 1) -> list[list[tuple]]:
    """IFD0 (Make, Model, Orientation, Exif and GPS pointers), Exif IFD (DateTimeOriginal),
    GPS IFD (N 52 deg 22' 12.34'')."""
    lat = b"".join(struct.pack("<II", n, d) for n, d in ((52, 1), (22, 1), (1234, 100)))
    return [
        [
            (0x010F, 2, 8, ascii_("TestCam")),
            (0x0110, 2, 6, ascii_("Mk II")),
            (0x0112, 3, 1, short(orientation)),
            (0x8769, 4, 1, ("ifd", 1)),
            (0x8825, 4, 1, ("ifd", 2)),
        ],
        [(0x9003, 2, 20, ascii_("2024:01:02 03:04:05"))],
        [(0x0001, 2, 2, b"N\x00"), (0x0002, 5, 3, lat)],
    ]


def icc_profile(extra: list[tuple[bytes, bytes]] | None = None, space: bytes = b"RGB ") -> bytes:
    """A small but well-formed ICC v4 display profile (desc, wtpt) plus ``extra`` tags."""
    text = "Test RGB".encode("utf-16-be")
    desc = b"mluc" + bytes(4) + struct.pack(">II", 1, 12) + b"enUS"
    desc += struct.pack(">II", len(text), 28) + text
    wtpt = b"XYZ " + bytes(4) + struct.pack(">iii", 0xF6D6, 0x10000, 0xD32D)
    tags = [(b"desc", desc), (b"wtpt", wtpt), *(extra or [])]
    table_end = 128 + 4 + 12 * len(tags)
    body = bytearray()
    entries = bytearray(struct.pack(">I", len(tags)))
    for sig, data in tags:
        entries += struct.pack(">4sII", sig, table_end + len(body), len(data))
        body += data + bytes(-len(data) % 4)
    size = table_end + len(body)
    header = (
        struct.pack(">I", size)
        + b"lcms"
        + b"\x04\x30\x00\x00"
        + b"mntr"
        + space
        + b"XYZ "
        + struct.pack(">6H", 2024, 1, 2, 3, 4, 5)
        + b"acsp"
        + b"APPL"
        + bytes(4 + 4 + 4 + 8 + 4)
        + struct.pack(">iii", 0xF6D6, 0x10000, 0xD32D)
        + b"lcms"
        + bytes(16 + 28)
    )
    if len(header) != 128:
        raise AssertionError(len(header))
    return header + bytes(entries) + bytes(body)


def icc_segments(profile: bytes, step: int = 60000) -> list[bytes]:
    parts = [profile[i : i + step] for i in range(0, len(profile), step)]
    return [
        seg(0xE2, b"ICC_PROFILE\x00" + bytes((i + 1, len(parts))) + p) for i, p in enumerate(parts)
    ]


def xmp(attrs: str = "", elems: str = "", ns: dict[str, str] | None = None) -> bytes:
    """An XMP packet: one rdf:Description with ``attrs`` and child ``elems``."""
    decls = "".join(f' xmlns:{p}="{u}"' for p, u in (ns or {}).items())
    inner = f'<rdf:Description rdf:about=""{decls} {attrs}>{elems}</rdf:Description>'
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF_NS}">{inner}'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def gimage_attr_xmp(extra_attrs: str = "", extra_ns: dict[str, str] | None = None) -> bytes:
    data = base64.b64encode(secret_jpeg()).decode()
    ns = {"g": GIMAGE_NS, **(extra_ns or {})}
    return xmp(f'{extra_attrs} g:Mime="image/jpeg" g:Data="{data}"', "", ns)


def gimage_element_xmp() -> bytes:
    data = b64_lines(secret_jpeg()).decode()
    return xmp("", f"<g:Mime>image/jpeg</g:Mime><g:Data>{data}</g:Data>", {"g": GIMAGE_NS})


GPANO_ATTRS = (
    'GPano:ProjectionType="equirectangular" GPano:UsePanoramaViewer="True" '
    'GPano:FullPanoWidthPixels="128" GPano:FullPanoHeightPixels="64" '
    'GPano:PoseHeadingDegrees="123.4"'
)


# --- the crafted cases -----------------------------------------------------------------------


def case_xmp_gimage_attribute() -> bytes:
    return jpeg_with([seg(0xE1, XMP_ID + gimage_attr_xmp())])


def case_xmp_gimage_element() -> bytes:
    return jpeg_with([seg(0xE1, XMP_ID + gimage_element_xmp())])


def case_xmp_gimage_extended() -> bytes:
    """Standard XMP announcing extended XMP; the extension holds g:Data (element form)."""
    ext = gimage_element_xmp()
    guid = hashlib.md5(ext).hexdigest().upper().encode()
    std = xmp(
        f'xmpNote:HasExtendedXMP="{guid.decode()}"',
        "",
        {"xmpNote": "http://ns.adobe.com/xmp/note/"},
    )
    step = 1000
    chunks = [
        seg(0xE1, XMP_EXT_ID + guid + struct.pack(">II", len(ext), o) + ext[o : o + step])
        for o in range(0, len(ext), step)
    ]
    return jpeg_with([seg(0xE1, XMP_ID + std), *chunks])


def case_gpano_gimage() -> bytes:
    """A GPano equirectangular panorama whose XMP also holds the original (g:Data)."""
    packet = gimage_attr_xmp(GPANO_ATTRS, {"GPano": GPANO_NS})
    return jpeg_with([seg(0xE1, XMP_ID + packet)], base_jpeg(64, 128, 3))


def case_exif_thumbnail_lying_length() -> bytes:
    ifds = camera_ifds()
    thumb = [
        (0x0103, 3, 1, short(6)),
        (0x0201, 4, 1, ("blob", 0)),
        (0x0202, 4, 1, struct.pack("<I", 2)),
    ]
    block = tiff([*ifds, thumb], {0: 3}, [secret_jpeg()])
    return jpeg_with([seg(0xE1, b"Exif\x00\x00" + block)])


def case_exif_orphan_trailing_jpeg() -> bytes:
    block = tiff(camera_ifds()) + secret_jpeg()
    return jpeg_with([seg(0xE1, b"Exif\x00\x00" + block)])


def case_exif_unknown_tag_jpeg() -> bytes:
    ifds = camera_ifds()
    s = secret_jpeg()
    ifds[0].append((0xC5D8, 7, len(s), s))
    ifds[0].sort(key=lambda t: t[0])
    return jpeg_with([seg(0xE1, b"Exif\x00\x00" + tiff(ifds))])


def case_exif_serials_owner_makernote() -> bytes:
    ifds = camera_ifds()
    ifds[0] += [
        (0x013B, 2, 9, ascii_("Jane Doe")),
        (0x8298, 2, 12, ascii_("(c) J. Doe")),
        (0xC62F, 2, 9, ascii_("CAM-0042")),
    ]
    ifds[0].sort(key=lambda t: t[0])
    s = secret_jpeg()
    ifds[1] += [
        (0x927C, 7, len(s) + 8, b"Vendor\x00\x00" + s),
        (0x9286, 7, 24, b"ASCII\x00\x00\x00secret comment!!"),
        (0xA420, 2, 33, ascii_("0123456789abcdef0123456789abcdef")),
        (0xA430, 2, 9, ascii_("Jane Doe")),
        (0xA431, 2, 9, ascii_("SN123456")),
        (0xA435, 2, 9, ascii_("LN654321")),
    ]
    ifds[1].sort(key=lambda t: t[0])
    return jpeg_with([seg(0xE1, b"Exif\x00\x00" + tiff(ifds))])


def case_com_base64_jpeg() -> bytes:
    return jpeg_with([seg(0xFE, b"data:image/jpeg;base64," + b64_lines(secret_jpeg()))])


def case_icc_with_jpeg() -> bytes:
    profile = icc_profile([(b"zzzz", secret_jpeg())])
    return jpeg_with(icc_segments(profile, 700))


def case_mpf_trailer() -> bytes:
    """Control case (the old code handled it): MPF index + a second picture after EOI."""
    return jpeg_with([seg(0xE2, b"MPF\x00II*\x00" + bytes(8))], trailer=secret_jpeg())


def _xmp_text(keyword_chunk: bytes, packet: bytes) -> tuple[bytes, bytes]:
    key = b"XML:com.adobe.xmp"
    if keyword_chunk == b"tEXt":
        return (b"tEXt", key + b"\x00" + packet)
    if keyword_chunk == b"zTXt":
        return (b"zTXt", key + b"\x00\x00" + zlib.compress(packet))
    return (b"iTXt", key + b"\x00\x01\x00\x00\x00" + zlib.compress(packet))


def case_png_text_xmp_gimage() -> bytes:
    return png_with([_xmp_text(b"tEXt", gimage_attr_xmp())])


def case_png_ztxt_xmp_gimage() -> bytes:
    return png_with([_xmp_text(b"zTXt", gimage_element_xmp())])


def case_png_itxt_compressed_xmp_gimage() -> bytes:
    return png_with([_xmp_text(b"iTXt", gimage_attr_xmp())])


def case_png_text_base64_images() -> bytes:
    return png_with(
        [
            (b"tEXt", b"Comment\x00" + b64_lines(secret_jpeg())),
            (b"zTXt", b"Description\x00\x00" + zlib.compress(base64.b64encode(secret_png()))),
            (
                b"iTXt",
                b"Thumb\x00\x01\x00\x00\x00"
                + zlib.compress(base64.urlsafe_b64encode(secret_jpeg())),
            ),
        ]
    )


def case_png_exif_thumbnail() -> bytes:
    thumb = [(0x0201, 4, 1, ("blob", 0)), (0x0202, 4, 1, struct.pack("<I", 2))]
    block = tiff([*camera_ifds(), thumb], {0: 3}, [secret_jpeg()])
    return png_with([(b"eXIf", block)])


def case_png_iccp_jpeg() -> bytes:
    profile = icc_profile([(b"zzzz", secret_jpeg())])
    return png_with([(b"iCCP", b"evil\x00\x00" + zlib.compress(profile))])


CASES: dict[str, Callable[[], bytes]] = {
    "xmp_gimage_attribute.jpg": case_xmp_gimage_attribute,
    "xmp_gimage_element.jpg": case_xmp_gimage_element,
    "xmp_gimage_extended.jpg": case_xmp_gimage_extended,
    "gpano_gimage.jpg": case_gpano_gimage,
    "exif_thumbnail_lying_length.jpg": case_exif_thumbnail_lying_length,
    "exif_orphan_trailing_jpeg.jpg": case_exif_orphan_trailing_jpeg,
    "exif_unknown_tag_jpeg.jpg": case_exif_unknown_tag_jpeg,
    "exif_serials_owner_makernote.jpg": case_exif_serials_owner_makernote,
    "com_base64_jpeg.jpg": case_com_base64_jpeg,
    "icc_with_jpeg.jpg": case_icc_with_jpeg,
    "mpf_trailer.jpg": case_mpf_trailer,
    "png_text_xmp_gimage.png": case_png_text_xmp_gimage,
    "png_ztxt_xmp_gimage.png": case_png_ztxt_xmp_gimage,
    "png_itxt_compressed_xmp_gimage.png": case_png_itxt_compressed_xmp_gimage,
    "png_text_base64_images.png": case_png_text_base64_images,
    "png_exif_thumbnail.png": case_png_exif_thumbnail,
    "png_iccp_jpeg.png": case_png_iccp_jpeg,
}


# --- pixel cases (not metadata: what the detector sees vs what a viewer shows) ----------------


def face_pattern(h: int = 64, w: int = 64) -> np.ndarray:
    """(h, w) uint8 gray 'face': light oval, dark eyes and mouth, on mid gray."""
    img = np.full((h, w), 120, np.uint8)
    cv2.ellipse(img, (w // 2, h // 2), (w // 3, h * 2 // 5), 0, 0, 360, 230, -1)
    for x in (w // 2 - w // 8, w // 2 + w // 8):
        cv2.circle(img, (x, h // 2 - h // 10), max(2, w // 20), 20, -1)
    cv2.ellipse(img, (w // 2, h // 2 + h // 6), (w // 8, h // 20), 0, 0, 360, 40, -1)
    return img


def case_alpha_only_face() -> tuple[bytes, np.ndarray]:
    """RGB all black, alpha = 255 - face: on a white page a viewer shows the face."""
    face = face_pattern()
    bgra = np.dstack([np.zeros((*face.shape, 3), np.uint8), 255 - face])
    ok, buf = cv2.imencode(".png", bgra)
    if not ok:
        raise RuntimeError("PNG encode failed")
    return buf.tobytes(), face


def case_orientation6_malformed_exif() -> tuple[bytes, np.ndarray]:
    """Orientation 6 in a readable IFD0, Exif IFD pointer out of range (block malformed).
    Returns the file and the upright (H, W, 3) RGB image a viewer shows."""
    stored = smooth(48, 64, 5)
    stored[:8, :16] = (255, 0, 0)
    ifds = camera_ifds(orientation=6)
    block = bytearray(tiff(ifds))
    pos = block.index(struct.pack("<HHI", 0x8769, 4, 1))
    block[pos + 8 : pos + 12] = struct.pack("<I", 10**6)
    data = jpeg_with(
        [seg(0xE1, b"Exif\x00\x00" + bytes(block))], simplejpeg.encode_jpeg(stored, 95)
    )
    return data, np.rot90(stored, k=-1)


# --- counting --------------------------------------------------------------------------------


def exiftool_pictures(path: Path) -> list[str]:
    """exiftool tags of ``path`` that hold a picture (empty when exiftool is missing)."""
    exe = shutil.which("exiftool")
    if exe is None:
        return []
    res = subprocess.run(
        [exe, "-j", "-a", "-G1", "-b", str(path)], capture_output=True, check=False, timeout=60
    )
    try:
        tags = json.loads(res.stdout or b"[{}]")[0]
    except (json.JSONDecodeError, IndexError):
        return []
    out = []
    for key, value in tags.items():
        name = key.split(":")[-1]
        raw = b""
        if isinstance(value, str) and value.startswith("base64:"):
            raw = base64.b64decode(value[7:])
        if name in BINARY_TAGS or raw[:3] == b"\xff\xd8\xff" or raw[:8] == PNG_SIGNATURE:
            out.append(key)
    return out


def recoverable(data: bytes, path: Path | None = None) -> list[str]:
    """Why ``data`` still carries a secondary picture (empty: nothing found)."""
    why = list(embedded_images(data))
    why += [f"secret fingerprint {i}" for i, f in enumerate(fingerprints()) if f in data]
    if path is not None:
        why += [f"exiftool {t}" for t in exiftool_pictures(path)]
    return why


def load_codec(rev: str | None) -> ModuleType:
    """``redact.io.codec`` of this checkout, or of git revision ``rev`` (its ``redact/io``
    modules copied into a private package so both versions can coexist)."""
    if rev is None:
        return importlib.import_module("redact.io.codec")
    pkg = f"_redact_io_{hashlib.sha1(rev.encode()).hexdigest()[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="leak_files_"))
    (tmp / pkg).mkdir()
    (tmp / pkg / "__init__.py").write_text("")
    listing = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{rev}:redact/io"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listing:
        if not name.endswith(".py"):
            continue
        src = subprocess.run(
            ["git", "show", f"{rev}:redact/io/{name}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        src = src.replace("from redact.io import", f"from {pkg} import")
        src = src.replace("from redact.io.", f"from {pkg}.")
        (tmp / pkg / name).write_text(src)
    sys.path.insert(0, str(tmp))
    return importlib.import_module(f"{pkg}.codec")


def run(outdir: Path, rev: str | None = None) -> dict[str, int]:
    """Write the crafted files and their published copies; print and return the counts."""
    codec = load_codec(rev)
    label = rev or "current"
    crafted = outdir / "crafted"
    published = outdir / f"out-{label.replace('/', '_')}"
    crafted.mkdir(parents=True, exist_ok=True)
    published.mkdir(parents=True, exist_ok=True)
    counts = {"files": 0, "originals_leaking": 0, "published_leaking": 0, "refused": 0}
    for name, build in CASES.items():
        data = build()
        (crafted / name).write_bytes(data)
        counts["files"] += 1
        before = recoverable(data, crafted / name)
        counts["originals_leaking"] += bool(before)
        try:
            d = codec.decode_image(data, max_pixels=50_000_000)
            out = codec.encode_image(d, d.pixels)
        except ImageError as e:  # both codec versions raise redact.errors.ImageError
            counts["refused"] += 1
            print(f"{name:40s} original: {'LEAK' if before else 'clean':5s}  copy: refused ({e})")
            continue
        (published / name).write_bytes(out)
        after = recoverable(out, published / name)
        counts["published_leaking"] += bool(after)
        verdict = f"LEAK ({after[0]})" if after else "clean"
        print(f"{name:40s} original: {'LEAK' if before else 'clean':5s}  copy: {verdict}")
    print(
        f"[{label}] {counts['files']} crafted files, {counts['originals_leaking']} carry a "
        f"recoverable picture; published copies still carrying one: "
        f"{counts['published_leaking']} (refused, not published: {counts['refused']})"
    )
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--rev", help="git revision whose redact/io codec to run (default: this tree)")
    args = ap.parse_args(argv)
    run(args.outdir, args.rev)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
