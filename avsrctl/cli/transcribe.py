"""`avsrctl transcribe`: Transcribe audio or video files, folders of them, or stdin.

Without --checkpoint it runs the embedded default (faster-whisper with the offline Whisper
tiny.en weights, audio only) and never imports torch. With --checkpoint it runs a trained
AVSR model on the clip's audio, video (mouth crops) or both. The model loads once for all
inputs; one input goes to stdout or `-o`, several to `--output-dir`. An input that fails is
named and skipped: the others are written, and the exit code is 1.
"""

from __future__ import annotations

import sys
import tempfile
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
from avsrctl.errors import AvsrError, MediaError, UsageError
from avsrctl.paths import refuse_overwrite
from avsrctl.wording import plural

STDIN = "-"


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

    with ExitStack() as stack:
        jobs = _jobs(inputs, output, output_dir, fmt, stack)
        # every output place is checked before the model loads
        if output is not None:
            require_writable_folder(output.parent, "--output folder")
        if output_dir is not None:
            require_writable_folder(output_dir, "--output-dir")
        recognizer = _recognizer(
            checkpoint, modality, model, language, beam_size, device, vad, max_segment, temperature_fallback, threads
        )
        if min_lip_sync is not None:
            from avsrctl.decoding import use_min_lip_sync

            use_min_lip_sync(recognizer.model, min_lip_sync)
        _run(jobs, recognizer, fmt)


def _jobs(inputs: list[str], output: Path | None, output_dir: Path | None, fmt: str, stack: ExitStack):
    """[(file to read, name to show, where to write or None for stdout)], checked before any work."""
    from avsrctl.data.media import MEDIA_EXTENSIONS

    if not inputs:
        raise UsageError("no input: name audio or video files, folders, or - for stdin")
    if inputs.count(STDIN) > 1:
        raise UsageError("- (stdin) can be given once")
    found: list[tuple[Path, str, Path]] = []  # (file, shown name, path relative to the output folder)
    for item in inputs:
        if item == STDIN:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="avsrctl-stdin-")))
            data = sys.stdin.buffer.read()
            if not data:
                raise UsageError("- : nothing on stdin", hint="pipe a media file in: avsrctl transcribe - < talk.mp4")
            (tmp / "stdin").write_bytes(data)
            found.append((tmp / "stdin", "stdin", Path("stdin")))
            continue
        path = Path(item)
        if path.is_dir():
            media = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)
            if not media:
                raise UsageError(
                    f"{path}: no audio or video files in this folder",
                    hint=f"files ending in {', '.join(MEDIA_EXTENSIONS)} are transcribed",
                )
            found.extend((p, str(p), p.relative_to(path)) for p in media)
        elif path.is_file():
            found.append((path, str(path), Path(path.name)))
        else:
            raise UsageError(f"{path}: no such file or folder", hint="pass audio or video files, folders, or -")
    several = len(found) > 1 or any(Path(i).is_dir() for i in inputs if i != STDIN)
    if several and output is not None:
        raise UsageError(
            f"-o {output} takes one input, but {plural(len(found), 'file')} were given",
            hint="write one transcript per input with --output-dir DIR",
        )
    if several and output_dir is None:
        raise UsageError(
            f"{plural(len(found), 'input file')} need --output-dir DIR (one transcript file each)",
            hint="e.g. --output-dir transcripts; one input can go to stdout or -o",
        )
    sources = [src for src, _, _ in found]
    if output_dir is None:
        refuse_overwrite([output], sources, "-o")
        return [(src, name, output) for src, name, _ in found]
    jobs, taken = [], {}
    for src, name, rel in found:
        target = output_dir / rel.with_name(f"{rel.stem}.{fmt}")
        key = target.resolve()
        if key in taken:
            raise UsageError(
                f"{taken[key]} and {name} would both be written to {target}",
                hint="transcribe them into different --output-dir folders",
            )
        refuse_overwrite([target], sources, "--output-dir")
        taken[key] = name
        jobs.append((src, name, target))
    return jobs


def _recognizer(checkpoint, modality, model, language, beam_size, device, vad, max_segment, fallback, threads):
    if checkpoint is not None:
        from avsrctl.transcribe import checkpoint_recognizer

        with console.chatter().status(f"loading {checkpoint}"):
            recognizer = checkpoint_recognizer(
                checkpoint, modality, beam_size=beam_size, device=device, max_segment_s=max_segment, vad=vad
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


def _streams_read(recognizer) -> str:
    """What a duration is 'of': the streams the recogniser reads."""
    mods = set(recognizer.modalities)
    if mods == {"audio"}:
        return "audio"
    if mods == {"video"}:
        return "video"
    return "audio and video"


def describe_lips(meta: dict) -> str:
    """One line on how a fused model used the lips of a clip (from `Transcript.meta`); '' for one stream."""
    from avsrctl.wording import lip_use_line

    return lip_use_line(meta["lips"], meta.get("pieces", 1), "piece") if meta.get("lips") else ""


def _run(jobs, recognizer, fmt: str) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from avsrctl.atomic import write_atomic
    from avsrctl.data.media import probe
    from avsrctl.subtitles import render
    from avsrctl.transcribe import transcribe as run_transcribe

    started = time.perf_counter()
    lengths = {}
    for src, _, _ in jobs:  # for the ETA: seconds of media in all (a file ffmpeg cannot read counts 0)
        try:
            lengths[src] = probe(src).duration or 0.0
        except AvsrError:
            lengths[src] = 0.0
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
        done_before = 0.0
        for src, name, target in jobs:
            bar.update(task, description=f"{name[-40:]}")

            def progress(done_s, _total_s, _base=done_before):
                bar.update(task, completed=_base + done_s)

            try:
                result = run_transcribe(src, recognizer, progress)
            except AvsrError as e:
                if len(jobs) == 1:
                    raise
                failed[name] = str(e)
                console.warning(str(e) if name in str(e) else f"{name}: {e}")
            else:
                lips = describe_lips(result.meta)
                if lips:
                    console.log(f"[dim]{name}: {lips}[/]" if len(jobs) > 1 else f"[dim]{lips}[/]")
                text = render(result, fmt)
                if target is not None:
                    write_atomic(target, text)
                    console.log(f"wrote {target} ({fmt}, {plural(len(result.segments), 'segment')})")
                else:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                seconds += result.duration or 0.0
            done_before += lengths[src]
            bar.update(task, completed=done_before)
    elapsed = time.perf_counter() - started
    if len(jobs) > 1:
        console.log(
            f"[dim]{len(jobs) - len(failed)} of {plural(len(jobs), 'file')} transcribed: "
            f"{seconds:.1f} s of {_streams_read(recognizer)} in {elapsed:.1f} s[/]"
        )
    elif seconds:
        console.log(f"[dim]{seconds:.1f} s of {_streams_read(recognizer)} in {elapsed:.1f} s[/]")
    if failed:
        reason = next(iter(failed.values()))
        raise MediaError(
            f"{len(failed)} of {plural(len(jobs), 'input')} could not be transcribed (first: {reason})",
            hint="the others were written; each failure is named in a warning above (check those files with ffprobe)",
        )
