#!/usr/bin/env python3
"""Train the stage-2 post-processor (``redact.postprocess``) on mined stage-1 candidates.

Input: WORK/candidates.npz from ``scripts/mine_candidates.py`` (crops (N, S, S, 3) uint8 with
2x context, features (N, F) from :func:`redact.postprocess.candidate_features`, label 1/0,
sample weight = set weight x box-area weight). A seeded 12 % of the IMAGES of every set is
held out as the validation split (checkpoint selection and the operating point); the dev sets
of ``scripts/eval_dev.py`` are never in the input.

Model: a small CNN on the crop (4 conv blocks, 16-32-64-64 channels, global average pool) and
an MLP on the standardised features (mean/std of the training split, stored in the graph),
joined by a 2-layer head with one sigmoid output per class (face, license_plate); the loss is
binary cross-entropy of the candidate's own class column, weighted by the sample weight (a
missed large face costs more than a missed tiny one; a large false positive blurs more).

Exports ONNX (inputs ``crops`` [N, 3, S, S] float32 in [0, 1], ``features`` [N, F];
output ``scores`` [N, 2]) with metadata ``redact_feature_version`` / ``redact_context`` /
``redact_crop_size``, checkpoints every epoch (``--resume`` continues), seeds everything and
writes a JSON-lines log. Needs the training venv (torch; see the model card):

    nice -n 5 .venv-train/bin/python scripts/train_postprocess.py --data /tmp/mine/candidates.npz \\
        --out-dir /tmp/pp_train --onnx /tmp/pp_train/redact-rescorer.onnx --time-budget-min 40

``--smoke`` trains one epoch on a few synthetic crops (the test of the smallest path).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from redact.postprocess import FEATURE_NAMES  # noqa: E402

FEATURE_VERSION = "1"  # must equal redact.postprocess.FEATURE_VERSION
CONTEXT = 2.0  # the context of the mined crops (scripts/mine_candidates.py CONTEXT)
CLASSES = ("face", "license_plate")


STAGE1_COLUMNS = tuple(FEATURE_NAMES.index(n) for n in ("stage1_score", "stage1_logit"))


def resample_stage1(
    features: np.ndarray, rng: np.random.Generator, share: float, low: float = 0.03
) -> np.ndarray:
    """A copy of ``features`` (N, F) in which a random ``share`` of the rows get a stage-1
    score drawn uniformly from [``low``, 1) (and its logit, clipped to [-8, 8] as at run time).

    Whatever the label: the model must then tell a face or a plate from the crop and the
    geometry alone, as the canary asks of it (its stage-1 feature is 0.05), instead of
    leaning on stage 1's score, which is what it rescores."""
    out = np.array(features, np.float32, copy=True)
    if share <= 0 or len(out) == 0:
        return out
    rows = rng.random(len(out)) < share
    s1 = rng.uniform(low, 1.0, int(rows.sum())).clip(1e-6, 1 - 1e-6)
    out[rows, STAGE1_COLUMNS[0]] = s1
    out[rows, STAGE1_COLUMNS[1]] = np.clip(np.log(s1 / (1 - s1)), -8, 8)
    return out


def seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - torch and third-party code use the legacy global
    torch.manual_seed(seed)


def build_model(n_features: int, mean: np.ndarray, std: np.ndarray):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    def block(cin: int, cout: int, pool: bool) -> nn.Sequential:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
        if pool:
            layers.append(nn.MaxPool2d(2))
        return nn.Sequential(*layers)

    class Rescorer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
            self.cnn = nn.Sequential(
                block(3, 16, True), block(16, 32, True), block(32, 64, True), block(64, 64, False)
            )
            self.feat = nn.Sequential(nn.Linear(n_features, 48), nn.ReLU(inplace=True))
            self.head = nn.Sequential(
                nn.Linear(64 + 48, 64), nn.ReLU(inplace=True), nn.Dropout(0.1), nn.Linear(64, 2)
            )

        def logits(self, crops, features):  # type: ignore[no-untyped-def]
            x = self.cnn(crops - 0.5).mean(dim=(2, 3))
            f = self.feat((features - self.mean) / self.std)
            return self.head(torch.cat([x, f], dim=1))

        def forward(self, crops, features):  # type: ignore[no-untyped-def]
            return torch.sigmoid(self.logits(crops, features))

    return Rescorer()


def split_images(sets: np.ndarray, images: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """(N,) bool validation mask: a seeded ``fraction`` of the images of every set."""
    rng = np.random.default_rng(seed)
    val = np.zeros(len(sets), bool)
    for s in sorted(set(sets.tolist())):
        ims = np.unique(images[sets == s])
        pick = rng.permutation(ims)[: max(1, round(len(ims) * fraction))] if len(ims) > 1 else []
        val |= (sets == s) & np.isin(images, pick)
    return val


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties averaged); NaN without both labels."""
    pos, neg = labels == 1, labels == 0
    if not pos.any() or not neg.any():
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    s = scores[order]
    i = 0
    while i < len(s):  # average ranks of ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        if j > i:
            ranks[order[i : j + 1]] = (i + j + 2) / 2
        i = j + 1
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * neg.sum()))


def predict(
    model, crops: np.ndarray, feats: np.ndarray, cls: np.ndarray, bs: int = 512
) -> np.ndarray:  # type: ignore[no-untyped-def]
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(crops), bs):
            x = torch.from_numpy(crops[i : i + bs]).permute(0, 3, 1, 2).float() / 255.0
            f = torch.from_numpy(feats[i : i + bs])
            p = model(x, f).numpy()
            out.append(p[np.arange(len(p)), cls[i : i + bs]])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def evaluate(scores: np.ndarray, d: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, object]:
    """Per class on ``mask``: AUC, and negatives removed at stage-2 thresholds that keep
    >= 99 % / 100 % of the (area-weighted) positives."""
    out: dict[str, object] = {}
    for k, name in enumerate(CLASSES):
        m = mask & (d["cls"] == k)
        if not m.any():
            continue
        s, y, w = scores[m], d["label"][m], d["weight"][m]
        res: dict[str, object] = {
            "n_pos": int((y == 1).sum()),
            "n_neg": int((y == 0).sum()),
            "auc": auc(s, y),
        }
        if (y == 1).any():
            ps = np.sort(s[y == 1])
            for keep in (1.0, 0.99):
                t = float(ps[math.floor((1 - keep) * len(ps))]) if keep < 1 else float(ps[0])
                res[f"thr_keep{keep}"] = t
                res[f"neg_removed_keep{keep}"] = (
                    float((s[y == 0] < t).mean()) if (y == 0).any() else None
                )
                res[f"neg_area_removed_keep{keep}"] = (
                    float(w[(y == 0) & (s < t)].sum() / max(w[y == 0].sum(), 1e-9))
                    if (y == 0).any()
                    else None
                )
        out[name] = res
    return out


def export_onnx(model, path: Path, size: int, n_features: int) -> None:  # type: ignore[no-untyped-def]
    import onnx
    import torch

    model.eval()
    crops = torch.zeros(2, 3, size, size)
    feats = torch.zeros(2, n_features)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (crops, feats),
        str(path),
        input_names=["crops", "features"],
        output_names=["scores"],
        dynamic_axes={"crops": {0: "n"}, "features": {0: "n"}, "scores": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )
    m = onnx.load(str(path))
    for k, v in (
        ("redact_feature_version", FEATURE_VERSION),
        ("redact_context", str(CONTEXT)),
        ("redact_crop_size", str(size)),
        ("redact_classes", ",".join(CLASSES)),
    ):
        entry = m.metadata_props.add()
        entry.key, entry.value = k, v
    m.producer_name = "redact scripts/train_postprocess.py"
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def synthetic(n: int, size: int, n_features: int, seed: int) -> dict[str, np.ndarray]:
    """A few random crops: positives brighter than negatives (for --smoke)."""
    rng = np.random.default_rng(seed)
    label = (np.arange(n) % 2).astype(np.int8)
    crops = (
        rng.integers(0, 120, (n, size, size, 3)).astype(np.uint8)
        + (label * 100).astype(np.uint8)[:, None, None, None]
    )
    return {
        "crops": crops,
        "features": rng.normal(size=(n, n_features)).astype(np.float32),
        "label": label,
        "weight": np.ones(n, np.float32),
        "cls": (np.arange(n) // 2 % 2).astype(np.int32),
        "stage1": rng.uniform(0.03, 1, n).astype(np.float32),
        "set": np.array(["synthetic"] * n),
        "image": np.arange(n, dtype=np.int32) // 2,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, nargs="*", default=[], help="candidates.npz file(s)")
    ap.add_argument("--out-dir", type=Path, required=True, help="checkpoints, log, best weights")
    ap.add_argument("--onnx", type=Path, help="export the best model here")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--time-budget-min", type=float, default=45.0)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--val-fraction", type=float, default=0.12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--stage1-resample",
        type=float,
        default=0.0,
        help="share of training rows per batch whose stage-1 score is redrawn (0 = off)",
    )
    ap.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt")
    ap.add_argument("--smoke", action="store_true", help="one epoch on synthetic crops")
    ap.add_argument(
        "--export-from", type=Path, help="no training: export this checkpoint (best.pt / last.pt)"
    )
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    seed_all(args.seed)
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        from redact.postprocess import N_FEATURES

        d = synthetic(32, 48, N_FEATURES, args.seed)
        args.epochs = 1
    else:
        if not args.data:
            ap.error("--data is required (or --smoke)")
        parts = [dict(np.load(p, allow_pickle=False)) for p in args.data]
        d = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if len(parts) > 1:  # keep image ids unique across files
            off, ims = 0, []
            for p in parts:
                ims.append(p["image"] + off)
                off += int(p["image"].max()) + 1
            d["image"] = np.concatenate(ims)
    d["cls"] = d["cls"].astype(np.int64)
    n, size = len(d["label"]), int(d["crops"].shape[1])
    n_features = int(d["features"].shape[1])
    val = split_images(d["set"], d["image"], args.val_fraction, args.seed)
    tr = ~val
    mean = d["features"][tr].mean(axis=0)
    std = d["features"][tr].std(axis=0)
    std = np.where(std < 1e-6, 1.0, std)
    model = build_model(n_features, mean, std)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = max(1, math.ceil(tr.sum() / args.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.1
    )
    start_epoch, best = 0, -1.0
    log_path = out_dir / "train_log.jsonl"
    if args.resume and (out_dir / "last.pt").is_file():
        ck = torch.load(out_dir / "last.pt", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        start_epoch, best = int(ck["epoch"]) + 1, float(ck["best"])
        print(f"resumed at epoch {start_epoch}", flush=True)
    elif log_path.exists() and not args.export_from:
        log_path.unlink()
    counts = {
        s: {
            "pos": int(((d["set"] == s) & (d["label"] == 1)).sum()),
            "neg": int(((d["set"] == s) & (d["label"] == 0)).sum()),
        }
        for s in sorted(set(d["set"].tolist()))
    }
    header = {
        "event": "start",
        "n": n,
        "n_train": int(tr.sum()),
        "n_val": int(val.sum()),
        "crop": size,
        "features": n_features,
        "sets": counts,
        "args": {k: str(v) for k, v in vars(args).items()},
        "torch": torch.__version__,
    }
    with open(log_path, "a") as f:
        f.write(json.dumps(header) + "\n")
    print(json.dumps(header), flush=True)
    idx_tr = np.nonzero(tr)[0]
    rng = np.random.default_rng(args.seed + 1)
    t_start = time.time()
    if args.export_from:
        start_epoch = args.epochs  # no training
        ck = torch.load(args.export_from, weights_only=False)
        torch.save(
            {"model": ck["model"], "epoch": ck["epoch"], "select": -1.0}, out_dir / "best.pt"
        )
        print(f"exporting {args.export_from} (epoch {ck['epoch']})", flush=True)
    for epoch in range(start_epoch, args.epochs):
        model.train()
        perm = rng.permutation(idx_tr)
        total, t0 = 0.0, time.time()
        for b in range(0, len(perm), args.batch_size):
            ix = np.sort(perm[b : b + args.batch_size])
            crops = torch.from_numpy(d["crops"][ix]).permute(0, 3, 1, 2).float() / 255.0
            if rng.random() < 0.5:
                crops = torch.flip(crops, dims=[3])
            gain = torch.from_numpy(rng.uniform(0.75, 1.3, (len(ix), 1, 1, 1)).astype(np.float32))
            crops = (crops * gain).clamp(0, 1)
            feats = torch.from_numpy(resample_stage1(d["features"][ix], rng, args.stage1_resample))
            y = torch.from_numpy(d["label"][ix].astype(np.float32))
            w = torch.from_numpy(d["weight"][ix].astype(np.float32))
            c = torch.from_numpy(d["cls"][ix])
            logit = model.logits(crops, feats).gather(1, c[:, None])[:, 0]
            loss = (
                torch.nn.functional.binary_cross_entropy_with_logits(logit, y, reduction="none") * w
            ).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(ix)
        scores = predict(model, d["crops"][val], d["features"][val], d["cls"][val])
        full = np.zeros(n, np.float32)
        full[val] = scores
        ev = evaluate(full, d, val)
        # selection: mean validation AUC over the classes (the full-recall threshold hangs on
        # one outlier positive and picked an undertrained epoch in the first run)
        aucs = [v["auc"] for v in ev.values() if isinstance(v, dict) and not math.isnan(v["auc"])]
        sel_v = float(np.mean(aucs)) if aucs else 0.0
        rec = {
            "event": "epoch",
            "epoch": epoch,
            "train_loss": total / max(len(perm), 1),
            "val": ev,
            "select": sel_v,
            "lr": sched.get_last_lr()[0],
            "seconds": time.time() - t0,
        }
        with open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)
        torch.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "epoch": epoch,
                "best": max(best, sel_v),
            },
            out_dir / "last.pt",
        )
        if sel_v > best:
            best = sel_v
            torch.save(
                {"model": model.state_dict(), "epoch": epoch, "select": sel_v}, out_dir / "best.pt"
            )
        if (time.time() - t_start) / 60 > args.time_budget_min:
            print(f"time budget reached after epoch {epoch}", flush=True)
            break
    ck = torch.load(out_dir / "best.pt", weights_only=False)
    model.load_state_dict(ck["model"])
    np.save(
        out_dir / "val_scores.npy",
        predict(model, d["crops"][val], d["features"][val], d["cls"][val]),
    )
    np.save(out_dir / "val_mask.npy", val)
    if args.onnx:
        export_onnx(model, args.onnx, size, n_features)
        print(f"exported {args.onnx} (best epoch {ck['epoch']})", flush=True)
    with open(log_path, "a") as f:
        f.write(
            json.dumps(
                {
                    "event": "done",
                    "best_epoch": int(ck["epoch"]),
                    "minutes": (time.time() - t_start) / 60,
                }
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
