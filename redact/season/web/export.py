"""``redact review export``: the review page as a static, read-only site.

Layout of ``SITE``: ``index.html`` (the queue), ``images/<image id>.html`` (one viewer page
per image), ``static/`` (the page's script and styles, the vendored pannellum and its licence)
and, with ``copy=True``, ``files/<image id>/<name>`` (the published copy and its renditions;
without it the pages link to them where they are, by relative path, so the site must stay on
the same machine). Originals are never exported.

Browsers refuse WebGL textures read from ``file://``; so that a panorama page works when opened
as a file, ``images/<image id>.pano.js`` carries its flat panorama (the preview rendition, else
the published copy, up to :data:`MAX_EMBED` bytes) as a ``data:`` URI. Served from any static
host the pages use the files themselves (the multires pyramid when the image has one).
Decisions made on a static page stay in the browser (localStorage) until downloaded as a CSV
that ``redact review decide --csv FILE`` records.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

from redact.errors import UsageError
from redact.renditions import renditions_folder
from redact.season.web.model import Catalog, ImageEntry, read_catalog, read_file
from redact.season.web.pages import PageContext, image_data, image_page, queue_page

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Largest panorama embedded as a data: URI for file:// viewing (bytes).
MAX_EMBED = 48 << 20
_MIME = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


@dataclasses.dataclass(frozen=True)
class Exported:
    site: str
    images: int
    files_copied: int
    embedded: int  # panoramas embedded for file:// viewing
    too_large: int = 0  # panoramas over MAX_EMBED: their pages need a static host

    def summary(self) -> str:
        big = (
            f"; {self.too_large} panorama(s) too large to embed: serve the site over http"
            if self.too_large
            else ""
        )
        return (
            f"review site with {self.images} image page(s) in {self.site} "
            f"({self.files_copied} file(s) copied, {self.embedded} panorama(s) embedded{big}): "
            f"open {os.path.join(self.site, 'index.html')}"
        )


def _local(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def _source(entry: ImageEntry, name: str) -> str:
    """The file behind a served name, including the renditions folder itself (``r``)."""
    if name == "r" or name.startswith("r/"):
        base = entry.files.get("published", "")
        return renditions_folder(base) + name[1:] if base else ""
    return entry.files.get(name, "")


def export_site(layout: Any, site: str, *, copy: bool = False) -> Exported:
    """Write the static review site of a published tree to the local folder ``site``."""
    if "://" in site:
        raise UsageError(f"--site {site}: the site is written to a local folder")
    root = Path(site).resolve()
    root.mkdir(parents=True, exist_ok=True)
    catalog: Catalog = read_catalog(layout, originals=False)
    if not copy:
        remote = [
            e.relative_path
            for e in catalog.images.values()
            if "://" in e.files.get("published", "")
        ]
        if remote:
            raise UsageError(f"{remote[0]} is not a local file: export with --copy")
    if (root / "static").exists():
        shutil.rmtree(root / "static")
    shutil.copytree(STATIC_DIR, root / "static")
    (root / "images").mkdir(exist_ok=True)
    copied = 0

    def file_url(frm: Path) -> Any:
        def url(iid: str, name: str) -> str:
            if copy:
                return os.path.relpath(root / "files" / iid / name, frm).replace(os.sep, "/")
            return os.path.relpath(_local(_source(catalog.images[iid], name)), frm).replace(
                os.sep, "/"
            )

        return url

    def ctx(frm: Path, index: str, images: str) -> PageContext:
        return PageContext(
            static=os.path.relpath(root / "static", frm).replace(os.sep, "/") + "/",
            index=index,
            image_page=lambda iid: f"{images}{iid}.html",
            file_url=file_url(frm),
            live=False,
        )

    embedded = too_large = 0
    page_ctx = ctx(root / "images", "../index.html", "")
    for entry in catalog.images.values():
        if copy:
            for name, uri in entry.files.items():
                dst = root / "files" / entry.image_id / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(read_file(uri))
                copied += 1
        data = image_data(entry, page_ctx)
        page = image_page(entry, page_ctx, data=data)
        if data["viewer"] is not None:
            pano = entry.files[entry.panorama_name()]
            try:
                blob = read_file(pano, limit=MAX_EMBED)
            except ValueError:  # too large for a data: URI: counted, said in the summary
                too_large += 1
                (root / "images" / f"{entry.image_id}.html").write_text(page)
                continue
            mime = _MIME.get(pano.rsplit(".", 1)[-1].lower(), "image/jpeg")
            uri = f"data:{mime};base64,{base64.b64encode(blob).decode()}"
            (root / "images" / f"{entry.image_id}.pano.js").write_text(
                f"window.REDACT_PANO_DATA = {uri!r};\n"
            )
            page = page.replace(
                '<script src="', f'<script src="{entry.image_id}.pano.js"></script><script src="', 1
            )
            embedded += 1
        (root / "images" / f"{entry.image_id}.html").write_text(page)
    (root / "index.html").write_text(queue_page(catalog, ctx(root, "index.html", "images/")))
    return Exported(str(root), len(catalog.images), copied, embedded, too_large)
