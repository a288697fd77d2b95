"""Short plain-text tables for the terminal (the JSON output has everything)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redact.classes import ObjectClass
from redact.evaluation.metrics import IOUS, EvalResult
from redact.evaluation.sweep import ClassChoice, Curve


def _f(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "   n/a"
    return f"{100 * v:5.2f}%" if pct else f"{v:6.3f}"


def summary_table(result: EvalResult, *, with_images: bool = False) -> str:
    """Per class: slices (all, size, latitude, flags[, images]) and detection precision."""
    lines = []
    for cls in result.objects:
        lines.append(
            f"{cls.label} (protocol {result.protocol.name}; don't care: "
            f"{', '.join(sorted(f.value for f in result.protocol.dont_care)) or 'none'})"
        )
        lines.append(
            f"  {'slice':<28} {'n':>5} {'box@0.3':>7} {'box@0.5':>7} {'pixel':>6} {'suff.':>6}"
        )
        for name, s in result.slices(cls).items():
            if name.startswith("image:") and not with_images:
                continue
            lines.append(
                f"  {name[:28]:<28} {s.n:>5} {_f(s.box_recall(0.3)):>7} {_f(s.box_recall(0.5)):>7}"
                f" {_f(s.pixel_recall)} {_f(s.sufficient_recall)}"
            )
        d = result.detections[cls].as_dict()
        lines.append(
            f"  blurred detections {d['n_blurred_detections']}: precision@0.3 "
            f"{_f(d['precision_iou0.3']).strip()} ({d['false_positives_iou0.3']} FP), "
            f"precision@0.5 {_f(d['precision_iou0.5']).strip()}"
        )
    fa = result.fp_area_summary()
    if fa.get("n_images"):
        lines.append(
            f"false-positive area (blurred outside labelled boxes): mean {_f(fa['mean'], True)}, "
            f"median {_f(fa['median'], True)}, max {_f(fa['max'], True)}; images over 1%: "
            f"{round(fa['share_of_images_over_1pct'] * fa['n_images'])}/{fa['n_images']}; "
            f"beyond the blur margin: mean {_f(fa['far_mean'], True)}, max {_f(fa['far_max'], True)}"
        )
    return "\n".join(lines)


def overall_line(result: EvalResult) -> str:
    """One line per class: the ``all`` slice only."""
    parts = []
    for cls in result.objects:
        s = result.slices(cls)["all"]
        parts.append(
            f"{cls.label}: n={s.n} box@0.3 {_f(s.box_recall(IOUS[0])).strip()} "
            f"pixel {_f(s.pixel_recall).strip()} suff. {_f(s.sufficient_recall).strip()}"
        )
    return f"protocol {result.protocol.name}: " + "; ".join(parts)


def curve_table(curves: Sequence[Curve], marks: Mapping[ObjectClass, Sequence[float]]) -> str:
    """Recall/precision at grid thresholds, both IoUs side by side, per class."""
    by_cls: dict[ObjectClass, dict[float, Curve]] = {}
    for c in curves:
        by_cls.setdefault(c.cls, {})[c.iou] = c
    lines = []
    for cls, cs in by_cls.items():
        first = next(iter(cs.values()))
        lines.append(
            f"{cls.label}: precision/recall vs threshold ({first.n_gt} labelled, "
            f"{first.n_images} images, manifest floor {first.floor:.3f})"
        )
        head = "  thresh " + " ".join(f"rec@{i} prec@{i}" for i in cs) + " det/img"
        lines.append(head)
        for row in first.table(marks.get(cls, ())):
            t = row["threshold"]
            cells = []
            for c in cs.values():
                p = c.at(t)
                cells.append(f"{_f(p['recall'])} {_f(p['precision'])}  ")
            mark = " <" if any(abs(t - m) < 1e-6 for m in marks.get(cls, ())) else ""
            lines.append(
                f"  {t:6.3f} " + " ".join(cells) + f"{row['detections_per_image'] or 0:6.2f}{mark}"
            )
    return "\n".join(lines)


def choice_table(choices: Mapping[ObjectClass, ClassChoice], target: Any) -> str:
    lines = []
    for cls, ch in choices.items():
        b, r = ch.at_blur, ch.at_review
        flag = "" if ch.reached else "  TARGET NOT REACHED above the manifest floor"
        lines.append(
            f"{cls.label}: blur {ch.blur:.4f} (recall {_f(b['recall']).strip()}, precision "
            f"{_f(b['precision']).strip()}), review {ch.review:.4f} (recall "
            f"{_f(r['recall']).strip()}, precision {_f(r['precision']).strip()}); "
            f"review band {ch.review_band_per_1000:.1f} per 1,000 images, blurred "
            f"{ch.blurred_per_1000:.1f} per 1,000 (over {ch.n_rows} published images){flag}"
        )
        lines.append("  curve points used (threshold: recall / precision, tp, fp):")
        for p in ch.points:
            lines.append(
                f"    {p['threshold']:.4f}: {_f(p['recall']).strip()} / "
                f"{_f(p['precision']).strip()}, {p['tp']}, {p['fp']}"
            )
    return "\n".join(lines)
