"""Audio is cut or padded to 640 samples per 25 fps video frame."""

from __future__ import annotations

import numpy as np
import pytest

from avsrctl.data.align import align_audio, frames_for_samples, samples_for_frames
from avsrctl.data.media import load_audio, load_video, save_video
from avsrctl.errors import MediaError


def test_three_seconds_is_75_frames_and_48000_samples():
    assert samples_for_frames(75) == 48000
    assert frames_for_samples(48000) == 75
    assert frames_for_samples(48001) == 76 and frames_for_samples(0) == 0


def test_cut_keeps_the_start():
    audio = np.arange(50000, dtype=np.float32)
    out = align_audio(audio, 75)
    assert out.shape == (48000,) and out.dtype == np.float32
    np.testing.assert_array_equal(out, audio[:48000])


def test_pad_appends_zeros():
    audio = np.ones(47648, dtype=np.float64)  # GRID's mp2 decodes 352 samples short of 3 s
    out = align_audio(audio, 75)
    assert out.shape == (48000,) and out.dtype == np.float32
    assert out[:47648].min() == 1.0 and not out[47648:].any()


def test_audio_only_rounds_up_to_whole_frames():
    n = frames_for_samples(1001)
    out = align_audio(np.ones(1001, np.float32), n)
    assert (n, out.shape) == (2, (1280,)) and out[:1001].min() == 1.0 and not out[1001:].any()


def test_bad_input():
    with pytest.raises(MediaError, match=r"mono audio of shape \(S,\)"):
        align_audio(np.zeros((2, 100)), 1)
    with pytest.raises(MediaError, match="must not be negative"):
        align_audio(np.zeros(10), -1)


def test_grid_clips_align_to_75_frames(media_dir):
    for clip in sorted((media_dir / "video").glob("grid_*.mpg")):
        n_frames = load_video(clip, size=32).shape[0]
        audio = align_audio(load_audio(clip), n_frames)
        assert (n_frames, audio.shape[0]) == (75, 48000), clip.name


def test_generated_three_second_clip(tmp_path):
    t = 75
    frames = np.zeros((t, 16, 16, 3), np.uint8)
    frames[:, :, :, 1] = np.linspace(0, 250, t, dtype=np.uint8)[:, None, None]  # brightness ramps over time
    tone = (0.2 * np.sin(2 * np.pi * 200 * np.arange(48000) / 16000)).astype(np.float32)
    save_video(tmp_path / "three.mp4", frames, audio=tone)
    video = load_video(tmp_path / "three.mp4")
    audio = align_audio(load_audio(tmp_path / "three.mp4"), video.shape[0])
    assert video.shape[0] == 75 and audio.shape == (48000,)
    # frame k is still frame k: the ramp survives the round trip in order
    assert np.all(np.diff(video[:, 8, 8, 1].astype(int)) >= -3)
    assert abs(int(video[-1, 8, 8, 1]) - 250) < 8
