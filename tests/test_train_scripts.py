"""Tests of the training scripts' helpers (label conversion, splits, projection, registry).

The pure-python parts run in the runtime venv; the ultralytics parts skip without the
``[train]`` extra.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.fixtures.scripts import load_script as _load

tc = _load("_train_common")

VOC = """<annotation><size><width>400</width><height>200</height><depth>3</depth></size>
<object><name>with_mask</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>50</xmax><ymax>60</ymax></bndbox></object>
<object><name>without_mask</name><bndbox><xmin>100</xmin><ymin>0</ymin><xmax>120</xmax><ymax>30</ymax></bndbox></object>
</annotation>"""


def test_parse_voc() -> None:
    w, h, boxes = tc.parse_voc(VOC)
    assert (w, h) == (400, 200)
    assert boxes == [(10.0, 20.0, 50.0, 60.0), (100.0, 0.0, 120.0, 30.0)]


def test_parse_openalpr() -> None:
    f, box, text = tc.parse_openalpr("car.jpg\t935\t362\t99\t49\tYG9X2G\n")
    assert f == "car.jpg" and text == "YG9X2G"
    assert box == (935.0, 362.0, 1034.0, 411.0)
    with pytest.raises(ValueError):
        tc.parse_openalpr("car.jpg\t1\t2")


def test_yolo_roundtrip_and_clip() -> None:
    box = (10.0, 20.0, 50.0, 60.0)
    yolo = tc.xyxy_to_yolo(box, 400, 200)
    assert yolo == pytest.approx((0.075, 0.2, 0.1, 0.2))
    assert tc.yolo_to_xyxy(yolo, 400, 200) == pytest.approx(box)
    assert tc.clip_box((-5, -5, 10, 10), 8, 8) == (0.0, 0.0, 8.0, 8.0)
    assert tc.clip_box((20, 20, 30, 30), 8, 8) is None
    with pytest.raises(ValueError):
        tc.xyxy_to_yolo((20, 20, 30, 30), 8, 8)


def test_format_yolo_labels_drops_tiny_and_outside() -> None:
    text = tc.format_yolo_labels(
        [
            (0, (10, 20, 50, 60)),
            (1, (0, 0, 1, 1)),
            (1, (500, 0, 600, 10)),
            (1, (390, 190, 420, 230)),
        ],
        400,
        200,
    )
    lines = text.splitlines()
    assert lines[0] == "0 0.075000 0.200000 0.100000 0.200000"
    assert len(lines) == 2 and lines[1].startswith("1 ")
    _cls, cx, cy, w, h = (float(v) for v in lines[1].split())
    assert cx + w / 2 == pytest.approx(1.0) and cy + h / 2 == pytest.approx(1.0)


def test_split_dev_is_seeded_disjoint_and_order_free() -> None:
    names = [f"img{i}" for i in range(100)]
    train, dev = tc.split_dev(names, 0.15, seed=3)
    assert len(dev) == 15 and not set(train) & set(dev) and len(train) + len(dev) == 100
    assert tc.split_dev(list(reversed(names)), 0.15, seed=3) == (train, dev)
    assert tc.split_dev(names, 0.15, seed=4)[1] != dev


def test_equirect_direction_roundtrip() -> None:
    x = np.array([0.5, 1000.0, 2000.0, 3999.5])
    y = np.array([10.0, 500.0, 1000.0, 1990.0])
    d = tc.equirect_to_dirs(x, y, 4000, 2000)
    x2, y2 = tc.dirs_to_equirect(d, 4000, 2000)
    np.testing.assert_allclose(x2, x, atol=1e-6)
    np.testing.assert_allclose(y2, y, atol=1e-6)
    # yaw 0 / pitch 0 is the panorama centre, looking down +z
    np.testing.assert_allclose(
        tc.equirect_to_dirs(np.array(2000.0), np.array(1000.0), 4000, 2000), [0, 0, 1], atol=1e-9
    )


def test_project_box_identity_and_clip() -> None:
    view = tc.PinholeView.from_fov(30.0, -10.0, 60.0, 640)
    box, frac = tc.project_box((100, 200, 180, 260), view, view)
    assert box == pytest.approx((100, 200, 180, 260), abs=1e-6) and frac == pytest.approx(1.0)
    # the same box seen from a view turned right lies to the left, partly cut
    right = tc.PinholeView.from_fov(50.0, -10.0, 60.0, 640)
    res = tc.project_box((0, 200, 60, 260), view, right)
    assert res is None or res[1] < 1.0
    behind = tc.PinholeView.from_fov(210.0, 10.0, 60.0, 640)
    assert tc.project_box((300, 300, 340, 340), view, behind) is None


def test_paste_then_render_puts_the_photo_under_its_label() -> None:
    pano = np.zeros((500, 1000, 3), np.uint8)
    photo = np.zeros((100, 100, 3), np.uint8)
    photo[40:60, 40:60] = 255  # a white square "object"
    src = tc.PinholeView(
        yaw_deg=5.0, pitch_deg=-10.0, focal=400.0, width=100, height=100, roll_deg=7.0
    )
    tc.paste_view(pano, photo, src, feather=0.0)
    tile = tc.PinholeView.from_fov(0.0, -5.0, 60.0, 320)
    img = tc.render_view(pano, tile)
    (x1, y1, x2, y2), frac = tc.project_box((40, 40, 60, 60), src, tile)
    assert frac == pytest.approx(1.0)
    inside = img[int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2]
    assert inside.size and inside.mean() > 200
    mask = img[..., 0] > 128
    ys, xs = np.nonzero(mask)
    assert xs.min() >= x1 - 2 and xs.max() <= x2 + 2 and ys.min() >= y1 - 2 and ys.max() <= y2 + 2


def test_upsert_registry_entry_appends_and_replaces(tmp_path: Path) -> None:
    reg = tmp_path / "registry.yaml"
    original = (
        "# keep me\nversion: 1\nmodels:\n  other:\n    uri: a.onnx  # theirs\n    classes: [face]\n"
    )
    reg.write_text(original)
    tc.upsert_registry_entry(
        reg,
        "mine",
        {
            "version": "1.0.3",
            "uri": "${REDACT_CACHE}/t/m.onnx",
            "classes": ["license_plate"],
            "shipped": False,
        },
    )
    text = reg.read_text()
    assert text.startswith(original)
    data = yaml.safe_load(text)
    assert data["models"]["mine"] == {
        "version": "1.0.3",
        "uri": "${REDACT_CACHE}/t/m.onnx",
        "classes": ["license_plate"],
        "shipped": False,
    }
    tc.upsert_registry_entry(
        reg, "mine", {"version": "1.0.4", "uri": "b.onnx", "classes": ["face"]}
    )
    data = yaml.safe_load(reg.read_text())
    assert data["models"]["mine"] == {"version": "1.0.4", "uri": "b.onnx", "classes": ["face"]}
    assert data["models"]["other"]["uri"] == "a.onnx"
    assert reg.read_text().startswith(original)


def test_registry_entries_parse_with_the_project_registry(tmp_path: Path) -> None:
    registry = pytest.importorskip("redact.detection.registry")
    reg = tmp_path / "registry.yaml"
    reg.write_text("version: 1\nmodels:\n")
    tc.upsert_registry_entry(
        reg,
        "m",
        {
            "version": "0.1.0",
            "uri": "m.onnx",
            "sha256": "ab" * 32,
            "classes": ["face", "license_plate"],
            "num_classes": 2,
            "input_size": 640,
            "provenance": "p",
            "license": "AGPL-3.0",
            "card": "cards/m.md",
            "shipped": True,
        },
    )
    spec = registry.ModelRegistry.load(reg)["m"]
    assert spec.num_classes == 2 and spec.shipped and spec.uri == str(tmp_path / "m.onnx")


def test_wheel_metadata(tmp_path: Path) -> None:
    import zipfile

    et = _load("export_teachers")
    whl = tmp_path / "pkg-1.2.3-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr(
            "pkg-1.2.3.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: pkg\nVersion: 1.2.3\nHome-page: https://example.org\n"
            "Classifier: License :: OSI Approved :: GNU Affero General Public License v3 or later (AGPLv3+)\n\n",
        )
    version, lic, home = et.wheel_metadata(whl)
    assert version == "1.2.3" and "Affero" in lic and home == "https://example.org"


def test_build_data_crop_and_composite_labels() -> None:
    bt = _load("build_train_data")
    rng = np.random.default_rng(0)
    photo = np.full((200, 300, 3), 40, np.uint8)
    photo[80:120, 100:140] = 230
    sample = bt.Sample("s", Path("s.jpg"), [(0, (100.0, 80.0, 140.0, 120.0))])
    crop, labels = bt.pick_crop(sample, photo, rng)
    assert labels and all(
        0 <= b[0] < b[2] <= crop.shape[1] and 0 <= b[1] < b[3] <= crop.shape[0] for _, b in labels
    )
    pano = np.full((1000, 2000, 3), 90, np.uint8)
    for _ in range(5):
        img, out = bt.make_composite(pano, [(sample, photo)], rng, tile=320)
        assert img.shape == (320, 320, 3)
        for cls, (x1, y1, x2, y2) in out:
            assert cls == 0 and 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 320


@pytest.mark.parametrize(
    ("sizes", "offsets"),
    [
        # photo (h, w) per cell -> top-left of each photo in the 640 grid (native scale)
        ([(240, 320)], [(0, 0)]),
        (
            [(240, 320), (320, 240), (100, 100), (320, 320)],
            [(0, 0), (320, 0), (0, 320), (320, 320)],
        ),
    ],
)
def test_pack_grid_keeps_native_scale_and_shifts_labels(sizes, offsets) -> None:
    bt = _load("build_train_data")
    items = []
    for k, (h, w) in enumerate(sizes):
        img = np.full((h, w, 3), 10 + 40 * k, np.uint8)
        items.append(
            (img, [(1, (5.0, 6.0, 25.0, 16.0)), (0, (w - 10.0, h - 10.0, w + 30.0, h + 5.0))])
        )
    grid, labels = bt.pack_grid(items)
    assert grid.shape == (640, 640, 3)
    by_cell = [labels[2 * k : 2 * k + 2] for k in range(len(items))]
    for (h, w), (ox, oy), k, cell in zip(sizes, offsets, range(len(items)), by_cell, strict=True):
        assert grid[oy + 1, ox + 1, 0] == 10 + 40 * k  # the photo's pixels, not resized
        assert cell[0] == (1, (ox + 5.0, oy + 6.0, ox + 25.0, oy + 16.0))
        assert cell[1] == (0, (ox + w - 10.0, oy + h - 10.0, ox + w, oy + h))  # clipped
    if len(items) == 1:
        assert (grid[:, 320:] == 114).all()  # empty cells are padding
    with pytest.raises(ValueError):
        bt.pack_grid([])


def test_pack_grid_shrinks_a_photo_larger_than_a_cell() -> None:
    bt = _load("build_train_data")
    img = np.zeros((640, 480, 3), np.uint8)
    grid, labels = bt.pack_grid([(img, [(1, (40.0, 80.0, 120.0, 160.0))])])
    assert labels == [(1, (20.0, 40.0, 60.0, 80.0))]  # scale 0.5
    assert (grid[:320, :240] == 0).all() and (grid[:320, 240:320] == 114).all()


def test_train_detector_imports_with_ultralytics() -> None:
    pytest.importorskip("ultralytics")
    td = _load("train_detector")
    assert td.default_out("0.3.0").name == "redact-faceplate-yolov8n-0.3.0.onnx"


def test_train_detector_never_trains_over_a_committed_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every shipped file is pinned by sha256 in the registry: an existing --out is refused
    (before ultralytics is imported), and --version has no default that could name one."""
    td = _load("train_detector")
    with pytest.raises(SystemExit):
        td.main([])
    assert "--version" in capsys.readouterr().err
    assert td.default_out("0.2.1").is_file()
    with pytest.raises(SystemExit):
        td.main(["--version", "0.2.1"])
    assert "redact-faceplate-yolov8n-0.2.1.onnx exists" in capsys.readouterr().err


def test_onnx_init_reproduces_the_teacher_exactly(tmp_path: Path) -> None:
    """A faceghost-initialised 2-class checkpoint scores faces exactly as the teacher's ONNX."""
    pytest.importorskip("ultralytics")
    teacher = tc.cache_dir() / "teachers" / "faceghost-yolov8n-face.onnx"
    if not teacher.is_file():
        pytest.skip(f"{teacher} not fetched (scripts/fetch_teachers.py)")
    oi = _load("onnx_init")
    out = oi.build_init_checkpoint(teacher, tmp_path / "init.pt")  # raises if parity fails
    import torch

    model = torch.load(out, weights_only=False)["model"]
    assert model.names == {0: "face", 1: "license_plate"}
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(torch.allclose(b.running_mean.float(), torch.zeros(1)) for b in bns)


def test_onnx_init_from_the_shipped_model_keeps_both_classes(tmp_path: Path) -> None:
    """Continuing from the project's own 2-class ONNX copies every class row (parity on both
    class scores is checked inside build_init_checkpoint)."""
    pytest.importorskip("ultralytics")
    oi = _load("onnx_init")
    src = tc.REPO / "models" / "redact-faceplate-yolov8n-0.2.1.onnx"
    assert oi.onnx_class_names(src) == ("face", "license_plate")
    out = oi.build_init_checkpoint(src, tmp_path / "init.pt")
    import torch

    model = torch.load(out, weights_only=False)["model"].float()
    prior = model.model[-1].cv3[0][2].bias.detach()
    assert prior.shape == (2,) and abs(float(prior[1]) - float(prior[0])) > 1e-6


def test_apply_teacher_never_greys_over_a_label() -> None:
    """Teacher boxes: a strong one becomes a label; weak ones are greyed out unless they
    overlap a given label or one added in the same pass."""
    bt = _load("build_train_data")
    img = np.zeros((200, 400, 3), np.uint8)
    given = [(1, (10.0, 10.0, 60.0, 30.0))]
    hits = [
        ((200.0, 100.0, 260.0, 120.0), 0.9),  # -> pseudo label
        ((250.0, 110.0, 270.0, 125.0), 0.3),  # weak, overlaps the new label: kept
        ((20.0, 12.0, 30.0, 20.0), 0.3),  # weak, inside the given plate: kept
        ((300.0, 150.0, 340.0, 170.0), 0.3),  # weak, alone: greyed
    ]

    def teacher(_img, _conf):
        return hits

    extra, grey = bt.apply_teacher(img, given, teacher, 0.5, 0.1)
    assert extra == [(1, (200.0, 100.0, 260.0, 120.0))]
    assert grey == [(300.0, 150.0, 340.0, 170.0)]


def test_mine_apply_teacher_pseudo_positive_ignore_and_untouched() -> None:
    """A face candidate the teacher confirms strongly becomes a pseudo positive (if stage 1
    scored it >= PSEUDO_STAGE1), a weakly confirmed would-be negative becomes IGNORE, plates
    and labelled positives are left alone, far candidates keep their label."""
    mc = _load("mine_candidates")
    F, P = mc.FACE, mc.PLATE
    xyxy = np.array(
        [
            [10, 10, 30, 30],  # strong teacher hit, stage 1 0.3 -> pseudo positive
            [100, 10, 120, 30],  # strong teacher hit but stage 1 0.02 -> ignore (not pseudo)
            [200, 10, 220, 30],  # weak teacher hit, negative -> ignore
            [300, 10, 320, 30],  # no teacher nearby: stays a negative
            [10, 100, 30, 120],  # a plate under a strong teacher face: untouched
            [400, 10, 420, 30],  # a labelled positive: stays positive, not pseudo
        ],
        np.float64,
    )
    cls = np.array([F, F, F, F, P, F])
    stage1 = np.array([0.3, 0.02, 0.3, 0.3, 0.3, 0.3])
    assert mc.PSEUDO_STAGE1 == 0.03  # the job's floor: everything it records may be a pseudo
    lab = np.array([0, 0, 0, 0, 0, 1], np.int8)
    tb = np.array(
        [
            [11, 11, 29, 29],
            [101, 11, 119, 29],
            [201, 11, 219, 29],
            [10, 100, 30, 120],
            [400, 10, 420, 30],
        ],
        np.float64,
    )
    ts = np.array([0.9, 0.9, 0.25, 0.9, 0.9])
    new, pseudo = mc.apply_teacher(lab, xyxy, cls, stage1, tb, ts, None)
    assert new.tolist() == [1, -1, -1, 0, 0, 1]
    assert pseudo.tolist() == [True, False, False, False, False, False]
    assert lab.tolist() == [0, 0, 0, 0, 0, 1]  # input not mutated
    # no teacher detections: nothing changes
    same, none = mc.apply_teacher(lab, xyxy, cls, stage1, np.zeros((0, 4)), np.zeros(0), None)
    assert same.tolist() == lab.tolist() and not none.any()


def test_mine_apply_teacher_matches_across_the_seam() -> None:
    mc = _load("mine_candidates")
    xyxy = np.array([[990.0, 10, 1010, 30]])  # unwrapped past x = 1000
    new, pseudo = mc.apply_teacher(
        np.array([0], np.int8),
        xyxy,
        np.array([mc.FACE]),
        np.array([0.4]),
        np.array([[-10.0, 10, 10, 30]]),
        np.array([0.8]),
        1000.0,
    )
    assert new.tolist() == [1] and pseudo.tolist() == [True]


def test_rescorer_operating_table_counts_lost_positives_and_removed_negatives() -> None:
    op = _load("rescorer_operating_point")
    d = {
        "label": np.array([1, 1, 0, 0, 1]),
        "cls": np.array([0, 0, 0, 0, 1]),
        "stage1": np.array([0.6, 0.08, 0.07, 0.3, 0.05]),
        "weight": np.array([1.0, 2.0, 1.0, 3.0, 1.0]),
        "set": np.array(["a", "a", "a", "b", "a"]),
        "pseudo": np.array([False, True, False, False, False]),
    }
    s2 = np.array([0.01, 0.02, 0.01, 0.01, 0.9])
    rows = op.operating_table(d, s2, keeps=(0.5,), thresholds=(0.04,))
    by = {(r["group"], r["class"]): r for r in rows}
    face = by[("all", "face")]
    # the 0.6 face keeps max(s1, s2); the 0.08 one falls to 0.02 < 0.04: lost (weight 2 of 3)
    assert face["lost"] == 1 and face["positives"] == 2
    assert abs(face["lost_weight_share"] - 2 / 3) < 1e-9
    assert face["neg_weight_removed"] == 1.0  # both face negatives fall below 0.04
    assert by[("pseudo", "face")]["lost"] == 1
    assert by[("all", "license_plate")]["lost"] == 0
    assert ("near", "face") not in by  # no image names: no near group
    near = op.operating_table(
        {
            **d,
            "image_name": np.array(["comp/near_001.jpg", "comp/comp_001.jpg", "a/x", "b/y", "a/z"]),
        },
        s2,
        keeps=(0.5,),
        thresholds=(0.04,),
    )
    near_face = {(r["group"], r["class"]): r for r in near}[("near", "face")]
    assert near_face["positives"] == 1 and near_face["lost"] == 0  # only the 0.6 face
    # keep = 0.05: every candidate keeps its stage-1 score, nothing is lost or removed
    rows = op.operating_table(d, s2, keeps=(0.05,), thresholds=(0.04,))
    face = {(r["group"], r["class"]): r for r in rows}[("all", "face")]
    assert face["lost"] == 0 and face["neg_weight_removed"] == 0.0


def test_rescorer_operating_table_area_rule_shields_small_boxes() -> None:
    op = _load("rescorer_operating_point")
    d = {
        "label": np.array([1, 0, 0]),
        "cls": np.array([0, 0, 0]),
        "stage1": np.array([0.08, 0.07, 0.07]),
        "weight": np.array([1.0, 1.0, 1.0]),
        "set": np.array(["a", "a", "a"]),
        # a 10x10 positive and negative, a 40x40 negative, in 100x100 images
        "xyxy": np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 40, 40]], np.float64),
        "image_px": np.array([10_000, 10_000, 10_000]),
    }
    s2 = np.array([0.01, 0.01, 0.01])
    rows = op.operating_table(d, s2, keeps=(0.5,), thresholds=(0.04,), veto_min_areas=(0.0, 0.05))
    by = {(r["veto_min_area"], r["group"], r["class"]): r for r in rows}
    off, on = by[(0.0, "all", "face")], by[(0.05, "all", "face")]
    assert off["lost"] == 1 and off["neg_weight_removed"] == 1.0
    # 100 px < 5 % of 10,000 px: the small ones keep stage 1; only the 40x40 negative goes
    assert on["lost"] == 0 and on["neg_weight_removed"] == 0.5
    # veto_below under every stage-2 score (0.01): nothing is vetoed, nothing lost or removed
    sure = op.operating_table(d, s2, keeps=(0.5,), thresholds=(0.04,), veto_belows=(0.005,))
    face = {(r["group"], r["class"]): r for r in sure}[("all", "face")]
    assert face["lost"] == 0 and face["neg_weight_removed"] == 0.0 and face["veto_below"] == 0.005
    # veto_below for plates only: the face rows are never vetoed
    plates = op.operating_table(d, s2, keeps=(0.5,), thresholds=(0.04,), veto_classes=(1,))
    face = {(r["group"], r["class"]): r for r in plates}[("all", "face")]
    assert face["lost"] == 0 and face["neg_weight_removed"] == 0.0


def test_mine_teacher_faces_keys_are_set_prefixed_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    import redact.evaluation.dataset as dataset

    mc = _load("mine_candidates")
    rows = {
        "maskon": [
            SimpleNamespace(
                relative_path="a/x.jpg",
                det_class=np.array([mc.FACE, mc.PLATE]),
                det_xyxy=np.array([[0, 0, 10, 10], [5, 5, 9, 9]], np.float64),
                det_stage1=np.array([0.9, 0.8]),
            )
        ],
        "uc3m": [
            SimpleNamespace(
                relative_path="x.jpg",
                det_class=np.array([mc.PLATE]),
                det_xyxy=np.array([[1, 1, 4, 4]], np.float64),
                det_stage1=np.array([0.7]),
            )
        ],
    }
    for name in rows:
        (tmp_path / "teacher_output" / name / "_manifest").mkdir(parents=True)
    monkeypatch.setattr(dataset, "load_manifest_images", lambda path: rows[Path(path).parent.name])
    out = mc.teacher_faces(tmp_path)
    assert sorted(out) == ["maskon/a/x.jpg", "uc3m/x.jpg"]
    boxes, scores = out["maskon/a/x.jpg"]
    assert boxes.tolist() == [[0, 0, 10, 10]] and scores.tolist() == [0.9]  # faces only
    assert out["uc3m/x.jpg"][0].shape == (0, 4)
    (tmp_path / "teacher_output" / "_manifest").mkdir()  # the old one-job layout
    with pytest.raises(SystemExit, match="one-job"):
        mc.teacher_faces(tmp_path)


def test_rescorer_operating_table_applies_the_elevation_rule() -> None:
    from redact.classes import ObjectClass

    op = _load("rescorer_operating_point")
    # three plate negatives stage 2 scores 0.01, 1000 px tall images: one ends 36 deg above a
    # panorama's horizon, one below it, one on a photo
    d = {
        "label": np.array([0, 0, 0]),
        "cls": np.array([1, 1, 1]),
        "stage1": np.array([0.07, 0.07, 0.07]),
        "weight": np.array([1.0, 1.0, 1.0]),
        "set": np.array(["a", "a", "a"]),
        "xyxy": np.array([[0, 100, 20, 300], [0, 600, 20, 620], [0, 100, 20, 300]], np.float64),
        "image_px": np.array([2_000_000, 2_000_000, 2_000_000]),
        "image_h": np.array([1000, 1000, 1000]),
        "equirect": np.array([True, True, False]),
    }
    s2 = np.array([0.01, 0.01, 0.01])
    kw = {"keeps": (0.5,), "thresholds": (0.04,), "veto_belows": (0.005,)}
    rule = {ObjectClass.LICENSE_PLATE: 20.0}
    # veto_below 0.005: stage 2's 0.01 is not low enough to veto, nothing is removed
    plain = {(r["group"], r["class"]): r for r in op.operating_table(d, s2, **kw)}
    assert plain[("all", "license_plate")]["neg_weight_removed"] == 0.0
    kw["veto_belows"] = (1.0,)  # any score vetoes; without the rule all three go
    plain = {(r["group"], r["class"]): r for r in op.operating_table(d, s2, **kw)}
    assert plain[("all", "license_plate")]["neg_weight_removed"] == 1.0
    ruled = op.operating_table(d, s2, veto_min_elevation=rule, **kw)
    plate = {(r["group"], r["class"]): r for r in ruled}[("all", "license_plate")]
    assert abs(plate["neg_weight_removed"] - 1 / 3) < 1e-9  # only the one high above
    anywhere = op.operating_table(d, s2, veto_min_elevation={ObjectClass.LICENSE_PLATE: -90}, **kw)
    plate = {(r["group"], r["class"]): r for r in anywhere}[("all", "license_plate")]
    assert plate["neg_weight_removed"] == 1.0
    old = {k: v for k, v in d.items() if k not in ("image_h", "equirect")}
    with pytest.raises(ValueError, match="image_h"):
        op.operating_table(old, s2, veto_min_elevation=rule, **kw)


def test_mine_ground_view_is_below_the_horizon_in_pinhole_pitch() -> None:
    """PinholeView's pitch is positive below the horizon; objects lower than a 2.5 m camera
    must come out positive (the sign was flipped before 2026-12-02)."""
    mc = _load("mine_candidates")
    rng = np.random.default_rng(0)
    for cls in (mc.FACE, mc.PLATE):
        for _ in range(50):
            pitch, deg = mc.ground_view(cls, rng)
            assert 0 < pitch < 60 and 0 < deg < 15


def test_mine_compose_puts_ground_faces_below_and_posters_around_the_horizon(
    tmp_path: Path,
) -> None:
    import cv2

    mc = _load("mine_candidates")
    face = np.full((60, 50, 3), 90, np.uint8)
    cv2.rectangle(face, (15, 15), (35, 45), (200, 180, 160), -1)
    path = tmp_path / "f.png"
    cv2.imwrite(str(path), face)
    pano = np.zeros((1000, 2000, 3), np.uint8)
    faces = [(path, (15.0, 15.0, 35.0, 45.0))]
    lats = {}
    for share in (1.0, 0.0):
        comp, labels = mc.compose(
            pano, faces, [], np.random.default_rng(3), n_faces=8, n_plates=0, poster_share=share
        )
        assert comp.shape == pano.shape and len(labels) >= 6
        lats[share] = [90.0 - (b[1] + b[3]) / 2 * 180.0 / 1000 for _, b in labels]
    assert all(-8 < lat < 28 for lat in lats[1.0]), lats[1.0]  # posters: -5..+25 deg
    assert sum(lat < 0 for lat in lats[0.0]) >= len(lats[0.0]) / 2, lats[0.0]  # ground: below
    # printed: the face box moves with the crop onto the sheet, inside it
    sheet, box = mc.make_poster(face, (15.0, 15.0, 35.0, 45.0), np.random.default_rng(1))
    assert sheet.shape[0] >= 60 and sheet.shape[1] >= 50
    assert 0 <= box[0] < box[2] <= sheet.shape[1] and 0 <= box[1] < box[3] <= sheet.shape[0]
    assert box[2] - box[0] == 20 and box[3] - box[1] == 30


def test_mine_near_plates_lie_well_below_the_horizon_and_are_narrowed(tmp_path: Path) -> None:
    import cv2

    mc = _load("mine_candidates")
    rng = np.random.default_rng(0)
    views = [mc.near_plate_view(rng) for _ in range(200)]
    assert all(9 < p < 57 and 0.5 < deg < 7 and 0.3 < sq <= 1 for p, deg, sq in views)
    plate = np.full((80, 160, 3), 60, np.uint8)
    cv2.rectangle(plate, (40, 30), (120, 50), (240, 240, 240), -1)
    path = tmp_path / "p.png"
    cv2.imwrite(str(path), plate)
    pano = np.zeros((1000, 2000, 3), np.uint8)
    plates = [(path, (40.0, 30.0, 120.0, 50.0))]
    aspect = {}
    for near in (False, True):
        _, labels = mc.compose(
            pano, [], plates, np.random.default_rng(5), n_faces=0, n_plates=8, near_plates=near
        )
        assert len(labels) >= 6 and all(c == mc.PLATE for c, _ in labels)
        lats = [90.0 - (b[1] + b[3]) / 2 * 180.0 / 1000 for _, b in labels]
        if near:
            assert all(-60 < lat < -7 for lat in lats), lats
        aspect[near] = float(np.median([(b[2] - b[0]) / (b[3] - b[1]) for _, b in labels]))
    assert aspect[True] < aspect[False]  # oblique: narrower boxes


def test_veto_area_cost_blurred_share_of_boxes_and_ellipses() -> None:
    vc = _load("veto_area_cost")
    shape = (1000, 2000)
    box = np.array([[400, 300, 800, 500]], np.float64)  # 400x200 px, dilated 0.5: 800x400
    plate = vc.blurred_share(box, np.array([False]), shape, 0.5)
    assert abs(plate - 800 * 400 / (1000 * 2000)) < 1e-9
    face = vc.blurred_share(box, np.array([True]), shape, 0.5)
    assert abs(face / plate - np.pi / 4) < 0.05  # the ellipse inside that box
    assert vc.blurred_share(box, np.array([False]), shape, 0.0) < plate / 3
    assert vc.blurred_share(np.zeros((0, 4)), np.zeros(0, bool), shape, 0.5) == 0.0
    # overlapping boxes count once
    two = vc.blurred_share(np.repeat(box, 2, axis=0), np.array([False, False]), shape, 0.5)
    assert two == plate


def test_mine_runs_stage1_alone_for_candidates_and_teacher(tmp_path: Path) -> None:
    """The default config runs stage 2; mining must not (it would mine fused scores)."""
    from redact.cli import load_config

    mc = _load("mine_candidates")
    assert load_config(None).postprocess.enabled  # the premise: the default rescores
    assert not load_config(str(mc.STAGE1_CONFIG)).postprocess.enabled
    teacher = load_config(str(mc.teacher_config(tmp_path, "centerface")))
    assert not teacher.postprocess.enabled and teacher.models[0].name == "centerface"


def test_mine_teacher_runs_one_job_per_set_and_skips_finished_sets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mc = _load("mine_candidates")
    labels = {}
    for set_name, n in (("maskon", 2), ("comp", 1), ("openalpr", 1), ("bg", 1)):
        for i in range(n):
            rel = f"{set_name}/{i}.jpg"
            (tmp_path / "input" / set_name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "input" / rel).write_bytes(b"x")
            labels[rel] = {"set": set_name, "boxes": []}
    (tmp_path / "teacher_output" / "bg" / "_manifest").mkdir(parents=True)  # already done
    calls: list[tuple[Path, Path]] = []
    monkeypatch.setattr(mc, "redact_run", lambda inp, out, cfg: calls.append((inp, out)))
    mc.run_teacher(tmp_path, labels, "centerface")
    assert [(i.name, o.name) for i, o in calls] == [("maskon", "maskon"), ("comp", "comp")]
    assert sorted(p.name for p in (tmp_path / "teacher_input" / "maskon").iterdir()) == [
        "0.jpg",
        "1.jpg",
    ]
    assert not (tmp_path / "teacher_input" / "openalpr").exists()  # not a teacher set


def test_mine_stage1_runs_one_job_per_set_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mc = _load("mine_candidates")
    labels = {
        f"{s}/{i}.jpg": {"set": s, "boxes": []} for s in ("uc3m", "bg", "comp") for i in (0, 1)
    }
    (tmp_path / "output" / "bg" / "_manifest").mkdir(parents=True)  # finished before a stop
    calls: list[tuple[Path, Path, str]] = []
    monkeypatch.setattr(mc, "redact_run", lambda inp, out, cfg: calls.append((inp, out, cfg)))
    mc.run_stage1(tmp_path, labels, "s1.yaml")
    assert calls == [
        (tmp_path / "input" / s, tmp_path / "output" / s, "s1.yaml") for s in ("comp", "uc3m")
    ]


def test_mine_per_set_rows_refuses_the_one_job_layout(tmp_path: Path) -> None:
    mc = _load("mine_candidates")
    assert mc.per_set_rows(tmp_path / "output") == []
    (tmp_path / "output" / "_manifest").mkdir(parents=True)
    with pytest.raises(SystemExit, match="one-job run"):
        mc.per_set_rows(tmp_path / "output")


def test_veto_area_cost_parses_one_value_or_one_per_class() -> None:
    from redact.classes import ObjectClass

    vc = _load("veto_area_cost")
    both = [ObjectClass.FACE, ObjectClass.LICENSE_PLATE]
    assert vc.parse_veto("0.005", both) == dict.fromkeys(both, 0.005)
    assert vc.parse_veto("0.005", [ObjectClass.FACE]) == {ObjectClass.FACE: 0.005}
    assert vc.parse_veto("face=0.02/license_plate=0.002", [ObjectClass.FACE]) == {
        ObjectClass.FACE: 0.02,
        ObjectClass.LICENSE_PLATE: 0.002,
    }
    with pytest.raises(ValueError):
        vc.parse_veto("face=x", both)
    for bad in ("1.5", "face=-0.1", "nan"):
        with pytest.raises(ValueError, match="not a score"):
            vc.parse_veto(bad, both)


def test_resample_stage1_redraws_score_and_logit_of_a_share_of_rows_only() -> None:
    tp = _load("train_postprocess")
    rng = np.random.default_rng(0)
    feats = np.full((4000, 22), 0.5, np.float32)
    feats[:, 1], feats[:, 2] = 0.9, np.log(0.9 / 0.1)
    out = tp.resample_stage1(feats, rng, 0.25)
    changed = out[:, 1] != np.float32(0.9)
    assert 0.2 < changed.mean() < 0.3
    assert ((out[changed, 1] >= 0.03) & (out[changed, 1] < 1)).all()
    np.testing.assert_allclose(out[:, 2], np.log(out[:, 1] / (1 - out[:, 1])), atol=1e-4)
    np.testing.assert_array_equal(np.delete(out, [1, 2], axis=1), np.delete(feats, [1, 2], axis=1))
    assert feats[0, 1] == np.float32(0.9)  # the input is not modified
    np.testing.assert_array_equal(tp.resample_stage1(feats, rng, 0.0), feats)
