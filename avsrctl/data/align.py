"""Time alignment of audio to video frames.

Video runs at 25 fps and audio at 16 kHz, so one video frame spans exactly 640 samples
(and two Whisper frames of 320 samples). Audio is cut or zero-padded to `640 * T` samples
for T video frames; then sample s belongs to frame s // 640 and a single `lengths` tensor in
25 Hz frames describes both streams. A 3.0 s clip is 75 frames and 48000 samples.

Padding the shorter stream to the longer one instead would shift one stream against the
other; cutting/padding audio to the video clock does not.
"""

from __future__ import annotations

import math

import numpy as np

from avsrctl.data.manifest import SAMPLES_PER_FRAME
from avsrctl.errors import MediaError

WHISPER_HOP = 320  # samples per Whisper encoder frame (50 Hz)
WHISPER_FRAMES_PER_VIDEO_FRAME = SAMPLES_PER_FRAME // WHISPER_HOP  # 2


def frames_for_samples(n_samples: int) -> int:
    """Video frames (25 Hz) needed to hold `n_samples` of 16 kHz audio, rounded up."""
    if n_samples < 0:
        raise ValueError(f"n_samples must not be negative, got {n_samples}")
    return math.ceil(n_samples / SAMPLES_PER_FRAME)


def samples_for_frames(n_frames: int) -> int:
    """Audio samples spanned by `n_frames` video frames (75 -> 48000)."""
    return n_frames * SAMPLES_PER_FRAME


def align_audio(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """Cut or zero-pad 16 kHz mono audio (S,) to exactly 640 * n_frames samples, float32."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise MediaError(f"align_audio expects mono audio of shape (S,), got {audio.shape}")
    if n_frames < 0:
        raise MediaError(f"align_audio: n_frames must not be negative, got {n_frames}")
    target = samples_for_frames(n_frames)
    if audio.shape[0] >= target:
        return audio[:target].copy()  # (640*T,)
    out = np.zeros(target, dtype=np.float32)
    out[: audio.shape[0]] = audio
    return out  # (640*T,)
