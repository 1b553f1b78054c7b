"""Which ffmpeg runs, how it runs, and `probe`: what ffmpeg says about a file before decoding it.

The layer under data/media.py (which re-exports `ffmpeg_exe`, `MediaInfo` and `probe`): the
binary is $AVSRCTL_FFMPEG, the system `ffmpeg` or imageio-ffmpeg's static one; every run takes
an argument list (never a shell string) in a session of its own. ffprobe is not needed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from avsrctl.errors import MediaError


@lru_cache(maxsize=4)  # one entry per spelling of the call: (), (False,), (True,), keywords
def ffmpeg_exe(prefer_static: bool = False) -> str:
    """The ffmpeg binary: $AVSRCTL_FFMPEG, else the system `ffmpeg`, else imageio-ffmpeg's.

    `prefer_static` tries imageio-ffmpeg's static binary before the system one (demo-data's
    clips): the same build wherever the pip package is, so the corpus bytes do not depend on the
    system's ffmpeg, and it starts ~3x faster than a shared-library build.
    """
    override = os.environ.get("AVSRCTL_FFMPEG")
    if override:
        return override
    found = shutil.which("ffmpeg")
    if found and not prefer_static:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except ImportError:
        reason = None
    except RuntimeError as e:
        reason = e
    if found:
        return found
    if reason is None:
        raise MediaError(
            "no ffmpeg binary found", hint="install ffmpeg (apt-get install ffmpeg) or `pip install imageio-ffmpeg`"
        )
    raise MediaError(f"no ffmpeg binary found ({reason})", hint="install ffmpeg (apt-get install ffmpeg)")


def _url(path: Path) -> str:
    # The `file:` protocol stops ffmpeg from reading 'name:with:colons.mp4' as another protocol
    # and a name starting with '-' as an option.
    return "file:" + str(Path(path).absolute())


def _reason(stderr: bytes, path: Path) -> str:
    """The most telling line of ffmpeg's stderr, shortened (ffmpeg repeats the full path)."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("To ignore this", "Conversion failed"))]
    if not lines:
        return "ffmpeg failed without a message"
    line = lines[-1]
    line = re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", line)  # '[mov,mp4 @ 0x55d4...] ' prefixes
    full = str(Path(path).absolute())
    for prefix in ("file:" + full, full):
        line = line.replace(prefix + ": ", "").replace(prefix, Path(path).name)
    return line[:200]


def _ffmpeg(args: list[str], input_bytes: bytes | None = None) -> tuple[int, bytes, bytes]:
    try:
        # A session of its own: Ctrl-C in a terminal signals the whole foreground process group,
        # and an ffmpeg killed mid-decode would turn into a "broken" clip that training skips.
        # avsrctl handles the signal itself (training finishes the step and saves a checkpoint).
        proc = subprocess.run(
            args, input=input_bytes, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, start_new_session=True
        )
    except FileNotFoundError:
        raise MediaError(f"ffmpeg binary not found: {args[0]}") from None
    return proc.returncode, proc.stdout, proc.stderr


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: zero-length file")


@dataclass(frozen=True)
class MediaInfo:
    """What ffmpeg says about a file before decoding it (from `ffmpeg -i`, no ffprobe)."""

    path: Path
    container: str
    duration: float | None  # seconds, None when ffmpeg cannot tell
    has_audio: bool
    has_video: bool  # a real video stream (cover art in audio files does not count)
    width: int = 0
    height: int = 0
    fps: float | None = None
    sample_rate: int = 0
    channels: str = ""


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"Stream #\d+:\d+.*?: (Video|Audio): (.*)")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_FPS = re.compile(r"([\d.]+)(k?) fps")
_RATE = re.compile(r"(\d+) Hz, ([^,]+)")


def probe(path: str | os.PathLike) -> MediaInfo:
    """Streams, size, rate and duration of a media file, by running `ffmpeg -i` (no ffprobe needed)."""
    path = Path(path)
    _check_file(path)
    # With no output file ffmpeg prints the input's description and exits 1 ("At least one
    # output file must be specified"); only a missing "Input #0" header means it failed.
    _, _, err = _ffmpeg([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", _url(path)])
    text = err.decode("utf-8", "replace")
    head = re.search(r"Input #0, (.+?), from", text)
    if head is None:
        raise MediaError(f"{path}: not a media file ffmpeg can read: {_reason(err, path)}")
    duration = None
    m = _DURATION.search(text)
    if m:
        duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    info: dict = {"has_audio": False, "has_video": False}
    for kind, rest in _STREAM.findall(text):
        if kind == "Video" and "attached pic" not in rest and not info["has_video"]:
            info["has_video"] = True
            size = _SIZE.search(rest)
            if size:
                info["width"], info["height"] = int(size.group(1)), int(size.group(2))
            fps = _FPS.search(rest)
            if fps:
                info["fps"] = float(fps.group(1)) * (1000 if fps.group(2) else 1)
        elif kind == "Audio" and not info["has_audio"]:
            info["has_audio"] = True
            rate = _RATE.search(rest)
            if rate:
                info["sample_rate"], info["channels"] = int(rate.group(1)), rate.group(2).strip()
    return MediaInfo(path=path, container=head.group(1), duration=duration, **info)
