"""Transcript writers: plain text, SubRip (.srt), WebVTT (.vtt) and JSON; atomic file output.

SRT: 1-based cue numbers, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, a blank line after each cue.
WebVTT: a `WEBVTT` header line, then cues with `HH:MM:SS.mmm` (dot before milliseconds).
Cue times are made non-decreasing (a segment never starts before the previous one), and
a cue never ends before it starts, because players reject or reorder such cues.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from avsrctl.errors import UsageError

FORMATS: tuple[str, ...] = ("txt", "srt", "vtt", "json")


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float
    text: str
    video_weight: float | None = None  # a fused model: mean weight it gave the lips over this piece
    lip_sync: float | None = None  # with its sync classifier: mean P(lips in sync with the voice)

    def to_dict(self) -> dict:
        lips = {
            k: round(v, 4)
            for k, v in (("video_weight", self.video_weight), ("lip_sync", self.lip_sync))
            if v is not None
        }
        return {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text, **lips}


@dataclass(frozen=True)
class Transcript:
    """One clip's transcript: the text, timed cues, and where it came from."""

    text: str
    segments: tuple[Segment, ...] = ()
    source: str = ""  # the recogniser, e.g. "faster-whisper tiny.en (...)"
    path: str = ""  # the transcribed file
    duration: float | None = None  # seconds of audio
    meta: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "segments": [c.to_dict() for c in self.segments],
            "source": self.source,
            "path": self.path,
            "duration": self.duration,
            **({"meta": self.meta} if self.meta else {}),
        }


def format_timestamp(seconds: float, decimal: str = ",") -> str:
    """`HH:MM:SS,mmm` (SRT) or, with decimal='.', `HH:MM:SS.mmm` (WebVTT). Hours are not wrapped."""
    if seconds < 0:
        raise ValueError(f"timestamps cannot be negative, got {seconds}")
    ms = int(round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def monotonic_segments(cues: Sequence[Segment]) -> list[Segment]:
    """Drop empty cues, clamp starts to be non-decreasing and ends to be >= starts."""
    out: list[Segment] = []
    last_start = 0.0
    for c in cues:
        text = " ".join(c.text.split())
        if not text:
            continue
        start = max(c.start, last_start, 0.0)
        end = max(c.end, start)
        out.append(Segment(start, end, text))
        last_start = start
    return out


def to_txt(t: Transcript) -> str:
    return t.text + "\n"


def to_srt(t: Transcript) -> str:
    blocks = []
    for i, c in enumerate(monotonic_segments(t.segments), start=1):
        blocks.append(f"{i}\n{format_timestamp(c.start)} --> {format_timestamp(c.end)}\n{c.text}\n")
    return "\n".join(blocks)


def to_vtt(t: Transcript) -> str:
    blocks = ["WEBVTT\n"]
    for c in monotonic_segments(t.segments):
        blocks.append(f"{format_timestamp(c.start, '.')} --> {format_timestamp(c.end, '.')}\n{c.text}\n")
    return "\n".join(blocks)


def to_json(t: Transcript) -> str:
    return json.dumps(t.to_dict(), indent=2, ensure_ascii=False) + "\n"


_WRITERS = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt, "json": to_json}


def render(t: Transcript, fmt: str) -> str:
    try:
        return _WRITERS[fmt](t)
    except KeyError:
        raise UsageError(f"unknown transcript format {fmt!r}; choose one of {', '.join(FORMATS)}") from None


def format_from_suffix(path: str | os.PathLike) -> str | None:
    """'srt' for 'talk.srt', etc.; None when the suffix names no known format."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in FORMATS else None
