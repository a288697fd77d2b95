"""The privacy team's HTML report: one self-contained file (images inlined as data URIs).

It holds crops of real, unblurred people and plates cut from the ORIGINALS (the gallery of
the worst misses), so it is marked confidential in its header and must be handled like the
originals. Plots need matplotlib (``[eval]`` extra); without it the report has the tables
and the gallery only.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from redact.classes import ObjectClass
from redact.evaluation.metrics import IOUS, LAT_BANDS, SIZE_BINS, EvalResult, ObjectResult
from redact.evaluation.pixels import crop
from redact.evaluation.sweep import Curve

GALLERY_SIZE = 24
CONFIDENTIAL = (
    "CONFIDENTIAL - privacy team only. This report contains UNBLURRED crops of real people "
    "and licence plates taken from the original images. Do not forward, publish or attach it "
    "to tickets; delete it when the review is done."
)


@dataclass(frozen=True)
class GalleryItem:
    """A crop of a missed or insufficiently blurred object, from the original (PNG bytes)."""

    obj: ObjectResult
    png: bytes


def is_problem(o: ObjectResult) -> bool:
    """Not matched at IoU 0.3, less than 95 % of its pixels blurred, or detail left."""
    return (
        not o.matched[IOUS[0]]
        or (o.coverage is not None and o.coverage < 0.95)
        or o.sufficient is False
    )


def badness(o: ObjectResult) -> tuple[float, ...]:
    """Sort key, worst first: unblurred share, retained detail, missed, then larger first."""
    unblurred = 1.0 - (o.coverage if o.coverage is not None else 0.0)
    retained = o.retained if o.retained is not None else 0.0
    return (-unblurred, -retained, float(o.matched[IOUS[0]]), -o.height_px)


def gallery_crop(
    original: npt.NDArray[np.uint8], obj: ObjectResult, wrap: bool, height_px: int = 128
) -> bytes:
    """PNG of ``obj`` with one box size of context, scaled to ``height_px``, box outlined."""
    x1, y1, x2, y2 = obj.box
    w, h = x2 - x1, y2 - y1
    mx, my = max(w, 8.0), max(h, 8.0)
    H, W = original.shape[:2]
    cy1, cy2 = max(math.floor(y1 - my), 0), min(math.ceil(y2 + my), H)
    cx1, cx2 = math.floor(x1 - mx), math.ceil(x2 + mx)
    if not wrap:
        cx1, cx2 = max(cx1, 0), min(cx2, W)
    region = np.ascontiguousarray(crop(original, (cx1, cy1, cx2, cy2), wrap))
    s = height_px / max(region.shape[0], 1)
    size = (max(round(region.shape[1] * s), 1), height_px)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    big = cv2.cvtColor(cv2.resize(region, size, interpolation=interp), cv2.COLOR_RGB2BGR)
    p1 = (round((x1 - cx1) * s), round((y1 - cy1) * s))
    p2 = (round((x2 - cx1) * s), round((y2 - cy1) * s))
    cv2.rectangle(big, p1, p2, (0, 0, 255), 1)
    ok, buf = cv2.imencode(".png", big)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return bytes(buf)


def select_gallery(items: Sequence[GalleryItem], n: int = GALLERY_SIZE) -> list[GalleryItem]:
    return sorted(items, key=lambda g: badness(g.obj))[:n]


# --- plots -------------------------------------------------------------------------------------


def _pyplot() -> Any | None:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return buf.getvalue()


def pr_plot(curves: Sequence[Curve], marks: Mapping[ObjectClass, Sequence[float]]) -> bytes | None:
    """Precision-recall curves (one line per class and IoU), configured thresholds marked."""
    plt = _pyplot()
    if plt is None or not curves:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for c in curves:
        if not c.n_gt or not c.thresholds.size:
            continue
        rec = c.tp / c.n_gt
        prec = c.tp / np.maximum(c.tp + c.fp, 1)
        label = f"{c.cls.label} IoU {c.iou}"
        axes[0].plot(rec, prec, drawstyle="steps-post", label=label)
        axes[1].plot(c.thresholds, rec, label=label)
        for t in marks.get(c.cls, ()):
            p = c.at(t)
            if p["recall"] is not None:
                axes[0].plot([p["recall"]], [p["precision"] or 0.0], "o", color="k", ms=4)
                axes[1].plot([t], [p["recall"]], "o", color="k", ms=4)
    axes[0].set(xlabel="box recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
    axes[1].set(xlabel="score threshold", ylabel="box recall", ylim=(0, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("precision vs recall (dots: thresholds of the run)")
    axes[1].set_title("recall vs threshold")
    out = _png(fig)
    plt.close(fig)
    return out


def size_plot(result: EvalResult) -> bytes | None:
    """Recall by object size: box (IoU 0.3), pixel and sufficiently-blurred, per class."""
    plt = _pyplot()
    if plt is None:
        return None
    classes = [c for c in result.objects if result.objects[c]]
    if not classes:
        return None
    fig, axes = plt.subplots(1, len(classes), figsize=(5 * len(classes), 3.6), squeeze=False)
    labels = [lab for lab, *_ in SIZE_BINS]
    for ax, cls in zip(axes[0], classes, strict=True):
        sl = result.slices(cls)
        x = np.arange(len(labels))
        series = (
            ("box recall@0.3", lambda s: s.box_recall(IOUS[0])),
            ("pixel recall", lambda s: s.pixel_recall),
            ("sufficiently blurred", lambda s: s.sufficient_recall),
        )
        for k, (name, fn) in enumerate(series):
            vals = [fn(sl[f"size:{lab}"]) if f"size:{lab}" in sl else None for lab in labels]
            ax.bar(
                x + (k - 1) * 0.27, [v if v is not None else 0.0 for v in vals], 0.27, label=name
            )
        counts = [sl[f"size:{lab}"].n if f"size:{lab}" in sl else 0 for lab in labels]
        ax.set_xticks(x, [f"{lab}\n(n={n})" for lab, n in zip(labels, counts, strict=True)])
        ax.set(ylim=(0, 1.05), title=f"{cls.label}: recall by object height")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    out = _png(fig)
    plt.close(fig)
    return out


# --- HTML --------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v))


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f"<p><em>{html.escape(alt)}: not drawn (matplotlib is not installed)</em></p>"
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _slice_table(result: EvalResult, cls: ObjectClass) -> str:
    rows = []
    for name, s in result.slices(cls).items():
        if name.startswith("image:"):
            continue
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{x}</td>"
                for x in (
                    html.escape(name),
                    s.n,
                    _fmt(s.box_recall(0.3)),
                    _fmt(s.box_recall(0.5)),
                    _fmt(s.pixel_recall),
                    _fmt(s.sufficient_recall),
                    s.n_no_detail,
                )
            )
            + "</tr>"
        )
    det = result.detections[cls].as_dict()
    return (
        f"<h3>{html.escape(cls.label)}</h3>"
        "<table><tr><th>slice</th><th>n</th><th>box recall@0.3</th><th>box recall@0.5</th>"
        "<th>pixel recall</th><th>sufficiently blurred</th><th>no detail</th></tr>"
        + "".join(rows)
        + "</table>"
        + f"<p>blurred detections: {det['n_blurred_detections']}; precision@0.3 "
        f"{_fmt(det['precision_iou0.3'])}, precision@0.5 {_fmt(det['precision_iou0.5'])}</p>"
    )


def render_html(
    result: EvalResult,
    curves: Sequence[Curve],
    gallery: Sequence[GalleryItem],
    meta: Mapping[str, Any],
    irreversibility: Mapping[str, Any] | None = None,
) -> str:
    """The whole report as one HTML document."""
    marks: dict[ObjectClass, list[float]] = {}
    for ev in result.images[:1]:
        for cls, t in ev.image.thresholds.items():
            marks[cls] = [t.review, t.blur]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<meta name='robots' content='noindex'>",
        "<title>CONFIDENTIAL - redact privacy evaluation</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:1200px}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;"
        "padding:2px 6px;text-align:right}th{background:#eee}td:first-child{text-align:left}"
        "#confidential{background:#b00;color:#fff;padding:.6em;font-weight:bold}"
        ".g{display:inline-block;margin:4px;vertical-align:top;font-size:11px;width:200px}"
        ".g img{max-width:200px}</style></head><body>",
        f"<div id='confidential'>{html.escape(CONFIDENTIAL)}</div>",
        "<h1>redact privacy evaluation</h1><table>",
        *(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in meta.items()),
        "</table>",
        "<h2>Summary</h2>",
        f"<p>protocol {html.escape(result.protocol.name)}: don't care = "
        f"{', '.join(sorted(f.value for f in result.protocol.dont_care)) or 'none'}</p>",
        *(_slice_table(result, c) for c in result.objects),
        "<h2>False-positive area</h2><table>",
        *(
            f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>"
            for k, v in result.fp_area_summary().items()
        ),
        "</table>",
        "<h2>Precision-recall</h2>",
        _img(pr_plot(curves, marks), "precision-recall curves"),
        "<h2>Recall by size</h2>",
        _img(size_plot(result), "recall by object size"),
        "<h2>Latitude bands</h2><p>Panorama objects by the latitude of their box centre: "
        + ", ".join(lab for lab, *_ in LAT_BANDS)
        + " (see the tables above).</p>",
    ]
    if irreversibility:
        parts.append(
            "<h2>Irreversibility</h2><table><tr><th>class</th><th>checked</th>"
            "<th>passed</th><th>pass share</th><th>failed: not blurred</th>"
            "<th>failed: blurred, still recognised</th><th>unverifiable</th></tr>"
        )
        for label, s in irreversibility.items():
            parts.append(
                f"<tr><td>{html.escape(label)}</td><td>{s['n_judged']}</td><td>{s['n_passed']}</td>"
                f"<td>{_fmt(s['pass_share'])}</td><td>{s['n_failed_not_blurred']}</td>"
                f"<td>{s['n_failed_blurred']}</td><td>{s['n_unverifiable']}</td></tr>"
            )
        parts.append("</table>")
        cohort = (irreversibility.get("face") or {}).get("cohort")
        if cohort and cohort.get("used"):
            parts.append(
                f"<p>{cohort['n_normalised']} of {cohort['n_faces']} faces cohort-normalised: "
                "a face also passes when its own score is less than z "
                f"{_fmt(cohort['z_limit'])} standard deviations above the mean score of other "
                "images' published faces against its original (false-match rate "
                f"{_fmt(cohort['fmr'])}).</p>"
            )
    parts.append(
        f"<h2>Worst misses ({len(gallery)})</h2><p>Crops from the ORIGINALS, labelled box in "
        "red: not matched at IoU 0.3, under 95 % blurred, or detail left.</p><div>"
    )
    for g in gallery:
        o = g.obj
        cap = (
            f"{html.escape(o.image)}<br>{o.cls.label} {o.height_px:.0f}px "
            f"{' '.join(sorted(f.value for f in o.flags))}<br>blurred {_fmt(o.coverage)}, "
            f"detail {_fmt(o.retained)}, best candidate {_fmt(o.best_candidate)}"
        )
        parts.append(f"<div class='g'>{_img(g.png, 'miss')}<br>{cap}</div>")
    parts.append("</div></body></html>")
    return "\n".join(parts)
