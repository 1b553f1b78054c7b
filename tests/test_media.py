"""Media decoding: every container in ../shared/media and files generated here with ffmpeg."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avsrctl.data import media
from avsrctl.data.media import MediaError, load_audio, load_video, probe, save_audio, save_video


def ffmpeg_make(path: Path, *args: str) -> Path:
    """Generate a file with ffmpeg's lavfi sources (argument list, no shell)."""
    cmd = [media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args, str(path)]
    subprocess.run(cmd, check=True)
    return path


def lavfi_clip(
    path: Path,
    seconds: float = 0.6,
    size: str = "64x48",
    rate: int = 25,
    audio_rate: int = 8000,
    channels: int = 2,
    vcodec: tuple[str, ...] = ("-c:v", "libx264", "-pix_fmt", "yuv420p"),
) -> Path:
    return ffmpeg_make(
        path,
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size={size}:rate={rate}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate={audio_rate}",
        "-t",
        str(seconds),
        "-ac",
        str(channels),
        *vcodec,
    )


def peak_hz(audio: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[np.argmax(spectrum)])


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    files = {
        "mp4": lavfi_clip(d / "clip.mp4"),
        "mkv": lavfi_clip(d / "clip.mkv"),
        "webm": lavfi_clip(d / "clip.webm", vcodec=("-c:v", "libvpx", "-c:a", "libvorbis")),
        "wav8k": ffmpeg_make(
            d / "tone8k.wav", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000", "-t", "0.6", "-ac", "2"
        ),
        "noaudio": ffmpeg_make(
            d / "silent.mp4",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=25",
            "-t",
            "0.4",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ),
        "oneframe": ffmpeg_make(
            d / "one.mp4",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=25",
            "-frames:v",
            "1",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ),
        "fps30": ffmpeg_make(
            d / "fps30.mp4",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=30",
            "-t",
            "1",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ),
        "red": ffmpeg_make(
            d / "red.mkv", "-f", "lavfi", "-i", "color=c=red:size=32x32:rate=25", "-t", "0.2", "-c:v", "ffv1"
        ),
        "emptywav": ffmpeg_make(d / "empty.wav", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "0"),
    }
    return files


# ------------------------------------------------------------------ real media


def test_grid_mpg_video_and_audio(media_dir):
    clip = media_dir / "video" / "grid_bbaf2n.mpg"
    info = probe(clip)
    assert info.has_audio and info.has_video
    assert (info.width, info.height, info.fps, info.sample_rate) == (360, 288, 25.0, 44100)
    video = load_video(clip)
    assert video.shape == (75, 288, 360, 3) and video.dtype == np.uint8
    audio = load_audio(clip)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / 16000 - 3.0) < 0.05  # 44.1 kHz stereo mp2 -> 16 kHz mono
    assert load_video(clip, size=96).shape == (75, 96, 96, 3)
    assert load_video(clip, size=(48, 60)).shape == (75, 48, 60, 3)


def test_wav_16k_mono_is_read_unchanged(media_dir):
    audio = load_audio(media_dir / "audio" / "LDC93S1.wav")
    assert abs(len(audio) / 16000 - 2.925) < 0.01
    assert 0.01 < np.abs(audio).max() <= 1.0


def test_flac_44k_stereo_becomes_16k_mono(media_dir):
    path = media_dir / "audio" / "jfk.flac"
    info = probe(path)
    assert (info.sample_rate, info.channels, info.has_video) == (44100, "stereo", False)
    audio = load_audio(path)
    assert audio.ndim == 1 and abs(len(audio) - 11.0 * 16000) < 160


def test_audio_file_has_no_video_stream(media_dir):
    with pytest.raises(MediaError, match=r"LDC93S1\.wav: no video stream"):
        load_video(media_dir / "audio" / "LDC93S1.wav")


# ----------------------------------------------------------- generated containers


@pytest.mark.parametrize("kind", ["mp4", "mkv", "webm"])
def test_containers_decode_both_streams(generated, kind):
    video = load_video(generated[kind])
    # 0.6 s at 25 fps; in mkv/webm the video starts ~30 ms after the audio, which adds a frame
    assert video.shape[1:] == (48, 64, 3) and video.shape[0] in (15, 16)
    audio = load_audio(generated[kind])
    assert abs(len(audio) - 640 * video.shape[0]) <= 640  # both streams span the same time
    assert abs(len(audio) - 0.6 * 16000) < 0.1 * 16000  # AAC/Vorbis pad to whole codec frames (1024 at 8 kHz)
    assert abs(peak_hz(audio) - 440) < 5


def test_wav_8k_stereo_resampled_to_16k_mono(generated):
    assert probe(generated["wav8k"]).sample_rate == 8000
    audio = load_audio(generated["wav8k"])
    assert len(audio) == int(0.6 * 16000)
    assert abs(peak_hz(audio) - 440) < 5


def test_frame_rate_converted_to_25(generated):
    assert probe(generated["fps30"]).fps == 30.0
    assert load_video(generated["fps30"]).shape[0] == 25


def test_single_frame_video(generated):
    assert load_video(generated["oneframe"]).shape == (1, 48, 64, 3)


def test_frames_are_rgb(generated):
    frames = load_video(generated["red"]).astype(int)
    r, g, b = frames[..., 0].mean(), frames[..., 1].mean(), frames[..., 2].mean()
    assert r > 200 and g < 40 and b < 40


# ------------------------------------------------------------------ failures


def test_video_without_audio_stream(generated):
    assert probe(generated["noaudio"]).has_audio is False
    with pytest.raises(MediaError, match=r"silent\.mp4: no audio stream"):
        load_audio(generated["noaudio"])


def test_truncated_file(generated, tmp_path):
    data = generated["mp4"].read_bytes()
    broken = tmp_path / "truncated.mp4"
    broken.write_bytes(data[: len(data) // 2])
    for load in (load_audio, load_video):
        with pytest.raises(MediaError, match=r"truncated\.mp4: cannot decode .*: \w+"):
            load(broken)


def test_truncated_wav(tmp_path):
    path = tmp_path / "cut.wav"
    save_audio(path, np.sin(np.linspace(0, 500, 16000)).astype(np.float32) * 0.3)
    path.write_bytes(path.read_bytes()[:12000])  # header still promises 16000 samples
    with pytest.raises(MediaError, match=r"cut\.wav: cannot decode audio"):
        load_audio(path)


def test_zero_length_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(MediaError, match=r"empty\.mp4: zero-length file"):
        load_video(empty)
    with pytest.raises(MediaError, match=r"empty\.mp4: zero-length file"):
        probe(empty)


def test_zero_length_audio_stream(generated):
    with pytest.raises(MediaError, match=r"empty\.wav: zero-length audio stream"):
        load_audio(generated["emptywav"])


def test_not_media_and_missing(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(MediaError, match=r"notes\.mp4"):
        load_video(text)
    with pytest.raises(MediaError, match=r"notes\.mp4: not a media file"):
        probe(text)
    with pytest.raises(MediaError, match=r"gone\.wav: file not found"):
        load_audio(tmp_path / "gone.wav")


def test_odd_file_names_are_not_options_or_protocols(generated, tmp_path):
    odd = tmp_path / "-i weird:name.mp4"
    shutil.copy(generated["mp4"], odd)
    assert load_video(odd).shape[0] == 15


# ---------------------------------------------------------------- binaries, writing


def test_falls_back_to_imageio_ffmpeg(monkeypatch, generated):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    monkeypatch.delenv("AVSRCTL_FFMPEG", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    media.ffmpeg_exe.cache_clear()
    try:
        assert media.ffmpeg_exe() == imageio_ffmpeg.get_ffmpeg_exe()
        assert len(load_audio(generated["wav8k"])) == int(0.6 * 16000)
        assert load_video(generated["mp4"]).shape == (15, 48, 64, 3)
        info = probe(generated["mp4"])  # probing needs no ffprobe, which imageio-ffmpeg lacks
        assert info.has_audio and info.has_video and (info.width, info.height) == (64, 48)
    finally:
        media.ffmpeg_exe.cache_clear()


def test_avsrctl_ffmpeg_wins_and_prefer_static_puts_imageio_first(monkeypatch):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/ffmpeg-system")
    media.ffmpeg_exe.cache_clear()
    try:
        monkeypatch.setenv("AVSRCTL_FFMPEG", "/opt/my-ffmpeg")
        assert media.ffmpeg_exe() == media.ffmpeg_exe(prefer_static=True) == "/opt/my-ffmpeg"
        media.ffmpeg_exe.cache_clear()
        monkeypatch.delenv("AVSRCTL_FFMPEG")
        assert media.ffmpeg_exe() == "/usr/bin/ffmpeg-system"
        assert media.ffmpeg_exe(prefer_static=True) == imageio_ffmpeg.get_ffmpeg_exe()
    finally:
        media.ffmpeg_exe.cache_clear()


def test_reproducible_video_is_the_same_bytes_and_falls_back_to_mpeg4(tmp_path, monkeypatch):
    frames = np.random.default_rng(0).integers(0, 255, (6, 16, 24, 3), dtype=np.uint8)
    save_video(tmp_path / "a.mp4", frames, crf=20, reproducible=True)
    save_video(tmp_path / "b.mp4", frames, crf=20, reproducible=True)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert load_video(tmp_path / "a.mp4").shape == (6, 16, 24, 3)
    monkeypatch.setattr(media, "_encoders", lambda exe: " V..... mpeg4  MPEG-4 part 2\n")  # a build without libx264
    save_video(tmp_path / "c.mp4", frames, reproducible=True)
    assert load_video(tmp_path / "c.mp4").shape == (6, 16, 24, 3)
    assert (tmp_path / "c.mp4").read_bytes() != (tmp_path / "a.mp4").read_bytes()


def test_save_video_and_audio_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.zeros((10, 32, 32, 3), np.uint8)
    frames[:, :16] = (200, 40, 40)
    frames[:, 16:] = (40, 40, 200)
    tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(8000) / 16000)).astype(np.float32)
    save_video(tmp_path / "av.mp4", frames, audio=tone)
    back = load_video(tmp_path / "av.mp4").astype(int)
    assert back.shape == (10, 32, 32, 3)
    assert np.abs(back - frames).mean() < 8
    assert abs(peak_hz(load_audio(tmp_path / "av.mp4")) - 300) < 5
    noise = rng.uniform(-0.5, 0.5, 4000).astype(np.float32)
    save_audio(tmp_path / "n.wav", noise)
    assert np.abs(load_audio(tmp_path / "n.wav") - noise).max() < 1e-3  # 16-bit quantisation only
    assert not list(tmp_path.glob(".*partial*"))


def test_max_short_side_shrinks_keeping_aspect(generated):
    assert load_video(generated["mp4"], max_short_side=24).shape == (15, 24, 32, 3)  # 64x48 -> 32x24
    assert load_video(generated["mp4"], max_short_side=480).shape == (15, 48, 64, 3)  # never enlarged


def test_plain_wav_fast_path_matches_ffmpeg(tmp_path, monkeypatch):
    """16 kHz mono PCM16 WAV is read without starting ffmpeg, with the same samples."""
    from avsrctl.data import media

    rng = np.random.default_rng(0)
    audio = (rng.uniform(-0.5, 0.5, 8000)).astype(np.float32)
    path = tmp_path / "plain.wav"
    media.save_audio(path, audio)
    fast = media.load_audio(path)
    monkeypatch.setattr(media, "_read_plain_wav", lambda p: None)
    slow = media.load_audio(path)
    assert fast.shape == slow.shape == (8000,)
    np.testing.assert_allclose(fast, slow, atol=1e-6)
