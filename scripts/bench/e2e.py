"""End-to-end wall time of the real Beam job (``redact run``, DirectRunner) over a set of images.

Each group of images (e.g. all 8000x4000 panoramas) runs as its own job in a child process
(``python -m bench.peak OUT run ...`` with ``scripts/`` on ``PYTHONPATH``: ``redact run`` that
records its own peak RSS), so wall time per image can be given per size. The manifest's per-image ``timings_s`` are read back: the
job's fixed overhead (interpreter + Beam start-up, model load, sinks) is the wall time minus
the sum of the per-image stage times.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import SCRIPTS_DIR


@dataclass
class JobRun:
    group: str
    images: int
    wall_s: float
    peak_rss_mb: float | None  # VmHWM of the job process (bench.peak)
    returncode: int
    rows: list[dict[str, Any]]
    command: list[str]
    log_tail: str

    @property
    def stage_sum_s(self) -> float:
        return float(sum(sum(r["timings_s"].values()) for r in self.rows))

    def to_dict(self) -> dict[str, Any]:
        published = sum(r["status"] == "published" for r in self.rows)
        return {
            "group": self.group,
            "images": self.images,
            "published": published,
            "wall_s": self.wall_s,
            "wall_s_per_image": self.wall_s / self.images if self.images else None,
            "stage_sum_s": self.stage_sum_s,
            "overhead_s": self.wall_s - self.stage_sum_s,
            "peak_rss_mb": self.peak_rss_mb,
            "returncode": self.returncode,
            "command": " ".join(self.command),
            "rows": [
                {
                    "name": r["relative_path"],
                    "status": r["status"],
                    "tiles": r["tiles"],
                    "timings_s": r["timings_s"],
                }
                for r in self.rows
            ],
        }


def _read_manifest(folder: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for f in sorted(folder.glob("*.parquet")):
        for r in pq.read_table(f).to_pylist():
            r["timings_s"] = dict(r["timings_s"] or [])
            rows.append(r)
    return rows


def _child_env() -> dict[str, str]:
    """This environment with ``scripts/`` first on ``PYTHONPATH`` (for ``-m bench.peak``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SCRIPTS_DIR), env.get("PYTHONPATH", "")) if p
    )
    return env


def run_job(
    group: str,
    paths: Sequence[str],
    work: Path,
    *,
    config: str | None = None,
    overrides: Sequence[str] = (),
    beam_args: Sequence[str] = (),
) -> JobRun:
    """Run ``redact run`` on ``paths`` (linked into a fresh folder under ``work``)."""
    src = work / f"in-{group}"
    dst = work / f"out-{group}"
    src.mkdir(parents=True, exist_ok=False)
    for p in paths:
        link = src / Path(p).name
        if link.exists():
            raise ValueError(f"two benchmark images are named {link.name}")
        link.symlink_to(Path(p).resolve())
    peak_file = work / f"peak-{group}.txt"
    cmd = [sys.executable, "-m", "bench.peak", str(peak_file)]
    cmd += ["run", "--input", str(src), "--output", str(dst)]
    if config:
        cmd += ["--config", config]
    for o in overrides:
        cmd += ["--set", o]
    cmd += list(beam_args)
    log = work / f"log-{group}.txt"
    with open(log, "wb") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=_child_env())
        proc.wait()
        wall = time.perf_counter() - t0
    peak = peak_file.read_text().strip() if peak_file.exists() else ""
    tail = log.read_text(errors="replace")[-3000:]
    rows = _read_manifest(dst / "_manifest") if (dst / "_manifest").exists() else []
    return JobRun(
        group=group,
        images=len(paths),
        wall_s=wall,
        peak_rss_mb=float(peak) if peak else None,
        returncode=proc.returncode,
        rows=rows,
        command=cmd,
        log_tail=tail,
    )
