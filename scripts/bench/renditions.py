"""Cost of :func:`redact.renditions.make_renditions` on published copies, before vs after a
change, in one process, interleaved (before, after first image, after next image; best of N).

``PYTHONPATH=scripts python -m bench.renditions COPY [--before REV] [--repeats N]``

* ``before``: ``redact/renditions.py`` as of git revision ``REV`` (loaded from ``git show``
  into its own module; every call is what every image cost there);
* ``first``: the working tree's, with an empty face-map cache (the first image of a layout
  in a worker process);
* ``next``: the same cache again (every further image of that layout).

Prints each run, the best of each, the 1-minute load average before and after, and the pixel
difference of the cube faces (fixed-point cached maps vs the float reference) on this copy.
``--peak MODE`` (``decode``, ``before``, ``after``) instead runs one mode alone (``after``:
first + 2 next) and prints the process's peak RSS (``VmHWM``), MiB.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bench.peak import vm_hwm_mb
from redact.classes import Projection
from redact.config import RenditionsConfig
from redact.io.codec import decode_image
from redact.renditions import (
    CUBE_FACES,
    _cube_source,
    cube_face_size,
    make_renditions,
    render_face,
)
from redact.tiling import RemapCache

CFG = RenditionsConfig(enabled=True)
MAX_PIXELS = 10**9
BASE = "/bench/copy.renditions"


def load_revision(rev: str) -> ModuleType:
    """``redact/renditions.py`` at git revision ``rev``, as module ``renditions_<rev>``."""
    root = Path(__file__).resolve().parents[2]
    src = subprocess.run(
        ["git", "show", f"{rev}:redact/renditions.py"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    name = f"renditions_{rev}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    exec(compile(src, f"{rev}:redact/renditions.py", "exec"), module.__dict__)
    return module


def _time(fn: Any) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, len(out)


def face_diff(copy: bytes) -> dict[str, float]:
    """Cube faces of ``copy`` rendered with cached fixed-point maps vs the float reference:
    max and mean absolute difference (levels) and the fraction of samples that differ."""
    pixels = decode_image(copy, max_pixels=MAX_PIXELS).pixels
    face_px = cube_face_size(pixels.shape[1], CFG.tile_px, CFG.cube_face_px)
    source = _cube_source(pixels, face_px)
    cache = RemapCache(maxsize=16)
    worst, total, differ, n = 0, 0.0, 0, 0
    for face in CUBE_FACES:
        ref = render_face(source, face, face_px).astype(np.int16)
        d = np.abs(render_face(source, face, face_px, cache).astype(np.int16) - ref)
        worst = max(worst, int(d.max()))
        total += float(d.sum())
        differ += int(np.count_nonzero(d))
        n += d.size
    return {"max": worst, "mean": total / n, "differ": differ / n}


def compare(copy: bytes, rev: str, repeats: int) -> None:
    before = load_revision(rev)
    runs: dict[str, list[float]] = {"before": [], "first": [], "next": []}
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f}")
    for i in range(repeats):
        t, n_before = _time(
            lambda: before.make_renditions(
                copy, Projection.EQUIRECTANGULAR, CFG, BASE, max_pixels=MAX_PIXELS
            )
        )
        runs["before"].append(t)
        cache = RemapCache(maxsize=16)
        for key in ("first", "next"):
            t, n_after = _time(
                lambda cache=cache: make_renditions(
                    copy,
                    Projection.EQUIRECTANGULAR,
                    CFG,
                    BASE,
                    max_pixels=MAX_PIXELS,
                    face_maps=cache,
                )
            )
            runs[key].append(t)
        print(
            f"run {i + 1}: before {runs['before'][-1]:.3f} s, first {runs['first'][-1]:.3f} s,"
            f" next {runs['next'][-1]:.3f} s ({n_before} / {n_after} files,"
            f" cache {cache.nbytes / 2**20:.0f} MiB)"
        )
    print("best: " + ", ".join(f"{k} {min(v):.3f} s" for k, v in runs.items()))
    print(f"load average (1 min) at end: {os.getloadavg()[0]:.2f}")
    d = face_diff(copy)
    print(
        f"cube faces, cached fixed-point vs float reference: max {d['max']} levels,"
        f" mean {d['mean']:.4f}, {100 * d['differ']:.2f} % of samples differ"
    )


def peak(copy: bytes, mode: str, rev: str) -> None:
    if mode == "decode":
        decode_image(copy, max_pixels=MAX_PIXELS)
    elif mode == "before":
        load_revision(rev).make_renditions(
            copy, Projection.EQUIRECTANGULAR, CFG, BASE, max_pixels=MAX_PIXELS
        )
    else:
        cache = RemapCache(maxsize=16)
        for _ in range(3):
            make_renditions(
                copy, Projection.EQUIRECTANGULAR, CFG, BASE, max_pixels=MAX_PIXELS, face_maps=cache
            )
    print(f"peak RSS ({mode}): {vm_hwm_mb():.0f} MiB")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("copy", type=Path, help="a published equirectangular copy")
    ap.add_argument("--before", default="HEAD", help="git revision of the 'before' code")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peak", choices=("decode", "before", "after"))
    args = ap.parse_args(argv)
    copy = args.copy.read_bytes()
    if args.peak:
        peak(copy, args.peak, args.before)
    else:
        compare(copy, args.before, args.repeats)


if __name__ == "__main__":
    main()
