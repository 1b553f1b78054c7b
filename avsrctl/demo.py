"""`make demo` (`python -m avsrctl.demo`): a one-minute tour that needs no corpus and no model hub.

Steps, each a small function over a shared `DemoContext`, run in order:
  1. speak   - synthesise a known English sentence with espeak-ng (a temp .wav);
  2. clips   - add real clips with reference transcripts from ../shared/media when present;
  3. recognise - transcribe every clip with the embedded default (faster-whisper tiny.en);
  4. report  - print clip, reference, hypothesis and WER, and the elapsed time.
Training, decoding and evaluating an AVSR checkpoint slot in as further steps.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from avsrctl.cli import console
from avsrctl.errors import AvsrError, MediaError

SENTENCE = "the quick brown fox jumps over the lazy dog"
REPO = Path(__file__).resolve().parents[1]
MAX_REAL_CLIPS = 2  # one audio recording and one GRID video keep the demo well under a minute


@dataclass
class Clip:
    name: str
    path: Path
    reference: str
    hypothesis: str = ""
    wer: float | None = None


@dataclass
class DemoContext:
    workdir: Path
    clips: list[Clip] = field(default_factory=list)
    recognizer: object | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[DemoContext], None]


def media_dir() -> Path | None:
    """$AVSRCTL_MEDIA, else ../shared/media beside the repository (absent in a user's clone)."""
    candidates = [os.environ.get("AVSRCTL_MEDIA"), REPO.parent / "shared" / "media", Path.cwd().parent / "shared" / "media"]
    for c in candidates:
        if c and (Path(c) / "MANIFEST.tsv").is_file():
            return Path(c)
    return None


def speak(ctx: DemoContext) -> None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        ctx.notes.append("espeak-ng not installed: skipped the synthetic sentence (apt-get install espeak-ng)")
        return
    wav = ctx.workdir / "sentence.wav"
    # 120 words/min: tiny.en mishears espeak's robotic voice more often at the default 175.
    proc = subprocess.run([exe, "-v", "en-us", "-s", "120", "-w", str(wav), SENTENCE],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not wav.is_file():
        raise MediaError(f"espeak-ng failed (exit {proc.returncode}): {proc.stderr.strip()[:200]}")
    ctx.clips.append(Clip("espeak-ng sentence", wav, SENTENCE))


def real_clips(ctx: DemoContext) -> None:
    folder = media_dir()
    if folder is None:
        ctx.notes.append("no ../shared/media here: showing the synthetic sentence only")
        return
    with (folder / "MANIFEST.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    picked: dict[str, dict] = {}
    for row in rows:  # the first audio recording and the first talking-face video
        if row.get("kind") in ("audio", "video") and row["kind"] not in picked and (folder / row["file"]).is_file():
            picked[row["kind"]] = row
    for row in list(picked.values())[:MAX_REAL_CLIPS]:
        ctx.clips.append(Clip(Path(row["file"]).name, folder / row["file"], row["reference_transcript"]))


def recognise(ctx: DemoContext) -> None:
    from avsrctl.transcribe import embedded_default, transcribe

    console.log("[dim]transcribing with the embedded default, faster-whisper tiny.en (audio only)[/]")
    ctx.recognizer = embedded_default()
    for clip in ctx.clips:
        clip.hypothesis = transcribe(clip.path, ctx.recognizer).text


def score_clips(ctx: DemoContext) -> None:
    from avsrctl.metrics import score

    for clip in ctx.clips:
        clip.wer = score([clip.reference], [clip.hypothesis], "basic").wer


def report(ctx: DemoContext, elapsed: float) -> None:
    from rich.table import Table

    table = Table(title="avsrctl demo: embedded default (faster-whisper tiny.en, audio only)", title_justify="left")
    for col in ("clip", "reference", "hypothesis", "WER"):
        table.add_column(col, justify="right" if col == "WER" else "left", overflow="fold")
    for c in ctx.clips:
        table.add_row(c.name, c.reference, c.hypothesis, "-" if c.wer is None else f"{100 * c.wer:.1f}%")
    console.stdout().print(table)
    for note in ctx.notes:
        console.log(f"[yellow]note:[/] {note}")
    console.log(f"done in {elapsed:.1f} s")


STEPS: tuple[Step, ...] = (
    Step("speak", speak),
    Step("clips", real_clips),
    Step("recognise", recognise),
    Step("score", score_clips),
)


def main(steps: tuple[Step, ...] = STEPS) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo never reaches for a model hub
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="avsrctl-demo-") as tmp:
            ctx = DemoContext(Path(tmp))
            for step in steps:
                console.log(f"[bold]{step.name}[/]")
                step.run(ctx)
            if not ctx.clips:
                raise MediaError("nothing to transcribe: no espeak-ng and no ../shared/media",
                                 hint="install espeak-ng (apt-get install espeak-ng)")
            report(ctx, time.perf_counter() - started)
    except AvsrError as e:
        console.error(str(e), e.hint)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
