"""``redact review serve``: the review page over HTTP (stdlib ThreadingHTTPServer).

Routes (everything else 404):

* ``GET /``: the queue; ``GET /image/<image id>``: one image's viewer page.
* ``GET /static/<file>``: the page's script and styles and the vendored pannellum (only the
  ``.js``/``.css`` files shipped in ``redact/season/web/static``).
* ``GET /file/<image id>/<name>``: a file the manifest lists for that image, by the name
  :mod:`redact.season.web.model` gave it (``published``, ``r/<rendition path>``; ``original``
  only when the server runs with ``originals=True``). A request never names a filesystem path.
* ``POST /api/decide`` ``{"review_id", "decision", ["box", "class", "note"]}``: a review
  decision, written by :func:`redact.season.review.record_decisions` (what
  ``redact review decide`` calls). ``POST /api/region`` ``{"image_id", "box", "class",
  "reason"}``: a missed face/plate as a manual region (what ``redact report add`` writes).

Safety: bound to 127.0.0.1 by default, and then requests must name a loopback ``Host``
(DNS rebinding); a POST needs the server's random token (``X-Redact-Token``, in every page)
and ``Content-Type: application/json``; bodies are validated field by field (allowlists) and
nothing is written unless all of it is valid.
"""

from __future__ import annotations

import hmac
import http.server
import json
import math
import re
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from redact.season.web.model import Catalog, read_catalog, read_file
from redact.season.web.pages import PageContext, image_page, queue_page

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
FILE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".json": "application/json",
}
MAX_BODY = 64 * 1024
DECISIONS = frozenset({"confirmed", "false_positive", "missed"})
CLASSES = frozenset({"face", "license_plate"})
_REVIEW_ID = re.compile(r"[0-9a-f]{20}")
_IMAGE_ID = re.compile(r"[0-9a-f]{16}")
MAX_NOTE = 500
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class RequestError(Exception):
    """A request the server refuses: HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def static_files(root: Path = STATIC_DIR) -> dict[str, Path]:
    """The servable static files: posix path under ``root`` -> file (``.js``/``.css`` only)."""
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in STATIC_TYPES
    }


def _box(value: Any) -> str:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
    ):
        raise RequestError(400, "box must be a list of 4 finite numbers [x1, y1, x2, y2]")
    return ",".join(repr(float(v)) for v in value)


def _text(body: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = body.get(key, "")
    if not isinstance(value, str) or len(value) > MAX_NOTE:
        raise RequestError(400, f"{key} must be a string of at most {MAX_NOTE} characters")
    if required and not value.strip():
        raise RequestError(400, f"{key} is required")
    return value.strip()


def _only(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise RequestError(400, f"unexpected field(s): {', '.join(map(str, extra))}")


def decision_request(body: Any, items: Mapping[str, Any]) -> dict[str, str]:
    """A POST /api/decide body -> a request for
    :func:`redact.season.review.parse_decision_rows`; RequestError (4xx) for anything else:
    not an object, unknown fields, a decision outside :data:`DECISIONS`, a review id not in
    ``items``, a box that is not 4 finite numbers."""
    if not isinstance(body, dict):
        raise RequestError(400, "body must be a JSON object")
    _only(body, frozenset({"review_id", "decision", "box", "class", "note"}))
    rid, decision = body.get("review_id"), body.get("decision")
    if not isinstance(rid, str) or not _REVIEW_ID.fullmatch(rid):
        raise RequestError(400, "review_id must be a review id")
    if rid not in items:
        raise RequestError(404, f"unknown review id {rid}")
    if decision not in DECISIONS:
        raise RequestError(400, f"decision must be one of {', '.join(sorted(DECISIONS))}")
    out = {"review_id": rid, "decision": decision, "note": _text(body, "note")}
    if "box" in body:
        if decision != "missed":
            raise RequestError(400, "a box is only for a missed decision")
        out["box"] = _box(body["box"])
    if "class" in body:
        if body["class"] not in CLASSES:
            raise RequestError(400, f"class must be one of {', '.join(sorted(CLASSES))}")
        out["class"] = body["class"]
    return out


def region_request(body: Any, catalog: Catalog) -> dict[str, Any]:
    """A POST /api/region body -> ``{image, box, class, reason}`` (the image entry, a
    validated box inside it); RequestError (4xx) otherwise."""
    from redact.season.manual import check_box_in_image, parse_box

    if not isinstance(body, dict):
        raise RequestError(400, "body must be a JSON object")
    _only(body, frozenset({"image_id", "box", "class", "reason"}))
    iid = body.get("image_id")
    if not isinstance(iid, str) or not _IMAGE_ID.fullmatch(iid):
        raise RequestError(400, "image_id must be an image id")
    entry = catalog.images.get(iid)
    if entry is None:
        raise RequestError(404, f"unknown image id {iid}")
    cls = body.get("class", "face")
    if cls not in CLASSES:
        raise RequestError(400, f"class must be one of {', '.join(sorted(CLASSES))}")
    try:
        box = parse_box(_box(body.get("box")))
        check_box_in_image(box, entry.width, entry.height, wrap=entry.equirectangular)
    except ValueError as e:
        raise RequestError(400, str(e)) from None
    return {
        "image": entry,
        "box": box,
        "class": cls,
        "reason": _text(body, "reason", required=True),
    }


class ReviewServer(http.server.ThreadingHTTPServer):
    """The review page of one published tree. ``url`` is where it listens."""

    daemon_threads = True

    def __init__(
        self,
        layout: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        originals: bool = False,
        decided_by: str = "",
    ) -> None:
        self.layout = layout
        self.originals = originals
        self.decided_by = decided_by or "review-page"
        self.token = secrets.token_urlsafe(32)
        self.static = static_files()
        self.write_lock = threading.Lock()
        self.catalog = read_catalog(layout, originals=originals)
        super().__init__((host, port), _Handler)
        self.loopback = host in LOOPBACK
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.server_address[1]}/"

    def refresh(self) -> Catalog:
        """Re-read the manifest and review store (pages show current decisions)."""
        self.catalog = read_catalog(self.layout, originals=self.originals)
        return self.catalog

    def context(self) -> PageContext:
        return PageContext(
            static="/static/",
            index="/",
            image_page=lambda iid: f"/image/{iid}",
            file_url=lambda iid, name: f"/file/{iid}/{name}",
            token=self.token,
            originals=self.originals,
            live=True,
        )


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ReviewServer
    server_version = "redact-review"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per error only
        if args and str(args[1] if len(args) > 1 else "").startswith(("4", "5")):
            super().log_message(format, *args)

    # --- plumbing ---
    def _send(self, status: int, body: bytes, ctype: str, *, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "private, max-age=300" if cache else "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _check_host(self) -> None:
        if not self.server.loopback:
            return
        host = urlsplit("//" + (self.headers.get("Host") or "")).hostname or ""
        if host not in LOOPBACK:
            raise RequestError(403, "this server only answers requests for a loopback host")

    def _route(self, method: str) -> None:
        try:
            self._check_host()
            path = urlsplit(self.path).path
            if method == "GET":
                self._get(path)
            else:
                self._post(path)
        except RequestError as e:
            self._json(e.status, {"error": str(e)})

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    # --- GET ---
    def _get(self, path: str) -> None:
        srv = self.server
        if path == "/":
            page = queue_page(srv.refresh(), srv.context())
            self._send(200, page.encode(), "text/html; charset=utf-8")
            return
        if path.startswith("/image/"):
            iid = path[len("/image/") :]
            catalog = srv.refresh()
            entry = catalog.images.get(iid)
            if entry is None:
                raise RequestError(404, "unknown image")
            page = image_page(entry, srv.context())
            self._send(200, page.encode(), "text/html; charset=utf-8")
            return
        if path.startswith("/static/"):
            f = srv.static.get(path[len("/static/") :])
            if f is None:
                raise RequestError(404, "not found")
            self._send(200, f.read_bytes(), STATIC_TYPES[f.suffix], cache=True)
            return
        if path.startswith("/file/"):
            iid, _, name = path[len("/file/") :].partition("/")
            uri = srv.catalog.file_uri(iid, unquote(name))
            if uri is None:
                raise RequestError(404, "not a file of this manifest")
            suffix = "." + uri.rsplit(".", 1)[-1].lower() if "." in uri else ""
            try:
                data = read_file(uri)
            except OSError as e:
                raise RequestError(404, f"listed file unreadable: {e}") from None
            # never cached: after a region is added and the image re-published, the page must
            # show the new, more blurred pixels, not a cached older tile
            self._send(200, data, FILE_TYPES.get(suffix, "application/octet-stream"))
            return
        raise RequestError(404, "not found")

    # --- POST ---
    def _body(self) -> Any:
        if not hmac.compare_digest(
            (self.headers.get("X-Redact-Token") or "").encode(), self.server.token.encode()
        ):
            raise RequestError(403, "missing or wrong X-Redact-Token")
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            raise RequestError(415, "Content-Type must be application/json")
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            raise RequestError(411, "Content-Length required") from None
        if not 0 < length <= MAX_BODY:
            raise RequestError(413, f"body must be 1..{MAX_BODY} bytes")
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RequestError(400, f"body is not JSON: {e}") from None

    def _post(self, path: str) -> None:
        from redact.season.review import parse_decision_rows, record_decisions

        if path not in ("/api/decide", "/api/region"):
            raise RequestError(404, "not found")
        body = self._body()
        srv = self.server
        with srv.write_lock:
            catalog = srv.refresh()
            if path == "/api/decide":
                req = decision_request(body, catalog.items)
                try:
                    decisions = parse_decision_rows([req], ["request"])
                    done = record_decisions(
                        srv.layout, decisions, decided_by=srv.decided_by, items=catalog.items
                    )
                except ValueError as e:
                    raise RequestError(400, str(e)) from None
                summary = done.summary()
            else:
                summary = self._region(region_request(body, catalog))
        self._json(200, {"ok": True, "summary": summary})

    def _region(self, req: Mapping[str, Any]) -> str:
        from redact.classes import ObjectClass
        from redact.season.manual import ManualRegion, write_regions
        from redact.season.republish import invalidate

        srv, entry = self.server, req["image"]
        region = ManualRegion.new(
            image_uri=entry.image_uri,
            relative_path=entry.relative_path,
            box=req["box"],
            object_class=ObjectClass.parse(req["class"]),
            reason=req["reason"],
            created_by=srv.decided_by,
        )
        written = write_regions(srv.layout.manual, [region])
        n = invalidate(srv.layout.markers, [region.relative_path])
        return f"recorded 1 manual region in {written} ({n} marker(s) invalidated)"
