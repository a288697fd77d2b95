"""Weight-space interpolation of two fine-tunes of one detector (WiSE-FT, Wortsman et al. 2022).

``out = (1 - alpha) * A + alpha * B`` for every floating-point initializer of two ONNX files
with the same graph (same nodes, same initializer names and shapes), e.g. 0.2.1 (A) and its
fine-tune 0.3.0 (B): fine-tunes of one start stay in one loss basin, so the blend keeps most
of what each learned (A's faces, B's EU plates) at the cost of one model. Integer
initializers (shapes, axes) must be identical. Graph, metadata and opset are A's; the output
is deterministic (same inputs and alpha -> same bytes).

    .venv/bin/python scripts/interpolate_onnx.py A.onnx B.onnx --alpha 0.5 --out blend.onnx
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def blend_initializers(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], alpha: float
) -> dict[str, np.ndarray]:
    """Blend two initializer tables (name -> array) -> a new table; raises on any mismatch."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if set(a) != set(b):
        raise ValueError(f"initializer names differ: {sorted(set(a) ^ set(b))[:5]}")
    out: dict[str, np.ndarray] = {}
    for name, va in a.items():
        vb = b[name]
        if va.shape != vb.shape or va.dtype != vb.dtype:
            raise ValueError(f"{name}: {va.shape}/{va.dtype} vs {vb.shape}/{vb.dtype}")
        if np.issubdtype(va.dtype, np.floating):
            mixed = (1.0 - alpha) * va.astype(np.float64) + alpha * vb.astype(np.float64)
            out[name] = mixed.astype(va.dtype)
        elif np.array_equal(va, vb):
            out[name] = va.copy()
        else:
            raise ValueError(f"{name}: non-float initializer differs between the models")
    return out


def initializer_table(m: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Name -> array of every initializer of ``m``."""
    return {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}


def _graph_signature(m: onnx.ModelProto) -> tuple[object, ...]:
    """Everything but the initializers' values: nodes (with attributes), graph inputs and
    outputs, opsets."""
    nodes = tuple(
        (
            n.op_type,
            n.domain,
            tuple(n.input),
            tuple(n.output),
            tuple(a.SerializeToString() for a in n.attribute),
        )
        for n in m.graph.node
    )
    io = tuple(v.SerializeToString() for v in (*m.graph.input, *m.graph.output))
    opsets = tuple((o.domain, o.version) for o in m.opset_import)
    return nodes, io, opsets


def _same_graph(a: onnx.ModelProto, b: onnx.ModelProto) -> None:
    if _graph_signature(a) != _graph_signature(b):
        raise ValueError(
            "the two models' graphs differ (nodes, attributes, graph inputs/outputs or opsets)"
        )


def interpolate(a_path: Path, b_path: Path, alpha: float) -> onnx.ModelProto:
    """Load A and B, check they share a graph, return A's graph with blended weights."""
    a, b = onnx.load(str(a_path)), onnx.load(str(b_path))
    _same_graph(a, b)
    mixed = blend_initializers(initializer_table(a), initializer_table(b), alpha)
    out = onnx.ModelProto()
    out.CopyFrom(a)
    for init in out.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(mixed[init.name], init.name))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="model at alpha 0")
    ap.add_argument("b", type=Path, help="model at alpha 1 (same graph)")
    ap.add_argument("--alpha", type=float, required=True, help="weight of B, in [0, 1]")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    model = interpolate(args.a, args.b, args.alpha)
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    args.out.write_bytes(data)
    print(f"{args.out}: alpha {args.alpha}, sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
