"""A hostile shard end to end: crafted files and special paths through ``redact run``.

Usage::

    python scripts/hostile_shard.py WORKDIR

writes ``WORKDIR/src``: the crafted metadata-leak files of ``scripts/leak_files.py`` (each
carries a recoverable secondary picture), the alpha-only face and the orientation case, a
FIFO, a dangling link, a link loop, a name with a backslash, a name with a newline, a text
file and a copy in a sub-folder; runs the real job (shipped config and model) into
``WORKDIR/dst``; then checks that every path has exactly one manifest row and that no
published copy carries an embedded picture (:func:`redact.io.leakscan.embedded_images`, the
secret picture's fingerprints, and exiftool's picture tags when exiftool is installed).
Prints one line per finding and a summary; exits 1 if anything leaked or a path has no row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from redact.cli import main as redact_main
from redact.manifest import read_manifest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import leak_files  # a sibling script: the crafted-file builders


def build(src: Path) -> list[str]:
    """Write the shard; returns every relative path it holds."""
    src.mkdir(parents=True)
    for name, make in leak_files.CASES.items():
        (src / name).write_bytes(make())
    (src / "alpha_only_face.png").write_bytes(leak_files.case_alpha_only_face()[0])
    (src / "orientation6_malformed_exif.jpg").write_bytes(
        leak_files.case_orientation6_malformed_exif()[0]
    )
    any_jpeg = next(n for n in leak_files.CASES if n.endswith(".jpg"))
    os.mkfifo(src / "pipe.jpg")
    os.symlink(src / "missing.jpg", src / "dangling.jpg")
    os.symlink(src / "loop_b.jpg", src / "loop_a.jpg")
    os.symlink(src / "loop_a.jpg", src / "loop_b.jpg")
    shutil.copy(src / any_jpeg, src / "x\\y.jpg")
    shutil.copy(src / any_jpeg, src / "ctrl\nname.jpg")
    (src / "sub").mkdir()
    shutil.copy(src / any_jpeg, src / "sub" / "y.jpg")
    (src / "notes.txt").write_text("not an image")
    return sorted(str(p.relative_to(src)) for p in src.rglob("*") if not p.is_dir())


def check(src: Path, dst: Path, paths: list[str]) -> int:
    """Rows and leaks of the job's output; returns the number of problems found."""
    from redact.io.inputs import safe_text

    rows = read_manifest(str(dst / "_manifest")).to_pylist()
    by_path: dict[str, list[dict]] = {}
    for r in rows:
        by_path.setdefault(r["relative_path"], []).append(r)
    problems = 0
    for rel in paths:
        got = by_path.get(safe_text(rel), [])
        if len(got) != 1:
            print(f"ROWS {rel!r}: {len(got)} manifest rows")
            problems += 1
    published = [r for r in rows if r["status"] == "published"]
    leaks = 0
    for r in published:
        out = Path(r["output_uri"])
        found = leak_files.recoverable(out.read_bytes(), out)
        if found:
            print(f"LEAK {r['relative_path']!r}: {found[:2]}")
            leaks += 1
    failed = sorted(
        (r["relative_path"], r["error_reason"]) for r in rows if r["status"] == "failed"
    )
    print(
        f"{len(paths)} paths, {len(rows)} manifest rows; {len(published)} published, "
        f"{leaks} of them carrying a recoverable picture; {len(failed)} quarantined:"
    )
    for rel, reason in failed:
        print(f"  {rel!r}: {reason}")
    return problems + leaks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("workdir", type=Path, help="an empty or new folder")
    args = ap.parse_args(argv)
    src, dst = args.workdir / "src", args.workdir / "dst"
    paths = build(src)
    rc = redact_main(["run", "--input", str(src), "--output", str(dst)])
    if rc != 0:
        print(f"redact run exited {rc}")
        return 1
    return 1 if check(src, dst, paths) else 0


if __name__ == "__main__":
    sys.exit(main())
