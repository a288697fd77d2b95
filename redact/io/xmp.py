"""XMP by allowlist: parse as XML, keep simple properties of allowlisted namespaces, rebuild.

XMP may carry unblurred copies of the picture under any prefix: ``xmp:Thumbnails``, Google's
``GImage:Data`` (the original of a portrait/Lens Blur photo), ``GDepth:Data`` (depth maps),
``Container`` items, and so on. Matching names or prefixes cannot be trusted (a prefix is
whatever the writer declares), so :func:`sanitize_xmp`:

1. parses the packet with a hardened expat parser (:func:`parse_xmp`): no DTD, no entity
   declarations, no external entities, input at most ``max_bytes``, bounded depth and size;
   a packet that fails to parse is dropped entirely;
2. keeps only properties whose namespace URI (never the prefix) is allowlisted, and only
   simple text values (attribute form ``ns:Name="v"`` or element form ``<ns:Name>v</ns:Name>``
   of a top-level ``rdf:Description``; structures, arrays, resources and qualifiers dropped);
   values of at most :data:`MAX_VALUE_CHARS` characters;
3. writes a fresh, minimal packet (``x:xmpmeta/rdf:RDF/rdf:Description`` with the kept
   properties as attributes) instead of patching the original bytes.

The default allowlist is GPano (:data:`GPANO_NS`, panorama projection and pose). Extended XMP
is never read here (the JPEG layer drops it). Nothing here raises for any input except
:func:`parse_xmp`, which raises :class:`XmpError` (a ``ValueError``).
"""

from __future__ import annotations

import re
from xml.parsers import expat
from xml.sax.saxutils import escape, quoteattr

from redact.io.leakscan import payload_images

GPANO_NS = "http://ns.google.com/photos/1.0/panorama/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
X_NS = "adobe:ns:meta/"
XML_NS = "http://www.w3.org/XML/1998/namespace"
# Namespaces known to carry images or media (never allowlistable).
IMAGE_NAMESPACES = frozenset(
    {
        "http://ns.google.com/photos/1.0/image/",  # GImage:Data (original photo)
        "http://ns.google.com/photos/1.0/depthmap/",  # GDepth:Data/Confidence
        "http://ns.google.com/photos/1.0/container/",  # Container:Directory (motion photo)
        "http://ns.google.com/photos/1.0/container/item/",
        "http://ns.google.com/photos/dd/1.0/device/",  # Dynamic depth
        "http://ns.adobe.com/xap/1.0/g/img/",  # xmpGImg:image (thumbnails)
        "http://ns.adobe.com/xap/1.0/",  # xmp:Thumbnails
        "http://ns.adobe.com/xmp/note/",  # xmpNote:HasExtendedXMP
        RDF_NS,
        X_NS,
        XML_NS,
    }
)
MAX_XMP_BYTES = 1 << 20  # default input bound (a JPEG APP1 holds at most 65502 bytes)
MAX_VALUE_CHARS = 1024
_MAX_DEPTH = 64
_MAX_ELEMENTS = 20_000

_PREFIXES = {
    GPANO_NS: "GPano",
    "http://purl.org/dc/elements/1.1/": "dc",
    "http://ns.adobe.com/tiff/1.0/": "tiff",
    "http://ns.adobe.com/exif/1.0/": "exif",
    "http://ns.adobe.com/photoshop/1.0/": "photoshop",
    "http://ns.adobe.com/xap/1.0/rights/": "xmpRights",
}
_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")

Property = tuple[str, str, str]  # (namespace URI, local name, simple text value)


class XmpError(ValueError):
    """The packet is not well-formed, namespace-valid XML within the bounds."""


class _Refused(Exception):
    """A construct the hardened parser does not accept (DTD, entity declaration, ...)."""


class _Node:
    """A parsed element: namespace URI, local name, attributes, children, text."""

    __slots__ = ("attrs", "children", "name", "ns", "text")

    def __init__(self, ns: str, name: str, attrs: list[tuple[str, str, str]]) -> None:
        self.ns = ns
        self.name = name
        self.attrs = attrs
        self.children: list[_Node] = []
        self.text: list[str] = []


def _split(qname: str) -> tuple[str, str]:
    ns, sep, local = qname.rpartition(" ")
    return (ns, local) if sep else ("", qname)


def _refuse(*_args: object) -> None:
    raise _Refused("DTDs, entity and notation declarations are not accepted in XMP")


def _tree(packet: bytes, max_bytes: int) -> _Node:
    """Parse ``packet`` into a small element tree (root returned). Raises XmpError."""
    if len(packet) > max_bytes:
        raise XmpError(f"XMP packet of {len(packet)} bytes exceeds {max_bytes}")
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.ordered_attributes = True
    parser.buffer_text = True
    for handler in (
        "StartDoctypeDeclHandler",
        "EntityDeclHandler",
        "UnparsedEntityDeclHandler",
        "NotationDeclHandler",
        "ExternalEntityRefHandler",
        "SkippedEntityHandler",
        "ElementDeclHandler",
        "AttlistDeclHandler",
    ):
        setattr(parser, handler, _refuse)
    stack: list[_Node] = []
    roots: list[_Node] = []
    count = 0

    def start(qname: str, attrs: list[str]) -> None:
        nonlocal count
        count += 1
        if count > _MAX_ELEMENTS or len(stack) >= _MAX_DEPTH:
            raise _Refused("XMP too deep or too large")
        pairs = [(*_split(attrs[i]), attrs[i + 1]) for i in range(0, len(attrs), 2)]
        node = _Node(*_split(qname), pairs)
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)

    def end(_qname: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].text.append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(packet.rstrip(b"\x00 \t\r\n"), True)
    except (_Refused, expat.ExpatError) as e:
        raise XmpError(f"XMP rejected: {e}") from e
    if len(roots) != 1:
        raise XmpError("XMP has no root element")
    return roots[0]


def _descriptions(root: _Node) -> list[_Node]:
    """The top-level ``rdf:Description`` elements (under ``x:xmpmeta/rdf:RDF`` or a root
    ``rdf:RDF``)."""
    if (root.ns, root.name) == (X_NS, "xmpmeta"):
        rdfs = [c for c in root.children if (c.ns, c.name) == (RDF_NS, "RDF")]
    elif (root.ns, root.name) == (RDF_NS, "RDF"):
        rdfs = [root]
    else:
        return []
    return [d for r in rdfs for d in r.children if (d.ns, d.name) == (RDF_NS, "Description")]


def _simple(value: str) -> str | None:
    value = value.strip()
    if not value or len(value) > MAX_VALUE_CHARS:
        return None
    return value


def parse_xmp(packet: bytes, max_bytes: int = MAX_XMP_BYTES) -> list[Property]:
    """Every simple property of the packet's top-level descriptions, in document order.

    Attribute-form and element-form properties with a plain text value are returned (as
    (namespace URI, local name, stripped value)); structured, array, resource and empty
    values, and values longer than :data:`MAX_VALUE_CHARS`, are left out. Raises
    :class:`XmpError` if the packet is not acceptable XML.
    """
    out: list[Property] = []
    for desc in _descriptions(_tree(bytes(packet), max_bytes)):
        for ns, name, value in desc.attrs:
            if ns in ("", RDF_NS, XML_NS):
                continue
            v = _simple(value)
            if v is not None:
                out.append((ns, name, v))
        for child in desc.children:
            if child.ns in ("", RDF_NS, XML_NS) or child.children:
                continue
            if any((ns, name) != (XML_NS, "lang") for ns, name, _ in child.attrs):
                continue  # rdf:resource, rdf:parseType, qualifiers
            v = _simple("".join(child.text))
            if v is not None:
                out.append((child.ns, child.name, v))
    return out


def build_xmp(properties: list[Property]) -> bytes:
    """A fresh UTF-8 XMP packet holding ``properties`` as attributes of one description."""
    prefix: dict[str, str] = {}
    for ns, _, _ in properties:
        if ns not in prefix:
            prefix[ns] = _PREFIXES.get(ns) or f"ns{len(prefix) + 1}"
    decls = "".join(f" xmlns:{p}={quoteattr(ns)}" for ns, p in prefix.items())
    attrs = "".join(
        f" {prefix[ns]}:{name}={quoteattr(value, {chr(10): '&#10;', chr(13): '&#13;', chr(9): '&#9;'})}"
        for ns, name, value in properties
    )
    body = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        f'<x:xmpmeta xmlns:x="{X_NS}"><rdf:RDF xmlns:rdf="{escape(RDF_NS)}">'
        f'<rdf:Description rdf:about=""{decls}{attrs}/>'
        "</rdf:RDF></x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    return body.encode("utf-8")


def sanitize_xmp(
    packet: bytes,
    namespaces: tuple[str, ...] = (GPANO_NS,),
    max_bytes: int = MAX_XMP_BYTES,
) -> bytes | None:
    """A rebuilt packet with only the simple properties of ``namespaces`` (URIs), or
    ``None`` (nothing kept, unparsable, too large, or still image-like). Never raises."""
    allowed = set(namespaces) - IMAGE_NAMESPACES
    try:
        props = parse_xmp(packet, max_bytes)
    except XmpError:
        return None
    kept: list[Property] = []
    seen: set[tuple[str, str]] = set()
    for ns, name, value in props:
        if ns in allowed and (ns, name) not in seen and _NCNAME.fullmatch(name):
            seen.add((ns, name))
            kept.append((ns, name, value))
    if not kept:
        return None
    out = build_xmp(kept)
    return None if payload_images(out) else out


def gpano_projection(xmp: bytes | None) -> str | None:
    """The lower-cased ``ProjectionType`` of the GPano namespace (matched by URI, attribute
    or element form) of an XMP packet, or ``None`` when it has none or does not parse."""
    if not xmp:
        return None
    try:
        props = parse_xmp(xmp)
    except XmpError:
        return None
    for ns, name, value in props:
        if ns == GPANO_NS and name == "ProjectionType":
            return value.lower()
    return None
