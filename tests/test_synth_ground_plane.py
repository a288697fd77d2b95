"""scripts/synth_pano_recall.py: the street-camera geometry that sizes ground-plane faces."""

from __future__ import annotations

import math

import pytest

from tests.fixtures.scripts import load_script

s = load_script("synth_pano_recall")


@pytest.mark.parametrize(
    ("pitch", "camera", "face", "height", "expected_deg"),
    [
        # 0.9 m below the camera at 30 deg down: slant 1.8 m; 0.18 m upright face seen
        # foreshortened by cos 30 -> 4.96 deg
        (-30.0, 2.5, 1.6, 0.18, math.degrees(2 * math.atan(0.09 * math.cos(math.pi / 6) / 1.8))),
        # nearly straight down: an upright face is seen edge-on
        (-89.999, 2.0, 1.0, 0.2, 0.0),
    ],
)
def test_ground_plane_face_table(
    pitch: float, camera: float, face: float, height: float, expected_deg: float
) -> None:
    assert s.ground_plane_face(pitch, camera, face, height) == pytest.approx(expected_deg, abs=1e-3)


def test_ground_plane_faces_grow_away_from_the_horizon_and_with_a_lower_camera() -> None:
    sizes = [s.ground_plane_face(p, 2.5, 1.5) for p in (-2.0, -10.0, -20.0, -40.0)]
    assert sizes == sorted(sizes) and sizes[0] < 0.5 < 5 < sizes[-1]
    # past -45 deg the object gets closer but is seen ever more from above (sin p cos p)
    assert s.ground_plane_face(-80.0, 2.5, 1.5) < s.ground_plane_face(-45.0, 2.5, 1.5)
    assert s.ground_plane_face(-20.0, 2.0, 1.5) > s.ground_plane_face(-20.0, 3.0, 1.5)


@pytest.mark.parametrize(
    ("pitch", "camera", "face"), [(0.0, 2.5, 1.5), (5.0, 2.5, 1.5), (-10.0, 1.5, 1.6)]
)
def test_ground_plane_face_rejects_faces_not_below_the_camera(
    pitch: float, camera: float, face: float
) -> None:
    with pytest.raises(ValueError):
        s.ground_plane_face(pitch, camera, face)


def test_pinhole_pitch_is_positive_below_the_horizon() -> None:
    import numpy as np
    from _train_common import PinholeView, dirs_to_equirect

    view = PinholeView(0.0, 30.0, 500.0, 100, 100)
    _, y = dirs_to_equirect(view.pixels_to_dirs(np.array([50.0]), np.array([50.0])), 4000, 2000)
    assert y[0] == pytest.approx(1000 + 2000 * 30 / 180)  # latitude -30: below the equator


def test_compose_puts_ground_plane_faces_at_the_drawn_pitch(tmp_path) -> None:
    """The pasted boxes lie below the horizon, at the pitches drawn (sign of the view)."""
    import cv2
    import numpy as np

    crop = np.full((64, 64, 3), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "f.png"), crop)
    faces = [(tmp_path / "f.png", (16.0, 16.0, 48.0, 48.0))]
    pano = np.zeros((1000, 2000, 3), np.uint8)
    out, boxes = s.compose(pano, faces, 0, 0, 6, np.random.default_rng(0), ground=(-30.0, -20.0))
    assert len(boxes) == 6 and out.shape == pano.shape and out.any()
    for _x1, y1, _x2, y2 in boxes:
        lat = 90.0 - (y1 + y2) / 2 / 1000 * 180.0
        assert -32.0 < lat < -18.0, lat
