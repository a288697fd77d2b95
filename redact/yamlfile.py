"""Reading the project's YAML files (configs, the model registry, the canary) with one-line
errors that name the file."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml


def read_yaml_mapping(
    path: Path | Traversable, error: type[Exception], what: str
) -> Mapping[str, Any]:
    """The top-level mapping of the YAML file ``path`` (an empty file is ``{}``).

    Raises ``error`` with one line naming ``what`` (e.g. "config") and ``path``: unreadable,
    invalid YAML, or a top level that is not a mapping.
    """
    try:
        text = path.read_text()
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{path}: invalid YAML: {' '.join(str(e).split())}") from e
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise error(f"{path}: top level must be a mapping")
    return data
