"""HTML of the review page: the queue and one page per image (its viewer page).

Pages are plain HTML with the image's data as an inline JSON block (``<script
type="application/json" id="redact-data">``) that ``static/review.js`` turns into the viewer
(pannellum for panoramas, an ``<img>`` with an SVG overlay for photos), the candidate list and
the decision buttons. Every text from the manifest is HTML-escaped; the JSON block escapes
``<`` so no value can close the script element.
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Callable
from typing import Any

from redact.season.web.model import Catalog, ImageEntry, viewer_settings

#: Decisions a reviewer can give on the page, with their button labels (redact.season.review
#: ReviewDecision values).
BUTTONS = (
    ("confirmed", "correct"),
    ("false_positive", "false positive"),
    ("missed", "missed: pin it"),
)

ORIGINALS_WARNING = (
    "ORIGINALS ARE SHOWN: this server was started with --originals and serves unblurred "
    "images. Do not share this screen or these links."
)


@dataclasses.dataclass(frozen=True)
class PageContext:
    """How pages link: ``static`` (prefix of the static files), ``index`` (the queue's url),
    ``image_page(id)``, ``file_url(id, name)`` (a served file), ``token`` (POST token; ""
    for a static export, whose decisions stay in the browser until downloaded as CSV)."""

    static: str
    index: str
    image_page: Callable[[str], str]
    file_url: Callable[[str, str], str]
    token: str = ""
    originals: bool = False
    live: bool = True


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def json_block(value: Any) -> str:
    """JSON safe inside a ``<script>`` element (``<``, ``>`` and ``&`` escaped)."""
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _head(title: str, ctx: PageContext, *, viewer: bool) -> str:
    links = [f'<link rel="stylesheet" href="{_e(ctx.static)}review.css">']
    if viewer:
        links.insert(
            0, f'<link rel="stylesheet" href="{_e(ctx.static)}vendor/pannellum/pannellum.css">'
        )
    token = f'<meta name="redact-token" content="{_e(ctx.token)}">' if ctx.token else ""
    banner = (
        f'<div class="redact-warning" id="originals-warning" role="alert">{_e(ORIGINALS_WARNING)}</div>'
        if ctx.originals
        else ""
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{_e(title)}</title>{token}{''.join(links)}</head><body>{banner}"
    )


def queue_page(catalog: Catalog, ctx: PageContext) -> str:
    """The queue: every image with its review items first (most pending first), then the
    other images; counts and each item's class, score and latest decision."""
    entries = sorted(
        catalog.images.values(), key=lambda e: (-e.pending, -e.reviewable, e.relative_path)
    )
    rows = []
    for e in entries:
        items = "".join(
            f'<li class="item" data-review-id="{_e(c.review_id)}">{_e(c.cls)} {c.score:.2f}'
            f" &middot; {_e(c.review_decision or 'pending')}</li>"
            for c in e.candidates
            if c.review_id
        )
        thumb = ""
        if "r/thumbnail.jpg" in e.files:
            thumb = f'<img class="thumb" alt="" src="{_e(ctx.file_url(e.image_id, "r/thumbnail.jpg"))}">'
        status = "" if e.status == "published" else f' <span class="failed">{_e(e.status)}</span>'
        rows.append(
            f'<tr data-image-id="{_e(e.image_id)}"><td>{thumb}</td>'
            f'<td><a href="{_e(ctx.image_page(e.image_id))}">{_e(e.relative_path)}</a>{status}</td>'
            f"<td>{_e(e.projection)}</td><td>{len(e.candidates)}</td>"
            f'<td>{e.reviewable}</td><td class="pending">{e.pending}</td>'
            f'<td><ul class="items">{items}</ul></td></tr>'
        )
    pending = sum(e.pending for e in entries)
    mode = "" if ctx.live else '<p class="note">Static export: read-only.</p>'
    return (
        _head("redact review queue", ctx, viewer=False)
        + f"<h1>Review queue</h1>{mode}<p>{len(entries)} image(s), "
        f'<span id="pending-total">{pending}</span> review item(s) pending. Only published '
        "(blurred) pixels are shown unless the server runs with --originals.</p>"
        '<table class="queue"><thead><tr><th></th><th>image</th><th>projection</th>'
        "<th>candidates</th><th>review items</th><th>pending</th><th>items</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></body></html>\n"
    )


def image_data(entry: ImageEntry, ctx: PageContext) -> dict[str, Any]:
    """The JSON the image page's script reads."""

    def url_of(name: str) -> str:
        return ctx.file_url(entry.image_id, name)

    viewer = viewer_settings(entry, url_of)
    return {
        "image_id": entry.image_id,
        "relative_path": entry.relative_path,
        "projection": entry.projection,
        "width": entry.width,
        "height": entry.height,
        "live": ctx.live,
        "api": "/api/" if ctx.live else "",
        "viewer": viewer,
        "photo": url_of("published") if viewer is None and "published" in entry.files else "",
        "original": url_of("original") if "original" in entry.files else "",
        "candidates": [c.to_json() for c in entry.candidates],
        "buttons": [list(b) for b in BUTTONS],
    }


def image_page(entry: ImageEntry, ctx: PageContext, *, data: dict[str, Any] | None = None) -> str:
    """One image: the viewer (published pixels), the candidates beside it, decision buttons."""
    data = data if data is not None else image_data(entry, ctx)
    viewer = data["viewer"] is not None
    scripts = f'<script src="{_e(ctx.static)}review.js"></script>'
    if viewer:
        scripts = f'<script src="{_e(ctx.static)}vendor/pannellum/pannellum.js"></script>' + scripts
    original = ""
    if data["original"]:
        original = (
            f'<p class="redact-warning">Original (unblurred): <a href="{_e(data["original"])}" '
            'target="_blank" rel="noopener">open</a></p>'
        )
    static_tools = (
        ""
        if ctx.live
        else '<p class="note">Static export: decisions stay in this browser until you '
        '<button type="button" id="download-csv">download them as CSV</button> for '
        "<code>redact review decide --csv FILE</code>.</p>"
    )
    return (
        _head(f"redact review: {entry.relative_path}", ctx, viewer=viewer)
        + f'<p><a href="{_e(ctx.index)}">&larr; queue</a></p>'
        f"<h1>{_e(entry.relative_path)}</h1>"
        f'<p class="meta">{_e(entry.projection)} {entry.width}&times;{entry.height}, run '
        f"{_e(entry.run_id)}, status {_e(entry.status)}</p>{original}{static_tools}"
        '<div class="layout"><div class="view"><div id="viewer"></div>'
        '<p class="tools"><button type="button" id="add-missed">add missed region</button> '
        '<span id="status" role="status"></span></p></div>'
        '<ol id="candidates" class="candidates"></ol></div>'
        f'<script type="application/json" id="redact-data">{json_block(data)}</script>'
        f"{scripts}</body></html>\n"
    )
