"""`avsrctl transcribe`'s inputs and outputs: which files to read, where each transcript goes, and the
loop that transcribes them one by one with one recogniser (`transcribe.transcribe`).

`plan_jobs` turns the command's inputs (files, folders of media, `-` for stdin) into `Job`s, checked
before any model loads: a folder's layout is kept under the output folder, two inputs never write
the same file, and no output is one of the inputs. `transcribe_jobs` runs them in order and writes
each transcript atomically; an input that fails is reported and the others still run (a single
input's error is raised as it is). `failures` is the error that ends a run where some failed.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from avsrctl.errors import AvsrError, MediaError, UsageError
from avsrctl.paths import refuse_overwrite
from avsrctl.subtitles import Transcript
from avsrctl.wording import plural

STDIN = "-"


class Job(NamedTuple):
    """One input: the file to read, the name to show, where to write (None: stdout)."""

    source: Path
    name: str
    target: Path | None


@dataclass(frozen=True)
class JobDone:
    """What one job gave: its transcript and the text written (or the error that stopped it)."""

    job: Job
    transcript: Transcript | None = None
    text: str = ""
    error: AvsrError | None = None


def plan_jobs(inputs: list[str], output: Path | None, output_dir: Path | None, fmt: str, stack: ExitStack) -> list[Job]:
    """The jobs of `inputs`, checked before any work; stdin is copied to a temporary file kept by `stack`."""
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
        return [Job(src, name, output) for src, name, _ in found]
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
        jobs.append(Job(src, name, target))
    return jobs


def media_seconds(jobs: list[Job]) -> dict[Path, float]:
    """Seconds of media in each job's file, for an ETA (a file ffmpeg cannot read counts 0)."""
    from avsrctl.data.media import probe

    lengths = {}
    for job in jobs:
        try:
            lengths[job.source] = probe(job.source).duration or 0.0
        except AvsrError:
            lengths[job.source] = 0.0
    return lengths


def transcribe_jobs(
    jobs: list[Job], recognizer, fmt: str, progress: Callable[[Job, float], None] | None = None
) -> Iterator[JobDone]:
    """Transcribe each job with `recognizer` in order, write its transcript (`fmt`) to its target
    atomically, and yield a `JobDone` (the text to print when the target is stdout). A failing input
    of several is yielded with its error; a single input's error is raised.
    `progress(job, done_s)`: seconds of the job's media done, 0 as it starts, then as it goes."""
    from avsrctl.atomic import write_atomic
    from avsrctl.subtitles import render
    from avsrctl.transcribe import transcribe

    for job in jobs:
        if progress is not None:
            progress(job, 0.0)
        try:
            result = transcribe(job.source, recognizer, (lambda d, _t, j=job: progress(j, d)) if progress else None)
        except AvsrError as e:
            if len(jobs) == 1:
                raise
            yield JobDone(job, error=e)
            continue
        text = render(result, fmt)
        if job.target is not None:
            write_atomic(job.target, text)
        yield JobDone(job, result, text)


def streams_read(recognizer) -> str:
    """What a duration is 'of': the streams the recogniser reads."""
    mods = set(recognizer.modalities)
    if mods == {"audio"}:
        return "audio"
    if mods == {"video"}:
        return "video"
    return "audio and video"


def failures(failed: dict[str, str], n_jobs: int) -> MediaError:
    """The error that ends a run in which the inputs of `failed` (name -> reason) could not be transcribed."""
    reason = next(iter(failed.values()))
    return MediaError(
        f"{len(failed)} of {plural(n_jobs, 'input')} could not be transcribed (first: {reason})",
        hint="the others were written; each failure is named in a warning above (check those files with ffprobe)",
    )
