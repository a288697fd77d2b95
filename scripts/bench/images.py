"""Which images the benchmark runs on."""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import REPO_ROOT
from redact.io import jpeg_meta

SAMPLE_SHARD = REPO_ROOT / "tests" / "data" / "sample_shard"
SHARED_PANORAMAS = REPO_ROOT.parent / "shared" / "data" / "panoramas"
SHARED_STREET = SHARED_PANORAMAS / "amsterdam_street"
DEV_LABELS = SHARED_PANORAMAS / "dev_labels.json"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

#: Default subset of the shared panoramas: how many of each size (labelled ones first).
DEFAULT_PER_SIZE = {(8000, 4000): 3, (4000, 2000): 6}


@dataclass(frozen=True)
class BenchImage:
    path: str
    width: int
    height: int

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def _size(path: str) -> tuple[int, int]:
    """(width, height) from the file header (stored orientation; panoramas have none)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:3] == b"\xff\xd8\xff":
        fr = jpeg_meta.parse_jpeg(data).frame
        return fr.width, fr.height
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    raise ValueError(f"{path}: not a JPEG or PNG")


def expand(items: Iterable[str]) -> list[str]:
    """Files, folders (recursive) and globs -> sorted image paths."""
    out: list[str] = []
    for item in items:
        if os.path.isdir(item):
            for root, _, files in os.walk(item):
                out.extend(
                    os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)
                )
        elif any(c in item for c in "*?["):
            out.extend(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
        elif os.path.isfile(item):
            out.append(item)
        else:
            raise FileNotFoundError(f"--images {item!r}: no such file, folder or match")
    return sorted(out)


def _dedupe(paths: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for p in paths:
        with open(p, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            out.append(p)
    return out


def default_images(labelled: Iterable[str] = ()) -> list[str]:
    """The sample shard, plus a subset of ``../shared/data/panoramas/amsterdam_street`` when
    present (:data:`DEFAULT_PER_SIZE`, images named in ``labelled`` first)."""
    paths = expand([str(SAMPLE_SHARD)])
    if SHARED_STREET.is_dir():
        first = set(labelled)
        shared = sorted(expand([str(SHARED_STREET)]), key=lambda p: (Path(p).name not in first, p))
        taken = {k: 0 for k in DEFAULT_PER_SIZE}
        sample_names = {Path(p).name for p in paths}
        for p in shared:
            size = _size(p)
            if size in taken and taken[size] < DEFAULT_PER_SIZE[size]:
                taken[size] += 1
                if Path(p).name not in sample_names:
                    paths.append(p)
    return _dedupe(paths)


def describe(paths: Sequence[str]) -> list[BenchImage]:
    return [BenchImage(p, *_size(p)) for p in paths]
