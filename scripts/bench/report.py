"""Benchmark results (the JSON dict built by :mod:`bench.cli`) as tables."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from bench.stages import STAGES

Table = tuple[str, list[str], list[list[str]]]  # title, header, rows


def _f(v: float | None, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def _mean(xs: Sequence[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def _groups(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["group"], []).append(r)
    return out


def stage_table(results: dict[str, Any]) -> Table | None:
    st = results.get("stages")
    if not st:
        return None
    header = [
        "size",
        "n",
        "tiles",
        *STAGES,
        "total s",
        "s/MP",
        "untouched PSNR dB (min)",
        "same with fast_upsample",
        "same qtables",
    ]
    rows = []
    for g, rs in _groups(st["images"]).items():
        psnrs = [r["untouched_psnr_db"] for r in rs if r["untouched_psnr_db"] is not None]
        fast = [
            r["untouched_psnr_fast_upsample_db"]
            for r in rs
            if r.get("untouched_psnr_fast_upsample_db") is not None
        ]
        exact = [r["qtables_exact"] for r in rs if r.get("qtables_exact") is not None]
        rows.append(
            [
                g,
                str(len(rs)),
                _f(_mean([r["tiles"] for r in rs]), 0),
                *[_f(_mean([r["timings_s"][s] for r in rs]), 3) for s in STAGES],
                _f(_mean([r["total_s"] for r in rs])),
                _f(_mean([r["s_per_megapixel"] for r in rs]), 3),
                _f(min(psnrs) if psnrs else None, 1),
                _f(min(fast) if fast else None, 1),
                f"{sum(exact)}/{len(exact)}" if exact else "-",
            ]
        )
    return ("redact, per stage (s per image, mean over images; in-process)", header, rows)


def e2e_table(results: dict[str, Any]) -> Table | None:
    jobs = results.get("e2e")
    if not jobs:
        return None
    header = ["size", "n", "wall s", "s/image", "stage sum s", "job overhead s", "peak RSS MB"]
    rows = [
        [
            j["group"],
            str(j["images"]),
            _f(j["wall_s"], 1),
            _f(j["wall_s_per_image"]),
            _f(j["stage_sum_s"], 1),
            _f(j["overhead_s"], 1),
            _f(j["peak_rss_mb"], 0),
        ]
        for j in jobs
    ]
    return ("redact run (Beam DirectRunner, one job per size), end to end", header, rows)


def versus_table(results: dict[str, Any]) -> Table | None:
    st = results.get("stages")
    df = results.get("deface")
    if not st and not df:
        return None
    ours = _groups(st["images"]) if st else {}
    theirs = _groups(df["images"]) if df and "images" in df else {}
    e2e = {j["group"]: j for j in results.get("e2e") or []}
    header = [
        "size",
        "redact s/image",
        "redact e2e s/image",
        "redact s/MP",
        "redact e2e s/MP",
        "deface s/image",
        "deface detect s",
        "deface s/MP",
        "deface / redact e2e",
    ]
    rows = []
    for g in list(dict.fromkeys([*ours, *theirs])):
        o = ours.get(g, [])
        t = theirs.get(g, [])
        job = e2e.get(g)
        job_s = job["wall_s_per_image"] if job else None
        mp = _mean([r["width"] * r["height"] / 1e6 for r in [*o, *t] if "width" in r])
        deface_s = _mean([r["timings_s"]["total"] for r in t])
        rows.append(
            [
                g,
                _f(_mean([r["total_s"] for r in o])),
                _f(job_s),
                _f(_mean([r["s_per_megapixel"] for r in o]), 3),
                _f(job_s / mp, 3) if job_s is not None and mp else "-",
                _f(deface_s),
                _f(_mean([r["timings_s"]["detect"] for r in t])),
                _f(
                    _mean([r["timings_s"]["total"] / (r["width"] * r["height"] / 1e6) for r in t]),
                    3,
                ),
                _f(deface_s / job_s) if job_s and deface_s is not None else "-",
            ]
        )
    return ("redact vs deface, same images, same machine", header, rows)


def recall_table(results: dict[str, Any]) -> Table | None:
    st = results.get("stages") or {}
    df = results.get("deface") or {}
    rows = []
    for label, rc in (st.get("recall") or {}).items():
        if rc["total"]:
            rows.append([f"redact {label}", f"{rc['found']}/{rc['total']}", _f(rc["recall"], 3)])
    rc = df.get("face_recall")
    if rc and rc["total"]:
        rows.append(["deface face", f"{rc['found']}/{rc['total']}", _f(rc["recall"], 3)])
    if not rows:
        return None
    return (
        "recall on the labelled images (GT box >= 50 % inside blurred pixels; 'uncertain' excluded)",
        ["system / class", "found", "recall"],
        rows,
    )


def whole_image_table(results: dict[str, Any]) -> Table | None:
    wi = results.get("whole_image")
    if not wi:
        return None
    rows = []
    for mode, r in wi["modes"].items():
        rec = r["recall"]
        rows.append(
            [
                mode,
                str(r["panoramas"]),
                _f(r["s_per_panorama"]),
                *(
                    f"{rec[k]['found']}/{rec[k]['total']}"
                    for k in ("face", "license_plate (not preblurred)")
                ),
            ]
        )
    return (
        f"second baseline: {wi['model']} on the whole equirectangular image (dev panoramas; "
        "inference only, JPEG decode excluded)",
        ["mode", "panoramas", "s/panorama", "faces found", "plates found (not preblurred)"],
        rows,
    )


def sweep_table(results: dict[str, Any]) -> Table | None:
    sw = results.get("ort_sweep")
    if not sw:
        return None
    header = ["model", "threads", "batch", "graph opt", "spinning", "ms/tile"]
    rows = [
        [
            r["model"],
            str(r["threads"]),
            str(r["batch"]),
            r["graph"],
            r["spinning"],
            _f(r["ms_per_tile"], 1),
        ]
        for r in sw["rows"]
    ]
    ens = sw.get("ensemble")
    if ens:
        rows.append(
            [
                "ensemble, members in turn",
                str(ens["sequential_threads_each"]),
                str(ens["batch"]),
                "all",
                "default",
                _f(ens["sequential_ms_per_tile"], 1),
            ]
        )
        rows.append(
            [
                "ensemble, members concurrently",
                str(ens["concurrent_threads_each"]),
                str(ens["batch"]),
                "all",
                "default",
                _f(ens["concurrent_ms_per_tile"], 1),
            ]
        )
    return (
        f"ONNX Runtime settings ({sw['tiles']} real tiles, best of {sw['repeat']})",
        header,
        rows,
    )


def oneoff_table(results: dict[str, Any]) -> Table | None:
    rows = []
    st = results.get("stages")
    if st:
        rows.append(["detector load (all models), s", _f(st["model_load_s"])])
        for size, s in st["layout_build_s"].items():
            rows.append([f"first render of the {size} tile layout (remap maps), s", _f(s)])
        rows.append(["peak RSS of the in-process stage run, MB", _f(st["peak_rss_mb"], 0)])
    df = results.get("deface") or {}
    if "load_s" in df:
        rows.append(["deface model load, s", _f(df["load_s"])])
        rows.append(["deface peak RSS, MB", _f(df["peak_rss_mb"], 0)])
    if not rows:
        return None
    return ("one-off costs and memory", ["what", "value"], rows)


def all_tables(results: dict[str, Any]) -> list[Table]:
    makers = (
        stage_table,
        e2e_table,
        versus_table,
        recall_table,
        whole_image_table,
        oneoff_table,
        sweep_table,
    )
    return [t for t in (m(results) for m in makers) if t is not None]


def _text(table: Table) -> str:
    title, header, rows = table
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    lines = [title, "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _md(table: Table) -> str:
    title, header, rows = table
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _preamble(results: dict[str, Any]) -> list[str]:
    m = results.get("machine", {})
    load = ", ".join(f"{x:.2f}" for x in m.get("loadavg_at_start", ()))
    return [
        f"command: {results.get('command', '')}",
        f"machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, load average at start {load}; "
        f"onnxruntime {m.get('onnxruntime', '?')}, simplejpeg {m.get('simplejpeg', '?')}",
        f"models: {', '.join(results.get('models', []))} (batch {results.get('batch_size')}, "
        f"intra-op threads {results.get('intra_op_threads')}); overrides: "
        f"{' '.join(results.get('overrides', [])) or 'none'}",
    ]


def tables(results: dict[str, Any]) -> str:
    """Plain-text report."""
    parts = ["\n".join(_preamble(results))]
    parts += [_text(t) for t in all_tables(results)]
    return "\n\n".join(parts)


def markdown(results: dict[str, Any]) -> str:
    """Markdown report (for docs/performance.md)."""
    parts = ["\n".join(f"* {line}" for line in _preamble(results))]
    parts += [_md(t) for t in all_tables(results)]
    return "\n\n".join(parts) + "\n"
