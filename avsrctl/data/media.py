"""Media decoding and encoding through ffmpeg (ffmpeg-python argument lists, never shell strings).

Everything leaves here in avsrctl's two formats: audio as float32 16 kHz mono, video as
uint8 RGB frames at 25 fps. Any container ffmpeg reads works (mp4, mpg, mkv, webm, avi,
wav, flac, ...). Encoding is here too, and nowhere else: wav and mp4 files (written under a
temporary name, then renamed) and the resampling of demo-data's speech. ffprobe is not needed:
the only binary is `ffmpeg` (data/probe.py finds it and probes files; its names are importable
from here).

Decoding is strict: ffmpeg runs with `-xerror` and error-level logging, and any error it
reports (truncated file, corrupt packet, missing stream) or an empty stream becomes a
`MediaError` naming the file and quoting ffmpeg's reason. A training run then skips the
utterance (see `dataset.AVDataset`) instead of learning from half a clip.

This module needs only ffmpeg-python and numpy (no torch, no OpenCV), so torch-free tools
such as the faster-whisper baseline can read audio through it.

Each call starts one ffmpeg process. Debian's dynamically linked ffmpeg takes ~0.2 s to
start, imageio-ffmpeg's static binary ~0.03 s; set AVSRCTL_FFMPEG to choose the binary.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import wave
from functools import lru_cache
from pathlib import Path

import ffmpeg
import numpy as np

from avsrctl.atomic import write_atomic
from avsrctl.data.manifest import SAMPLE_RATE, VIDEO_FPS
from avsrctl.data.probe import MediaInfo, _check_file, _ffmpeg, _reason, _url, ffmpeg_exe
from avsrctl.data.probe import probe as probe  # re-exported: callers read `media.probe`
from avsrctl.errors import MediaError

_QUIET = ("-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-xerror")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".wma")
VIDEO_EXTENSIONS = (".mp4", ".mpg", ".mpeg", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".ts")
MEDIA_EXTENSIONS = AUDIO_EXTENSIONS + VIDEO_EXTENSIONS


# ---------------------------------------------------------------------------- decode


def _decode(stream, path: Path, what: str) -> bytes:
    """Run an ffmpeg-python graph to a pipe; any error ffmpeg reports becomes a MediaError."""
    _check_file(path)
    rc, out, err = _ffmpeg(stream.global_args(*_QUIET).compile(cmd=ffmpeg_exe()))
    # With -loglevel error a clean decode prints nothing: a truncated mp4 can exit 0 yet
    # report 'partial file', so stderr counts as failure even when the exit code is 0.
    if b"matches no streams" in err:
        raise MediaError(f"{path}: no {what} stream")
    if rc != 0 or err.strip():
        raise MediaError(f"{path}: cannot decode {what}: {_reason(err, path)}")
    return out


def _read_plain_wav(path: Path) -> np.ndarray | None:
    """16 kHz mono 16-bit PCM WAV read directly (what `prepare` and `demo-data` write).

    Starting ffmpeg costs 0.03-0.2 s per call, more than decoding a short utterance, and a
    training epoch reads every file. Any other WAV flavour returns None and goes through ffmpeg.
    """
    try:
        with wave.open(str(path), "rb") as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getcomptype()) != (SAMPLE_RATE, 1, 2, "NONE"):
                return None
            declared = w.getnframes()
            data = w.readframes(declared)
    except (wave.Error, EOFError):
        return None  # not a plain PCM WAV (or damaged header): let ffmpeg decide and explain
    if len(data) < 2 * declared:
        raise MediaError(f"{path}: cannot decode audio: truncated WAV ({len(data) // 2} of {declared} samples present)")
    if not data:
        raise MediaError(f"{path}: zero-length audio stream")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0  # (S,)


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """Decode the first audio stream to float32 16 kHz mono, shape (S,); any rate or channel count in."""
    path = Path(path)
    if path.suffix.lower() == ".wav" and path.is_file():
        audio = _read_plain_wav(path)
        if audio is not None:
            return audio
    stream = ffmpeg.input(_url(path))["a:0"].output("pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=SAMPLE_RATE)
    out = _decode(stream, path, "audio")
    audio = np.frombuffer(out, dtype="<f4").astype(np.float32)  # (S,)
    if audio.size == 0:
        raise MediaError(f"{path}: zero-length audio stream")
    return audio


def _video_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else size
    if h <= 0 or w <= 0:
        raise MediaError(f"video size must be positive, got {size!r}")
    return int(h), int(w)


def _split_ppm(data: bytes, path: Path) -> np.ndarray:
    """Frames from a stream of binary PPM images (each carries its own size; no probing needed)."""
    frames, pos, shape = [], 0, None
    header = re.compile(rb"P6\s+(\d+)\s+(\d+)\s+(\d+)\s")
    while pos < len(data):
        m = header.match(data, pos)
        if m is None:
            raise MediaError(f"{path}: unexpected bytes in ffmpeg's frame stream at offset {pos}")
        w, h, maxval = (int(g) for g in m.groups())
        assert maxval == 255, maxval  # rgb24 output is always 8 bit
        start, end = m.end(), m.end() + w * h * 3
        if end > len(data):
            raise MediaError(f"{path}: truncated frame {len(frames)} in ffmpeg's output")
        if shape is not None and shape != (h, w):
            raise MediaError(f"{path}: frame size changes mid-stream ({shape} -> {(h, w)}); pass size= to resize")
        shape = (h, w)
        frames.append(np.frombuffer(data, np.uint8, w * h * 3, start).reshape(h, w, 3))
        pos = end
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)  # (T, H, W, 3)


def load_video(
    path: str | os.PathLike, size: int | tuple[int, int] | None = None, *, max_short_side: int | None = None
) -> np.ndarray:
    """Decode the first video stream to uint8 RGB at 25 fps, shape (T, H, W, 3).

    `size` resizes every frame: an int for a square side, or (height, width).
    `max_short_side` instead shrinks (never enlarges) frames whose shorter side is longer,
    keeping the aspect ratio: a 1080p clip decoded for a 96x96 mouth crop needs ~10x less memory.
    """
    path = Path(path)
    hw = _video_size(size)
    # 'V' skips cover-art pictures; the fps filter duplicates/drops frames to a constant 25 fps.
    # Frames are anchored at the container start: a video stream starting 30 ms after the
    # audio (x264 in mkv/webm) gets its first frame repeated, so frame k stays at k / 25 s.
    chain = f"fps={VIDEO_FPS}"
    if hw is not None:
        chain += f",scale={hw[1]}:{hw[0]}:flags=area"
    elif max_short_side is not None:
        m = int(max_short_side)
        # portrait: cap the width; landscape: cap the height; -2 keeps the aspect (even size)
        chain += f",scale='if(lt(iw,ih),min(iw,{m}),-2)':'if(lt(iw,ih),-2,min(ih,{m}))':flags=area"
    stream = ffmpeg.input(_url(path))["V:0"].output(
        "pipe:", vf=chain, format="image2pipe", vcodec="ppm", pix_fmt="rgb24"
    )
    frames = _split_ppm(_decode(stream, path, "video"), path)
    if frames.shape[0] == 0:
        raise MediaError(f"{path}: zero-length video stream (no frames decoded)")
    return frames


# ---------------------------------------------------------------------------- encode


def _encode(path: Path, build, what: str, input_bytes: bytes | None = None, exe: str | None = None) -> None:
    """Run `build(output_url)` into a temporary name beside `path`, then rename (never half a file)."""

    def write(tmp: Path) -> None:
        args = build(_url(tmp)).global_args(*_QUIET, "-y").compile(cmd=exe or ffmpeg_exe())
        rc, _, err = _ffmpeg(args, input_bytes)
        # As for decoding, any error-level message counts: a truncated source must not become a short wav.
        if rc != 0 or err.strip() or not tmp.is_file() or tmp.stat().st_size == 0:
            raise MediaError(f"{path}: cannot write {what}: {_reason(err, tmp)}")

    write_atomic(path, write)


@lru_cache(maxsize=4)
def _encoders(exe: str) -> str:
    """The `ffmpeg -encoders` listing of one binary."""
    rc, out, err = _ffmpeg([exe, "-hide_banner", "-encoders"])
    if rc != 0:
        raise MediaError(f"{exe} -encoders failed (exit {rc}): {_reason(err, Path(exe))}")
    return out.decode("utf-8", "replace")


def resample(samples: np.ndarray, rate: int, *, reproducible: bool = False) -> np.ndarray:
    """16-bit mono samples (S,) at `rate` Hz -> float32 at 16 kHz (S * 16000 / rate,) through ffmpeg's resampler.

    `reproducible` runs the binary `save_video(reproducible=True)` runs (imageio-ffmpeg's first).
    """
    graph = ffmpeg.input("pipe:", format="s16le", ar=rate, ac=1).output("pipe:", format="f32le", ar=SAMPLE_RATE, ac=1)
    rc, out, err = _ffmpeg(
        graph.global_args(*_QUIET).compile(cmd=ffmpeg_exe(reproducible)), samples.astype("<i2").tobytes()
    )
    if rc != 0 or err.strip():
        raise MediaError(f"cannot resample {rate} Hz audio to {SAMPLE_RATE} Hz: {_reason(err, Path('pipe:'))}")
    return np.frombuffer(out, dtype="<f4").copy()  # (S',)


def extract_audio(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Write the first audio stream of `src` as 16 kHz mono 16-bit wav (temp name, then rename)."""
    src = Path(src)
    _check_file(src)
    source = ffmpeg.input(_url(src))["a:0"]
    _encode(
        Path(dst),
        lambda url: source.output(url, format="wav", acodec="pcm_s16le", ac=1, ar=SAMPLE_RATE),
        f"audio of {src}",
    )


def save_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float audio (S,) in [-1, 1] as 16-bit mono wav, atomically (Python's wave module: no ffmpeg start-up)."""
    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise MediaError(f"{path}: save_audio writes .wav files only")
    pcm = (np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0) * 32767).round().astype("<i2")  # (S,)

    def write(tmp: Path) -> None:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(pcm.tobytes())

    write_atomic(path, write)


def save_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: int = VIDEO_FPS,
    audio: np.ndarray | None = None,
    crf: int = 18,
    *,
    reproducible: bool = False,
) -> None:
    """Write uint8 RGB frames (T, H, W, 3) as H.264 mp4 (yuv420p), optionally muxed with 16 kHz mono audio.

    By default: x264's default preset, `+faststart` (what `prepare` writes). `reproducible` (what
    `demo-data` writes) gives the same bytes for the same frames on every run: imageio-ffmpeg's
    static binary before the system's (`ffmpeg_exe(prefer_static=True)`), the veryfast preset in
    one thread (MPEG-4 part 2 at -q:v 3 where that binary has no libx264), exactly T frames, no
    metadata, bit-exact muxing. $AVSRCTL_FFMPEG chooses the binary for both.
    """
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise MediaError(f"{path}: frames must be (T, H, W, 3) uint8 with T > 0, got {frames.shape}")
    n, h, w, _ = frames.shape
    exe = ffmpeg_exe(reproducible)
    codec: dict = {"vcodec": "libx264", "crf": crf, "movflags": "+faststart"}
    if reproducible:
        exact = {"threads": 1, "frames:v": n, "map_metadata": -1, "fflags": "+bitexact"}
        has_x264 = " libx264 " in _encoders(exe)
        codec = {"vcodec": "libx264", "preset": "veryfast", "crf": crf} if has_x264 else {"vcodec": "mpeg4", "q:v": 3}
        codec.update(exact)
    video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", r=fps)
    if h % 2 or w % 2:  # yuv420p needs even sides: pad one black row/column
        video = video.filter("pad", w + w % 2, h + h % 2)
    wav = None
    try:
        streams = [video]
        if audio is not None:
            fd, name = tempfile.mkstemp(suffix=".wav")
            os.close(fd)
            wav = Path(name)
            save_audio(wav, audio)
            streams.append(ffmpeg.input(_url(wav)).audio)
            codec["acodec"] = "aac"
        _encode(
            Path(path),
            lambda url: ffmpeg.output(*streams, url, format="mp4", pix_fmt="yuv420p", r=fps, **codec),
            "video",
            frames.tobytes(),
            exe,
        )
    finally:
        if wav is not None:
            wav.unlink(missing_ok=True)


# ------------------------------------------------------------------------- streams


def scaled_size(width: int, height: int, max_short_side: int | None) -> tuple[int, int]:
    """(width, height) after `load_video`'s `max_short_side` shrink (never enlarged; even sides)."""
    if max_short_side is None or min(width, height) <= max_short_side:
        return width, height
    if width < height:
        return max_short_side, 2 * round(height * max_short_side / width / 2)
    return 2 * round(width * max_short_side / height / 2), max_short_side


class _Stream:
    """One ffmpeg process decoding to a pipe, read front to back in pieces (see the two readers below).

    Memory stays at the piece asked for, whatever the length of the file. Errors ffmpeg reports
    (it runs with -xerror) become a MediaError naming the file when the stream ends.
    """

    def __init__(self, path: Path, graph, what: str, item_bytes: int):
        _check_file(path)
        self.path, self.what, self.item_bytes, self.position = path, what, item_bytes, 0
        self._err = tempfile.TemporaryFile()  # a pipe for stderr could fill up and stall ffmpeg
        args = graph.global_args(*_QUIET).compile(cmd=ffmpeg_exe())
        try:
            # its own session, as in _ffmpeg: Ctrl-C in a terminal must not kill it mid-file
            self._proc = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL, start_new_session=True
            )
        except FileNotFoundError:
            self._err.close()
            raise MediaError(f"ffmpeg binary not found: {args[0]}") from None
        self.ended = False

    def _take(self, n_items: int) -> bytes:
        want, chunks = n_items * self.item_bytes, []
        while want > 0 and not self.ended:
            data = self._proc.stdout.read(min(want, 1 << 24))
            if not data:
                self._finish()
                break
            chunks.append(data)
            want -= len(data)
        data = b"".join(chunks)
        whole = len(data) // self.item_bytes * self.item_bytes
        self.position += whole // self.item_bytes
        return data[:whole]

    def read(self, start: int, stop: int) -> bytes:
        """Items [start, stop) (fewer at the end of the stream); `start` below the position reads from it."""
        if start > self.position:
            while self.position < start and not self.ended:  # skip in bounded pieces
                self._take(min(start - self.position, max(1, (1 << 24) // self.item_bytes)))
        return self._take(max(0, stop - max(start, self.position)))

    def _finish(self) -> None:
        self.ended = True
        rc = self._proc.wait()
        self._err.seek(0)
        err = self._err.read()
        if b"matches no streams" in err:
            raise MediaError(f"{self.path}: no {self.what} stream")
        if rc != 0 or err.strip():
            raise MediaError(f"{self.path}: cannot decode {self.what}: {_reason(err, self.path)}")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()
        self._err.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AudioStream(_Stream):
    """A file's first audio stream as float32 16 kHz mono, read front to back: `read(s0, s1) -> (S,)`."""

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        graph = ffmpeg.input(_url(path))["a:0"].output(
            "pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=SAMPLE_RATE
        )
        super().__init__(path, graph, "audio", 4)

    def read(self, start: int, stop: int) -> np.ndarray:  # type: ignore[override]
        return np.frombuffer(super().read(start, stop), dtype="<f4").astype(np.float32)  # (S,)


class VideoStream(_Stream):
    """A file's first video stream as uint8 RGB at 25 fps, read front to back: `read(f0, f1) -> (T, H, W, 3)`.

    Frames are shrunk as `load_video(max_short_side=...)` does; `info` is the file's `probe`.
    """

    def __init__(self, path: str | os.PathLike, info: MediaInfo, *, max_short_side: int | None = None):
        path = Path(path)
        if not (info.width and info.height):
            raise MediaError(f"{path}: cannot tell the video's frame size")
        self.width, self.height = scaled_size(info.width, info.height, max_short_side)
        chain = f"fps={VIDEO_FPS},scale={self.width}:{self.height}:flags=area"
        graph = ffmpeg.input(_url(path))["V:0"].output("pipe:", vf=chain, format="rawvideo", pix_fmt="rgb24")
        super().__init__(path, graph, "video", self.width * self.height * 3)

    def read(self, start: int, stop: int) -> np.ndarray:  # type: ignore[override]
        data = bytearray(super().read(start, stop))  # writable: torch.from_numpy takes it as it is
        return np.frombuffer(data, np.uint8).reshape(-1, self.height, self.width, 3)  # (T, H, W, 3)
