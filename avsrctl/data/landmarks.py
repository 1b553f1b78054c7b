"""Mouth crops placed by facial landmarks (ROI mode 'landmarks').

The Haar track (roi.py) knows where the face is, not where the mouth is: its crop sits at a fixed
place in the face box, so a tilted head, a face box that breathes by a few pixels, or a speaker
whose mouth sits lower than average moves the mouth inside the crop. Here dlib's 68-point shape
predictor (trained on real faces, iBUG 300-W; the model file ships in the `face-recognition-models`
package) reads every frame inside the Haar track's face box, and the crop follows the landmarks:

- the head's roll is the angle of the line through the outer eye corners, and the crop is rotated
  to undo it;
- the crop's side is set once per clip from the median lip width, so that the mouth fills the
  crop as in the synthetic training faces (synth/face.py: lips 0.38-0.50 of the side, centre at
  0.6 of its height);
- the crop is anchored on the nose tip plus the clip's median nose-to-mouth offset, not on the
  lips themselves: an anchor that followed the lips would move down with the jaw and cancel part
  of the very movement a lip reader needs.

Roll and anchor are smoothed over time (running median, then running mean) against landmark jitter.
Install with `pip install 'avsrctl[landmarks]'` (or `make weights`); `AVSRCTL_LANDMARK_MODEL`
points at another copy of `shape_predictor_68_face_landmarks.dat`.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from avsrctl.data.smoothing import median_filter
from avsrctl.errors import UsageError

MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
MODEL_ENV = "AVSRCTL_LANDMARK_MODEL"
INSTALL_HINT = "pip install 'avsrctl[landmarks]' (dlib-bin and face-recognition-models), or `make weights`"

# dlib's 68-point scheme (iBUG 300-W), 0-based
EYE_OUTER = (36, 45)  # outer corners of the right and left eye (image left, image right)
NOSE_TIP = 30
MOUTH = slice(48, 68)  # outer (48-59) and inner (60-67) lip contour
MOUTH_CORNERS = (48, 54)

# Framing of the synthetic training faces (synth/face.py random_look): lip width 2 x U(0.19, 0.25) of the
# crop side, mouth centre at 0.6 of the crop height.
LIP_WIDTH = 0.44
MOUTH_Y = 0.6
LIPS_IN_FACE = (0.12, 0.6)  # lip width / face box width outside this: the fit missed the mouth (GRID: 0.24-0.29)
SMOOTH = 5  # frames of the running median and running mean over the anchor and roll


def model_path() -> Path:
    """The shape predictor's file: $AVSRCTL_LANDMARK_MODEL, else the face-recognition-models package's copy."""
    override = os.environ.get(MODEL_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise UsageError(f"{MODEL_ENV}={override}: no such file", hint=f"point it at {MODEL_FILE}")
        return path
    # The package's __init__ imports pkg_resources (gone from recent setuptools): find its folder without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "models" / MODEL_FILE
        if path.is_file():
            return path
    raise UsageError("ROI mode 'landmarks' needs dlib's 68-point face landmark model", hint=INSTALL_HINT)


def available() -> bool:
    """Whether dlib and the model file are installed (ROI mode 'auto' then crops by landmarks)."""
    try:
        require()
    except UsageError:
        return False
    return True


def require() -> Path:
    """Fail early, with the install hint, when dlib or the model file is missing; returns the model's path."""
    if importlib.util.find_spec("dlib") is None:
        raise UsageError("ROI mode 'landmarks' needs dlib", hint=INSTALL_HINT)
    return model_path()


@lru_cache(maxsize=1)
def _predictor(path: str):
    import dlib

    return dlib.shape_predictor(path)


def face_landmarks(frames: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """68 landmarks per frame: RGB frames (T, H, W, 3) and face boxes (T, 4) x, y, w, h -> (T, 68, 2) float."""
    import dlib

    predict = _predictor(str(require()))
    out = np.empty((frames.shape[0], 68, 2), dtype=np.float64)
    for i, (frame, (x, y, w, h)) in enumerate(zip(frames, faces)):
        box = dlib.rectangle(int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h)))
        shape = predict(np.ascontiguousarray(frame), box)
        out[i] = [(p.x, p.y) for p in shape.parts()]
    return out  # (T, 68, 2)


def _smooth(values: np.ndarray, window: int = SMOOTH) -> np.ndarray:
    """Running median (the face track's), then running mean, along axis 0 (edges use the part of the window that fits)."""
    half = window // 2
    med = median_filter(values, window)
    return np.stack([med[max(0, i - half) : i + half + 1].mean(axis=0) for i in range(len(values))])


def _lip_widths(points: np.ndarray) -> np.ndarray:
    """Distance between the mouth corners per frame, from (T, 68, 2) landmarks -> (T,)."""
    return np.linalg.norm(points[:, MOUTH_CORNERS[1]] - points[:, MOUTH_CORNERS[0]], axis=1)


def mouth_frames(points: np.ndarray, roi_size: int) -> np.ndarray:
    """Per-frame 2x3 affine maps from the frame to the mouth crop, from (T, 68, 2) landmarks -> (T, 2, 3).

    The crop is rotated by the smoothed eye-line roll, scaled so the clip's median lip width is
    LIP_WIDTH of its side, and placed so the mouth (nose tip + the clip's median nose-to-mouth
    offset) lands at (0.5, MOUTH_Y) of the crop.
    """
    eyes = points[:, EYE_OUTER[1]] - points[:, EYE_OUTER[0]]  # (T, 2)
    roll = _smooth(np.arctan2(eyes[:, 1], eyes[:, 0]))  # (T,) radians, positive: the head leans clockwise
    nose = points[:, NOSE_TIP]  # (T, 2)
    mouth = points[:, MOUTH].mean(axis=1)  # (T, 2)
    anchor = _smooth(nose) + np.median(mouth - nose, axis=0)  # (T, 2): follows the head, not the jaw
    scale = roi_size * LIP_WIDTH / max(float(np.median(_lip_widths(points))), 1.0)  # crop px per frame px, per clip
    target = np.array([0.5 * roi_size, MOUTH_Y * roi_size])
    maps = np.empty((len(points), 2, 3))
    for i, ((cx, cy), angle) in enumerate(zip(anchor, roll)):
        c, s = np.cos(angle) * scale, np.sin(angle) * scale
        rot = np.array([[c, s], [-s, c]])  # rotates by -angle (undoes the roll) and scales
        maps[i, :, :2] = rot
        maps[i, :, 2] = target - rot @ np.array([cx, cy])
    return maps  # (T, 2, 3)


def plausible(points: np.ndarray, faces: np.ndarray) -> bool:
    """Whether the lips found are a plausible share of the face box's width (0.24 and 0.29 on the shipped GRID clips)."""
    return LIPS_IN_FACE[0] <= float(np.median(_lip_widths(points)) / np.median(faces[:, 2])) <= LIPS_IN_FACE[1]


def crop_landmarks(frames: np.ndarray, faces: np.ndarray, roi_size: int = 96) -> np.ndarray | None:
    """Mouth crops (T, roi_size, roi_size, 3) uint8 from RGB frames and the Haar track's face boxes (T, 4);
    None when the landmarks found are not a plausible mouth (the caller then crops by the face box)."""
    points = face_landmarks(frames, faces)  # (T, 68, 2)
    if not plausible(points, faces):
        return None
    maps = mouth_frames(points, roi_size)  # (T, 2, 3)
    # warpAffine samples bilinearly: a crop that shrinks the face first gets it shrunk with area averaging.
    shrink = min(1.0, float(np.linalg.norm(maps[0, 0, :2])))
    if shrink < 1.0:
        maps[:, :, :2] /= shrink
    out = np.empty((frames.shape[0], roi_size, roi_size, 3), dtype=np.uint8)
    for i, (frame, m) in enumerate(zip(frames, maps)):
        if shrink < 1.0:
            frame = cv2.resize(frame, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        out[i] = cv2.warpAffine(frame, m, (roi_size, roi_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out
