"""One clip to text: `avsrctl transcribe clip.mp4`.

Two recognisers sit behind one small interface (`ClipRecognizer.transcribe_file`):

- the embedded default, faster-whisper with the offline Whisper tiny.en weights, audio only
  (`avsrctl.baseline.FasterWhisperRecognizer`); used when no checkpoint is given;
- an AVSR checkpoint (audio, video or both), which splits long clips into utterances with
  `speech_segments` (the Silero VAD shipped inside faster-whisper) and decodes them in batches.

The default path never imports torch, so a transcription starts in well under a second.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from avsrctl.errors import MediaError
from avsrctl.subtitles import Segment, Transcript

SAMPLE_RATE = 16_000


class ClipRecognizer(Protocol):
    """What `transcribe` needs from a recogniser."""

    name: str  # shown on stderr and stored in the transcript's `source`
    modalities: tuple[str, ...]  # streams it reads from the clip

    def transcribe_file(self, path: Path) -> Transcript: ...


def embedded_default(
    model: str | None = None,
    *,
    language: str | None = "en",
    beam_size: int = 5,
    device: str = "auto",
    vad_filter: bool | None = None,
):
    """The faster-whisper recogniser (offline tiny.en unless `model` names another)."""
    from avsrctl.baseline import FasterWhisperRecognizer, WhisperOptions

    return FasterWhisperRecognizer(
        WhisperOptions(model=model, language=language, beam_size=beam_size, device=device, vad_filter=vad_filter)
    )


def transcribe(path: str | os.PathLike, recognizer: ClipRecognizer) -> Transcript:
    """Transcribe one audio or video file with `recognizer`."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    return recognizer.transcribe_file(path)


def speech_segments(
    audio: np.ndarray,
    *,
    max_segment_s: float = 20.0,
    min_silence_ms: int = 500,
    threshold: float = 0.5,
    pad_ms: int = 200,
) -> list[tuple[float, float]]:
    """Speech regions of 16 kHz mono audio (S,) as (start_s, end_s), each at most `max_segment_s`.

    Silero VAD (from faster-whisper) finds speech and cuts regions longer than `max_segment_s`
    at a pause where it finds one (else evenly), so every piece fits one decoding pass.
    Silence gives [].
    """
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if audio.ndim != 1:
        raise MediaError(f"expected mono audio of shape (S,), got {audio.shape}")
    if max_segment_s <= 0:
        raise ValueError(f"max_segment_s must be positive, got {max_segment_s}")
    options = VadOptions(
        threshold=threshold,
        min_silence_duration_ms=min_silence_ms,
        max_speech_duration_s=max_segment_s,
        speech_pad_ms=pad_ms,
    )
    stamps = get_speech_timestamps(audio.astype(np.float32, copy=False), options, sampling_rate=SAMPLE_RATE)
    n = audio.shape[0]
    out = []
    for s in stamps:
        start, end = max(0, int(s["start"])), min(n, int(s["end"]))
        if end <= start:
            continue
        # Silero's padding can take a piece slightly past the cap: cut it in equal parts so
        # the promise holds without leaving a sliver at the end.
        parts = math.ceil((end - start) / (max_segment_s * SAMPLE_RATE))
        bounds = np.linspace(start, end, parts + 1).round().astype(int)
        out.extend((int(a) / SAMPLE_RATE, int(b) / SAMPLE_RATE) for a, b in zip(bounds[:-1], bounds[1:]))
    return out


def join_segments(segments: list[Segment]) -> str:
    return " ".join(s.text for s in segments if s.text.strip())


def checkpoint_recognizer(checkpoint: str | os.PathLike, modality: str | None, **options) -> ClipRecognizer:
    """A recogniser around a trained AVSR checkpoint (the seam `avsrctl transcribe --checkpoint` uses).

    It will load the model with `avsrctl.training.checkpoint.load_checkpoint`, cut the clip with
    `speech_segments`, and decode the pieces in batches.
    """
    from avsrctl.errors import UsageError

    raise UsageError(
        f"transcription with a checkpoint ({checkpoint}) arrives with the AVSR model and `avsrctl decode`",
        hint="leave out --checkpoint to use the embedded faster-whisper default (audio only)",
    )
