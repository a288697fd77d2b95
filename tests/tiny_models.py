"""Tiny, real YOLOv8-shaped ONNX models for tests (built with onnx.helper, no torch).

``build_color_detector``: class 0 ("face") fires on pure red 8x8 cells, class 1 ("plate") on
pure blue ones, class 2 (if any) on pure green; every anchor's box is its cell centre +/- 12 px.
So a red square drawn in a tile is detected as a face and a blue one as a plate.

``build_constant_detector``: outputs fixed boxes/scores whatever the input (decode tests).
``build_raw_head_detector``: outputs any fixed (C, A) head (broken heads: zeros, NaN, wrong C,
anchor-major), for the output-contract tests.

``color_head`` is the colour detector in numpy (for fake backends); ``write_color_canary``
writes a detector canary folder of red/blue squares the colour detector passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

STRIDE = 8
BOX_SIZE = 24.0  # px, w and h of every color-detector box
SHARPNESS = 16.0  # score = sigmoid(SHARPNESS * (cell purity - 0.5))
OPSET = 13

_COLORS = ("red", "blue", "green")
_CHANNEL = {"red": 0, "green": 1, "blue": 2}


def _save(graph: onnx.GraphProto, path: str | Path) -> Path:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="redact-tests"
    )
    model.ir_version = 8  # loadable by any onnxruntime >= 1.10
    onnx.checker.check_model(model)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(p))
    return p


def _input(size: int, dtype: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("images", dtype, ["batch", 3, size, size])


def anchor_centres(size: int) -> np.ndarray:
    """(A, 2) float32 cell centres (cx, cy) of the stride-8 grid, row-major, pixels."""
    n = size // STRIDE
    ys, xs = np.mgrid[0:n, 0:n]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32) * STRIDE + STRIDE / 2


def build_color_detector(
    path: str | Path,
    *,
    size: int = 64,
    num_classes: int = 2,
    extra_channels: int = 0,
    input_dtype: str = "float32",
    anchors_first: bool = False,
) -> Path:
    """Write a colour "detector" ONNX model and return its path.

    Args:
        path: output .onnx file.
        size: S, square input size in pixels (multiple of 8, 16..2048).
        num_classes: 1 (red), 2 (red, blue) or 3 (red, blue, green).
        extra_channels: zero channels appended after the class scores (like pose keypoints).
        input_dtype: "float32" or "float16" input tensor.
        anchors_first: output [B, A, C] instead of [B, C, A] (a transposed head).

    Input ``images`` [B, 3, S, S] in [0, 1]; output ``output0`` [B, 4 + nc + extra, (S/8)^2]:
    cx, cy, w=24, h=24 per cell, then per class sigmoid(16 * (mean purity of the cell - 0.5)),
    purity of red = clip(R - max(G, B), 0, 1).
    """
    if size % STRIDE or not 16 <= size <= 2048:
        raise ValueError(f"size must be a multiple of {STRIDE} in [16, 2048], got {size}")
    if not 1 <= num_classes <= len(_COLORS):
        raise ValueError(f"num_classes must be 1..{len(_COLORS)}, got {num_classes}")
    if input_dtype not in ("float32", "float16"):
        raise ValueError(f"input_dtype must be float32 or float16, got {input_dtype}")
    n_anchor = (size // STRIDE) ** 2
    init: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, value: np.ndarray) -> str:
        init.append(numpy_helper.from_array(value, name))
        return name

    x = "images"
    if input_dtype == "float16":
        nodes.append(helper.make_node("Cast", ["images"], ["x32"], to=TensorProto.FLOAT))
        x = "x32"
    # One [B, 1, S, S] plane per RGB channel.
    for cname, ch in _CHANNEL.items():
        nodes.append(
            helper.make_node(
                "Slice",
                [
                    x,
                    const(f"s_{cname}", np.array([ch], np.int64)),
                    const(f"e_{cname}", np.array([ch + 1], np.int64)),
                    const(f"a_{cname}", np.array([1], np.int64)),
                ],
                [cname],
            )
        )
    purity = []
    for color in _COLORS[:num_classes]:
        others = [c for c in _CHANNEL if c != color]
        nodes.append(helper.make_node("Max", others, [f"{color}_others"]))
        nodes.append(helper.make_node("Sub", [color, f"{color}_others"], [f"{color}_diff"]))
        nodes.append(helper.make_node("Relu", [f"{color}_diff"], [f"{color}_purity"]))
        purity.append(f"{color}_purity")
    nodes.append(helper.make_node("Concat", purity, ["purity"], axis=1))
    nodes.append(
        helper.make_node(
            "AveragePool",
            ["purity"],
            ["cell"],
            kernel_shape=[STRIDE, STRIDE],
            strides=[STRIDE, STRIDE],
        )
    )
    nodes.append(
        helper.make_node("Sub", ["cell", const("half", np.array(0.5, np.float32))], ["c0"])
    )
    nodes.append(
        helper.make_node("Mul", ["c0", const("sharp", np.array(SHARPNESS, np.float32))], ["c1"])
    )
    nodes.append(helper.make_node("Sigmoid", ["c1"], ["c2"]))
    nodes.append(
        helper.make_node(
            "Reshape", ["c2", const("shape", np.array([0, num_classes, -1], np.int64))], ["scores"]
        )
    )
    # Boxes: constant [1, 4, A] broadcast to the batch by adding 0 * (sum of scores).
    centres = anchor_centres(size)
    boxes = np.concatenate([centres.T, np.full((2, n_anchor), BOX_SIZE, np.float32)], axis=0)[
        None
    ].astype(np.float32)
    nodes.append(helper.make_node("ReduceMean", ["scores"], ["ssum"], axes=[1], keepdims=1))
    nodes.append(helper.make_node("Mul", ["ssum", const("zero", np.array(0.0, np.float32))], ["z"]))
    nodes.append(helper.make_node("Add", ["z", const("boxes", boxes)], ["bx"]))
    parts = ["bx", "scores"]
    if extra_channels:
        nodes.append(
            helper.make_node(
                "Add",
                ["z", const("extra", np.zeros((1, extra_channels, n_anchor), np.float32))],
                ["ex"],
            )
        )
        parts.append("ex")
    channels = 4 + num_classes + extra_channels
    if anchors_first:
        nodes.append(helper.make_node("Concat", parts, ["head"], axis=1))
        nodes.append(helper.make_node("Transpose", ["head"], ["output0"], perm=[0, 2, 1]))
        out_shape: list[Any] = ["batch", n_anchor, channels]
    else:
        nodes.append(helper.make_node("Concat", parts, ["output0"], axis=1))
        out_shape = ["batch", channels, n_anchor]
    graph = helper.make_graph(
        nodes,
        "color_detector",
        [_input(size, TensorProto.FLOAT16 if input_dtype == "float16" else TensorProto.FLOAT)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
        initializer=init,
    )
    return _save(graph, path)


def build_constant_detector(
    path: str | Path, boxes: np.ndarray, scores: np.ndarray, *, size: int = 64
) -> Path:
    """Write a model whose head is always the given anchors, and return its path.

    Args:
        path: output .onnx file.
        boxes: (A, 4) cx, cy, w, h in input pixels.
        scores: (A, nc) class scores in [0, 1].
        size: S, square input size in pixels.

    Output ``output0`` [B, 4 + nc, A] (the same for every image of the batch).
    """
    b = np.asarray(boxes, np.float32)
    s = np.asarray(scores, np.float32)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be (A, 4), got {b.shape}")
    if s.ndim != 2 or s.shape[0] != b.shape[0]:
        raise ValueError(f"scores must be (A, nc) with A={b.shape[0]}, got {s.shape}")
    return build_raw_head_detector(path, np.concatenate([b.T, s.T], axis=0), size=size)


def build_raw_head_detector(path: str | Path, head: np.ndarray, *, size: int = 64) -> Path:
    """Write a model whose output is always ``head`` (any values, NaN included), per image.

    Args:
        path: output .onnx file.
        head: (D1, D2) float32 array: output ``output0`` is [B, D1, D2] (a proper head is
            (4 + nc + extra, A); pass e.g. ``np.zeros((3, A))`` or a transposed head to
            build a broken one).
        size: S, square input size in pixels.

    The output is ``head + 0 * mean(image)`` so it depends on the input (no constant folding
    of the batch dim); NaN stays NaN.
    """
    h = np.asarray(head, np.float32)
    if h.ndim != 2:
        raise ValueError(f"head must be 2-D (D1, D2), got {h.shape}")
    init = [
        numpy_helper.from_array(h[None], "head"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array([0, 1, 1], np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=1),  # [B,1,1,1]
        helper.make_node("Reshape", ["m", "shape"], ["m3"]),  # [B, 1, 1]
        helper.make_node("Mul", ["m3", "zero"], ["z"]),
        helper.make_node("Add", ["z", "head"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "raw_head_detector",
        [_input(size, TensorProto.FLOAT)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", *h.shape])],
        initializer=init,
    )
    return _save(graph, path)


def color_head(images: np.ndarray, num_classes: int = 2) -> np.ndarray:
    """The colour detector in numpy: (B, 3, S, S) float in [0, 1] -> (B, 4 + nc, (S/8)^2)
    float32, the same head ``build_color_detector`` computes (no extra channels)."""
    x = np.asarray(images, np.float32)
    b, _, size, _ = x.shape
    n = size // STRIDE
    planes = {c: x[:, ch] for c, ch in _CHANNEL.items()}
    scores = []
    for color in _COLORS[:num_classes]:
        others = np.maximum(*[planes[c] for c in _CHANNEL if c != color])
        purity = np.maximum(planes[color] - others, 0.0)
        cell = purity.reshape(b, n, STRIDE, n, STRIDE).mean(axis=(2, 4)).reshape(b, -1)
        scores.append(1.0 / (1.0 + np.exp(-SHARPNESS * (cell - 0.5))))
    centres = anchor_centres(size)
    boxes = np.concatenate([centres.T, np.full((2, n * n), BOX_SIZE, np.float32)], axis=0)
    head = np.concatenate([np.broadcast_to(boxes, (b, 4, n * n)), np.stack(scores, 1)], axis=1)
    return head.astype(np.float32)


#: The colour canary: (file, (W, H), [(colour, class, x0, y0, side)]).
COLOR_CANARY = (
    ("red.png", (48, 40), [("red", "face", 8, 8, 16)]),
    ("blue.png", (56, 32), [("blue", "license_plate", 32, 8, 16)]),
)


def write_color_canary(folder: str | Path, *, min_iou: float = 0.3) -> Path:
    """Write a detector canary (``canary.yaml`` + PNG crops) that the colour detector passes:
    a 16 px red square (face) and a 16 px blue square (plate) on grey, each in its own crop
    (<= 56 px, so it fits any colour-detector tile). Returns the folder."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    crops = []
    for name, (w, h), squares in COLOR_CANARY:
        img = np.full((h, w, 3), 90, np.uint8)
        objects = []
        for color, cls, x0, y0, side in squares:
            img = draw_square(img, x0, y0, side, color)
            objects.append({"class": cls, "box": [x0, y0, x0 + side, y0 + side]})
        if not cv2.imwrite(str(root / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {root / name}")
        crops.append({"file": name, "objects": objects})
    (root / "canary.yaml").write_text(
        yaml.safe_dump({"version": 1, "min_iou": min_iou, "crops": crops})
    )
    return root


def draw_square(image: np.ndarray, x0: int, y0: int, side: int, color: str = "red") -> np.ndarray:
    """Copy of ``image`` (H, W, 3) uint8 RGB with a pure ``color`` square at (x0, y0), pixels."""
    out = image.copy()
    rgb = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}[color]
    out[y0 : y0 + side, x0 : x0 + side] = rgb
    return out


def write_tiny_config(root: str | Path, *, tile: int = 64, **sections: Any) -> Path:
    """Write ``root/cfg.yaml``: the colour detector (built into ``root``) on ``tile`` px tiles,
    one native ring over -60..60 deg, photo windows with 24 px overlap and no global view,
    blur >= 0.5 and review >= 0.3 for both classes, 2:1 images from 64 px wide treated as
    panoramas (the test images are small). ``sections`` replace top-level sections
    (e.g. ``blur={...}``, ``season={...}``). Returns the config path.

    Also writes the colour canary (``root/canary``, :func:`write_color_canary`), which the
    config's model names (``canary:``): the colour model cannot pass the packaged canary of
    real faces, and a real job proves every detector on its canary before it runs."""
    root = Path(root)
    model = build_color_detector(root / "tiny.onnx", size=tile)
    canary = write_color_canary(root / "canary")
    cfg: dict[str, Any] = {
        "models": [
            {
                "path": str(model),
                "classes": ["face", "license_plate"],
                "batch_size": 4,
                "canary": str(canary),
            }
        ],
        "tiling": {
            "tile_size": tile,
            "levels": [
                {
                    "name": "native",
                    "scale": 1.0,
                    "pitch_min_deg": -60,
                    "pitch_max_deg": 60,
                    "max_object_deg": 8,
                }
            ],
            "perspective": {"overlap_px": 24, "global_view": False},
        },
        # The size prior is off: 256 px test panoramas are not to scale (a 24 px box would be
        # 17 deg tall, a giant by the shipped rule).
        "thresholds": {
            "face": {"blur": 0.5, "review": 0.3, "floor": 0.1, "review_max_height": 0.0},
            "license_plate": {"blur": 0.5, "review": 0.3, "floor": 0.1, "review_max_height": 0.0},
        },
        "io": {"equirect_min_width": 64},
        **sections,
    }
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


CENTERFACE_STRIDE = 4


def build_centerface_detector(
    path: str | Path,
    *,
    size: int = 64,
    box: float = BOX_SIZE,
    scale_value: float | None = None,
    heat_scale: float = 1.0,
    landmarks: bool = True,
) -> Path:
    """Write a CenterFace-shaped colour "face detector" ONNX model and return its path.

    Args:
        path: output .onnx file.
        size: S, square input size in pixels (multiple of 32).
        box: w and h of every box, pixels (scale channels = log(box / 4)).
        scale_value: if given, every scale value instead (e.g. NaN for a broken model).
        heat_scale: heatmap multiplier (0 = a blind model; > 1 breaks the [0, 1] contract).
        landmarks: append the unused (B, 10, h, w) landmark output, as CenterFace has.

    Input ``input.1`` [B, 3, S, S] RGB in [0, 255]; outputs at stride 4 (h = w = S / 4):
    ``heatmap`` [B, 1, h, w] = heat_scale * sigmoid(16 * (mean red purity of the 4x4 cell
    - 0.5)) (purity = clip(R - max(G, B), 0, 255) / 255), ``scale`` [B, 2, h, w],
    ``offset`` [B, 2, h, w] = 0, and ``landmarks`` [B, 10, h, w] = 0.
    """
    if size % 32 or not 32 <= size <= 2048:
        raise ValueError(f"size must be a multiple of 32 in [32, 2048], got {size}")
    n = size // CENTERFACE_STRIDE
    init: list[onnx.TensorProto] = []

    def const(name: str, value: np.ndarray) -> str:
        init.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    nodes = [
        helper.make_node(
            "Slice",
            [
                "input.1",
                const(f"s_{c}", np.array([ch], np.int64)),
                const(f"e_{c}", np.array([ch + 1], np.int64)),
                const(f"a_{c}", np.array([1], np.int64)),
            ],
            [c],
        )
        for c, ch in _CHANNEL.items()
    ]
    nodes += [
        helper.make_node("Max", ["green", "blue"], ["others"]),
        helper.make_node("Sub", ["red", "others"], ["diff"]),
        helper.make_node("Relu", ["diff"], ["pur255"]),
        helper.make_node(
            "Mul", ["pur255", const("inv255", np.array(1 / 255, np.float32))], ["pur"]
        ),
        helper.make_node(
            "AveragePool",
            ["pur"],
            ["cell"],
            kernel_shape=[CENTERFACE_STRIDE, CENTERFACE_STRIDE],
            strides=[CENTERFACE_STRIDE, CENTERFACE_STRIDE],
        ),
        helper.make_node("Sub", ["cell", const("half", np.array(0.5, np.float32))], ["c0"]),
        helper.make_node("Mul", ["c0", const("sharp", np.array(SHARPNESS, np.float32))], ["c1"]),
        helper.make_node("Sigmoid", ["c1"], ["c2"]),
        helper.make_node(
            "Mul", ["c2", const("heat_scale", np.array(heat_scale, np.float32))], ["heatmap"]
        ),
        helper.make_node("Mul", ["cell", const("zero", np.array(0.0, np.float32))], ["z"]),
    ]
    sv = np.float32(np.log(box / CENTERFACE_STRIDE) if scale_value is None else scale_value)
    consts = {
        "scale": np.full((1, 2, n, n), sv, np.float32),
        "offset": np.zeros((1, 2, n, n), np.float32),
    }
    if landmarks:
        consts["landmarks"] = np.zeros((1, 10, n, n), np.float32)
    for name, value in consts.items():
        nodes.append(helper.make_node("Add", ["z", const(f"{name}_c", value)], [name]))
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", c, n, n])
        for name, c in (("heatmap", 1), ("scale", 2), ("offset", 2), ("landmarks", 10))
        if name == "heatmap" or name in consts
    ]
    graph = helper.make_graph(
        nodes,
        "centerface_color_detector",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["batch", 3, size, size])],
        outputs,
        initializer=init,
    )
    return _save(graph, path)
