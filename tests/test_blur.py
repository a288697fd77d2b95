"""Irreversible region blur: detail destroyed, geometry exact, outside untouched."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from redact.blur import blur_mask, blur_regions, high_frequency_correlation
from redact.classes import ObjectClass
from redact.config import BlurConfig, BlurMode, BlurShape, BlurStrength


def textured_image(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8: noise texture + a face-like pattern + rendered text."""
    rng = np.random.default_rng(seed)
    img = rng.integers(40, 216, (h, w, 3), dtype=np.uint8)
    cv2.circle(img, (160, 120), 50, (230, 190, 160), -1)
    cv2.circle(img, (140, 105), 8, (20, 20, 20), -1)
    cv2.circle(img, (180, 105), 8, (20, 20, 20), -1)
    cv2.ellipse(img, (160, 145), (20, 8), 0, 0, 180, (120, 30, 30), 3)
    cv2.putText(img, "AB 123 CD", (110, 190), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
    return img


def reference_mask(
    h: int,
    w: int,
    box: tuple[float, float, float, float],
    cfg: BlurConfig,
    wrap: bool,
    shape: BlurShape = BlurShape.ELLIPSE,
) -> np.ndarray:
    """Slow reference: shape at pixel centres + brute-force Euclidean feather distance."""
    x1, y1, x2, y2 = box
    bw = max((x2 - x1) * (1 + 2 * cfg.dilate), cfg.min_size_px)
    bh = max((y2 - y1) * (1 + 2 * cfg.dilate), cfg.min_size_px)
    if shape is BlurShape.ELLIPSE:  # the ellipse passes through the box corners at least
        bw, bh = max(bw, (x2 - x1) * 2**0.5), max(bh, (y2 - y1) * 2**0.5)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    shifts = (-w, 0, w) if wrap else (0,)
    inside = np.zeros((h, w), bool)
    for s in shifts:
        u, v = (xs + s - cx) / (bw / 2), (ys - cy) / (bh / 2)
        if shape is BlurShape.ELLIPSE:
            inside |= u * u + v * v <= 1
        else:
            inside |= (np.abs(u) <= 1) & (np.abs(v) <= 1)
    iy, ix = np.nonzero(inside)
    out = inside.copy()
    for y in range(h):
        for x in range(w):
            if inside[y, x]:
                continue
            dx = np.abs(ix - x)
            if wrap:
                dx = np.minimum(dx, w - dx)
            d = np.sqrt(dx * dx + (iy - y) ** 2).min()
            out[y, x] = d < cfg.feather_px + 1
    return out


def wiener(blurred: np.ndarray, sigma: float, k: float) -> np.ndarray:
    """Wiener deconvolution (numpy FFT) of a 2-D image with a Gaussian PSF."""
    h, w = blurred.shape
    yy = np.fft.fftfreq(h)[:, None] * h
    xx = np.fft.fftfreq(w)[None, :] * w
    psf = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    psf /= psf.sum()
    hf = np.fft.fft2(psf)
    g = np.fft.fft2(blurred)
    return np.real(np.fft.ifft2(np.conj(hf) * g / (np.abs(hf) ** 2 + k)))


def best_wiener_correlation(orig: np.ndarray, blurred: np.ndarray) -> float:
    go, gb = orig.astype(np.float64).mean(axis=2), blurred.astype(np.float64).mean(axis=2)
    return max(
        high_frequency_correlation(go, wiener(gb, s, k))
        for s in (0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0)
        for k in (1e-3, 1e-2, 1e-1)
    )


CFG = BlurConfig()
FACE_BOX = (110.0, 70.0, 210.0, 170.0)
# Pixels surely inside the ellipse of FACE_BOX (the original box's inscribed disc).
INNER = (slice(82, 158), slice(122, 198))


# --- high_frequency_correlation ---------------------------------------------------------------


def test_hfc_identity_affine_and_independent() -> None:
    img = textured_image().astype(np.float64)
    assert high_frequency_correlation(img, img) == pytest.approx(1.0)
    assert high_frequency_correlation(img, 2 * img + 7) == pytest.approx(1.0)
    assert high_frequency_correlation(img, 255 - img) == pytest.approx(1.0)  # |r|
    noise = np.random.default_rng(5).normal(size=img.shape)
    assert high_frequency_correlation(img, noise) < 0.05
    assert high_frequency_correlation(np.zeros((8, 8)), img[:8, :8, 0]) == 0.0
    # Half the detail energy replaced by independent noise -> partial correlation.
    noisy = img + noise * img.std() * 2
    assert 0.1 < high_frequency_correlation(img, noisy) < 0.9


def test_hfc_hand_computed_with_mask() -> None:
    a = np.zeros((5, 5))
    a[2, 2] = 1.0  # Laplacian: -4 at centre, +1 at its 4 neighbours, 0 elsewhere
    b = a.copy()
    b[0, 0] = 1.0  # adds a response at the top-left corner only
    m = np.zeros((5, 5), bool)
    m[1:4, 1:4] = True
    # b's extra delta changes the Laplacian only at (0,0), (0,1), (1,0): outside the mask.
    assert high_frequency_correlation(a, b, m) == pytest.approx(1.0)
    assert high_frequency_correlation(a, b) < 0.95
    with pytest.raises(ValueError):
        high_frequency_correlation(a, b[:4])
    with pytest.raises(ValueError):
        high_frequency_correlation(a, b, m[:4])


def test_hfc_matches_numpy_reference() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(30, 40))
    b = a + rng.normal(size=(30, 40))

    def lap(x: np.ndarray) -> np.ndarray:
        p = np.pad(x, 1, mode="symmetric")  # = cv2.BORDER_REFLECT
        return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * x

    ref = abs(np.corrcoef(lap(a).ravel(), lap(b).ravel())[0, 1])
    assert high_frequency_correlation(a, b) == pytest.approx(ref, abs=1e-5)


# --- destruction --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_detail_is_destroyed(seed: int) -> None:
    img = textured_image(seed=seed)
    out, mask = blur_regions(img, np.array([FACE_BOX]), CFG, wrap=False)
    assert mask[INNER].all()
    assert high_frequency_correlation(img[INNER], out[INNER]) < 0.1
    # Even the coarse structure is reduced to a few cells: the eyes/text are gone.
    assert np.abs(out[INNER].astype(int) - img[INNER]).mean() > 20


def test_wiener_deconvolution_does_not_restore_detail() -> None:
    img = textured_image()
    out, _ = blur_regions(img, np.array([FACE_BOX]), CFG, wrap=False)
    assert best_wiener_correlation(img[INNER], out[INNER]) < 0.15


def test_wiener_attack_is_strong_enough_to_undo_a_plain_blur() -> None:
    """Control: the same attack recovers detail from an ordinary Gaussian blur."""
    img = textured_image()
    plain = cv2.GaussianBlur(img, (0, 0), 1.5)
    assert high_frequency_correlation(img[INNER], plain[INNER]) < 0.6
    assert best_wiener_correlation(img[INNER], plain[INNER]) > 0.3


def test_deterministic_without_noise() -> None:
    """The modes add no noise: equal inputs give equal outputs."""
    img = textured_image()
    boxes = np.array([FACE_BOX])
    a, _ = blur_regions(img, boxes, CFG, wrap=False)
    b, _ = blur_regions(img, boxes, CFG, wrap=False)
    np.testing.assert_array_equal(a, b)


# --- modes and strengths ------------------------------------------------------------------

SQUARE = (40.0, 40.0, 140.0, 140.0)  # 100 px; dilate 0 + BOX: the shape is exactly this box
SQUARE_IN = (slice(40, 140), slice(40, 140))


def _square_cfg(**kw: object) -> BlurConfig:
    return BlurConfig(shapes={ObjectClass.FACE: BlurShape.BOX}, dilate=0.0, **kw)  # type: ignore[arg-type]


def _noise_image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (180, 180, 3), dtype=np.uint8)


def _local_var(img: np.ndarray) -> np.ndarray:
    """(H, W) variance of the grey levels over 3x3 neighbourhoods (levels^2)."""
    f = img.astype(np.float32).mean(axis=2)
    m = cv2.blur(f, (3, 3))
    return cv2.blur(f * f, (3, 3)) - m * m


def _jpeg(img: np.ndarray, q: int = 75) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


@pytest.mark.parametrize("strength", list(BlurStrength))
def test_blur_mode_leaves_no_high_frequency(strength: BlurStrength) -> None:
    img = _noise_image()
    out, mask = blur_regions(img, [SQUARE], _square_cfg(), wrap=False, strengths=[strength])
    assert mask[SQUARE_IN].all()
    lap_in = cv2.Laplacian(img.astype(np.float32).mean(axis=2), cv2.CV_32F)[SQUARE_IN]
    lap_out = cv2.Laplacian(out.astype(np.float32).mean(axis=2), cv2.CV_32F)[SQUARE_IN]
    assert lap_out.var() < 1e-3 * lap_in.var()  # the input's fine detail is gone
    assert high_frequency_correlation(img[SQUARE_IN], out[SQUARE_IN]) < 0.05
    # No input pixel survives: an area average of noise sits near the mean, not at 0/255.
    assert np.abs(out[SQUARE_IN].astype(int) - img[SQUARE_IN]).mean() > 40


@pytest.mark.parametrize("strength", list(BlurStrength))
def test_pixelate_mode_is_piecewise_constant(strength: BlurStrength) -> None:
    from redact.blur import STRENGTHS

    img = _noise_image(1)
    out, _ = blur_regions(
        img, [SQUARE], _square_cfg(), wrap=False, modes=["pixelate"], strengths=[strength]
    )
    inner = out[SQUARE_IN].astype(int)
    cells = STRENGTHS[BlurMode.PIXELATE][strength].cells
    # Hard-edged blocks of ~100 / cells px: few colours, and most neighbours equal.
    n_colours = len(np.unique(inner.reshape(-1, 3), axis=0))
    assert n_colours <= (cells + 2) ** 2
    same = (np.diff(inner, axis=1) == 0).all(axis=2).mean()
    assert same > 1 - (cells + 2) / 100
    # each block is the average of its pixels: near the noise's mean, far from any pixel
    assert np.abs(inner.mean() - 127.5) < 10 and np.abs(inner - img[SQUARE_IN]).mean() > 40


def test_solid_mode_is_one_colour_mean_or_fill() -> None:
    img = _noise_image(2)
    out, _ = blur_regions(img, [SQUARE], _square_cfg(), wrap=False, modes=["solid"])
    inner = out[SQUARE_IN].reshape(-1, 3)
    assert len(np.unique(inner, axis=0)) == 1
    expected = np.rint(img[SQUARE_IN].reshape(-1, 3).mean(axis=0))
    np.testing.assert_array_equal(inner[0], expected)
    fill = _square_cfg(solid_fill=(10, 20, 30))
    out, _ = blur_regions(img, [SQUARE], fill, wrap=False, modes=[BlurMode.SOLID])
    assert (out[SQUARE_IN] == [10, 20, 30]).all()
    gray, _ = blur_regions(img[:, :, 0], [SQUARE], fill, wrap=False, modes=[BlurMode.SOLID])
    assert (gray[SQUARE_IN] == round(0.299 * 10 + 0.587 * 20 + 0.114 * 30)).all()


@pytest.mark.parametrize(("mode", "bound"), [("blur", 3.0), ("pixelate", 1.0), ("solid", 3.0)])
def test_no_grain_after_jpeg(mode: str, bound: float) -> None:
    """The published patch is clean: after a JPEG q75 round trip the 3x3 local variance
    inside is tiny (the old per-pixel noise of 20 levels gave hundreds of levels^2). For the
    mosaic the median is judged: block edges are meant to be sharp."""
    img = _noise_image(3)
    for strength in BlurStrength:
        out, _ = blur_regions(
            img, [SQUARE], _square_cfg(), wrap=False, modes=[mode], strengths=[strength]
        )
        v = _local_var(_jpeg(out))[48:128, 48:128]  # whole JPEG MCUs inside
        judged = float(np.median(v)) if mode == "pixelate" else float(np.percentile(v, 99))
        assert judged < bound, (mode, strength, judged)
    # Control: the input itself is full of grain.
    assert float(np.median(_local_var(_jpeg(img))[45:135, 45:135])) > 100


@pytest.mark.parametrize("mode", list(BlurMode))
def test_seam_wrap_for_every_mode(mode: BlurMode) -> None:
    h, w = 60, 200
    cfg = BlurConfig(feather_px=2, dilate=0.15)
    img = np.random.default_rng(4).integers(0, 256, (h, w, 3), dtype=np.uint8)
    box = (185.0, 20.0, 215.0, 40.0)  # unwrapped: crosses x = W
    out, mask = blur_regions(img, np.array([box]), cfg, wrap=True, modes=[mode])
    np.testing.assert_array_equal(mask, reference_mask(h, w, box, cfg, wrap=True))
    np.testing.assert_array_equal(out[~mask], img[~mask])
    changed = (out != img).any(axis=2)
    assert changed[25:35, :5].all() and changed[25:35, -5:].all()
    if mode is BlurMode.SOLID:  # one region, one colour on both edges
        assert (out[30, 0] == out[30, -1]).all()


def test_per_region_modes_and_strengths_override_the_class() -> None:
    img = _noise_image(5)
    boxes = np.array([[10.0, 10.0, 60.0, 60.0], [100.0, 100.0, 150.0, 150.0]])
    cfg = _square_cfg(mode={ObjectClass.FACE: BlurMode.SOLID})
    out, _ = blur_regions(img, boxes, cfg, wrap=False, modes=["", "pixelate"])
    assert len(np.unique(out[12:58, 12:58].reshape(-1, 3), axis=0)) == 1  # the class's: solid
    assert len(np.unique(out[102:148, 102:148].reshape(-1, 3), axis=0)) > 4  # pixelated
    # a strength with a dilation bonus grows the mask, blur_mask agrees
    _, m_med = blur_regions(img, boxes[:1], cfg, wrap=False, strengths=["medium"])
    _, m_hi = blur_regions(img, boxes[:1], cfg, wrap=False, strengths=[BlurStrength.HIGH])
    assert m_hi.sum() > m_med.sum() and (m_hi | m_med == m_hi).all()
    hi = blur_mask(img.shape[:2], boxes[:1], cfg, wrap=False, strengths=["high"])
    np.testing.assert_array_equal(hi, m_hi)
    with pytest.raises(ValueError):
        blur_regions(img, boxes, cfg, wrap=False, modes=["blur"])  # one for two boxes
    with pytest.raises(ValueError):
        blur_regions(img, boxes, cfg, wrap=False, strengths=["extreme", ""])


def test_class_modes_from_config() -> None:
    img = _noise_image(6)
    cfg = BlurConfig(
        shapes={c: BlurShape.BOX for c in ObjectClass},
        dilate=0.0,
        mode={ObjectClass.FACE: BlurMode.BLUR, ObjectClass.LICENSE_PLATE: BlurMode.SOLID},
    )
    boxes = np.array([[10.0, 10.0, 60.0, 60.0], [100.0, 100.0, 150.0, 150.0]])
    out, _ = blur_regions(img, boxes, cfg, wrap=False, classes=[0, 1])
    assert len(np.unique(out[102:148, 102:148].reshape(-1, 3), axis=0)) == 1
    assert len(np.unique(out[12:58, 12:58].reshape(-1, 3), axis=0)) > 4


# --- geometry -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "feather", "box"),
    [
        (BlurShape.ELLIPSE, 3, (20.3, 15.0, 47.9, 33.2)),
        (BlurShape.BOX, 3, (20.3, 15.0, 47.9, 33.2)),
        (BlurShape.ELLIPSE, 0, (10.0, 10.0, 30.0, 50.0)),
        (BlurShape.ELLIPSE, 2, (30.0, 30.0, 31.0, 31.5)),  # tiny: min_size_px applies
        (BlurShape.BOX, 4, (-10.0, 40.0, 12.0, 70.0)),  # partly outside the image
    ],
)
def test_mask_matches_reference_and_outside_is_bit_identical(
    shape: BlurShape, feather: int, box: tuple[float, float, float, float]
) -> None:
    cfg = BlurConfig(
        shapes={ObjectClass.FACE: shape}, feather_px=feather, dilate=0.15, min_size_px=8
    )
    img = textured_image(64, 80)
    out, mask = blur_regions(img, np.array([box]), cfg, wrap=False, classes=[ObjectClass.FACE])
    ref = reference_mask(64, 80, box, cfg, wrap=False, shape=shape)
    np.testing.assert_array_equal(mask, ref)
    np.testing.assert_array_equal(out[~mask], img[~mask])
    assert (out[mask] != img[mask]).any(axis=-1).mean() > 0.8


def test_hand_computed_box_mask() -> None:
    cfg = BlurConfig(
        shapes={ObjectClass.FACE: BlurShape.BOX}, dilate=0.0, feather_px=0, min_size_px=1
    )
    mask = blur_mask((50, 60), [[10, 20, 30, 25]], cfg, wrap=False)
    expected = np.zeros((50, 60), bool)
    expected[20:25, 10:30] = True
    np.testing.assert_array_equal(mask, expected)
    # dilate 0.5: 20x5 -> 40x10 centred at (20, 22.5) -> x 0..40, y 17.5..27.5
    cfg = BlurConfig(
        shapes={ObjectClass.FACE: BlurShape.BOX}, dilate=0.5, feather_px=0, min_size_px=1
    )
    mask = blur_mask((50, 60), [[10, 20, 30, 25]], cfg, wrap=False)
    expected = np.zeros((50, 60), bool)
    expected[17:28, 0:40] = True  # pixel centres y + 0.5 in [17.5, 27.5], x + 0.5 in [0, 40]
    np.testing.assert_array_equal(mask, expected)


def test_seam_region_blurred_on_both_edges_only() -> None:
    h, w = 60, 200
    cfg = BlurConfig(feather_px=2, dilate=0.15)  # geometry below assumes this dilation
    img = textured_image(h, w)
    box = (185.0, 20.0, 215.0, 40.0)  # unwrapped: crosses x = W
    out, mask = blur_regions(img, np.array([box]), cfg, wrap=True)
    ref = reference_mask(h, w, box, cfg, wrap=True)
    np.testing.assert_array_equal(mask, ref)
    cols = np.flatnonzero(mask.any(axis=0))
    assert cols.min() == 0 and cols.max() == w - 1
    assert mask[:, :20].any() and mask[:, 180:].any() and not mask[:, 25:175].any()
    np.testing.assert_array_equal(out[~mask], img[~mask])
    changed = (out != img).any(axis=2)
    assert changed[:, :10].any() and changed[:, -10:].any()
    # Same region given with negative x (x1 < 0) is the same mask.
    _, mask2 = blur_regions(
        img, np.array([[b - (w if i % 2 == 0 else 0) for i, b in enumerate(box)]]), cfg, wrap=True
    )
    np.testing.assert_array_equal(mask2, mask)
    # Without wrap only the right edge is blurred.
    _, mask3 = blur_regions(img, np.array([box]), cfg, wrap=False)
    assert not mask3[:, :100].any() and mask3[:, -1].any()


def test_region_wider_than_panorama_covers_whole_band() -> None:
    cfg = BlurConfig(shapes={ObjectClass.FACE: BlurShape.BOX}, feather_px=0, dilate=0.0)
    mask = blur_mask((40, 100), [[-20, 10, 130, 20]], cfg, wrap=True)
    expected = np.zeros((40, 100), bool)
    expected[10:20] = True
    np.testing.assert_array_equal(mask, expected)


def test_mask_independent_of_rng_and_equals_blur_mask() -> None:
    img = textured_image()
    rng = np.random.default_rng(0)
    boxes = np.c_[rng.uniform(-20, 300, (6, 2)), np.zeros((6, 2))]
    boxes[:, 2:] = boxes[:, :2] + rng.uniform(3, 60, (6, 2))
    for mode in BlurMode:
        for strength in BlurStrength:
            _, m1 = blur_regions(
                img, boxes, CFG, wrap=True, modes=[mode] * 6, strengths=[strength] * 6
            )
            m2 = blur_mask(
                img.shape[:2], boxes, CFG, wrap=True, modes=[mode] * 6, strengths=[strength] * 6
            )
            np.testing.assert_array_equal(m1, m2)


# --- contract -----------------------------------------------------------------------------


def test_input_not_mutated_and_new_array() -> None:
    img = textured_image()
    before = img.copy()
    out, _ = blur_regions(img, np.array([FACE_BOX]), CFG, wrap=True)
    np.testing.assert_array_equal(img, before)
    assert not np.shares_memory(out, img)


@pytest.mark.parametrize("boxes", [np.zeros((0, 4)), [], np.zeros((0, 4), np.float32)])
def test_empty_boxes_give_identical_copy(boxes: object) -> None:
    img = textured_image()
    out, mask = blur_regions(img, boxes, CFG, wrap=True)
    np.testing.assert_array_equal(out, img)
    assert out is not img and not np.shares_memory(out, img)
    assert mask.shape == img.shape[:2] and not mask.any()


def test_gray_and_rgba_inputs_keep_shape() -> None:
    img = textured_image()
    gray = img[:, :, 0].copy()
    out, mask = blur_regions(gray, [FACE_BOX], CFG, wrap=False)
    assert out.shape == gray.shape and mask[INNER].all()
    np.testing.assert_array_equal(out[~mask], gray[~mask])
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    out4, _ = blur_regions(rgba, [FACE_BOX], CFG, wrap=False)
    assert out4.shape == rgba.shape


def test_invalid_inputs_raise() -> None:
    img = textured_image(32, 32)
    with pytest.raises(ValueError):
        blur_regions(img.astype(np.float32), [[0, 0, 5, 5]], CFG, wrap=False)
    with pytest.raises(ValueError):
        blur_regions(img, [[0, 0, 5]], CFG, wrap=False)
    with pytest.raises(ValueError):
        blur_regions(img, [[0, 0, np.nan, 5]], CFG, wrap=False)


def test_inverted_box_is_still_blurred() -> None:
    img = textured_image()
    _, m1 = blur_regions(img, [[210, 170, 110, 70]], CFG, wrap=False)
    _, m2 = blur_regions(img, [FACE_BOX], CFG, wrap=False)
    np.testing.assert_array_equal(m1, m2)


@pytest.mark.parametrize("dilate", [0.0, 0.1, 0.15, 0.3])
def test_every_pixel_of_the_detected_box_is_destroyed_for_every_shape(dilate: float) -> None:
    """Recall first: whatever the shape and dilation, the detected box is fully covered."""
    box = (20.0, 12.0, 52.0, 28.0)  # a plate-like 32x16 box: ellipse corners are the risk
    for cls in ObjectClass:
        for shape in BlurShape:
            cfg = BlurConfig(shapes={cls: shape}, dilate=dilate, feather_px=0, min_size_px=1)
            mask = blur_mask((48, 80), [box], cfg, wrap=False, classes=[cls])
            assert mask[12:28, 20:52].all(), (cls, shape, dilate)


def test_default_shapes_plates_are_boxes() -> None:
    cfg = BlurConfig()
    assert cfg.shape_for(ObjectClass.LICENSE_PLATE) is BlurShape.BOX
    assert cfg.shape_for(ObjectClass.FACE) is BlurShape.ELLIPSE


def test_class_dilate_overrides_dilate_per_class() -> None:
    cfg = BlurConfig(
        shapes={ObjectClass.FACE: BlurShape.BOX, ObjectClass.LICENSE_PLATE: BlurShape.BOX},
        dilate=0.5,
        class_dilate={ObjectClass.LICENSE_PLATE: 0.0},
        feather_px=0,
        min_size_px=1,
    )
    assert cfg.dilate_for(ObjectClass.FACE) == 0.5
    assert cfg.dilate_for(ObjectClass.LICENSE_PLATE) == 0.0
    box = [[10, 20, 30, 25]]
    plate = blur_mask((50, 60), box, cfg, wrap=False, classes=[ObjectClass.LICENSE_PLATE])
    expected = np.zeros((50, 60), bool)
    expected[20:25, 10:30] = True  # not dilated
    np.testing.assert_array_equal(plate, expected)
    face = blur_mask((50, 60), box, cfg, wrap=False, classes=[ObjectClass.FACE])
    expected[17:28, 0:40] = True  # dilated by 0.5 (see test_hand_computed_box_mask)
    np.testing.assert_array_equal(face, expected)
    # blur_regions changes exactly the pixels of blur_mask, class by class
    img = textured_image(50, 60)
    both = np.array(box * 2, float)
    cls = [ObjectClass.LICENSE_PLATE, ObjectClass.FACE]
    _, mask = blur_regions(img, both, cfg, wrap=False, classes=cls)
    np.testing.assert_array_equal(mask, blur_mask((50, 60), both, cfg, wrap=False, classes=cls))
