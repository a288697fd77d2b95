"""The review page in a real headless Chromium (Debian's ``chromium``, driven by playwright;
software WebGL for pannellum): a real job (the tiny colour detector) publishes a synthetic
panorama with one blurred and one review-band square; the served page shows the panorama
(non-blank canvas) with a hot spot per candidate; clicking "false positive" lands the decision
in the review store; no original is requested. The static export opens from file://.

Skips (with the reason) when chromium or playwright is missing: ``.ci/run`` installs the
package, ``pip install -e .[dev]`` playwright (never ``playwright install``)."""

from __future__ import annotations

import io
import shutil
import threading
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from redact.cli import main
from redact.runner import Layout
from redact.season.review import read_decisions, read_review_items
from redact.season.web.model import image_id
from redact.season.web.server import ReviewServer
from tests.test_season_support import PALE_RED, RED, square, textured, write_config, write_png

pytestmark = pytest.mark.slow

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
#: pannellum needs WebGL: SwiftShader (software) in a headless box without a GPU.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
)
PANO = "pano/street.png"


def chromium_path() -> str | None:
    """The system Chromium binary (Debian's wrapper script resolves to /usr/lib/chromium)."""
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name) if "/" not in name else (name if Path(name).is_file() else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = chromium_path()
    if exe is None:
        pytest.skip("no chromium binary (apt-get install chromium): browser tests skipped")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e .[dev]): browser tests skipped")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=list(CHROMIUM_ARGS))
        try:
            yield b
        finally:
            b.close()


def _cli(*argv: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        rc = main(list(argv))
    assert rc == 0, out.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Layout:
    """A real run: one 512x256 panorama with a RED square (blurred) and a PALE_RED one (review
    band: blurred and queued)."""
    root = tmp_path_factory.mktemp("browser")
    cfg = write_config(root)
    img = square(square(textured(256, 512, 7), 100, 110, 16, RED), 300, 120, 16, PALE_RED)
    write_png(root / "src" / PANO, img)
    out = _cli("run", "--input", str(root / "src"), "--output", str(root / "dst"),
               "--config", str(cfg), "--run-id", "b1")  # fmt: skip
    assert "1 published" in out, out
    layout = Layout.resolve(str(root / "dst"))
    assert read_review_items(layout.review).num_rows == 1
    return layout


def _nonblank(png: bytes) -> float:
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.size
    return float(img.std())


def test_review_page_shows_the_panorama_and_records_a_decision(browser, published, tmp_path):
    srv = ReviewServer(published, port=0, decided_by="browser")
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(srv.url)
        link = page.locator(f'tr[data-image-id="{image_id(PANO)}"] a')
        assert link.inner_text() == PANO
        link.click()
        page.wait_for_selector('body[data-viewer="loaded"]', state="attached", timeout=30_000)
        page.wait_for_timeout(500)  # one more frame
        canvas = page.locator("#viewer canvas")
        assert canvas.count() == 1
        # The panorama rendered: the WebGL canvas is not one flat colour.
        assert _nonblank(canvas.screenshot()) > 10.0
        rows = srv.catalog.images[image_id(PANO)].candidates
        assert len(rows) >= 2 and {c.decision for c in rows} >= {"blur", "review"}
        assert page.locator(".pnlm-hotspot-base.redact-hs").count() == len(rows)
        (item,) = [c for c in rows if c.review_id]
        cand = page.locator(f'li.cand[data-review-id="{item.review_id}"]')
        assert "pending" in cand.inner_text()
        cand.locator('button[data-decision="false_positive"]').click()
        # (the page's CSP forbids eval: wait with a locator, not wait_for_function)
        page.locator("#status", has_text="recorded 1 decision").wait_for(timeout=15_000)
        assert "reviewed: false_positive" in cand.inner_text()
        decisions = read_decisions(published.review).to_pylist()
        assert [(d["review_id"], d["decision"], d["decided_by"]) for d in decisions] == [
            (item.review_id, "false_positive", "browser")
        ]
        assert not [u for u in requests if u.endswith("/original")]
        own = (srv.url, "blob:" + srv.url, "data:")  # pannellum loads the copy as a blob
        assert not [u for u in requests if not u.startswith(own)]
        assert errors == []
    finally:
        page.close()
        srv.shutdown()
        srv.server_close()


def test_static_export_opens_from_a_file_url(browser, published, tmp_path):
    site = tmp_path / "site"
    _cli("review", "export", "--output", published.output, "--site", str(site))
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto((site / "index.html").as_uri())
        page.locator(f'tr[data-image-id="{image_id(PANO)}"] a').click()
        page.wait_for_selector('body[data-viewer="loaded"]', state="attached", timeout=30_000)
        page.wait_for_timeout(500)
        assert _nonblank(page.locator("#viewer canvas").screenshot()) > 10.0
        assert errors == []
    finally:
        page.close()
