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

from avsrctl.data.manifest import SAMPLE_RATE, SAMPLES_PER_FRAME, VIDEO_FPS
from avsrctl.errors import MediaError
from avsrctl.subtitles import Segment, Transcript


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


def fixed_windows(duration_s: float, max_segment_s: float) -> list[tuple[float, float]]:
    """Equal windows of at most `max_segment_s` covering [0, duration_s] (when there is no VAD)."""
    if duration_s <= 0:
        return []
    parts = max(1, math.ceil(duration_s / max_segment_s))
    bounds = np.linspace(0.0, duration_s, parts + 1)
    return [(float(a), float(b)) for a, b in zip(bounds[:-1], bounds[1:])]


class CheckpointRecognizer:
    """A trained AVSR model behind the `ClipRecognizer` interface.

    A clip no longer than `max_segment_s` is decoded whole, as in training. A longer one is cut
    into speech pieces by `speech_segments` (fixed windows when the clip has no audio or
    `vad=False`) and the pieces are decoded `batch_size` at a time, so memory stays bounded.
    """

    def __init__(
        self,
        model,
        cfg,
        modality: str,
        options,
        *,
        device: str = "cpu",
        name: str = "",
        max_segment_s: float = 20.0,
        batch_size: int = 8,
        vad: bool | None = None,
    ):
        if modality not in model.modalities:
            from avsrctl.errors import UsageError

            raise UsageError(f"this checkpoint serves {', '.join(model.modalities)}, not --modality {modality}")
        if max_segment_s <= 0 or batch_size < 1:
            raise ValueError(f"max_segment_s ({max_segment_s}) and batch_size ({batch_size}) must be positive")
        self.model, self.cfg, self.options, self.device = model, cfg, options, device
        self.modality, self.modalities = modality, (modality,)
        self.max_segment_s, self.batch_size, self.vad = max_segment_s, batch_size, vad
        self.name = name or f"AVSR checkpoint ({modality})"

    def pieces(self, audio: np.ndarray | None, duration_s: float) -> list[tuple[float, float]]:
        if duration_s <= self.max_segment_s:
            return [(0.0, duration_s)]
        if audio is None or self.vad is False:
            return fixed_windows(duration_s, self.max_segment_s)
        return speech_segments(audio, max_segment_s=self.max_segment_s)

    def transcribe_file(self, path: Path) -> Transcript:
        import torch

        from avsrctl.data.dataset import Sample, collate, load_clip

        clip = load_clip(path, self.modality, roi=self.cfg.data.roi, roi_size=self.cfg.data.roi_size)
        n_frames = int(clip.lengths[0])
        duration = n_frames / VIDEO_FPS
        audio = clip.audio[0].numpy() if clip.audio is not None else None  # (640*T,)
        spans = []
        for start, end in self.pieces(audio, duration):
            f0, f1 = int(math.floor(start * VIDEO_FPS)), min(n_frames, int(math.ceil(end * VIDEO_FPS)))
            if f1 > f0:
                spans.append((f0, f1))
        samples = [
            Sample(
                id=f"{i}",
                text="",
                n_frames=f1 - f0,
                audio=clip.audio[0, f0 * SAMPLES_PER_FRAME : f1 * SAMPLES_PER_FRAME]
                if clip.audio is not None
                else None,
                video=clip.video[0, f0:f1] if clip.video is not None else None,  # (T, 3, H, W)
            )
            for i, (f0, f1) in enumerate(spans)
        ]
        texts: dict[str, str] = {}
        with torch.no_grad():
            for k in range(0, len(samples), self.batch_size):
                batch = collate(samples[k : k + self.batch_size]).to(self.device)
                for result in self.model.generate(batch, self.modality, self.options):
                    texts[result.id] = result.text.strip()
        segments = tuple(
            Segment(f0 / VIDEO_FPS, f1 / VIDEO_FPS, texts.get(f"{i}", "")) for i, (f0, f1) in enumerate(spans)
        )
        return Transcript(
            text=join_segments(list(segments)),
            segments=segments,
            source=self.name,
            path=str(path),
            duration=round(duration, 3),
            meta={"modality": self.modality, "pieces": len(spans)},
        )


def checkpoint_recognizer(
    checkpoint: str | os.PathLike,
    modality: str | None = None,
    *,
    beam_size: int | None = None,
    device: str | None = None,
    max_segment_s: float = 20.0,
    vad: bool | None = None,
) -> CheckpointRecognizer:
    """Load a checkpoint written by `avsrctl train` and wrap it for `transcribe`."""
    from avsrctl.checkpoint import load_checkpoint, trained_modality
    from avsrctl.decoding import DecodingOptions

    model, cfg, meta = load_checkpoint(checkpoint, device=device or "auto")
    dev = str(model.device)
    modality = modality or trained_modality(cfg, meta)
    options = DecodingOptions.from_config(cfg.decode, beam_size=beam_size)
    return CheckpointRecognizer(
        model,
        cfg,
        modality,
        options,
        device=dev,
        name=f"{Path(checkpoint).name} ({modality})",
        max_segment_s=max_segment_s,
        batch_size=cfg.decode.batch_size,
        vad=vad,
    )
