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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from avsrctl.data.manifest import SAMPLE_RATE, SAMPLES_PER_FRAME, VIDEO_FPS
from avsrctl.errors import MediaError
from avsrctl.lips import clip_summary
from avsrctl.subtitles import Segment, Transcript

if TYPE_CHECKING:
    from avsrctl.decoding import DecodingResult

BLOCK_FRAMES = 60 * VIDEO_FPS  # a long clip's audio is read and cut 60 s at a time (3.8 MB of samples)
VIDEO_CHUNK_FRAMES = 5 * VIDEO_FPS  # raw frames held at once before the mouth crop (~115 MB at 640x480)
CARRY_SAMPLES = SAMPLE_RATE // 2  # a piece ending this close to a block's end is still speaking there
Progress = Callable[[float, float], None]  # progress(seconds done, seconds in all)


class ClipRecognizer(Protocol):
    """What `transcribe` needs from a recogniser."""

    name: str  # shown on stderr and stored in the transcript's `source`
    modalities: tuple[str, ...]  # streams it reads from the clip

    def transcribe_file(self, path: Path, progress: Progress | None = None) -> Transcript: ...


def embedded_default(
    model: str | None = None,
    *,
    language: str | None = "en",
    beam_size: int = 5,
    device: str = "auto",
    vad_filter: bool | None = None,
    temperature_fallback: bool = False,
    cpu_threads: int = 0,
):
    """The faster-whisper recogniser (offline tiny.en unless `model` names another).

    Deterministic by default (temperature 0 only); `temperature_fallback` re-decodes a window
    that fails faster-whisper's checks at rising sampling temperatures, so reruns can differ."""
    from avsrctl.baseline import FALLBACK_TEMPERATURES, FasterWhisperRecognizer, WhisperOptions

    return FasterWhisperRecognizer(
        WhisperOptions(
            model=model,
            language=language,
            beam_size=beam_size,
            device=device,
            vad_filter=vad_filter,
            temperature=FALLBACK_TEMPERATURES if temperature_fallback else (0.0,),
            cpu_threads=cpu_threads,
        )
    )


def transcribe(path: str | os.PathLike, recognizer: ClipRecognizer, progress: Progress | None = None) -> Transcript:
    """Transcribe one audio or video file with `recognizer`; `progress(done_s, total_s)` as it goes."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    return recognizer.transcribe_file(path, progress)


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

    def transcribe_file(self, path: Path, progress: Progress | None = None) -> Transcript:
        from avsrctl.data.media import probe

        info = probe(path)
        if info.duration is not None and info.duration > self.max_segment_s:
            return self._streamed(path, info, progress)
        return self._whole(path, info)

    def _reads(self, info) -> str:
        """The streams a whole clip is read with: its modality's, and for lips read alone by a model
        with a sync classifier, the audio too (when the file has it), to say whether they follow it."""
        if self.modality == "video" and self.min_lip_sync is not None and info.has_audio:
            return "both"
        return self.modality

    def _decode(self, batch: list[tuple[int, int, object]], decoded: dict[int, DecodingResult]) -> None:
        """Decode each (f0, f1, Sample) piece into decoded[f0] (a DecodingResult)."""
        import torch

        from avsrctl.data.dataset import collate

        with torch.no_grad():
            results = self.model.generate(
                collate([s for _, _, s in batch]).to(self.device), self.modality, self.options
            )
        by_id = {r.id: r for r in results}
        for f0, _, sample in batch:
            if sample.id in by_id:
                decoded[f0] = by_id[sample.id]

    def _whole(self, path: Path, info) -> Transcript:
        """A clip no longer than one piece, decoded whole as in training."""
        from avsrctl.data.dataset import Sample, load_clip

        clip = load_clip(path, self._reads(info), roi=self.cfg.data.roi, roi_size=self.cfg.data.roi_size)
        n_frames = int(clip.lengths[0])
        duration = n_frames / VIDEO_FPS
        audio = clip.audio[0].numpy() if clip.audio is not None else None  # (640*T,)
        pieces = []
        for start, end in self.pieces(audio if self.modality != "video" else None, duration):
            f0, f1 = int(math.floor(start * VIDEO_FPS)), min(n_frames, int(math.ceil(end * VIDEO_FPS)))
            if f1 > f0:
                a = clip.audio[0, f0 * SAMPLES_PER_FRAME : f1 * SAMPLES_PER_FRAME] if clip.audio is not None else None
                v = clip.video[0, f0:f1] if clip.video is not None else None  # (T, 3, H, W)
                pieces.append((f0, f1, Sample(id=str(f0), text="", n_frames=f1 - f0, audio=a, video=v)))
        decoded: dict[int, DecodingResult] = {}
        for k in range(0, len(pieces), self.batch_size):
            self._decode(pieces[k : k + self.batch_size], decoded)
        return self._transcript(path, [(f0, f1) for f0, f1, _ in pieces], decoded, duration)

    def _streamed(self, path: Path, info, progress: Progress | None) -> Transcript:
        """A long clip read front to back, BLOCK_FRAMES of audio at a time: each block is cut into
        pieces (at pauses), each piece's video decoded and cropped VIDEO_CHUNK_FRAMES at a time, and
        the pieces decoded `batch_size` at a time. Peak memory does not grow with the clip's length.

        A piece still speaking at a block's end is left for the next block, which starts where that
        piece starts, so no word is cut at a block boundary that is not also a pause."""
        from contextlib import ExitStack

        from avsrctl.data.align import align_audio, frames_for_samples
        from avsrctl.data.dataset import Sample, clip_streams
        from avsrctl.data.media import AudioStream, VideoStream
        from avsrctl.data.roi import source_side

        want_audio, want_video = clip_streams(path, info, self.modality)
        total = info.duration
        spans: list[tuple[int, int]] = []
        decoded: dict[int, DecodingResult] = {}
        pending: list[tuple[int, int, object]] = []

        def flush(limit: int) -> None:
            if len(pending) >= limit and pending:
                self._decode(pending, decoded)
                pending.clear()

        with ExitStack() as stack:
            audio_in = stack.enter_context(AudioStream(path)) if want_audio else None
            video_in = None
            if want_video:
                side = source_side(self.cfg.data.roi_size)
                video_in = stack.enter_context(VideoStream(path, info, max_short_side=side))
            buf, f = np.zeros(0, np.float32), 0  # audio from frame f on (640 samples per frame)
            while True:
                if audio_in is not None:
                    have = f * SAMPLES_PER_FRAME + buf.shape[0]
                    more = audio_in.read(have, (f + BLOCK_FRAMES) * SAMPLES_PER_FRAME)
                    buf = np.concatenate([buf, more]) if buf.size else more  # (S,) of this block
                    if buf.size == 0:
                        break
                    last = audio_in.ended and buf.shape[0] < BLOCK_FRAMES * SAMPLES_PER_FRAME
                    n_block = frames_for_samples(buf.shape[0])
                    cuts = self.pieces_of_block(buf, n_block / VIDEO_FPS)
                    next_f = f + n_block
                    if not last and cuts and cuts[-1][1] * SAMPLE_RATE >= buf.shape[0] - CARRY_SAMPLES:
                        carried = f + int(math.floor(cuts[-1][0] * VIDEO_FPS))
                        if carried > f:  # still speaking at the block's end: the next block takes it whole
                            next_f, cuts = carried, cuts[:-1]
                else:  # video only: fixed windows until the video ends
                    n_block = BLOCK_FRAMES
                    cuts = fixed_windows(n_block / VIDEO_FPS, self.max_segment_s)
                    next_f, last = f + n_block, False
                for a, b in cuts:
                    f0, f1 = f + int(math.floor(a * VIDEO_FPS)), f + int(math.ceil(b * VIDEO_FPS))
                    video = None
                    if video_in is not None:
                        video = self._video(video_in, f0, f1)  # (T, 3, H, W), T <= f1 - f0
                        if video is None:
                            last = True  # the video ended
                            break
                        f1 = f0 + video.shape[0]
                    audio = None
                    if audio_in is not None:
                        lo = (f0 - f) * SAMPLES_PER_FRAME
                        audio = torch_audio(align_audio(buf[lo : lo + (f1 - f0) * SAMPLES_PER_FRAME], f1 - f0))
                    spans.append((f0, f1))
                    pending.append((f0, f1, Sample(id=str(f0), text="", n_frames=f1 - f0, audio=audio, video=video)))
                    flush(self.batch_size)
                if audio_in is not None:
                    buf = buf[(next_f - f) * SAMPLES_PER_FRAME :]
                f = next_f
                if progress is not None and total:
                    progress(min(f / VIDEO_FPS, total), total)
                if last or (video_in is not None and video_in.ended):
                    break
        flush(1)
        duration = total if total else f / VIDEO_FPS
        return self._transcript(path, spans, decoded, duration)

    def pieces_of_block(self, audio: np.ndarray, duration_s: float) -> list[tuple[float, float]]:
        if self.vad is False:
            return fixed_windows(duration_s, self.max_segment_s)
        return speech_segments(audio, max_segment_s=self.max_segment_s)

    def _video(self, stream, f0: int, f1: int):
        """Mouth crops (T, 3, H, W) uint8 of frames [f0, f1), cropped VIDEO_CHUNK_FRAMES at a time; None past the end."""
        import torch

        from avsrctl.data.roi import apply_roi

        crops = []
        for c in range(f0, f1, VIDEO_CHUNK_FRAMES):
            frames = stream.read(c, min(f1, c + VIDEO_CHUNK_FRAMES))  # (t, H, W, 3)
            if frames.shape[0] == 0:
                break
            crops.append(apply_roi(frames, self.cfg.data.roi, self.cfg.data.roi_size, path=stream.path))
        if not crops:
            return None
        return torch.from_numpy(np.ascontiguousarray(np.concatenate(crops))).permute(0, 3, 1, 2).contiguous()

    def _transcript(
        self, path: Path, spans: list[tuple[int, int]], decoded: dict[int, DecodingResult], duration: float
    ):
        segments = []
        for f0, f1 in spans:
            r = decoded.get(f0)
            lips = {} if r is None else {"video_weight": r.video_weight, "lip_sync": r.lip_sync}
            segments.append(Segment(f0 / VIDEO_FPS, f1 / VIDEO_FPS, "" if r is None else r.text.strip(), **lips))
        meta = {"modality": self.modality, "pieces": len(spans)}
        lips = clip_summary(segments, self.min_lip_sync)
        if lips is not None:
            meta["lips"] = lips
        return Transcript(
            text=join_segments(segments),
            segments=tuple(segments),
            source=self.name,
            path=str(path),
            duration=round(duration, 3),
            meta=meta,
        )

    @property
    def min_lip_sync(self) -> float | None:
        """The in-sync probability below which this model sets a piece's lips aside ('both') or says
        they do not follow the voice ('video'); None without a sync classifier, or in audio mode."""
        from avsrctl.decoding import lip_sync_setting

        return lip_sync_setting(self.model, self.modality, self.options).get("min_lip_sync")


def torch_audio(audio: np.ndarray):
    import torch

    return torch.from_numpy(audio)  # (640*T,)


def checkpoint_recognizer(
    checkpoint: str | os.PathLike,
    modality: str | None = None,
    *,
    beam_size: int | None = None,
    device: str | None = None,
    max_segment_s: float = 20.0,
    vad: bool | None = None,
    min_lip_sync: float | None = None,
) -> CheckpointRecognizer:
    """Load a checkpoint written by `avsrctl train` and wrap it for `transcribe`; `min_lip_sync`: the
    in-sync threshold of a fused model's lips (None: its config's)."""
    from avsrctl.checkpoint import load_checkpoint, trained_modality
    from avsrctl.decoding import DecodingOptions, check_options_fit

    model, cfg, meta = load_checkpoint(checkpoint, device=device or "auto")
    dev = str(model.device)
    modality = modality or trained_modality(cfg, meta)
    options = DecodingOptions.from_config(cfg.decode, beam_size=beam_size, min_lip_sync=min_lip_sync)
    check_options_fit(model, options)  # before any clip is read
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
