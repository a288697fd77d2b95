"""The redaction core: detections + original + config -> published bytes + manifest row."""

from __future__ import annotations

import datetime
import hashlib

import cv2
import numpy as np
import pytest

from redact.classes import ObjectClass, Projection
from redact.core import PIXEL_VERSION, redact_image
from redact.detections import Detections
from redact.errors import ImageError
from redact.io.codec import decode_image
from redact.manifest import RunInfo
from redact.records import ImageRecord
from redact.season.manual import ManualRegion, RegionSource
from tests.conftest import tiny_config
from tests.fixtures.eval_data import textured

RUN = RunInfo("r", [], "c" * 64, [], "0", pixel_version=PIXEL_VERSION)


def _jpeg(seed: int = 0) -> bytes:
    img = textured(120, 160, seed)
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def _record(data: bytes, **kw) -> ImageRecord:
    fields = dict(
        uri="/src/a.jpg",
        relative_path="a.jpg",
        output_uri="/dst/a.jpg",
        sha256=hashlib.sha256(data).hexdigest(),
        width=160,
        height=120,
        format="jpeg",
        projection=Projection.PERSPECTIVE,
        n_tiles=1,
        timings_s={},
    )
    return ImageRecord(**{**fields, **kw})


FACE = Detections(
    xyxy=np.array([[40, 30, 80, 70]], np.float32),
    confidence=np.array([0.9], np.float32),
    class_id=np.array([ObjectClass.FACE], np.int32),
)


def test_published_bytes_are_deterministic():
    """A retried bundle republishes byte-identical output (the modes add no noise)."""
    data, cfg = _jpeg(), tiny_config()
    a = redact_image(data, [FACE], cfg, _record(data), RUN)
    b = redact_image(data, [FACE], cfg, _record(data), RUN)
    assert a.data == b.data
    assert a.row["output_sha256"] == hashlib.sha256(a.data).hexdigest()
    assert a.row["pixel_version"] == PIXEL_VERSION and a.row["status"] == "published"
    assert a.n_faces == 1 and a.mask[30:70, 40:80].all()


def test_original_changed_since_detection_is_refused():
    data, other = _jpeg(0), _jpeg(1)
    with pytest.raises(ImageError) as err:
        redact_image(other, [FACE], tiny_config(), _record(data), RUN)
    assert err.value.reason == "source_changed"


def test_manual_regions_are_blurred_whatever_the_detector_says():
    data = _jpeg()
    region = ManualRegion(
        region_id="m1", image_uri="/src/a.jpg", relative_path="a.jpg", cls=ObjectClass.FACE,
        x1=100, y1=10, x2=140, y2=50, reason="missed",
        created_at=datetime.datetime.now(datetime.timezone.utc), created_by="qa",
        source=RegionSource.REPORT,
    )  # fmt: skip
    out = redact_image(data, [], tiny_config(), _record(data), RUN, manual=[region])
    assert out.n_manual == 1 and out.row["n_manual"] == 1
    pub = decode_image(out.data, max_pixels=10**8).pixels.astype(int)
    orig = decode_image(data, max_pixels=10**8).pixels.astype(int)
    assert np.abs(pub[10:50, 100:140] - orig[10:50, 100:140]).mean() > 10
    assert np.abs(pub[80:, :60] - orig[80:, :60]).mean() < 3  # elsewhere: re-encode only


def test_reasons_modes_and_strengths_per_candidate_and_manual_region():
    """Each row detection carries its reason, mode and strength; a manual region's own mode
    wins over its class's and is recorded in manual_regions too."""
    data = _jpeg()
    cfg = tiny_config(
        thresholds={"face": {"blur": 0.5, "review": 0.2, "floor": 0.05}},
        blur={"mode": {"face": "pixelate"}, "strength": "low"},
    )
    weak = Detections(
        np.array([[5, 80, 25, 95]], np.float32),
        np.array([0.1], np.float32),
        np.array([ObjectClass.FACE], np.int32),
    )
    region = ManualRegion.new(
        image_uri="/src/a.jpg", relative_path="a.jpg", box=(100, 10, 140, 50),
        object_class=ObjectClass.FACE, reason="missed", created_by="qa", mode="solid",
    )  # fmt: skip
    out = redact_image(data, [FACE, weak], cfg, _record(data), RUN, manual=[region])
    dets = out.row["detections"]
    got = sorted((d["decision"], d["reason"], d["mode"], d["strength"]) for d in dets)
    assert got == [
        ("blur", "above_blur", "pixelate", "low"),
        ("dropped", "below_review", "", ""),
        ("manual", "manual_region", "solid", "low"),
    ]
    (entry,) = out.row["manual_regions"]
    assert (entry["mode"], entry["strength"]) == ("solid", "low")
    pub = decode_image(out.data, max_pixels=10**8).pixels.astype(int)
    patch = pub[20:40, 110:130].reshape(-1, 3)
    assert np.ptp(patch, axis=0).max() <= 4  # solid (up to JPEG)
    assert [r.value for r in out.reasons] == [d["reason"] for d in dets]
