"""`avsrctl transcribe`: Transcribe audio or video files, folders of them, or stdin.

Without --checkpoint it runs the embedded default (faster-whisper with the offline Whisper
tiny.en weights, audio only) and never imports torch. With --checkpoint it runs a trained
AVSR model on the clip's audio, video (mouth crops) or both. The model loads once for all
inputs; one input goes to stdout or `-o`, several to `--output-dir`. An input that fails is
named and skipped: the others are written, and the exit code is 1. Which files are read and where
each transcript goes, and the loop over them, are transcribe_files.py's; this module parses and
checks the options, loads the recogniser and shows the progress.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Optional

import typer

from avsrctl.cli import console
from avsrctl.cli.options import (
    BeamSizeOpt,
    CheckpointOpt,
    MinLipSyncOpt,
    ModalityOpt,
    QuietOpt,
    ThreadsOpt,
    check_choice,
    require_writable_folder,
    use_quiet,
    use_threads,
)
from avsrctl.errors import UsageError
from avsrctl.wording import plural


def transcribe(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Audio or video files (anything ffmpeg reads: mp4, mpg, wav, flac, ...), folders (their media "
            "files, recursively), or - to read one file from stdin.",
            metavar="CLIP...",
            show_default=False,
        ),
    ],
    checkpoint: CheckpointOpt = None,
    modality: ModalityOpt = None,
    fmt: Annotated[
        Optional[str],
        typer.Option("--format", "-f", help="txt, srt, vtt or json. Default: from --output's suffix, else txt."),
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="One input: write here (atomically) instead of stdout.")
    ] = None,
    output_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--output-dir",
            "-d",
            help="Write one transcript per input here (NAME.FORMAT; a folder's layout is kept). Needed for "
            "several inputs.",
        ),
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
    temperature_fallback: Annotated[
        bool,
        typer.Option(
            "--temperature-fallback",
            help="Default path: re-decode a window that fails faster-whisper's checks by sampling at rising "
            "temperatures (can help on hard audio; reruns may then differ). Off: the same file gives the same text.",
        ),
    ] = False,
    device: Annotated[
        str, typer.Option("--device", help="cpu, cuda, cuda:N (the GPU numbered N) or auto (a GPU when there is one).")
    ] = "auto",
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
    min_lip_sync: MinLipSyncOpt = None,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Transcribe audio or video files, folders of them, or stdin (-), loading the model once."""
    from avsrctl.subtitles import FORMATS as KNOWN
    from avsrctl.subtitles import format_from_suffix

    use_quiet(quiet)
    use_threads(threads)
    if fmt is None and output is not None:
        fmt = format_from_suffix(output)
        if fmt is None:
            raise UsageError(
                f"-o {output}: unknown suffix {output.suffix or '(none)'!r}; use "
                f"{', '.join('.' + k for k in KNOWN)}, or name the format with --format",
                hint="e.g. -o talk.srt, or --format txt -o notes",
            )
    fmt = fmt or "txt"
    check_choice("--format", fmt, KNOWN)
    if device not in ("cpu", "cuda", "auto") and not device.startswith("cuda:"):
        raise UsageError(f"--device must be cpu, cuda, cuda:N or auto, got {device!r}")
    if checkpoint is not None and model is not None:
        raise UsageError("--model picks the faster-whisper default; it cannot be combined with --checkpoint")
    if checkpoint is None and modality not in (None, "audio"):
        raise UsageError(f"--modality {modality} needs --checkpoint: the embedded default is audio only")
    if output is not None and output_dir is not None:
        raise UsageError("-o names one output file and --output-dir a folder for them: pass one")
    if min_lip_sync is not None:
        if checkpoint is None:
            raise UsageError("--min-lip-sync needs --checkpoint: the embedded default reads no lips")
        from avsrctl.decoding import check_min_lip_sync

        check_min_lip_sync(min_lip_sync)

    from avsrctl.transcribe_files import plan_jobs

    with ExitStack() as stack:
        jobs = plan_jobs(inputs, output, output_dir, fmt, stack)
        # every output place is checked before the model loads
        if output is not None:
            require_writable_folder(output.parent, "--output folder")
        if output_dir is not None:
            require_writable_folder(output_dir, "--output-dir")
        recognizer = _recognizer(
            checkpoint,
            modality,
            model=model,
            language=language,
            beam_size=beam_size,
            device=device,
            vad=vad,
            max_segment=max_segment,
            fallback=temperature_fallback,
            threads=threads,
            min_lip_sync=min_lip_sync,
        )
        _run(jobs, recognizer, fmt)


def _recognizer(
    checkpoint, modality, *, model, language, beam_size, device, vad, max_segment, fallback, threads, min_lip_sync=None
):
    if checkpoint is not None:
        from avsrctl.transcribe import checkpoint_recognizer

        with console.chatter().status(f"loading {checkpoint}"):
            recognizer = checkpoint_recognizer(
                checkpoint,
                modality,
                beam_size=beam_size,
                device=device,
                max_segment_s=max_segment,
                vad=vad,
                min_lip_sync=min_lip_sync,
            )
        console.log(f"[dim]transcribing with {recognizer.name}[/]")
        return recognizer
    from avsrctl.baseline import describe_model
    from avsrctl.transcribe import embedded_default

    what = "the embedded default" if model is None else "faster-whisper"
    console.log(f"[dim]no --checkpoint: using {what}, faster-whisper {describe_model(model)} (audio only)[/]")
    return embedded_default(
        model,
        language=language,
        beam_size=beam_size or 5,
        device=device,
        vad_filter=vad,
        temperature_fallback=fallback,
        cpu_threads=threads or 0,
    )


def describe_lips(meta: dict) -> str:
    """One line on how a fused model used the lips of a clip (from `Transcript.meta`); '' for one stream."""
    from avsrctl.lips import lip_use_line

    return lip_use_line(meta["lips"], meta.get("pieces", 1), "piece") if meta.get("lips") else ""


def _run(jobs, recognizer, fmt: str) -> None:
    """Transcribe the jobs (`transcribe_files.transcribe_jobs`) under one progress bar over their seconds
    of media; each written file or failure on stderr, a text for stdout printed there."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from avsrctl.transcribe_files import failures, media_seconds, streams_read, transcribe_jobs

    started = time.perf_counter()
    lengths = media_seconds(jobs)
    total = sum(lengths.values())
    failed: dict[str, str] = {}
    seconds = 0.0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    show = len(jobs) > 1 or total > 60
    with Progress(*columns, console=console.chatter(), transient=True, disable=not show) as bar:
        task = bar.add_task("transcribing", total=max(total, 1e-9))
        before, at = {}, 0.0  # each job's seconds of media before it
        for job in jobs:
            before[job], at = at, at + lengths[job.source]

        def progress(job, done_s):
            bar.update(task, description=f"{job.name[-40:]}", completed=before[job] + done_s)

        for done in transcribe_jobs(jobs, recognizer, fmt, progress):
            name = done.job.name
            if done.error is not None:
                failed[name] = str(done.error)
                console.warning(str(done.error) if name in str(done.error) else f"{name}: {done.error}")
            else:
                lips = describe_lips(done.transcript.meta)
                if lips:
                    console.log(f"[dim]{name}: {lips}[/]" if len(jobs) > 1 else f"[dim]{lips}[/]")
                if done.job.target is not None:
                    segments = plural(len(done.transcript.segments), "segment")
                    console.log(f"wrote {done.job.target} ({fmt}, {segments})")
                else:
                    sys.stdout.write(done.text)
                    sys.stdout.flush()
                seconds += done.transcript.duration or 0.0
            bar.update(task, completed=before[done.job] + lengths[done.job.source])
    elapsed = time.perf_counter() - started
    if len(jobs) > 1:
        console.log(
            f"[dim]{len(jobs) - len(failed)} of {plural(len(jobs), 'file')} transcribed: "
            f"{seconds:.1f} s of {streams_read(recognizer)} in {elapsed:.1f} s[/]"
        )
    elif seconds:
        console.log(f"[dim]{seconds:.1f} s of {streams_read(recognizer)} in {elapsed:.1f} s[/]")
    if failed:
        raise failures(failed, len(jobs))
