"""The review page (redact.season.web): pitch/yaw maths, the file allowlist, the POST checks
(token, host, JSON, decision names, ids, boxes: refused with 4xx and nothing written), the
originals switch, decisions landing in the review store over HTTP, the static export, the
vendored pannellum. A published tree is built by hand (no Beam job): two images, one
equirectangular with renditions, review items written as a run writes them."""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import threading
import urllib.error
import urllib.request
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import simplejpeg
from hypothesis import given
from hypothesis import strategies as st

from redact.cli import main
from redact.manifest import SCHEMA
from redact.runner import Layout
from redact.season.manual import read_regions
from redact.season.review import (
    REVIEW_SCHEMA,
    read_decisions,
    read_hard_negatives,
    review_items,
)
from redact.season.web import model
from redact.season.web.model import (
    box_view,
    image_id,
    multires_config,
    pitch_yaw_to_pixel,
    pixel_to_pitch_yaw,
    rendition_name,
)
from redact.season.web.pages import json_block
from redact.season.web.server import ReviewServer, static_files

VENDOR = Path(model.__file__).parent / "static" / "vendor" / "pannellum"
PANO, PHOTO = "pano/a.jpg", "photos/b.jpg"


# --- geometry --------------------------------------------------------------------------------


def test_pitch_yaw_of_known_pixels():
    w, h = 8000, 4000
    assert pixel_to_pitch_yaw(4000, 2000, w, h) == (0.0, 0.0)  # centre: straight ahead
    assert pixel_to_pitch_yaw(6000, 2000, w, h) == (0.0, 90.0)  # right
    assert pixel_to_pitch_yaw(2000, 1000, w, h) == (45.0, -90.0)  # left, up
    assert pixel_to_pitch_yaw(0, 4000, w, h) == (-90.0, -180.0)  # the seam, bottom row
    assert pixel_to_pitch_yaw(8000, 0, w, h) == (90.0, -180.0)  # x = W is the seam again
    # A seam-unwrapped box (x past W): its centre wraps.
    pitch, yaw, dpitch, dyaw = box_view((7900, 1900, 8300, 2100), w, h)
    assert (pitch, dpitch, dyaw) == (0.0, 9.0, 18.0)
    assert yaw == pytest.approx(184.5 - 360)  # centre x 8100: 100 px (4.5 deg) past the seam
    with pytest.raises(ValueError, match="positive"):
        pixel_to_pitch_yaw(1, 1, 0, 10)


@given(
    st.floats(0, 8191.9, allow_nan=False),
    st.floats(0, 4096, allow_nan=False),
)
def test_pitch_yaw_round_trip(x, y):
    pitch, yaw = pixel_to_pitch_yaw(x, y, 8192, 4096)
    assert -90 <= pitch <= 90 and -180 <= yaw < 180
    x2, y2 = pitch_yaw_to_pixel(pitch, yaw, 8192, 4096)
    assert x2 == pytest.approx(x, abs=1e-6) and y2 == pytest.approx(y, abs=1e-6)


# --- a hand-built published tree ---------------------------------------------------------------


def _jpeg(h: int, w: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return simplejpeg.encode_jpeg(np.ascontiguousarray(img), quality=80)


def _det(cls: str, score: float, box: tuple[float, ...], decision: str, **extra: Any) -> dict:
    x1, y1, x2, y2 = box
    return {"class": cls, "score": score, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
            "decision": decision, "model": "fake", **extra}  # fmt: skip


def _row(dst: Path, rel: str, proj: str, w: int, h: int, dets: list[dict], **extra: Any) -> dict:
    return {
        "run_id": "r1",
        "image_uri": str(dst.parent / "src" / rel),
        "relative_path": rel,
        "output_uri": str(dst / rel),
        "status": "published",
        "width": w,
        "height": h,
        "projection": proj,
        "detections": dets,
        "processed_at": datetime.datetime(2025, 1, 2, tzinfo=datetime.timezone.utc),
        **extra,
    }


def write_tree(root: Path, *, renditions: bool = True, reason: bool = True) -> Layout:
    """``root/dst``: a 512x256 panorama (2 review items, 1 blurred) and a 300x200 photo (1
    review item), their originals in ``root/src`` and, for the panorama, a thumbnail, a
    preview and a viewer.json listed as renditions."""
    dst, src = root / "dst", root / "src"
    for rel, (h, w), seed in ((PANO, (256, 512), 1), (PHOTO, (200, 300), 2)):
        for base in (dst, src):
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_bytes(_jpeg(h, w, seed + (base is src) * 10))
    kw = {"reason": "review_band"} if reason else {}
    pano_dets = [
        _det("face", 0.4, (100, 100, 116, 116), "review", **kw),
        _det("license_plate", 0.35, (500, 120, 530, 130), "review", **kw),  # across the seam
        _det(
            "face", 0.9, (300, 90, 320, 110), "blur", **({"reason": "above_blur"} if reason else {})
        ),
    ]
    rends = []
    if renditions:
        rdir = dst / (PANO + ".renditions")
        for i, face in enumerate("frblud"):
            (rdir / "cube" / "1" / face / "0").mkdir(parents=True)
            (rdir / "cube" / "1" / face / "0" / "0.jpg").write_bytes(_jpeg(64, 64, 5 + i))
        (rdir / "thumbnail.jpg").write_bytes(_jpeg(64, 128, 3))
        (rdir / "preview.jpg").write_bytes(_jpeg(128, 256, 4))
        (rdir / "viewer.json").write_text(
            json.dumps(
                {
                    "type": "multires",
                    "multiRes": {
                        "basePath": "cube",
                        "path": "/%l/%s/%y/%x",
                        "extension": "jpg",
                        "tileResolution": 64,
                        "maxLevel": 1,
                        "cubeResolution": 64,
                    },
                }
            )
        )
        for kind, name in (
            ("thumbnail", "thumbnail.jpg"),
            ("preview", "preview.jpg"),
            *(("cube_tile", f"cube/1/{face}/0/0.jpg") for face in "frblud"),
            ("viewer_config", "viewer.json"),
        ):
            rends.append({"kind": kind, "uri": str(rdir / name), "width": 1, "height": 1})
    extra = {"renditions": rends} if "renditions" in SCHEMA.names else {}
    rows = [
        _row(dst, PANO, "equirectangular", 512, 256, pano_dets, **extra),
        _row(dst, PHOTO, "perspective", 300, 200, [_det("face", 0.45, (10, 20, 40, 60), "review")]),
    ]
    # Older manifests have no reason field: drop what the schema does not know.
    det_fields = set(SCHEMA.field("detections").type.value_type.names)
    for r in rows:
        r["detections"] = [{k: v for k, v in d.items() if k in det_fields} for d in r["detections"]]
    (dst / "_manifest").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=SCHEMA), dst / "_manifest" / "run-r1-0.parquet"
    )
    items = [i for r in rows for i in review_items(r)]
    (dst / "_review").mkdir()
    pq.write_table(
        pa.Table.from_pylist(items, schema=REVIEW_SCHEMA), dst / "_review" / "run-r1-0.parquet"
    )
    return Layout.resolve(str(dst))


@pytest.fixture
def tree(tmp_path: Path) -> Layout:
    return write_tree(tmp_path)


def _catalog(layout: Layout, **kw: Any) -> model.Catalog:
    return model.read_catalog(layout, **kw)


def test_catalog_lists_candidates_with_positions_and_review_ids(tree):
    cat = _catalog(tree)
    pano = cat.images[image_id(PANO)]
    assert [c.cls for c in pano.candidates] == ["face", "license_plate", "face"]
    assert [bool(c.review_id) for c in pano.candidates] == [True, True, False]
    assert set(cat.items) == {c.review_id for e in cat.images.values() for c in e.candidates} - {""}
    face = pano.candidates[0]
    assert (face.pitch, face.yaw) == pytest.approx(pixel_to_pitch_yaw(108, 108, 512, 256))
    assert cat.images[image_id(PHOTO)].candidates[0].pitch is None  # a photo: no directions
    if "reason" in SCHEMA.field("detections").type.value_type.names:
        assert face.reason == "review_band"
    assert pano.pending == 2 and cat.images[image_id(PHOTO)].pending == 1


def test_files_are_an_allowlist_by_name(tree):
    cat = _catalog(tree)
    iid = image_id(PANO)
    assert cat.file_uri(iid, "published") == str(Path(tree.output) / PANO)
    assert cat.file_uri(iid, "original") is None  # not without originals
    assert cat.file_uri(iid, "../../etc/passwd") is None
    assert cat.file_uri("0" * 16, "published") is None
    assert _catalog(tree, originals=True).file_uri(iid, "original").endswith("src/" + PANO)
    if "renditions" in SCHEMA.names:
        assert cat.file_uri(iid, "r/cube/1/f/0/0.jpg").endswith("cube/1/f/0/0.jpg")
    base = str(Path(tree.output) / PANO)
    assert rendition_name(base, base + ".renditions/cube/1/f/0/0.jpg") == "r/cube/1/f/0/0.jpg"
    for bad in ("/../x.jpg", "/./x.jpg", "/a//b.jpg", "/.hidden", "/a b.jpg", "/x\\y.jpg"):
        assert rendition_name(base, base + ".renditions" + bad) == "", bad
    assert rendition_name(base, "/elsewhere/x.jpg") == ""


def test_multires_config_keeps_known_keys_and_refuses_odd_paths():
    good = {"type": "multires", "multiRes": {"basePath": "cube", "path": "/%l/%s/%y/%x",
            "extension": "jpg", "tileResolution": 512, "maxLevel": 3, "cubeResolution": 2048,
            "extra": "<script>"}, "onload": "x"}  # fmt: skip
    mr = multires_config(json.dumps(good).encode(), "/file/abc/r")
    assert mr == {"basePath": "/file/abc/r/cube", "path": "/%l/%s/%y/%x", "extension": "jpg",
                  "tileResolution": 512, "maxLevel": 3, "cubeResolution": 2048}  # fmt: skip
    for key, value in (("basePath", "../x"), ("path", "/%l/../%x"), ("extension", "js"),
                       ("maxLevel", 0), ("tileResolution", "512"), ("cubeResolution", True)):  # fmt: skip
        bad = json.loads(json.dumps(good))
        bad["multiRes"][key] = value
        with pytest.raises(ValueError):
            multires_config(json.dumps(bad).encode(), "/r")
    with pytest.raises(ValueError, match="not JSON"):
        multires_config(b"\xff", "/r")


def test_json_block_cannot_close_the_script():
    text = json_block({"path": "</script><script>alert(1)</script>&"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["path"] == "</script><script>alert(1)</script>&"


def test_vendored_pannellum_matches_its_record():
    record = (VENDOR / "VENDORED.md").read_text()
    for name in ("pannellum.js", "pannellum.css"):
        digest = hashlib.sha256((VENDOR / name).read_bytes()).hexdigest()
        assert digest in record, f"{name}: sha256 {digest} not in VENDORED.md"
    assert "Permission is hereby granted" in (VENDOR / "LICENSE").read_text()
    assert "2.5.7" in record
    assert {"review.js", "review.css", "vendor/pannellum/pannellum.js"} <= set(static_files())


# --- over HTTP -------------------------------------------------------------------------------


@pytest.fixture
def served(tree):
    servers = []

    def start(**kw: Any) -> ReviewServer:
        srv = ReviewServer(tree, port=0, decided_by="tester", **kw)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def _post(srv: ReviewServer, path: str, body: Any, **headers: str) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json", "X-Redact-Token": srv.token, **headers}
    h = {k: v for k, v in h.items() if v}
    req = urllib.request.Request(srv.url + path.lstrip("/"), data=raw, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _store(layout: Layout) -> tuple[int, int, int]:
    return (
        read_decisions(layout.review).num_rows,
        read_hard_negatives(layout.review).num_rows,
        len(read_regions(layout.manual)),
    )


def test_pages_and_files_over_http(served, tree):
    srv = served()
    status, body, headers = _get(srv.url)
    assert status == 200 and PANO.encode() in body and PHOTO.encode() in body
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert b"ORIGINALS ARE SHOWN" not in body
    status, page, _ = _get(srv.url + "image/" + image_id(PANO))
    assert status == 200 and srv.token.encode() in page and b"pannellum.js" in page
    data = json.loads(page.split(b'id="redact-data">')[1].split(b"</script>")[0])
    assert len(data["candidates"]) == 3 and data["original"] == ""
    if "renditions" in SCHEMA.names:
        assert data["viewer"]["type"] == "multires"
        assert data["viewer"]["multiRes"]["basePath"] == f"/file/{image_id(PANO)}/r/cube"
        status, tile, _ = _get(srv.url + f"file/{image_id(PANO)}/r/cube/1/f/0/0.jpg")
        assert (
            status == 200
            and tile == (Path(tree.output) / (PANO + ".renditions/cube/1/f/0/0.jpg")).read_bytes()
        )
    else:
        assert data["viewer"]["type"] == "equirectangular"
    status, img, headers = _get(srv.url + f"file/{image_id(PANO)}/published")
    assert status == 200 and img == (Path(tree.output) / PANO).read_bytes()
    assert headers["Content-Type"] == "image/jpeg"
    # a re-published copy (a region added since) must never come from the browser's cache
    assert headers["Cache-Control"] == "no-store"
    status, js, _ = _get(srv.url + "static/vendor/pannellum/pannellum.js")
    assert status == 200 and js == (VENDOR / "pannellum.js").read_bytes()
    for bad in (
        f"file/{image_id(PANO)}/original",  # no --originals
        f"file/{image_id(PANO)}/../../{PHOTO}",
        f"file/{image_id(PANO)}/%2e%2e/%2e%2e/etc/passwd",
        f"file/{image_id(PANO)}/{tree.output}/{PANO}",
        "file/0000000000000000/published",
        "static/../model.py",
        "static/vendor/pannellum/VENDORED.md",  # only .js/.css
        "image/nope",
        "nope",
    ):
        status, body, _ = _get(srv.url + bad)
        assert status == 404, bad
    # DNS rebinding: a loopback server answers loopback host names only.
    assert _get(srv.url, {"Host": "evil.example:80"})[0] == 403


def test_originals_only_with_the_flag_and_a_warning(served, tree):
    srv = served(originals=True)
    status, body, _ = _get(srv.url)
    assert status == 200 and b"ORIGINALS ARE SHOWN" in body
    status, page, _ = _get(srv.url + "image/" + image_id(PHOTO))
    assert b"ORIGINALS ARE SHOWN" in page and b"redact-warning" in page
    status, img, _ = _get(srv.url + f"file/{image_id(PHOTO)}/original")
    assert status == 200 and img == (Path(tree.output).parent / "src" / PHOTO).read_bytes()


def test_a_decision_lands_in_the_review_store(served, tree):
    srv = served()
    items = _catalog(tree).items
    fp, real = sorted(items, key=lambda k: items[k]["score"])[:2]
    assert _post(srv, "/api/decide", {"review_id": fp, "decision": "false_positive"})[0] == 200
    status, body = _post(
        srv, "/api/decide", {"review_id": real, "decision": "missed", "box": [100, 100, 118, 118]}
    )
    assert status == 200 and "1 manual region(s)" in body["summary"]
    decisions = {r["review_id"]: r for r in read_decisions(tree.review).to_pylist()}
    assert decisions[fp]["decision"] == "false_positive" and decisions[fp]["decided_by"] == "tester"
    assert decisions[real]["decision"] == "missed"
    assert (decisions[real]["x2"], decisions[real]["y2"]) == (118, 118)
    assert read_hard_negatives(tree.review)["review_id"].to_pylist() == [fp]
    (region,) = read_regions(tree.manual)
    assert region.review_id == real and region.box == (100, 100, 118, 118)
    # The page shows the decision now.
    page = _get(srv.url + "image/" + image_id(items[fp]["relative_path"]))[1]
    assert b'"review_decision":"false_positive"' in page


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ({"decision": "confirmed"}, {}, 400),  # no review id
        ({"review_id": "0" * 20, "decision": "confirmed"}, {}, 404),  # unknown id
        ({"review_id": "../../etc", "decision": "confirmed"}, {}, 400),
        ({"review_id": "ID", "decision": "delete_everything"}, {}, 400),
        ({"review_id": "ID", "decision": "fp"}, {}, 400),  # the CLI's aliases: not here
        ({"review_id": "ID", "decision": "missed", "box": [1, 2, "x", 4]}, {}, 400),
        ({"review_id": "ID", "decision": "missed", "box": [5, 5, 1, 1]}, {}, 400),
        ({"review_id": "ID", "decision": "missed", "box": [1, 2, 3]}, {}, 400),
        ({"review_id": "ID", "decision": "confirmed", "box": [1, 2, 3, 4]}, {}, 400),
        ({"review_id": "ID", "decision": "confirmed", "class": "cat"}, {}, 400),
        ({"review_id": "ID", "decision": "confirmed", "path": "/etc"}, {}, 400),
        (["ID", "confirmed"], {}, 400),
        (b"{not json", {}, 400),
        ({"review_id": "ID", "decision": "confirmed"}, {"X-Redact-Token": "wrong"}, 403),
        ({"review_id": "ID", "decision": "confirmed"}, {"X-Redact-Token": ""}, 403),
        ({"review_id": "ID", "decision": "confirmed"}, {"Content-Type": "text/plain"}, 415),
        ({"review_id": "ID", "decision": "confirmed"}, {"Host": "evil.example"}, 403),
        ({"image_id": "ID", "box": [1, 1, 5, 5], "class": "face"}, {}, 400),  # no reason
        ({"image_id": "0" * 16, "box": [1, 1, 5, 5], "reason": "x"}, {}, 404),
        ({"image_id": "ID", "box": [1, 1, 5, 5000], "reason": "x"}, {}, 400),  # outside
    ],
)
def test_bad_posts_are_refused_and_write_nothing(served, tree, body, headers, status):
    srv = served()
    rid = next(iter(_catalog(tree).items))
    path = "/api/region" if isinstance(body, dict) and "image_id" in body else "/api/decide"
    if isinstance(body, dict):
        body = {k: (rid if v == "ID" and k == "review_id" else v) for k, v in body.items()}
        if body.get("image_id") == "ID":
            body["image_id"] = image_id(PANO)
    got, answer = _post(srv, path, body, **headers)
    assert got == status, answer
    assert "error" in answer
    assert _store(tree) == (0, 0, 0)


def test_a_region_click_becomes_a_manual_region(served, tree):
    srv = served()
    status, body = _post(
        srv, "/api/region",
        {"image_id": image_id(PANO), "box": [200, 50, 216, 66], "class": "face", "reason": "kid"},
    )  # fmt: skip
    assert status == 200, body
    (region,) = read_regions(tree.manual)
    assert region.relative_path == PANO and region.box == (200, 50, 216, 66)
    assert region.reason == "kid" and region.created_by == "tester"
    assert region.image_uri.endswith("src/" + PANO)


# --- the CLI: decide's CSV and the static export ---------------------------------------------


def _cli(*argv: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        rc = main(list(argv))
    assert rc == 0, out.getvalue()
    return out.getvalue()


def test_export_writes_a_static_site_whose_csv_decide_accepts(tree, tmp_path):
    site = tmp_path / "site"
    out = _cli("review", "export", "--output", tree.output, "--site", str(site), "--copy")
    assert "2 image page(s)" in out and "1 panorama(s) embedded" in out
    index = (site / "index.html").read_text()
    assert f"images/{image_id(PANO)}.html" in index
    page = (site / "images" / f"{image_id(PANO)}.html").read_text()
    assert "../static/vendor/pannellum/pannellum.js" in page and f"{image_id(PANO)}.pano.js" in page
    assert "redact-token" not in page and "http://" not in page and "https://" not in page
    assert (site / "static" / "vendor" / "pannellum" / "LICENSE").is_file()
    assert (site / "files" / image_id(PANO) / "published").read_bytes() == (
        Path(tree.output) / PANO
    ).read_bytes()
    assert not list(site.rglob("original"))
    # The CSV the static page offers (review_id,decision) is what decide --csv takes.
    rid = next(iter(_catalog(tree).items))
    csv_file = tmp_path / "decisions.csv"
    with csv_file.open("w", newline="") as f:
        csv.writer(f).writerows([["review_id", "decision"], [rid, "confirmed"]])
    assert "recorded 1 decision(s)" in _cli(
        "review", "decide", "--output", tree.output, "--csv", str(csv_file)
    )
    assert read_decisions(tree.review)["decision"].to_pylist() == ["confirmed"]


def test_export_without_copy_links_to_the_published_files(tree, tmp_path):
    site = tmp_path / "site"
    _cli("review", "export", "--output", tree.output, "--site", str(site))
    page = (site / "images" / f"{image_id(PHOTO)}.html").read_text()
    data = json.loads(page.split('id="redact-data">')[1].split("</script>")[0])
    assert (site / "images" / data["photo"]).resolve() == (Path(tree.output) / PHOTO).resolve()


def test_older_manifest_without_renditions_or_reasons(tmp_path):
    layout = write_tree(tmp_path, renditions=False, reason=False)
    cat = _catalog(layout)
    pano = cat.images[image_id(PANO)]
    assert all(c.reason == "" for c in pano.candidates)
    from redact.season.web.model import viewer_settings

    cfg = viewer_settings(pano, lambda name: f"/f/{name}")
    assert cfg is not None and cfg["type"] == "equirectangular"
    assert cfg["panorama"] == "/f/published" and cfg["redactNote"] == ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--host", "0.0.0.0"], "not a loopback address"),
        (["--host", "192.0.2.7", "--allow-remote", "--originals"], "only served on a loopback"),
    ],
)
def test_serve_refuses_a_remote_host_unless_allowed_and_never_with_originals(
    tree, capsys, extra, message
):
    """The page has no login: a non-loopback bind needs --allow-remote, originals never."""
    assert main(["review", "serve", "--output", tree.output, "--port", "0", *extra]) == 2
    assert message in capsys.readouterr().err
