"""Run deface (the per-image CenterFace baseline) on the benchmark images, in its own venv.

deface is never a dependency of redact: it is installed in a separate environment
(``python3 -m venv .venv-deface && .venv-deface/bin/pip install deface onnx onnxruntime``)
and driven by :mod:`bench.deface_driver` in a child process.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DRIVER = Path(__file__).with_name("deface_driver.py")
INSTALL_HINT = (
    "python3 -m venv .venv-deface && .venv-deface/bin/pip install deface onnx onnxruntime"
)


@dataclass
class DefaceRun:
    result: dict[str, Any]
    wall_s: float
    peak_rss_mb: float | None  # VmHWM reported by the driver itself
    command: list[str]

    def images(self) -> list[dict[str, Any]]:
        return list(self.result["images"])


def run_deface(
    python: str,
    paths: Sequence[str],
    work: Path,
    *,
    thresh: float = 0.2,
    mask_scale: float = 1.3,
    backend: str = "auto",
    scale: tuple[int, int] | None = None,
    repeat: int = 1,
) -> DefaceRun:
    """Run the driver with deface's defaults (``--thresh 0.2 --mask-scale 1.3``, ellipse blur,
    full-resolution inference unless ``scale``). Raises RuntimeError if it fails."""
    out = work / "deface-out"
    out.mkdir(parents=True, exist_ok=True)
    job = {
        "images": [
            {"path": str(Path(p).resolve()), "output": str(out / Path(p).name)} for p in paths
        ],
        "thresh": thresh,
        "mask_scale": mask_scale,
        "backend": backend,
        "scale": list(scale) if scale else None,
        "repeat": repeat,
        "result": str(work / "deface-result.json"),
    }
    job_file = work / "deface-job.json"
    job_file.write_text(json.dumps(job))
    cmd = [python, "-I", str(DRIVER), str(job_file)]  # -I: not its folder on sys.path
    log = work / "deface-log.txt"
    with open(log, "wb") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        code = proc.wait()
        wall = time.perf_counter() - t0
    if code != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"deface driver failed (exit {code}): {tail}")
    result = json.loads(Path(job["result"]).read_text())  # type: ignore[arg-type]
    return DefaceRun(result, wall, result.get("peak_rss_mb"), cmd)
