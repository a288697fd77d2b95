"""scripts/interpolate_onnx.py: weight-space blend of two ONNX models with one graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tests.fixtures.scripts import load_script  # noqa: E402

wise = load_script("interpolate_onnx")


def _linear_model(path: Path, w: np.ndarray, b: np.ndarray, shape_name: str = "shape") -> Path:
    """x [1, 4] -> MatMul(w [4, 3]) + b [3] -> Reshape(int64 shape) -> y [1, 3]."""
    inits = [
        numpy_helper.from_array(w.astype(np.float32), "w"),
        numpy_helper.from_array(b.astype(np.float32), "b"),
        numpy_helper.from_array(np.array([1, 3], np.int64), shape_name),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Reshape", ["a", shape_name], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "lin",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"x": x})[0])


def test_blend_is_linear_in_alpha_and_keeps_the_ends(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    wa, wb = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    ba, bb = rng.normal(size=3), rng.normal(size=3)
    a = _linear_model(tmp_path / "a.onnx", wa, ba)
    b = _linear_model(tmp_path / "b.onnx", wb, bb)
    x = rng.normal(size=(1, 4)).astype(np.float32)
    ya, yb = _run(a, x), _run(b, x)
    for alpha in (0.0, 0.3, 1.0):
        out = tmp_path / f"m{alpha}.onnx"
        assert wise.main([str(a), str(b), "--alpha", str(alpha), "--out", str(out)]) == 0
        # A linear model's output is linear in its weights: the blend's output is the blend.
        np.testing.assert_allclose(_run(out, x), (1 - alpha) * ya + alpha * yb, atol=1e-5)
    np.testing.assert_array_equal(_run(tmp_path / "m0.0.onnx", x), ya)


def test_blend_is_deterministic(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    a = _linear_model(tmp_path / "a.onnx", rng.normal(size=(4, 3)), rng.normal(size=3))
    b = _linear_model(tmp_path / "b.onnx", rng.normal(size=(4, 3)), rng.normal(size=3))
    blobs = [wise.interpolate(a, b, 0.5).SerializeToString() for _ in range(2)]
    assert blobs[0] == blobs[1]


def test_mismatches_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    a = _linear_model(tmp_path / "a.onnx", rng.normal(size=(4, 3)), rng.normal(size=3))
    renamed = _linear_model(
        tmp_path / "r.onnx", rng.normal(size=(4, 3)), rng.normal(size=3), shape_name="s2"
    )
    with pytest.raises(ValueError, match="graphs differ"):
        wise.interpolate(a, renamed, 0.5)
    other_opset = onnx.load(str(a))
    other_opset.opset_import[0].version = 18
    other_path = tmp_path / "o.onnx"
    onnx.save(other_opset, str(other_path))
    with pytest.raises(ValueError, match="graphs differ"):
        wise.interpolate(a, other_path, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        wise.blend_initializers({}, {}, 1.5)
    ints = {"k": np.array([1, 2], np.int64)}
    with pytest.raises(ValueError, match="non-float"):
        wise.blend_initializers(ints, {"k": np.array([1, 3], np.int64)}, 0.5)
    with pytest.raises(ValueError, match="names differ"):
        wise.blend_initializers(ints, {"j": ints["k"]}, 0.5)
    with pytest.raises(ValueError, match="float32"):
        wise.blend_initializers({"k": np.zeros(2, np.float32)}, {"k": np.zeros(2, np.float64)}, 0.5)


def test_shipped_default_detector_is_the_documented_blend() -> None:
    """models/redact-faceplate-yolov8n-0.3.1.onnx = 0.65 x 0.2.1 + 0.35 x 0.3.0, tensor for tensor."""
    from redact.detection.registry import ModelRegistry

    reg = ModelRegistry.load(None)
    spec = reg["redact-faceplate-yolov8n"]
    blend = wise.interpolate(
        Path(reg["redact-faceplate-yolov8n-021"].uri),
        Path(reg["redact-faceplate-yolov8n-eu"].uri),
        0.35,
    )
    shipped = onnx.load(spec.uri)
    assert spec.version == "0.3.1"
    # Tensor by tensor, so that another onnx release's serialisation cannot fail it
    # (tests/test_registry.py checks the file's sha256).
    got, want = wise.initializer_table(shipped), wise.initializer_table(blend)
    assert got.keys() == want.keys()
    assert all(np.array_equal(got[k], want[k]) for k in want)
    assert wise._graph_signature(shipped) == wise._graph_signature(blend)
