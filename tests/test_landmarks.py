"""Landmark mouth crops (ROI mode 'landmarks', and 'auto' when dlib is installed): geometry, fallbacks, install checks."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from conftest import has_package

import avsrctl
from avsrctl.data import landmarks as L
from avsrctl.data.media import load_video
from avsrctl.data.roi import apply_roi, check_mode, crop_method, track_mouth
from avsrctl.errors import UsageError

SAMPLES = Path(avsrctl.__file__).parent / "samples"
requires_landmarks = pytest.mark.skipif(
    not (has_package("dlib") and has_package("face_recognition_models")),
    reason="dlib-bin and face-recognition-models (`make weights`) not installed",
)


def face(open_px: float = 0.0, *, roll_deg: float = 0.0, scale: float = 1.0, at=(180.0, 150.0)) -> np.ndarray:
    """68 points of a frontal face (lips 50 px wide at scale 1), the jaw dropped by open_px, rolled and moved."""
    p = np.zeros((68, 2))
    p[36], p[45] = (-45, -60), (45, -60)  # outer eye corners
    p[30] = (0, -20)  # nose tip
    # lips in dlib's order: from the left corner along the upper lip (51 its top), then back along the lower (57)
    p[48:60] = [(-25 * np.cos(a), -10 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)]
    p[60:68] = [(-18 * np.cos(a), -4 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)]
    p[48:68, 1] += 30
    lower = p[:, 1] > 30  # the lower lip's points move down with the jaw
    lower[:48] = False
    p[lower, 1] += open_px
    t = np.deg2rad(roll_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return (p * scale) @ rot.T + np.asarray(at)


def to_crop(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def test_crop_undoes_roll_scales_to_the_lips_and_puts_the_mouth_where_training_faces_have_it():
    points = np.stack([face(roll_deg=12, scale=1.6)] * 9)  # (T, 68, 2)
    maps = L.mouth_frames(points, 96)
    assert maps.shape == (9, 2, 3)
    crop = to_crop(maps[4], points[4])
    left, right = crop[48], crop[54]
    assert abs(left[1] - right[1]) < 1e-6  # the lip corners are level again
    assert np.linalg.norm(right - left) == pytest.approx(L.LIP_WIDTH * 96)
    np.testing.assert_allclose(crop[48:68].mean(0), [48, L.MOUTH_Y * 96], atol=1e-6)


def test_crop_follows_the_head_not_the_jaw():
    # The jaw opens and closes while the head stays: every frame gets the same crop, so the lips'
    # movement stays in the crop. A crop centred on the lips would move down as the mouth opens.
    opening = [0, 4, 10, 16, 10, 4, 0, 8, 14, 8, 0]
    points = np.stack([face(o) for o in opening])
    maps = L.mouth_frames(points, 96)
    np.testing.assert_allclose(maps, np.broadcast_to(maps[0], maps.shape), atol=1e-9)
    lower_lip = [to_crop(m, p)[57, 1] for m, p in zip(maps, points)]
    assert lower_lip[3] - lower_lip[0] == pytest.approx(16 * maps[0][0, 0])


def test_head_motion_is_followed_and_jitter_smoothed():
    rng = np.random.default_rng(0)
    path = np.stack([np.linspace(150, 190, 30), np.full(30, 140.0)], 1)  # the head moves 40 px right
    points = np.stack([face(at=xy) for xy in path]) + rng.normal(0, 1.5, (30, 68, 2))
    maps = L.mouth_frames(points, 96)
    centres = np.stack([to_crop(m, face(at=xy))[48:68].mean(0) for m, xy in zip(maps, path)])
    assert np.abs(centres[2:-2] - [48, L.MOUTH_Y * 96]).max() < 2.5  # the mouth stays put in the crop
    raw = np.abs(np.diff(points[:, 30], axis=0) - np.diff(path, axis=0)).mean()
    smooth = np.abs(np.diff(maps[:, :, 2], axis=0) + np.diff(path, axis=0) * maps[0, 0, 0]).mean()
    assert smooth < 0.5 * raw * maps[0, 0, 0]  # the running median and mean take out most of the jitter


def test_implausible_fit_is_refused():
    points = np.stack([face()] * 4)
    faces = np.tile([130.0, 90.0, 140.0, 140.0], (4, 1))  # lips 50 px in a 140 px face box
    assert L.plausible(points, faces)
    assert not L.plausible(points, faces * [1, 1, 6, 6])  # a face box six times too wide
    assert not L.plausible(points, faces * [1, 1, 0.5, 0.5])


def test_missing_model_is_a_usage_error_with_the_install_hint(monkeypatch, tmp_path):
    monkeypatch.setenv(L.MODEL_ENV, str(tmp_path / "nope.dat"))
    with pytest.raises(UsageError, match="AVSRCTL_LANDMARK_MODEL=.*nope.dat: no such file"):
        L.model_path()
    monkeypatch.delenv(L.MODEL_ENV)
    real_find_spec = L.importlib.util.find_spec
    monkeypatch.setattr(
        L.importlib.util, "find_spec", lambda name: None if name == "face_recognition_models" else real_find_spec(name)
    )
    with pytest.raises(UsageError, match="needs dlib's 68-point face landmark model") as e:
        check_mode("landmarks")
    assert "avsrctl[landmarks]" in e.value.hint
    assert not L.available() and crop_method("auto") == "haar" and crop_method("landmarks") == "landmarks"


@lru_cache(maxsize=1)
def _sample() -> np.ndarray:
    return load_video(SAMPLES / "grid_bbaf2n.mpg")  # (75, 288, 360, 3), a real GRID clip shipped with the package


@requires_landmarks
def test_landmarks_fit_a_real_mouth_and_the_crop_frames_it():
    frames = _sample()
    track = track_mouth(frames)
    points = L.face_landmarks(frames, track.faces)
    assert points.shape == (75, 68, 2) and L.plausible(points, track.faces)
    maps = L.mouth_frames(points, 96)
    lips = np.stack([to_crop(m, p[48:68]) for m, p in zip(maps, points)])  # (T, 20, 2) in crop pixels
    centre = lips.mean(1)
    assert np.abs(np.median(centre, 0) - [48, L.MOUTH_Y * 96]).max() < 3
    width = np.linalg.norm(lips[:, 6] - lips[:, 0], axis=1)
    assert np.median(width) == pytest.approx(L.LIP_WIDTH * 96, rel=0.02)
    opening = lips[:, 18, 1] - lips[:, 14, 1]  # inner lips: the mouth opens and closes as he speaks
    assert opening.max() - opening.min() > 4


@requires_landmarks
def test_auto_crops_by_landmarks_when_installed_and_falls_back_to_the_face_box(monkeypatch):
    frames = _sample()[:20]
    assert crop_method("auto") == "landmarks"
    auto = apply_roi(frames, "auto", 96, path="x.mpg")
    marks = apply_roi(frames, "landmarks", 96, path="x.mpg")
    haar = apply_roi(frames, "haar", 96, path="x.mpg")
    assert auto.shape == (20, 96, 96, 3) and auto.dtype == np.uint8
    np.testing.assert_array_equal(auto, marks)
    assert np.abs(marks.astype(int) - haar).mean() > 5  # a different crop, not the face-box one
    monkeypatch.setattr(L, "plausible", lambda points, faces: False)
    np.testing.assert_array_equal(apply_roi(frames, "landmarks", 96, path="x.mpg"), haar)


@requires_landmarks
def test_small_crops_are_area_averaged_not_aliased():
    frames = _sample()[:4]
    small = apply_roi(frames, "landmarks", 24, path="x.mpg").astype(np.float32)
    big = apply_roi(frames, "landmarks", 96, path="x.mpg").astype(np.float32)
    pooled = big.reshape(4, 24, 4, 24, 4, 3).mean((2, 4))  # the 96 px crop averaged down to 24 px
    assert np.abs(small - pooled).mean() < 4
