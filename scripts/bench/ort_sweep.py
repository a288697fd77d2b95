"""ONNX Runtime settings sweep on real tiles: threads, batch size, graph optimisation,
spinning, and running the ensemble's members one after the other or concurrently.

Every figure is milliseconds per tile through the real handler (``run_inference``:
preprocess + session + YOLO decode), the best of ``repeat`` passes over the same tiles.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from redact.config import ModelConfig, RedactConfig
from redact.detection.onnx_handler import YoloOnnxModelHandler
from redact.detection.registry import ModelRegistry

CPU = ("CPUExecutionProvider",)


def _handler(
    registry: ModelRegistry,
    mc: ModelConfig,
    index: int,
    *,
    threads: int,
    batch: int,
    graph_optimization: str = "all",
    allow_spinning: bool | None = None,
) -> YoloOnnxModelHandler:
    cfg = dataclasses.replace(mc, intra_op_threads=threads, batch_size=batch)
    return YoloOnnxModelHandler(
        registry.resolve(cfg),
        cfg,
        index,
        providers=CPU,
        graph_optimization=graph_optimization,
        allow_spinning=allow_spinning,
        canary=cfg.canary or None,
    )


def _pass(
    handler: YoloOnnxModelHandler, model: Any, tiles: Sequence[np.ndarray], batch: int
) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(tiles), batch):
        list(handler.run_inference(tiles[i : i + batch], model))
    return time.perf_counter() - t0


def _concurrent_pass(
    handlers: Sequence[YoloOnnxModelHandler],
    models: Sequence[Any],
    tiles: Sequence[np.ndarray],
    batch: int,
) -> float:
    """ms per tile for ALL members, each member's batches in its own thread at once."""
    threads = [
        threading.Thread(target=_pass, args=(h, m, tiles, batch))
        for h, m in zip(handlers, models, strict=True)
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 1000.0 * (time.perf_counter() - t0) / len(tiles)


def sweep(
    cfg: RedactConfig,
    registry: ModelRegistry,
    tiles: Sequence[np.ndarray],
    *,
    threads: Sequence[int] = (1, 2),
    batches: Sequence[int] = (1, 4, 8, 16),
    repeat: int = 2,
) -> dict[str, Any]:
    """Measure every setting; returns rows ``{model, threads, batch, graph, spinning, ms_per_tile}``
    and the ensemble comparison ``{sequential_ms_per_tile, concurrent_ms_per_tile}``.

    Settings are measured round-robin (``repeat`` rounds, best kept), so a change of machine
    load during the sweep affects every setting alike.
    """
    base_batch = 8 if 8 in batches else batches[-1]
    top_threads = max(threads)
    plans: list[tuple[dict[str, Any], YoloOnnxModelHandler]] = []
    settings: list[tuple[int, int, str, bool | None]] = [
        (t, b, "all", None) for t in threads for b in batches
    ]
    settings += [(top_threads, base_batch, g, None) for g in ("disable", "basic", "extended")]
    settings.append((top_threads, base_batch, "all", False))
    for i, mc in enumerate(cfg.models):
        for t, b, graph, spin in settings:
            h = _handler(
                registry, mc, i, threads=t, batch=b, graph_optimization=graph, allow_spinning=spin
            )
            row: dict[str, Any] = {
                "model": mc.name or mc.path,
                "threads": t,
                "batch": b,
                "graph": graph,
                "spinning": "default" if spin is None else ("on" if spin else "off"),
            }
            plans.append((row, h))
    per_thread = max(1, top_threads // max(1, len(cfg.models)))
    members = [
        _handler(registry, mc, i, threads=per_thread, batch=base_batch)
        for i, mc in enumerate(cfg.models)
    ]
    models = [h.load_model() for _, h in plans]
    member_models = [h.load_model() for h in members]
    for (row, h), m in zip(plans, models, strict=True):
        list(h.run_inference(tiles[: row["batch"]], m))  # warm-up
        row["ms_per_tile"] = float("inf")
    concurrent = float("inf")
    for _ in range(max(1, repeat)):
        for (row, h), m in zip(plans, models, strict=True):
            ms = 1000.0 * _pass(h, m, tiles, row["batch"]) / len(tiles)
            row["ms_per_tile"] = min(row["ms_per_tile"], ms)
        if len(members) > 1:
            concurrent = min(
                concurrent, _concurrent_pass(members, member_models, tiles, base_batch)
            )
    rows = [row for row, _ in plans]
    ensemble: dict[str, Any] = {}
    if len(members) > 1:
        seq = sum(
            r["ms_per_tile"]
            for r in rows
            if r["threads"] == top_threads
            and r["batch"] == base_batch
            and r["graph"] == "all"
            and r["spinning"] == "default"
        )
        ensemble = {
            "batch": base_batch,
            "sequential_threads_each": top_threads,
            "sequential_ms_per_tile": seq,
            "concurrent_threads_each": per_thread,
            "concurrent_ms_per_tile": concurrent,
        }
    return {"tiles": len(tiles), "repeat": repeat, "rows": rows, "ensemble": ensemble}
