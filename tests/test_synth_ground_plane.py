"""scripts/synth_pano_recall.py: the street-camera geometry that sizes ground-plane faces."""

from __future__ import annotations

import math

import pytest

from tests.fixtures.scripts import load_script

s = load_script("synth_pano_recall")


@pytest.mark.parametrize(
    ("pitch", "camera", "face", "height", "expected_deg"),
    [
        # 0.9 m below the camera at 30 deg down: slant 1.8 m; 0.18 m face -> 5.72 deg
        (-30.0, 2.5, 1.6, 0.18, math.degrees(2 * math.atan(0.09 / 1.8))),
        # straight down 1 m: slant 1 m
        (-90.0, 2.0, 1.0, 0.2, math.degrees(2 * math.atan(0.1))),
    ],
)
def test_ground_plane_face_table(
    pitch: float, camera: float, face: float, height: float, expected_deg: float
) -> None:
    assert s.ground_plane_face(pitch, camera, face, height) == pytest.approx(expected_deg)


def test_ground_plane_faces_grow_away_from_the_horizon_and_with_a_lower_camera() -> None:
    sizes = [s.ground_plane_face(p, 2.5, 1.5) for p in (-2.0, -10.0, -20.0, -40.0, -80.0)]
    assert sizes == sorted(sizes) and sizes[0] < 0.5 < 10 < sizes[-1]
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
