"""`avsrctl transcribe`: Transcribe one audio or video file.

Without --checkpoint it runs the embedded default (faster-whisper with the offline Whisper
tiny.en weights, audio only) and never imports torch. With --checkpoint it runs a trained
AVSR model on the clip's audio, video (mouth crops) or both.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from avsrctl.cli import console
from avsrctl.cli.options import BeamSizeOpt, CheckpointOpt, ModalityOpt, check_choice, require_writable_folder
from avsrctl.errors import UsageError

FORMATS = ("txt", "srt", "vtt", "json")


def transcribe(
    clip: Annotated[
        Path, typer.Argument(help="Audio or video file (anything ffmpeg reads: mp4, mpg, wav, flac, ...).")
    ],
    checkpoint: CheckpointOpt = None,
    modality: ModalityOpt = None,
    fmt: Annotated[
        Optional[str],
        typer.Option("--format", "-f", help="txt, srt, vtt or json. Default: from --output's suffix, else txt."),
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Write here (atomically) instead of stdout.")
    ] = None,
    language: Annotated[str, typer.Option("--language", help="Spoken language (English for tiny.en).")] = "en",
    model: Annotated[
        Optional[str],
        typer.Option(
            "--model",
            help="faster-whisper model for the default path: a CTranslate2 folder or a name "
            "like base.en (needs a model hub). Default: the offline tiny.en.",
        ),
    ] = None,
    beam_size: BeamSizeOpt = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "auto",
    vad: Annotated[
        Optional[bool],
        typer.Option(
            "--vad/--no-vad",
            help="Cut long clips at pauses with the Silero VAD (--no-vad: faster-whisper "
            "keeps silence, a checkpoint uses fixed windows). Default: on for long clips.",
        ),
    ] = None,
    max_segment: Annotated[
        float,
        typer.Option(
            "--max-segment",
            min=1.0,
            help="With --checkpoint: longest piece decoded at once, in seconds "
            "(longer clips are cut at pauses; lower it if memory runs out).",
        ),
    ] = 20.0,
) -> None:
    """Transcribe one audio or video file."""
    from avsrctl.subtitles import FORMATS as KNOWN
    from avsrctl.subtitles import format_from_suffix

    if fmt is None:
        fmt = (format_from_suffix(output) if output is not None else None) or "txt"
    check_choice("--format", fmt, KNOWN)
    if device not in ("cpu", "cuda", "auto") and not device.startswith("cuda:"):
        raise UsageError(f"--device must be cpu, cuda, cuda:N or auto, got {device!r}")
    if not clip.is_file():
        raise UsageError(f"{clip}: no such file", hint="pass an audio or video file")
    if output is not None:
        require_writable_folder(output.parent, "--output folder")  # before a long transcription
    started = time.perf_counter()
    if checkpoint is not None:
        if model is not None:
            raise UsageError("--model picks the faster-whisper default; it cannot be combined with --checkpoint")
        from avsrctl.transcribe import checkpoint_recognizer

        with console.stderr().status(f"loading {checkpoint}"):
            recognizer = checkpoint_recognizer(
                checkpoint, modality, beam_size=beam_size, device=device, max_segment_s=max_segment, vad=vad
            )
        console.log(f"[dim]transcribing with {recognizer.name}[/]")
    else:
        if modality not in (None, "audio"):
            raise UsageError(f"--modality {modality} needs --checkpoint: the embedded default is audio only")
        from avsrctl.baseline import describe_model
        from avsrctl.transcribe import embedded_default

        what = "the embedded default" if model is None else "faster-whisper"
        console.log(f"[dim]no --checkpoint: using {what}, faster-whisper {describe_model(model)} (audio only)[/]")
        recognizer = embedded_default(model, language=language, beam_size=beam_size or 5, device=device, vad_filter=vad)

    from avsrctl.atomic import write_atomic
    from avsrctl.subtitles import render
    from avsrctl.transcribe import transcribe as run_transcribe

    result = run_transcribe(clip, recognizer)
    text = render(result, fmt)
    if output is not None:
        write_atomic(output, text)
        console.log(f"wrote {output} ({fmt}, {len(result.segments)} segments)")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    elapsed = time.perf_counter() - started
    if result.duration:
        console.log(f"[dim]{result.duration:.1f} s of audio in {elapsed:.1f} s[/]")
