"""Mouth ROI: Haar face track on a real GRID clip, crop geometry and stability, the modes (landmarks: test_landmarks.py)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from avsrctl.data.media import load_video
from avsrctl.data.roi import (
    MOUTH_Y,
    apply_roi,
    center_square,
    crop_method,
    crop_track,
    detect_face,
    needs_crop,
    track_mouth,
)
from avsrctl.errors import MediaError, UsageError


@lru_cache(maxsize=1)
def _decoded(path):
    return load_video(path)


@pytest.fixture
def grid_frames(media_dir):
    return _decoded(media_dir / "video" / "grid_bbaf2n.mpg")  # (75, 288, 360, 3), decoded once


def test_face_found_on_grid_frame(grid_frames):
    box = detect_face(grid_frames[0])
    assert box is not None
    x, y, w, h = box
    assert 80 < w < 220 and 0 <= x and x + w <= 360 and y + h <= 288  # a head, not the whole frame


def test_crop_box_sits_in_lower_face_inside_the_frame(grid_frames):
    track = track_mouth(grid_frames, path="grid_bbaf2n.mpg")
    assert track.detected >= 0.8 * track.tried
    t, h, w = grid_frames.shape[:3]
    assert track.boxes.shape == (t, 3) and track.faces.shape == (t, 4)
    for (x0, y0, side), (fx, fy, fw, fh) in zip(track.boxes, track.faces):
        assert 0 <= x0 and x0 + side <= w and 0 <= y0 and y0 + side <= h
        cx, cy = x0 + side / 2, y0 + side / 2
        assert fy + fh / 2 < cy < fy + fh  # the crop centre is in the lower half of the face
        assert abs(cx - (fx + fw / 2)) < 0.1 * fw  # horizontally centred on the face
        assert abs(cy - (fy + MOUTH_Y * fh)) <= 1
    # one side for the whole clip and a steady centre: the speaker barely moves in GRID
    assert len(set(track.boxes[:, 2].tolist())) == 1
    assert np.ptp(track.boxes[:, 0]) <= 8 and np.ptp(track.boxes[:, 1]) <= 12
    assert np.abs(np.diff(track.boxes[:, :2], axis=0)).max() <= 3  # no frame-to-frame jumps


@pytest.mark.parametrize("name", ["grid_bbaf2n", "grid_brbk7n", "grid_lbax4n", "grid_pwij3p"])
def test_crop_is_centred_on_the_moving_mouth(media_dir, name):
    frames = load_video(media_dir / "video" / f"{name}.mpg")
    crops = crop_track(frames, track_mouth(frames), 96)
    assert crops.shape == (75, 96, 96, 3) and crops.dtype == np.uint8
    # While the speaker talks the lips and jaw move most: the motion (mean frame-to-frame change)
    # is centred in the crop and concentrated in its middle; a shifted crop moves both off.
    motion = np.abs(np.diff(crops.astype(np.float32).mean(-1), axis=0)).mean(0)  # (96, 96)
    idx = np.arange(96)
    col = (motion.mean(0) * idx).sum() / motion.mean(0).sum()
    row = (motion.mean(1) * idx).sum() / motion.mean(1).sum()
    assert abs(row - 48) <= 8 and abs(col - 48) <= 8, (row, col)
    assert motion[24:72, 24:72].mean() > 1.3 * motion.mean()


def test_auto_crops_large_frames_and_keeps_small_ones(grid_frames):
    assert needs_crop(288, 360, 96) and not needs_crop(96, 96, 96) and not needs_crop(180, 240, 96)
    auto = apply_roi(grid_frames[:10], "auto", 96, path="x.mpg")
    chosen = apply_roi(grid_frames[:10], crop_method("auto"), 96, path="x.mpg")  # landmarks when installed
    np.testing.assert_array_equal(auto, chosen)
    none = apply_roi(grid_frames[:10], "none", 96)
    assert none.shape == (10, 96, 96, 3) and not np.array_equal(none, auto)  # whole frame, squeezed


def test_none_passes_through_and_resizes():
    frames = np.random.default_rng(0).integers(0, 255, (4, 96, 96, 3), dtype=np.uint8)
    assert apply_roi(frames, "none", 96) is frames
    assert apply_roi(frames, "auto", 96) is frames
    wide = np.zeros((2, 40, 80, 3), np.uint8)
    wide[:, :, 20:60] = 255  # the centre square is white, the sides black
    out = center_square(wide, 32)
    assert out.shape == (2, 32, 32, 3) and out.min() == 255


def test_no_face_suggests_roi_none():
    blank = np.full((6, 240, 320, 3), 128, np.uint8)
    with pytest.raises(MediaError, match=r"clip\.mp4: no face found in \d+ sampled frames") as e:
        apply_roi(blank, "haar", 96, path="clip.mp4")
    assert "--roi none" in e.value.hint


def test_unknown_mode():
    with pytest.raises(UsageError, match="unknown ROI mode 'mouth'"):
        apply_roi(np.zeros((1, 8, 8, 3), np.uint8), "mouth")
