"""Mouth region of interest: turn full-frame talking-face video into square mouth crops.

LRS3-style corpora ship 96x96 mouth crops; raw recordings (GRID: 360x288) show the whole
head. We find the face with OpenCV's frontal-face Haar cascade (shipped in the 4.x wheels
under `cv2.data.haarcascades`), detect on every few frames only, smooth the track over time
(median of neighbouring detections, linear interpolation through frames where detection
failed), and cut a fixed-size square around the mouth, which sits at a stable place in
the cascade's face box (~78% down, centred). One crop side per clip keeps the scale steady.

Modes: 'none' passes frames through (resized to roi_size when they are not already),
'haar' always crops at the fixed place in the face box, 'landmarks' always crops and places the
crop by facial landmarks found inside the Haar track's face box (landmarks.py: rotated upright,
scaled to the lips, anchored on the nose; a clip whose landmarks miss the mouth falls back to the
face-box crop), 'auto' crops only frames much larger than the ROI (> 2 x roi_size), by landmarks
when dlib and its model are installed (`avsrctl[landmarks]`), else by the face box.
`crop_method` says which crop a mode gives on this machine; caches and reports record it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from avsrctl.data import landmarks
from avsrctl.data.smoothing import median_filter
from avsrctl.errors import MediaError, UsageError

ROI_MODES = ("none", "haar", "auto", "landmarks")
FACE_CASCADE = "haarcascade_frontalface_default.xml"
MOUTH_Y = 0.78  # mouth centre, as a fraction of the face box height from its top
MOUTH_SIDE = 0.6  # crop side as a fraction of the face box width (mouth, lips, chin)
DETECT_SIDE = 240  # detection runs on frames scaled so their short side is at most this (faces stay > 40 px)
SOURCE_SIDE = 480  # frames are decoded at most this large (short side) before cropping


def source_side(roi_size: int = 96) -> int:
    """Short side to decode video at before the ROI step (`load_video(max_short_side=...)`).

    A 96x96 mouth crop needs no 1080p source; capping at 480 (or 4 x roi_size) keeps memory
    ~10x lower for HD clips and leaves the 'auto' decision (> 2 x roi_size) unchanged.
    """
    return max(SOURCE_SIDE, 4 * roi_size)


@lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / FACE_CASCADE
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise MediaError(
            f"cannot load the OpenCV face cascade {path}",
            hint="install opencv-python-headless<5 (5.0 dropped the Haar cascades)",
        )
    return cascade


def detect_face(frame: np.ndarray) -> np.ndarray | None:
    """Largest frontal face in one RGB frame (H, W, 3) as float (x, y, w, h), or None."""
    h, w = frame.shape[:2]
    scale = min(1.0, DETECT_SIDE / min(h, w))
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    side = max(24, min(gray.shape) // 5)  # faces smaller than a fifth of the frame are background
    faces = _cascade().detectMultiScale(gray, scaleFactor=1.15, minNeighbors=5, minSize=(side, side))
    if len(faces) == 0:
        return None
    x, y, fw, fh = max(faces.tolist(), key=lambda b: b[2] * b[3])
    return np.array([x, y, fw, fh], dtype=np.float64) / scale


@dataclass(frozen=True)
class MouthTrack:
    faces: np.ndarray  # (T, 4) float x, y, w, h of the smoothed face box per frame
    boxes: np.ndarray  # (T, 3) int x0, y0, side of the square mouth crop per frame (inside the frame)
    detected: int  # frames where the detector found a face
    tried: int  # frames the detector looked at


def track_mouth(frames: np.ndarray, *, every: int = 8, window: int = 5, path: str | Path | None = None) -> MouthTrack:
    """Detect the face on every `every`-th frame, smooth, and place a mouth square on each frame.

    Raises MediaError (naming `path`) when no frame has a face.
    """
    t, h, w = frames.shape[:3]
    probe_at = sorted(set(range(0, t, max(1, every))) | {t - 1})
    found = [(i, box) for i in probe_at if (box := detect_face(frames[i])) is not None]
    if not found:
        raise MediaError(
            f"{path or 'video'}: no face found in {len(probe_at)} sampled frames of {w}x{h} video",
            hint="for videos that are already mouth crops use --roi none",
        )
    at = np.array([i for i, _ in found], dtype=np.float64)
    boxes = median_filter(np.stack([b for _, b in found]), window)  # (N, 4) robust to single misfires
    # Linear interpolation through frames without a detection; ends hold the nearest detection.
    faces = np.stack([np.interp(np.arange(t), at, boxes[:, k]) for k in range(4)], axis=1)  # (T, 4)
    side = int(round(min(np.median(faces[:, 2]) * MOUTH_SIDE, h, w)))  # one side per clip: steady scale
    cx = faces[:, 0] + faces[:, 2] / 2
    cy = faces[:, 1] + faces[:, 3] * MOUTH_Y
    x0 = np.clip(np.round(cx - side / 2), 0, w - side).astype(np.int64)
    y0 = np.clip(np.round(cy - side / 2), 0, h - side).astype(np.int64)
    crop = np.stack([x0, y0, np.full(t, side, dtype=np.int64)], axis=1)  # (T, 3)
    return MouthTrack(faces=faces, boxes=crop, detected=len(found), tried=len(probe_at))


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    if frame.shape[0] == size and frame.shape[1] == size:
        return frame
    shrink = frame.shape[0] > size
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def crop_track(frames: np.ndarray, track: MouthTrack, roi_size: int = 96) -> np.ndarray:
    """Cut the tracked squares out of RGB frames (T, H, W, 3) -> (T, roi_size, roi_size, 3) uint8."""
    out = np.empty((frames.shape[0], roi_size, roi_size, 3), dtype=np.uint8)
    for i, (x0, y0, side) in enumerate(track.boxes):
        out[i] = _resize(frames[i, y0 : y0 + side, x0 : x0 + side], roi_size)
    return out  # (T, roi, roi, 3)


def center_square(frames: np.ndarray, roi_size: int = 96) -> np.ndarray:
    """'none': frames that are already mouth crops, centre-cropped to square and resized to roi_size."""
    t, h, w = frames.shape[:3]
    if (h, w) == (roi_size, roi_size):
        return frames
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    out = np.empty((t, roi_size, roi_size, 3), dtype=np.uint8)
    for i in range(t):
        out[i] = _resize(frames[i, y0 : y0 + side, x0 : x0 + side], roi_size)
    return out  # (T, roi, roi, 3)


def needs_crop(height: int, width: int, roi_size: int = 96) -> bool:
    """'auto' crops only frames clearly larger than a mouth ROI (short side > 2 x roi_size)."""
    return min(height, width) > 2 * roi_size


def crop_method(mode: str) -> str:
    """What a mode crops large frames with here: 'none', 'haar' or 'landmarks' ('auto' depends on the install)."""
    if mode == "auto":
        return "landmarks" if landmarks.available() else "haar"
    return mode


def check_mode(mode: str) -> str:
    """The mode, checked; 'landmarks' also checks that dlib and its model are installed."""
    if mode not in ROI_MODES:
        raise UsageError(f"unknown ROI mode {mode!r}; choose one of {', '.join(ROI_MODES)}")
    if mode == "landmarks":
        landmarks.require()
    return mode


def apply_roi(
    frames: np.ndarray, mode: str = "auto", roi_size: int = 96, *, path: str | Path | None = None
) -> np.ndarray:
    """RGB frames (T, H, W, 3) -> mouth crops (T, roi_size, roi_size, 3) uint8 by the given mode."""
    check_mode(mode)
    if roi_size <= 0:
        raise UsageError(f"roi_size must be positive, got {roi_size}")
    h, w = frames.shape[1:3]
    if mode == "none" or (mode == "auto" and not needs_crop(h, w, roi_size)):
        return center_square(frames, roi_size)
    track = track_mouth(frames, path=path)
    if crop_method(mode) == "landmarks":
        crops = landmarks.crop_landmarks(frames, track.faces, roi_size)
        if crops is not None:
            return crops
    return crop_track(frames, track, roi_size)
