#!/usr/bin/env python3
"""Run the pipeline and ``redact eval``/``tune`` on the labelled dev data in ../shared/data.

Sets (never training images):
  pano     the 12 hand-labelled Amsterdam panoramas (panoramas/dev_labels.json)
  maskon   MaskON dev split (.cache/train_data/splits/maskon_dev.txt, else a seeded 60)
  openalpr openalpr dev split (.cache/train_data/splits/openalpr_dev.txt, else a seeded 60)
  uc3m     UC3M-LP val (the published split: 395 Spanish street photos; labels as COCO)
  dutch    Dutch val folders (31 frames of yellow NL plates; labels as COCO)

(``python scripts/mine_candidates.py`` writes the MaskON/openalpr split files if missing;
the seeded fallback is NOT the split the detector was trained against.)

Steps (each can be skipped): symlink the images of every set under WORK/input/<set>/, run
``redact run`` once over WORK/input (default config unless --config), evaluate each set
with its own labels (JSON + confidential HTML in WORK/eval/), tune on all sets together
(labels merged to COCO) and on the panoramas alone, and with --blur-sweep measure the
irreversibility checks at several blur strengths on the labelled boxes.

    nice -n 5 .venv/bin/python scripts/eval_dev.py --work /tmp/redact_eval_dev

Outputs stay in WORK (outside the repo): they hold crops of real people.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SPLITS = REPO / ".cache" / "train_data" / "splits"
SETS = ("pano", "maskon", "openalpr", "uc3m", "dutch")
SIZE_BINS = ((0, 12), (12, 24), (24, 48), (48, 96), (96, 1e9))
sys.path.insert(0, str(REPO))


def _redact(*args: str) -> None:
    cmd = [sys.executable, "-m", "redact.cli", *args]
    print("$ redact " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


def _split(name: str, pool: list[str], n: int) -> list[str]:
    f = SPLITS / name
    if f.is_file():
        return [ln.strip() for ln in f.read_text().splitlines() if ln.strip()]
    print(f"  {f} missing: using a seeded sample of {n}", flush=True)
    return sorted(random.Random(4).sample(sorted(pool), min(n, len(pool))))


def _coco(
    items: list[tuple[str, Path, list[tuple[float, float, float, float]]]], out: Path
) -> Path:
    """(name, image, plate boxes) -> a COCO file (sizes read from the images)."""
    import cv2

    images, anns = [], []
    for name, img, boxes in items:
        im = cv2.imread(str(img))
        if im is None:
            raise FileNotFoundError(img)
        iid = len(images)
        images.append({"id": iid, "file_name": name, "width": im.shape[1], "height": im.shape[0]})
        for x1, y1, x2, y2 in boxes:
            anns.append(
                {
                    "id": len(anns),
                    "image_id": iid,
                    "category_id": 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                }
            )
    cats = [{"id": 0, "name": "face"}, {"id": 1, "name": "license_plate"}]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return out


def _link_plate_set(work: Path, name: str, items: list) -> Path:  # type: ignore[type-arg]
    """Link (name, image, boxes) items under WORK/input/<name>/ with COCO labels."""
    folder = work / "input" / name
    folder.mkdir(parents=True, exist_ok=True)
    named = []
    for stem, img, boxes in items:
        fname = stem + img.suffix
        dst = folder / fname
        if not dst.exists():
            dst.symlink_to(img.resolve())
        named.append((fname, img, [b for _, b in boxes]))
    return _coco(named, work / "labels" / f"{name}.json")


def link_inputs(work: Path, sets: tuple[str, ...] = SETS) -> dict[str, Path]:
    """Symlink each set's images under WORK/input/<set>/; returns the label path per set."""
    inp = work / "input"
    labels: dict[str, Path] = {}
    if "uc3m" in sets or "dutch" in sets:
        sys.path.insert(0, str(REPO / "scripts"))
        from _train_common import dutch_items, uc3m_items

        if "uc3m" in sets:
            labels["uc3m"] = _link_plate_set(
                work, "uc3m", uc3m_items(DATA / "plates" / "uc3m_lp_es", "val")
            )
        if "dutch" in sets:
            labels["dutch"] = _link_plate_set(
                work, "dutch", dutch_items(DATA / "plates" / "dutch_nl", "val")
            )
    pano_labels = DATA / "panoramas" / "dev_labels.json"
    names = sorted(json.loads(pano_labels.read_text()))
    if "pano" in sets:
        _link(inp / "pano", [DATA / "panoramas" / "amsterdam_street" / n for n in names])
        labels["pano"] = pano_labels
    if "maskon" in sets:
        _link_maskon(work, labels)
    if "openalpr" in sets:
        _link_openalpr(work, labels)
    return labels


def _link_maskon(work: Path, labels: dict[str, Path]) -> None:
    inp = work / "input"
    masks = DATA / "faces" / "maskon"
    pool = [p.stem for p in (masks / "annotations").glob("*.xml")]
    stems = _split("maskon_dev.txt", pool, 60)
    _link(inp / "maskon", [masks / "images" / f"{s}.jpg" for s in stems])
    ann = work / "labels" / "maskon"
    _link(ann, [masks / "annotations" / f"{s}.xml" for s in stems])
    labels["maskon"] = ann


def _link_openalpr(work: Path, labels: dict[str, Path]) -> None:
    inp = work / "input"
    pool = [
        f"{d.name}/{p.stem}"
        for d in (DATA / "plates" / "openalpr_us", DATA / "plates" / "openalpr_br")
        for p in d.glob("*.jpg")
    ]
    items = _split("openalpr_dev.txt", pool, 60)
    alpr = work / "labels" / "openalpr"
    imgs, txts = [], []
    for it in items:
        d, stem = it.split("/")
        imgs.append(DATA / "plates" / d / f"{stem}.jpg")
        txts.append(DATA / "plates" / d / f"{stem}.txt")
    _link(inp / "openalpr", imgs)
    _link(alpr, txts)
    labels["openalpr"] = alpr


def _link(folder: Path, files: list[Path]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        if not f.exists():
            alt = f.with_suffix(".jpg")
            if not alt.exists():
                raise FileNotFoundError(f)
            f = alt
        dst = folder / f.name
        if not dst.exists():
            dst.symlink_to(f)


def merged_coco(labels: dict[str, Path], out: Path, work: Path) -> Path:
    """All sets' labels as one COCO file keyed by <set>/<file> (flags and plate text kept)."""
    from redact.evaluation.labels import load_labels

    cats = [{"id": 0, "name": "face"}, {"id": 1, "name": "license_plate"}]
    images, anns = [], []
    for name, path in labels.items():
        ls = load_labels(path)
        for key, im in sorted(ls.images.items()):
            iid = len(images)
            rel = f"{name}/{Path(key).name}"
            if not (work / "input" / rel).exists():
                continue  # labels of images outside the split
            images.append({"id": iid, "file_name": rel, "width": im.width, "height": im.height})
            for o in im.objects:
                x1, y1, x2, y2 = o.box
                anns.append(
                    {
                        "id": len(anns),
                        "image_id": iid,
                        "category_id": int(o.cls),
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "flags": sorted(f.value for f in o.flags),
                        "text": o.text,
                    }
                )
    out.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return out


def blur_sweep(labels: dict[str, Path], work: Path) -> None:
    """Irreversibility pass shares at several blur strengths.

    Each variant blurs the ORIGINALS at the boxes the run in WORK/output blurred (its
    manifest; the labelled boxes when there is no run), is re-encoded as JPEG q75 like a
    published copy and goes through the same checks as ``redact eval --irreversibility``
    (cohort normalisation included), for the default and every mode x strength.
    """
    import cv2
    import numpy as np

    from redact.blur import blur_regions
    from redact.classes import ObjectClass
    from redact.cli import load_config
    from redact.config import BlurMode, BlurStrength
    from redact.evaluation.dataset import load_manifest_images, load_rgb
    from redact.evaluation.irreversibility import (
        Checker,
        IrreversibilityConfig,
        cohort_normalise,
        summarize_checks,
    )
    from redact.evaluation.labels import GtFlag, join_seam_halves, load_labels
    from redact.evaluation.pixels import coverage

    base = load_config(None).blur
    # every mode x strength (redact.blur.STRENGTHS; the modes add no noise)
    variants = {
        "default": base,
        "plate_dilate0.25": _with(base, class_dilate={ObjectClass.LICENSE_PLATE: 0.25}),
        **{
            f"{m.value}_{st.value}": _with(
                base, mode=dict.fromkeys(ObjectClass, m), strength=dict.fromkeys(ObjectClass, st)
            )
            for m in BlurMode
            for st in BlurStrength
        },
    }
    manifest = work / "output" / "_manifest"
    rows = (
        {r.relative_path: r for r in load_manifest_images(str(manifest))}
        if manifest.is_dir()
        else {}
    )
    print(f"blur sweep on {'the run' if rows else 'labelled'} boxes", flush=True)
    checker = Checker(IrreversibilityConfig())
    results: dict[str, list] = {k: [] for k in variants}
    for name, path in labels.items():
        ls = load_labels(path)
        for key, im in sorted(ls.images.items()):
            rel = f"{name}/{Path(key).name}"
            f = work / "input" / rel
            if not f.exists():
                continue
            orig = load_rgb(str(f))
            wrap = name == "pano"
            lab = join_seam_halves(im, orig.shape[1]) if wrap else im
            objs = [o for o in lab.objects if GtFlag.UNCERTAIN not in o.flags]
            if not objs:
                continue
            row = rows.get(rel)
            if row is not None:
                boxes, cls = row.det_xyxy[row.det_blurred], row.det_class[row.det_blurred]
            else:
                boxes = np.array([o.box for o in objs])
                cls = np.array([int(o.cls) for o in objs])
            for vname, cfg in variants.items():
                pub, mask = blur_regions(orig, boxes, cfg, wrap=wrap, classes=cls)
                ok, buf = cv2.imencode(".jpg", pub[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 75])
                if not ok:
                    raise RuntimeError("JPEG encoding failed")
                pub = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
                cov = [b / max(t, 1) for b, t in (coverage(mask, o.box, wrap) for o in objs)]
                results[vname] += checker.check(rel, orig, pub, objs, wrap, coverage=cov)
    print("irreversibility vs blur strength:")
    table = {}
    for vname, checks in results.items():
        s = summarize_checks(*cohort_normalise(checks, checker.cfg))
        table[vname] = s
        fc, pc = s["face"], s["license_plate"]
        g = fc["gallery_reidentification"]
        print(
            f"  {vname:<18} faces passed {fc['n_passed']}/{fc['n_judged']} (below 0.363: "
            f"{fc['n_below_threshold']}; failed: {fc['n_failed_not_blurred']} not blurred, "
            f"{fc['n_failed_blurred']} blurred; gallery re-identified "
            f"{g['n_reidentified']}/{g['n']}), plates {pc['n_passed']}/{pc['n_judged']} "
            f"(verifiable {pc['n_verifiable']})",
            flush=True,
        )
    (work / "eval" / "blur_sweep.json").write_text(json.dumps(table, indent=1, default=str))


def _with(cfg, **kw):  # type: ignore[no-untyped-def]
    import dataclasses

    return dataclasses.replace(cfg, **kw)


def _size_bin(h: float) -> str:
    for lo, hi in SIZE_BINS:
        if lo <= h < hi:
            return f"{lo:g}-{hi:g}px" if hi < 1e9 else f">={lo:g}px"
    return "?"


def summarize(work: Path, sets: list[str]) -> dict:  # type: ignore[type-arg]
    """Per set and class, by object height: counts, box recall @0.3/@0.5, stage-1 candidate
    recall (some recorded candidate of the class, any decision, IoU >= 0.3), pixel recall,
    sufficiently blurred; FP area; per-stage detection time of the 8000x4000 panoramas.
    Don't-care objects are left out; panorama plates are reported without the publisher's
    pre-blurred patches. Prints a table and returns it (WORK/eval/summary.json)."""
    import numpy as np

    from redact.classes import ObjectClass
    from redact.evaluation.dataset import load_manifest_images
    from redact.manifest import read_manifest

    out: dict = {}  # type: ignore[type-arg]
    print("set      class          size      |   n | box@0.3 | box@0.5 | cand | pixel | suff")
    for name in sets:
        f = work / "eval" / f"{name}.json"
        if not f.is_file():
            continue
        doc = json.loads(f.read_text())
        objs = [o for o in doc["objects"] if not o["dont_care"]]
        if name == "pano":
            objs = [
                o
                for o in objs
                if not (o["class"] == "license_plate" and "preblurred" in o["flags"])
            ]
        res: dict = {"fp_area": doc["results"][0]["fp_area"]}  # type: ignore[type-arg]
        for cls in ("face", "license_plate"):
            co = [o for o in objs if o["class"] == cls]
            if not co:
                continue
            rows = {"all": co}
            for lo, hi in SIZE_BINS:
                group = [o for o in co if lo <= o["height_px"] < hi]
                if group:
                    rows[_size_bin(lo)] = group
            table = {}
            for key, group in rows.items():
                n = len(group)
                pix = [o["pixel_coverage"] for o in group if o["pixel_coverage"] is not None]
                suff = [
                    o["sufficiently_blurred"]
                    for o in group
                    if o["sufficiently_blurred"] is not None
                ]
                row = {
                    "n": n,
                    "box03": sum(o["matched_iou0.3"] for o in group),
                    "box05": sum(o["matched_iou0.5"] for o in group),
                    "candidate": sum(o["best_candidate_score"] is not None for o in group),
                    "pixel": float(np.mean(pix)) if pix else None,
                    "sufficient": sum(bool(v) for v in suff),
                    "n_sufficient_judged": len(suff),
                }
                table[key] = row
                print(
                    f"{name:<8} {cls:<14} {key:<9} | {n:3d} | {row['box03']:3d} {row['box03'] / n:.3f} | "
                    f"{row['box05']:3d} {row['box05'] / n:.3f} | {row['candidate'] / n:.3f} | "
                    f"{row['pixel'] if row['pixel'] is not None else float('nan'):.3f} | "
                    f"{row['sufficient']}/{row['n_sufficient_judged']}"
                )
            res[cls] = table
        fa = res["fp_area"]
        if fa.get("n_images"):
            print(
                f"{name:<8} FP area mean {fa['mean']:.4f} median {fa['median']:.4f} max {fa['max']:.4f}"
            )
        out[name] = res
    manifest = work / "output" / "_manifest"
    if manifest.is_dir():
        table = read_manifest(str(manifest)).to_pylist()
        big = [r for r in table if r["status"] == "published" and r["width"] >= 8000]
        if big:
            t = [dict(r["timings_s"]) for r in big]
            infer = float(np.mean([x.get("infer", 0.0) for x in t]))
            post = float(np.mean([x.get("postprocess", 0.0) for x in t]))
            cands = float(np.mean([len(r["detections"]) for r in big]))
            out["timing_8000x4000"] = {
                "n": len(big), "infer_s": infer, "postprocess_s": post, "candidates": cands,
                "ratio": (infer + post) / infer if infer else None,
            }  # fmt: skip
            print(
                f"detection per 8000x4000 panorama ({len(big)}): stage 1 {infer:.2f} s, stage 2 "
                f"{post:.3f} s for {cands:.0f} candidates, both / stage 1 = {(infer + post) / max(infer, 1e-9):.3f}"
            )
        rows = load_manifest_images(str(manifest))
        per = {}
        for name in sets:
            sel = [r for r in rows if r.relative_path.startswith(name + "/")]
            if sel:
                per[name] = {
                    c.label: float(
                        np.mean([int(((r.det_class == int(c)) & r.det_blurred).sum()) for r in sel])
                    )
                    for c in ObjectClass
                }
        out["blurs_per_image"] = per
        print("blurred regions per image: " + json.dumps(per))
    (work / "eval" / "summary.json").write_text(json.dumps(out, indent=1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/redact_eval_dev", help="work folder (outside repo)")
    ap.add_argument("--config", help="config for the run (default: configs/default.yaml)")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="config override for the run (redact run --set), e.g. postprocess.model=NAME",
    )  # fmt: skip
    ap.add_argument(
        "--sets", default=",".join(SETS), help=f"sets to run (default {','.join(SETS)})"
    )
    ap.add_argument("--skip-run", action="store_true", help="reuse WORK/output")
    ap.add_argument("--fast", action="store_true", help="eval without irreversibility and HTML")
    ap.add_argument(
        "--skip-tune", action="store_true", help="no redact tune (it tunes on dev data)"
    )
    ap.add_argument("--summary-only", action="store_true", help="only print WORK's summary table")
    ap.add_argument("--blur-sweep", action="store_true", help="irreversibility vs blur strength")
    ap.add_argument(
        "--blur-sweep-only", action="store_true", help="only the blur-strength sweep (no run/eval)"
    )
    ap.add_argument("--tuned-out", help="write the all-sets tuned config here")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"no shared data at {DATA}", file=sys.stderr)
        return 2
    sets = tuple(x.strip() for x in args.sets.split(",") if x.strip())
    unknown = sorted(set(sets) - set(SETS))
    if unknown:
        ap.error(f"unknown set(s) {unknown}; known: {', '.join(SETS)}")
    work = Path(args.work)
    if args.summary_only:
        summarize(work, list(sets))
        return 0
    labels = link_inputs(work, sets)
    if args.blur_sweep_only:
        (work / "eval").mkdir(exist_ok=True)
        blur_sweep(labels, work)
        return 0
    out = work / "output"
    cfg = ["--config", args.config] if args.config else []
    if not args.skip_run:
        overrides = [x for kv in args.set for x in ("--set", kv)]
        _redact("run", "--input", str(work / "input"), "--output", str(out), *cfg, *overrides)
    ev = work / "eval"
    ev.mkdir(exist_ok=True)
    for name, path in labels.items():
        extra = [] if args.fast else ["--irreversibility", "--html", str(ev / f"{name}.html")]
        _redact(
            "eval",
            "--labels",
            str(path),
            "--originals",
            str(work / "input"),
            "--published",
            str(out),
            "--sweep",
            "--json",
            str(ev / f"{name}.json"),
            *extra,
        )
    if not args.skip_tune:
        coco = merged_coco(labels, ev / "all_labels.json", work)
        tuned = args.tuned_out or str(ev / "tuned_all.yaml")
        _redact(
            "tune", "--labels", str(coco), "--manifest", str(out / "_manifest"),
            "--target-recall", "0.99", "--out", tuned, "--json", str(ev / "tune_all.json"), *cfg,
        )  # fmt: skip
        if "pano" in labels:
            _redact(
                "tune", "--labels", str(labels["pano"]), "--manifest", str(out / "_manifest"),
                "--target-recall", "0.99", "--out", str(ev / "tuned_pano.yaml"),
                "--json", str(ev / "tune_pano.json"), *cfg,
            )  # fmt: skip
    if args.blur_sweep:
        blur_sweep(labels, work)
    summarize(work, list(labels))
    print(f"outputs in {work} (CONFIDENTIAL: crops of real people)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
