"""Screenshots of the review page in headless Chromium (for docs/review.md).

    python scripts/review_screenshots.py --output DST --out docs/img [--hfov 50]

Serves the published tree DST (published pixels only: no --originals) on a free loopback port,
opens the queue and the viewer page of the first panorama (the one with the most candidates)
looking at its highest-scoring blurred candidate, and writes ``review-queue.png`` and
``review-viewer.png`` into ``--out``. Needs Debian's chromium and playwright (the dev extra).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from redact.runner import Layout  # noqa: E402
from redact.season.web.server import ReviewServer  # noqa: E402
from tests.test_review_browser import CHROMIUM_ARGS, chromium_path  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", required=True, help="the published tree (DST)")
    ap.add_argument("--out", default=str(REPO / "docs" / "img"), help="folder for the PNGs")
    ap.add_argument("--hfov", type=float, default=50.0, help="viewer field of view (degrees)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=760)
    args = ap.parse_args(argv)
    exe = chromium_path()
    if exe is None:
        ap.error("no chromium binary (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    srv = ReviewServer(Layout.resolve(args.output), port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    panos = [e for e in srv.catalog.images.values() if e.equirectangular and e.files]
    if not panos:
        ap.error(f"{args.output}: no published panorama in the manifest")
    pano = max(panos, key=lambda e: len(e.candidates))
    blurred = [c for c in pano.candidates if c.decision == "blur" and c.pitch is not None]
    target = max(blurred, key=lambda c: c.score, default=None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=list(CHROMIUM_ARGS))
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(srv.url)
            page.screenshot(path=str(out / "review-queue.png"))
            page.goto(srv.url + f"image/{pano.image_id}")
            page.wait_for_selector('body[data-viewer="loaded"]', state="attached", timeout=60_000)
            if target is not None:
                page.evaluate(
                    "([i, p, y, h]) => { window.redactSelect(i); "
                    "window.redactViewer.lookAt(p, y, h, false); }",
                    [pano.candidates.index(target), target.pitch, target.yaw, args.hfov],
                )
            page.wait_for_timeout(3000)  # the pyramid's finer tiles
            page.screenshot(path=str(out / "review-viewer.png"))
            browser.close()
    finally:
        srv.shutdown()
        srv.server_close()
    for name in ("review-queue.png", "review-viewer.png"):
        print(f"{out / name}: {(out / name).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
