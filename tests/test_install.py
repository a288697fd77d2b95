"""Packaging: configs/ and models/ install as package data (``redact.resources``), so a
non-editable install works from any folder; the package list in pyproject.toml is complete."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from redact import resources

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "data" / "sample_shard"
#: What `pip wheel .` needs from the checkout (the Dockerfile copies the same folders).
BUILD_INPUTS = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "redact",
    "pipelines",
    "configs",
    "models",
)
#: The vendored viewer's files (redact/season/web/static/vendor/pannellum).
VENDORED = ("pannellum.js", "pannellum.css", "LICENSE", "VENDORED.md")


def test_resources_are_the_repository_folders_in_a_checkout(monkeypatch):
    monkeypatch.delenv("REDACT_REGISTRY", raising=False)
    assert resources.config_path() == resources.configs_dir() / "default.yaml"
    assert resources.config_path().is_file()
    assert resources.config_path("regions/high-privacy.yaml").is_file()
    assert resources.registry_path() == resources.models_dir() / "registry.yaml"
    assert resources.registry_path().is_file()
    # The registry's relative uris resolve next to it: the shipped weights are there too.
    assert any(resources.models_dir().glob("*.onnx"))
    monkeypatch.setenv("REDACT_REGISTRY", "~/elsewhere.yaml")
    assert resources.registry_path() == Path("~/elsewhere.yaml").expanduser()


def test_uninstalled_source_tree_uses_its_own_folders(monkeypatch):
    """``redact`` imported from a source tree that is not installed: configs/ and models/
    next to it."""

    def not_installed(package: str) -> None:
        raise ModuleNotFoundError(f"No module named {package!r}", name=package)

    resources._package_dir.cache_clear()
    monkeypatch.setattr(resources.resources, "files", not_installed)
    try:
        assert resources.configs_dir() == REPO / "configs"
        assert resources.models_dir() == REPO / "models"
    finally:
        resources._package_dir.cache_clear()


def test_pyproject_lists_every_package():
    """``package-dir`` needs an explicit package list: a new subpackage must join it, or a
    wheel (and the Docker image) would silently lack it."""
    tomllib = pytest.importorskip("tomllib")
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapped = {name: REPO / path for name, path in cfg["package-dir"].items()}
    found = set(mapped)
    for top in ("redact", "pipelines"):
        for d in [REPO / top, *(REPO / top).rglob("*")]:
            if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py")):
                found.add(".".join(d.relative_to(REPO).parts))
    assert sorted(found - listed) == [], "add these to [tool.setuptools] packages"
    assert sorted(listed - found) == [], "listed in pyproject.toml but not in the tree"
    for path in mapped.values():
        assert (path / "__init__.py").is_file(), f"{path} needs an __init__.py (editable installs)"


def _copy_sources(dst: Path) -> Path:
    """The build inputs of the checkout (as they are now), without caches and old builds."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    dst.mkdir(parents=True)
    for name in BUILD_INPUTS:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=ignore)
        else:
            shutil.copy2(src, dst / name)
    return dst


def _env() -> dict[str, str]:
    """This environment without anything that would put the checkout on ``sys.path``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REDACT_REGISTRY")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{cmd}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    return proc


def _dockerfile_model_check() -> str:
    """The Python code of the Dockerfile's ``RUN python -c "..."`` model check."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", "")
    m = re.search(r'^RUN (?:cd \S+ && )?python -c "(.*?)"\s*$', text, re.MULTILINE)
    assert m, "the Dockerfile's model check (RUN python -c ...) not found"
    return m.group(1)


@pytest.mark.slow
def test_wheel_install_runs_from_any_folder(tmp_path):
    """Build a wheel, install it (not editable) into a fresh venv that borrows this venv's
    dependencies through a ``.pth`` line, and run a job from a folder outside the checkout."""
    src = _copy_sources(tmp_path / "src")
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
        tmp_path,
    )
    (wheel,) = wheels.glob("redact-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    py = venv / "bin" / "python"
    # Install before the .pth exists: pip then sees no other redact.
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        tmp_path,
    )
    purelib = Path(
        _run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path
        ).stdout.strip()
    )
    # Dependencies from this venv, as a plain sys.path entry (its .pth files, among them the
    # editable install's finder, are not processed).
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()] or [
        sysconfig.get_paths()["purelib"]
    ]
    (purelib / "_redact_test_deps.pth").write_text("".join(p + "\n" for p in deps))

    where = _run(
        [
            str(py),
            "-c",
            "import sys, redact, redact.resources as r; print(redact.__file__); "
            "print(r.registry_path()); print(r.config_path()); print('\\n'.join(sys.path))",
        ],
        tmp_path,
    ).stdout.splitlines()
    assert Path(where[0]).is_relative_to(venv), where[0]
    assert Path(where[1]).is_relative_to(purelib) and Path(where[2]).is_relative_to(purelib)
    assert not any(p and Path(p).resolve() == REPO for p in where[3:]), where[3:]

    out = tmp_path / "out"
    job = _run(
        [str(venv / "bin" / "redact"), "run", "--input", str(SAMPLE), "--output", str(out)],
        tmp_path,
    )
    images = sorted(p.relative_to(SAMPLE) for p in SAMPLE.rglob("*.jpg"))
    assert len(images) == 2
    for rel in images:
        assert (out / rel).is_file(), f"{rel} not published\n{job.stdout}\n{job.stderr}"
    assert list((out / "_manifest").glob("*.parquet")), job.stdout

    check = _run([str(py), "-c", _dockerfile_model_check()], tmp_path)
    assert check.stdout.strip().splitlines()[-1] == "models ok"

    # The review page's static files (vendored pannellum and its licence) are in the wheel and
    # found by the installed package, so `redact review serve` needs no network or checkout.
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    web = "redact/season/web/static/"
    for f in ("review.js", "review.css", *(f"vendor/pannellum/{n}" for n in VENDORED)):
        assert web + f in names, f"{web + f} not in the wheel"
    static = _run(
        [
            str(py),
            "-c",
            "from redact.season.web.server import STATIC_DIR, static_files; "
            "print(STATIC_DIR); print(sorted(static_files()))",
        ],
        tmp_path,
    ).stdout.splitlines()
    assert Path(static[0]).is_relative_to(purelib), static[0]
    assert "vendor/pannellum/pannellum.js" in static[1]
