import pytest

from redact.classes import ObjectClass, Projection
from redact.config import Backend, ConfigError, MergeMethod, RedactConfig

MODEL = {"path": "m.onnx", "classes": ["face", "license_plate"]}


def test_defaults_and_enums_parse():
    cfg = RedactConfig.from_dict({"models": [MODEL], "merge": {"method": "NMS"}})
    assert cfg.merge.method is MergeMethod.NMS
    assert cfg.models[0].backend is Backend.ONNX
    assert cfg.models[0].classes == (ObjectClass.FACE, ObjectClass.LICENSE_PLATE)
    assert set(cfg.thresholds) == set(ObjectClass)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"merge": {"method": "mean"}}, "merge.method: 'mean' is not one of"),
        ({"tiling": {"levels": [{"scale": 0}]}}, "tiling.levels[0].scale"),
        ({"tiling": {"tile_sise": 640}}, "unknown key(s) ['tile_sise']"),
        (
            {"thresholds": {"face": {"blur": 0.1, "review": 0.2}, "plate": {}}},
            "floor <= review <= blur",
        ),
        ({"thresholds": {"dog": {}, "face": {}, "plate": {}}}, "unknown object class 'dog'"),
        ({"blur": {"cells": 4}}, "blur.cells: removed"),
        ({"blur": {"noise_sigma": 20.0}}, "blur.noise_sigma: removed"),
        ({"blur": {"cell_noise_sigma": 40.0}}, "set blur.strength"),
        ({"blur": {"mode": {"face": "smudge"}}}, "blur.mode.face: 'smudge' is not one of"),
        ({"blur": {"mode": "smudge"}}, "blur.mode.face: 'smudge' is not one of"),
        ({"blur": {"strength": {"dog": "high"}}}, "unknown object class 'dog'"),
        ({"blur": {"strength": "extreme"}}, "is not one of: low, medium, high"),
        ({"blur": {"solid_fill": "red"}}, "blur.solid_fill: 'red' must be 'mean'"),
        ({"blur": {"solid_fill": [1, 2]}}, "blur.solid_fill: [1, 2] must be"),
        ({"blur": {"solid_fill": [1, 2, 300]}}, "blur.solid_fill"),
        ({"output": {"keep_metadata": "yes"}}, "expected true/false"),
        ({"models": []}, "at least one detector"),
        ({"models": [{"path": "x.onnx"}]}, "needs 'classes'"),
        (
            {"tiling": {"levels": [{"pitch_min_deg": 10, "pitch_max_deg": 0}]}},
            "pitch_min_deg must be <",
        ),
    ],
)
def test_invalid_values_name_the_key(patch, message):
    data = {"models": [MODEL], **patch}
    with pytest.raises(ConfigError) as err:
        RedactConfig.from_dict(data)
    assert message in str(err.value)


def test_hash_is_stable_and_sensitive():
    a = RedactConfig.from_dict({"models": [MODEL]})
    b = RedactConfig.from_dict({"models": [MODEL]})
    c = RedactConfig.from_dict({"models": [MODEL], "blur": {"strength": {"face": "high"}}})
    assert a.hash() == b.hash()
    assert a.hash() != c.hash()
    assert len(a.hash()) == 64


PANO, PHOTO = Projection.EQUIRECTANGULAR, Projection.PERSPECTIVE


def test_projection_hash_leaves_out_only_the_other_projections_tiling():
    base = RedactConfig.from_dict({"models": [MODEL]})
    photo_only = RedactConfig.from_dict(
        {"models": [MODEL], "tiling": {"perspective": {"upscale_below_tiles": 2.0}}}
    )
    pano_only = RedactConfig.from_dict(
        {"models": [MODEL], "tiling": {"levels": [{"name": "n", "max_object_deg": 5.0}]}}
    )
    both = RedactConfig.from_dict({"models": [MODEL], "tiling": {"tile_size": 512}})
    assert photo_only.hash(PANO) == base.hash(PANO)
    assert photo_only.hash(PHOTO) != base.hash(PHOTO)
    assert pano_only.hash(PHOTO) == base.hash(PHOTO)
    assert pano_only.hash(PANO) != base.hash(PANO)
    for cfg in (photo_only, pano_only, both):
        assert cfg.hash() != base.hash()  # the whole config's hash sees every change
    assert both.hash(PANO) != base.hash(PANO) and both.hash(PHOTO) != base.hash(PHOTO)
    assert base.hash(Projection.AUTO) == base.hash() == base.hash(None)


def test_plate_elevation_limits_do_not_outdate_photos():
    def cfg(**pp: object) -> RedactConfig:
        return RedactConfig.from_dict({"models": [MODEL], "postprocess": {"model": "m", **pp}})

    base = cfg()  # the code default: plates vetoed only >= 20 deg above a panorama's horizon
    higher = cfg(veto_min_elevation={"license_plate": 30.0})
    assert higher.hash(PHOTO) == base.hash(PHOTO)  # photos: plates never vetoed either way
    assert higher.hash(PANO) != base.hash(PANO) and higher.hash() != base.hash()
    # ... which on photos is the same as no plate veto at all (0 = never vetoed; maps merge
    # over the defaults, so 0 is how a config removes a class)
    no_plate_veto = cfg(veto_below={"license_plate": 0.0})
    assert no_plate_veto.hash(PHOTO) == base.hash(PHOTO)
    assert no_plate_veto.hash(PANO) != base.hash(PANO)
    # -90: plates vetoed anywhere, photos too; a face setting reaches photos
    anywhere = cfg(veto_min_elevation={"license_plate": -90.0})
    assert anywhere.hash(PHOTO) != base.hash(PHOTO)
    assert cfg(veto_below={"face": 0.01}).hash(PHOTO) != base.hash(PHOTO)
    # faces limited by elevation: no face veto on photos
    faces = cfg(veto_min_elevation={"face": 10.0})
    assert faces.hash(PHOTO) == cfg(veto_below={"face": 0.0, "license_plate": 0.0}).hash(PHOTO)
    assert faces.hash(PHOTO) != base.hash(PHOTO)


def test_the_default_configs_hashes_are_pinned():
    """Every published image's marker records these: a change outdates a whole season. Change
    the pins only for a change that is meant to re-do images, and say so in its note. (A new
    config field must hash as before at its default, as ``precision: fp32`` does.)"""
    from redact.resources import config_path

    cfg = RedactConfig.load(config_path("default.yaml"))
    assert cfg.hash() == "1e888164780c59a3b1677baa1f01090eb6e1131f0c8afb43a5393828407b56d9"
    assert cfg.hash(PANO) == "d8a9afa17bf3af4247c3a3e71db6067c9a0e167e97c097ea856091dd86168e30"
    assert cfg.hash(PHOTO) == "99f3550581ba018dad85275bc7c3411e233021d3be7f149ad8ed2adaf824433f"
    bf16 = RedactConfig.from_dict(
        {"models": [{"name": "m", "backend": "openvino", "precision": "bf16"}]}
    )
    fp32 = RedactConfig.from_dict({"models": [{"name": "m", "backend": "openvino"}]})
    assert bf16.hash() != fp32.hash()  # other arithmetic: hashed


def test_current_hashes_are_three_distinct_hashes():
    cfg = RedactConfig.from_dict({"models": [MODEL]})
    assert cfg.projection_hashes() == {
        "equirectangular": cfg.hash(PANO),
        "perspective": cfg.hash(PHOTO),
    }
    assert cfg.current_hashes() == {cfg.hash(), cfg.hash(PANO), cfg.hash(PHOTO)}
    assert len(cfg.current_hashes()) == 3


def test_extends_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "models:\n  - {path: m.onnx, classes: [face]}\nthresholds:\n  face: {blur: 0.5, review: 0.2, floor: 0.1}\n"
        "  license_plate: {blur: 0.4, review: 0.2, floor: 0.1}\n"
    )
    (tmp_path / "region.yaml").write_text("extends: base.yaml\nthresholds:\n  face: {blur: 0.3}\n")
    cfg = RedactConfig.load(tmp_path / "region.yaml", {"blur": {"strength": {"plate": "high"}}})
    face = cfg.thresholds[ObjectClass.FACE]
    assert (face.blur, face.review, face.floor) == (0.3, 0.2, 0.1)
    assert cfg.thresholds[ObjectClass.LICENSE_PLATE].blur == 0.4
    assert cfg.blur.strength_for(ObjectClass.LICENSE_PLATE).value == "high"
    assert cfg.blur.strength_for(ObjectClass.FACE).value == "medium"  # the default, merged


def test_blur_modes_strengths_and_fill():
    from redact.config import BlurMode, BlurStrength

    d = RedactConfig.from_dict({"models": [MODEL]}).blur
    assert all(d.mode_for(c) is BlurMode.BLUR for c in ObjectClass)
    assert all(d.strength_for(c) is BlurStrength.MEDIUM for c in ObjectClass)
    assert d.solid_fill == "mean"
    one = RedactConfig.from_dict(
        {"models": [MODEL], "blur": {"mode": "pixelate", "strength": "low"}}
    ).blur
    assert all(one.mode_for(c) is BlurMode.PIXELATE for c in ObjectClass)
    assert all(one.strength_for(c) is BlurStrength.LOW for c in ObjectClass)
    per = RedactConfig.from_dict(
        {"models": [MODEL], "blur": {"mode": {"plate": "solid"}, "solid_fill": [0, 0, 0]}}
    ).blur
    assert per.mode_for(ObjectClass.LICENSE_PLATE) is BlurMode.SOLID
    assert per.mode_for(ObjectClass.FACE) is BlurMode.BLUR  # default kept, key by key
    assert per.solid_fill == (0, 0, 0)
    # round trip through the canonical dict (what the config hash sees)
    again = RedactConfig.from_dict(
        {
            **RedactConfig.from_dict(
                {"models": [MODEL], "blur": {"mode": {"plate": "solid"}, "solid_fill": [0, 0, 0]}}
            ).to_dict()
        }
    )
    assert again.blur == per


def test_extends_cycle_and_missing_file(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        RedactConfig.load(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="cannot read config"):
        RedactConfig.load(tmp_path / "nope.yaml")


def test_shipped_configs_load():
    from pathlib import Path

    for path in sorted(Path(__file__).parents[1].glob("configs/**/*.yaml")):
        cfg = RedactConfig.load(path)
        assert cfg.models, path


def test_class_dilate_parsed_and_validated() -> None:
    base = {"models": [{"path": "m.onnx", "classes": ["face"]}]}
    cfg = RedactConfig.from_dict({**base, "blur": {"class_dilate": {"plate": 0.25}}})
    assert cfg.blur.dilate_for(ObjectClass.LICENSE_PLATE) == 0.25
    assert cfg.blur.dilate_for(ObjectClass.FACE) == cfg.blur.dilate
    with pytest.raises(ConfigError, match=r"class_dilate\.license_plate"):
        RedactConfig.from_dict({**base, "blur": {"class_dilate": {"license_plate": 3.0}}})
    with pytest.raises(ConfigError):
        RedactConfig.from_dict({**base, "blur": {"class_dilate": {"person": 0.2}}})


def test_one_source_of_defaults() -> None:
    """The code holds every default; the shipped file adds only the models (the detectors and
    the stage-2 model's name, nothing of its operating point), and a partial
    override keeps the shipped values of every key it does not name (it used to fall back to
    the dataclass field defaults: non-production thresholds)."""
    import yaml

    from redact.cli import load_config

    shipped = load_config(None)
    raw = yaml.safe_load(open(shipped_config_path()))
    assert set(raw) == {"models", "postprocess"} and set(raw["postprocess"]) == {"model"}
    bare = RedactConfig.from_dict({"models": raw["models"], "postprocess": raw["postprocess"]})
    assert bare == shipped and bare.hash() == shipped.hash()
    one = RedactConfig.from_dict({"models": [MODEL], "thresholds": {"face": {"blur": 0.3}}})
    face, plate = one.thresholds[ObjectClass.FACE], one.thresholds[ObjectClass.LICENSE_PLATE]
    assert face.blur == 0.3
    assert (face.review, face.floor) == (
        shipped.thresholds[ObjectClass.FACE].review,
        shipped.thresholds[ObjectClass.FACE].floor,
    )
    assert plate == shipped.thresholds[ObjectClass.LICENSE_PLATE]


def shipped_config_path():
    from redact.cli import DEFAULT_CONFIG

    return DEFAULT_CONFIG
