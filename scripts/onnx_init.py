"""Turn a fused ultralytics YOLOv8 ONNX export into a trainable 2-class ultralytics checkpoint.

Needs the ``[train]`` extra (torch, ultralytics). Used by ``train_detector.py --init-onnx``:
the faceghost YOLOv8n face teacher ships only as ONNX, yet it is the best face detector we
have on small panorama faces, so the project's model starts from its weights.

ultralytics exports with every Conv+BatchNorm fused into one convolution with a bias. We load
each fused ``(W, b)`` into the unfused module as ``conv.weight = W`` and a BatchNorm that is the
identity plus ``b`` (gamma 1, beta b, mean 0, var 1 - eps), so the network computes exactly what
the ONNX graph computes (checked below against ONNX Runtime). Training then has to keep those
BatchNorms in eval mode (``FrozenBNTrainer``): batch statistics would otherwise replace the
identity statistics and undo the pretrained features; gamma and beta still learn.

Class-score convolutions (``model.22.cv3.*.2``) grow from the source's classes to ours: the
face row is copied, the plate row keeps ultralytics' prior-probability initialisation. A
source that already has our classes (the project's own export, ONNX metadata ``names`` equal
to ``CLASS_NAMES``) keeps every row: that is how a new version continues from a shipped ONNX
when its ``.pt`` is gone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _train_common import CLASS_NAMES, FACE


def _onnx_weights(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return {
        init.name: numpy_helper.to_array(init)
        for init in model.graph.initializer
        if init.name.startswith("model.")
    }


def onnx_class_names(path: Path) -> tuple[str, ...] | None:
    """Class names from an ultralytics ONNX export's ``names`` metadata, in index order."""
    import ast

    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if "names" not in meta:
        return None
    names = ast.literal_eval(meta["names"])
    if not isinstance(names, dict):
        return None
    return tuple(str(names[k]) for k in sorted(names))


def build_init_checkpoint(onnx_path: Path, out: Path, source_class: int = 0) -> Path:
    """Write an ultralytics ``.pt`` (nc = len(CLASS_NAMES)) initialised from ``onnx_path``.

    ``source_class``: the ONNX model's class index that becomes our ``face`` class; ignored
    when the ONNX model's classes are exactly ``CLASS_NAMES`` (every class row is copied).
    Raises ``ValueError`` when a fused weight has no matching module or a shape differs.
    """
    import torch
    from torch import nn
    from ultralytics.nn.tasks import DetectionModel

    fused = _onnx_weights(onnx_path)
    same_classes = onnx_class_names(onnx_path) == tuple(CLASS_NAMES)
    model = DetectionModel("yolov8n.yaml", nc=len(CLASS_NAMES), verbose=False)
    modules = dict(model.named_modules())
    used: set[str] = set()
    with torch.no_grad():
        for name, module in modules.items():
            if not isinstance(module, nn.Conv2d) or f"{name}.weight" not in fused:
                continue
            w = torch.from_numpy(fused[f"{name}.weight"].copy())
            b = fused.get(f"{name}.bias")
            used.update({f"{name}.weight", f"{name}.bias"})
            parent = modules[name.rsplit(".", 1)[0]] if "." in name else None
            bn = getattr(parent, "bn", None)
            if name.startswith("model.22.cv3.") and name.endswith(".2"):
                # class-score conv: rows = classes
                if w.shape[1:] != module.weight.shape[1:]:
                    raise ValueError(
                        f"{name}: shape {tuple(w.shape)} vs {tuple(module.weight.shape)}"
                    )
                if same_classes:
                    module.weight.copy_(w)
                    if b is not None and module.bias is not None:
                        module.bias.copy_(torch.from_numpy(b.copy()))
                    continue
                module.weight[FACE] = w[source_class]
                if b is not None and module.bias is not None:
                    module.bias[FACE] = float(b[source_class])
                continue
            if w.shape != module.weight.shape:
                raise ValueError(f"{name}: shape {tuple(w.shape)} vs {tuple(module.weight.shape)}")
            module.weight.copy_(w)
            if isinstance(bn, nn.BatchNorm2d) and getattr(parent, "conv", None) is module:
                bn.weight.fill_(1.0)
                bn.bias.copy_(torch.from_numpy(b.copy()) if b is not None else 0.0)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
            elif module.bias is not None and b is not None:
                module.bias.copy_(torch.from_numpy(b.copy()))
            elif b is not None:
                raise ValueError(
                    f"{name}: fused bias but the module has neither bias nor BatchNorm"
                )
    missing = sorted(k for k in fused if k not in used and not k.startswith("model.22.dfl"))
    if missing:
        raise ValueError(f"ONNX weights with no module in yolov8n: {missing[:5]} ...")
    model.names = dict(enumerate(CLASS_NAMES))
    _check_parity(model, onnx_path, source_class, every_class=same_classes)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"model": model.half(), "train_args": {}, "date": None, "version": None, "epoch": -1},
        out,
    )
    return out


def _check_parity(
    model: object, onnx_path: Path, source_class: int, every_class: bool = False
) -> None:
    """The converted model's face scores (every class score with ``every_class``) and boxes
    equal the ONNX model's on a random image."""
    import onnxruntime as ort
    import torch

    x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    model.float().eval()  # type: ignore[attr-defined]
    with torch.no_grad():
        got = model(torch.from_numpy(x))[0].numpy()  # type: ignore[operator]
    boxes = np.abs(got[:, :4] - ref[:, :4]).max()
    if every_class:
        face = np.abs(got[:, 4:] - ref[:, 4:]).max()
    else:
        face = np.abs(got[:, 4 + FACE] - ref[:, 4 + source_class]).max()
    if boxes > 1e-2 or face > 1e-3:
        raise RuntimeError(
            f"converted model differs from ONNX: boxes {boxes:.3g} px, face {face:.3g}"
        )
    print(
        f"onnx init parity ok: max |d box| {boxes:.2e} px, max |d face score| {face:.2e}",
        flush=True,
    )


def frozen_bn_trainer() -> type:
    """A DetectionTrainer whose BatchNorms stay in eval mode (gamma/beta still train)."""
    from torch import nn
    from ultralytics.models.yolo.detect import DetectionTrainer

    class FrozenBNTrainer(DetectionTrainer):  # type: ignore[misc]
        def _model_train(self) -> None:
            super()._model_train()
            for m in self.model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()

    return FrozenBNTrainer
