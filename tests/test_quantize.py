"""scripts/quantize_onnx.py: static INT8 QDQ quantization of a tiny real conv net."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tests.fixtures.scripts import load_script  # noqa: E402

q = load_script("quantize_onnx")


def _tiny_convnet(path: Path) -> Path:
    """images [B,3,32,32] -> Conv(3->8) -> Relu -> Conv(8->6) -> '/model.22/' Sigmoid -> [B,6,1024]."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (6, 8, 1, 1)).astype(np.float32), "w2")
    shape = numpy_helper.from_array(np.array([0, 6, -1], np.int64), "shape")
    nodes = [
        helper.make_node(
            "Conv", ["images", "w1", "b1"], ["c1"], name="/model.0/conv/Conv", pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["c1"], ["r1"], name="/model.0/act/Relu"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="/model.22/cv3/Conv"),
        helper.make_node("Sigmoid", ["c2"], ["s"], name="/model.22/Sigmoid"),
        helper.make_node("Reshape", ["s", "shape"], ["output0"], name="/model.22/Reshape"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["B", 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["B", 6, 1024])],
        [w1, b1, w2, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_quantize_convs_only_and_close_to_float(tmp_path: Path) -> None:
    import onnxruntime as ort

    src = _tiny_convnet(tmp_path / "f.onnx")
    rng = np.random.default_rng(1)
    batches = [rng.random((4, 3, 32, 32), dtype=np.float32) for _ in range(4)]
    out = tmp_path / "q.onnx"
    q.quantize(src, out, batches[:3])
    graph = onnx.load(str(out)).graph
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # the head's non-conv nodes stay float: no QuantizeLinear consumes the sigmoid's output
    sig = next(n for n in graph.node if n.op_type == "Sigmoid")
    consumers = [n for n in graph.node if sig.output[0] in n.input]
    assert all(n.op_type != "QuantizeLinear" for n in consumers)
    # weights stored as int8
    int8_inits = [i for i in graph.initializer if i.data_type == TensorProto.INT8]
    assert len(int8_inits) >= 1  # the head conv's weights (the stem conv stays float)
    x = batches[3]
    ya = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(
        None, {"images": x}
    )[0]
    yb = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"images": x}
    )[0]
    assert ya.shape == yb.shape == (4, 6, 1024)
    err = np.abs(ya - yb).max()
    assert 0 < err < 0.05  # quantized (not identical) yet close on sigmoid scores


def test_float_nodes_keep_stem_logit_convs_and_head_decoding(tmp_path: Path) -> None:
    src = _tiny_convnet(tmp_path / "f.onnx")
    # the stem conv (/model.0/) and the head decoding stay float; the mid head conv does not
    assert q.float_nodes(src) == ["/model.0/conv/Conv", "/model.22/Sigmoid", "/model.22/Reshape"]


def test_float_nodes_on_yolov8_names(tmp_path: Path) -> None:
    names = [
        ("/model.0/conv/Conv", "Conv", True),
        ("/model.2/cv1/conv/Conv", "Conv", False),
        ("/model.22/cv2.0/cv2.0.0/conv/Conv", "Conv", False),
        ("/model.22/cv2.0/cv2.0.2/Conv", "Conv", True),
        ("/model.22/cv3.2/cv3.2.2/Conv", "Conv", True),
        ("/model.22/cv3.2/cv3.2.1/conv/Conv", "Conv", False),
        ("/model.22/dfl/Softmax", "Softmax", True),
        ("/model.22/dfl/conv/Conv", "Conv", True),
    ]
    nodes = [helper.make_node(op, ["x"], [f"y{i}"], name=n) for i, (n, op, _) in enumerate(names)]
    graph = helper.make_graph(nodes, "names", [], [])
    path = tmp_path / "names.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert q.float_nodes(path) == [n for n, _, keep in names if keep]


def test_float_nodes_extra_prefixes_keep_exactly_those_convs(tmp_path: Path) -> None:
    names = [
        ("/model.2/cv1/conv/Conv", "Conv"),
        ("/model.22/cv2.0/cv2.0.0/conv/Conv", "Conv"),
        ("/model.22/cv2.0/cv2.0.2/Conv", "Conv"),
        ("/model.22/cv3.0/cv3.0.0/conv/Conv", "Conv"),
        ("/model.22/cv3.0/cv3.0.1/conv/Conv", "Conv"),
        ("/model.22/cv3.0/cv3.0.2/Conv", "Conv"),
        ("/model.22/cv3.0/cv3.0.0/act/Mul", "Mul"),
    ]
    nodes = [helper.make_node(op, ["x"], [f"y{i}"], name=n) for i, (n, op) in enumerate(names)]
    path = tmp_path / "names.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "names", [], [])), str(path))
    base = set(q.float_nodes(path))
    cls = set(q.float_nodes(path, q.float_prefixes(["cls"])))
    head = set(q.float_nodes(path, q.float_prefixes(["head"])))
    # "cls" adds exactly the class-branch convolutions that were not float already
    assert cls - base == {"/model.22/cv3.0/cv3.0.0/conv/Conv", "/model.22/cv3.0/cv3.0.1/conv/Conv"}
    assert head - cls == {"/model.22/cv2.0/cv2.0.0/conv/Conv"}
    assert "/model.2/cv1/conv/Conv" not in head  # the backbone stays quantized
    custom = set(q.float_nodes(path, q.float_prefixes(["/model.2/"])))
    assert custom - base == {"/model.2/cv1/conv/Conv"}
    # graph order, no duplicates
    order = [n for n, _ in names]
    kept = q.float_nodes(path, q.float_prefixes(["cls", "head"]))
    assert kept == sorted(set(kept), key=order.index)


def test_float_prefixes_rejects_unknown_names() -> None:
    assert q.float_prefixes(["box", "/model.21/"]) == ("/model.22/cv2.", "/model.21/")
    with pytest.raises(ValueError, match="nope"):
        q.float_prefixes(["nope"])


def test_quantize_extra_float_prefix_leaves_that_conv_float(tmp_path: Path) -> None:
    import onnxruntime as ort

    src = _tiny_convnet(tmp_path / "f.onnx")
    rng = np.random.default_rng(2)
    batches = [rng.random((4, 3, 32, 32), dtype=np.float32) for _ in range(4)]
    plain, kept = tmp_path / "q.onnx", tmp_path / "qf.onnx"
    q.quantize(src, plain, batches[:3])
    float_list = q.quantize(src, kept, batches[:3], q.float_prefixes(["/model.22/cv3"]))
    assert "/model.22/cv3/Conv" in float_list

    def conv_weight_types(path: Path) -> dict[str, int]:
        g = onnx.load(str(path)).graph
        inits = {i.name: i.data_type for i in g.initializer}
        producers = {o: n for n in g.node for o in n.output}
        out = {}
        for n in g.node:
            if n.op_type == "Conv":
                w = producers.get(n.input[1])  # a DequantizeLinear when quantized
                out[n.name] = inits[w.input[0]] if w is not None else inits[n.input[1]]
        return out

    assert conv_weight_types(plain)["/model.22/cv3/Conv"] == TensorProto.INT8
    assert conv_weight_types(kept)["/model.22/cv3/Conv"] == TensorProto.FLOAT
    x = batches[3]
    outs = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
        for p in (src, plain, kept)
    ]
    err_plain, err_kept = (float(np.abs(outs[0] - o).max()) for o in outs[1:])
    assert err_kept < 0.05 and err_plain < 0.05  # both within tolerance of fp32
    # with every conv float (stem by default, the head conv by prefix) nothing is quantized
    assert err_kept < 1e-5 < err_plain


def test_sample_images_is_seeded_and_capped(tmp_path: Path) -> None:
    src = tmp_path / "imgs"
    (src / "sub").mkdir(parents=True)
    for i in range(10):
        (src / ("sub" if i % 2 else "") / f"{i}.jpg").write_bytes(b"x")
    (src / "notes.txt").write_text("not an image")
    a = q.sample_images([src], 4, seed=3, dest=tmp_path / "a")
    b = q.sample_images([src], 4, seed=3, dest=tmp_path / "b")
    assert [p.resolve() for p in a] == [p.resolve() for p in b]
    assert len(a) == 4 and all(p.resolve().suffix == ".jpg" for p in a)
    assert len(q.sample_images([src], 99, seed=0, dest=tmp_path / "c")) == 10
    with pytest.raises(ValueError):
        q.sample_images([tmp_path / "c" / "nothing"], 1, seed=0, dest=tmp_path / "d")


def _activation_scales(path: Path) -> dict[str, float]:
    """QuantizeLinear input tensor -> its scale (the calibrated range / 255)."""
    g = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    return {
        n.input[0]: float(inits[n.input[1]])
        for n in g.node
        if n.op_type == "QuantizeLinear" and n.input[1] in inits and inits[n.input[1]].size == 1
    }


def test_percentile_ranges_ignore_a_rare_outlier_that_minmax_keeps(tmp_path: Path) -> None:
    src = _tiny_convnet(tmp_path / "f.onnx")
    rng = np.random.default_rng(3)
    batches = [rng.random((4, 3, 32, 32), dtype=np.float32) for _ in range(6)]
    batches[2] = batches[2].copy()
    batches[2][0, :, 5, 5] = 500.0  # one hot pixel in 24,576 inputs
    q.quantize(src, tmp_path / "mm.onnx", batches)
    q.quantize(src, tmp_path / "pc.onnx", batches, percentile=99.9)
    mm, pc = _activation_scales(tmp_path / "mm.onnx"), _activation_scales(tmp_path / "pc.onnx")
    assert mm.keys() == pc.keys() and mm
    # the conv input after the stem (ReLU output) carries the outlier: min/max stretches its
    # range to cover it, the percentile range does not
    name = "r1"
    assert pc[name] < mm[name] / 20


def test_percentile_and_moving_average_are_exclusive(tmp_path: Path) -> None:
    src = _tiny_convnet(tmp_path / "f.onnx")
    batch = [np.zeros((1, 3, 32, 32), np.float32)]
    with pytest.raises(ValueError, match="different range rules"):
        q.quantize(src, tmp_path / "x.onnx", batch, moving_average=True, percentile=99.9)
