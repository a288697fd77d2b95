"""Where the packaged data is: the shipped configs, the model registry and its weights.

The repository's top-level ``configs/`` and ``models/`` folders are installed as the data-only
packages ``redact._configs`` and ``redact._models`` (``pyproject.toml`` ``package-dir``), in an
editable install (they stay where they are) as in a wheel (they land in ``site-packages``).
Everything that needs them finds them here, through :mod:`importlib.resources`, never through a
path relative to the source tree.

The registry's relative ``uri:`` entries resolve against the registry file's folder, so the
registry and the weights stay together in ``redact._models``.

A source tree imported without being installed (``PYTHONPATH=checkout``, or a Docker image
whose working directory holds the sources, which then shadow the installed package) has no
``redact._configs``: the folders next to that ``redact/`` are used then.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from functools import cache
from importlib import resources
from pathlib import Path

CONFIGS_PACKAGE = "redact._configs"
MODELS_PACKAGE = "redact._models"
#: package -> its folder in the source tree (pyproject.toml ``package-dir``).
SOURCE_FOLDERS = {CONFIGS_PACKAGE: "configs", MODELS_PACKAGE: "models"}
DEFAULT_CONFIG_NAME = "default.yaml"
REGISTRY_NAME = "registry.yaml"
REGISTRY_ENV = "REDACT_REGISTRY"

_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


@cache
def _package_dir(package: str) -> Path:
    """The folder of a data package on the file system.

    A normal install (wheel or editable) has it on disk already; a zipped one is extracted
    once for the life of the process (``as_file``; folders need Python 3.12+).
    """
    try:
        root = resources.files(package)
    except ModuleNotFoundError as e:
        if e.name != package:
            raise
        import redact

        source = Path(redact.__file__).resolve().parents[1] / SOURCE_FOLDERS[package]
        if not (source / "__init__.py").is_file():
            raise ModuleNotFoundError(
                f"{package} not found: redact at {Path(redact.__file__).parent} is neither "
                f"installed with its data (pip install) nor a source tree with {source}",
                name=package,
            ) from e
        return source
    if isinstance(root, Path):
        return root
    return Path(_extracted.enter_context(resources.as_file(root)))


def configs_dir() -> Path:
    """Folder of the packaged configs (``configs/`` of the repository)."""
    return _package_dir(CONFIGS_PACKAGE)


def models_dir() -> Path:
    """Folder of the packaged registry, shipped weights and model cards (``models/``)."""
    return _package_dir(MODELS_PACKAGE)


def config_path(name: str = DEFAULT_CONFIG_NAME) -> Path:
    """A packaged config by its path inside ``configs/``, e.g. ``"regions/high-privacy.yaml"``."""
    return configs_dir() / name


def registry_path() -> Path:
    """``$REDACT_REGISTRY`` or the packaged ``models/registry.yaml``."""
    env = os.environ.get(REGISTRY_ENV)
    if env:
        return Path(env).expanduser()
    return models_dir() / REGISTRY_NAME
