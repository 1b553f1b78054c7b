"""`make demo` (`python -m avsrctl.demo`): the tool's main job end to end, offline, in a few minutes.

Every step runs the real command in a subprocess and prints it first, so what scrolls by is
what a user can type next:
  1. corpus     - `avsrctl demo-data`: a small synthetic GRID-grammar corpus, test speakers held out;
  2. train      - `avsrctl train --modality both` with modality dropout, so each stream alone works;
  3. evaluate   - `avsrctl eval --checkpoint .../final --modality all`: WER for audio, video and both;
  4. baseline   - `avsrctl eval` without a checkpoint: faster-whisper tiny.en on the same test split;
  5. transcribe - `avsrctl transcribe` a test clip (its audio and video muxed into one file), and a
                  real GRID recording from ../shared/media when present;
then one table with every figure and the seconds each step took.

    python -m avsrctl.demo                             # offline-small in a temporary folder
    python -m avsrctl.demo --work runs/demo            # keep corpus, checkpoint and results
    python -m avsrctl.demo --config tiny --utterances 24 --epochs 1   # random tiny models
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape

from avsrctl.cli import console
from avsrctl.data.manifest import read_manifest
from avsrctl.errors import AvsrError, UsageError

REPO = Path(__file__).resolve().parents[1]
AVSRCTL = [sys.executable, "-m", "avsrctl"]
MARKER = ".avsrctl-demo"  # marks a --work folder as the demo's own, so a rerun may replace its outputs
OUTPUTS = ("corpus", "train", "eval", "baseline", "transcripts")  # what a rerun in the same folder replaces
UTTERANCES, EPOCHS = 48, 2  # about 2 minutes with offline-small on 2 quiet CPU cores (7 when shared with two trainings)
VIDEO_SIZE = 48  # mouth video side in pixels, the input size of the video encoder below

# On top of the chosen config. The video encoder (offline-small's lip front-end) sees the corpus's
# 48 px frames as they are, as in the GRID recipe. It trains, so --cache-features cannot be used
# here: the feature cache only holds frozen encoders' outputs (`avsrctl train` refuses the combination).
TRAIN_SETTINGS = {
    "model.video_encoder.image_size": VIDEO_SIZE,
    "data.roi_size": VIDEO_SIZE,
    # Half the utterances lose one stream: a short run must show video alone often enough to learn it.
    "model.fusion.modality_dropout": 0.5,
    "data.max_batch_size": 4,  # a short run needs updates more than large batches (same compute per epoch)
    "train.warmup_steps": 5,  # a demo run has a few dozen steps; offline-small's 50 would never reach the peak
    "train.valid_max_utts": 8,  # validation decodes with the LLM: keep it a small share of the run
    # GRID sentences are six words (~7 tokens); a briefly trained model babbles until this cap.
    "decode.max_new_tokens": 16,
}


@dataclass
class Row:
    """One line of the summary table."""

    step: str
    model: str
    modality: str
    result: str
    seconds: float | None = None  # on the first row of each step


@dataclass
class DemoContext:
    workdir: Path
    config: str
    utterances: int
    epochs: int
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    step: str = ""  # the step running now, named in a failure

    @property
    def corpus(self) -> Path:
        return self.workdir / "corpus"

    @property
    def checkpoint(self) -> Path:
        return self.workdir / "train" / "final"


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[DemoContext], None]


class StepFailed(AvsrError):
    """A command of the demo exited non-zero (its own error is printed just above)."""


def media_dir() -> Path | None:
    """$AVSRCTL_MEDIA, else ../shared/media beside the repository (absent in a user's clone)."""
    candidates = [
        os.environ.get("AVSRCTL_MEDIA"),
        REPO.parent / "shared" / "media",
        Path.cwd().parent / "shared" / "media",
    ]
    for c in candidates:
        if c and (Path(c) / "MANIFEST.tsv").is_file():
            return Path(c)
    return None


def run_command(ctx: DemoContext, program: list[str], args: list[str | Path], *, shown: str) -> None:
    """Print `$ SHOWN ARGS...` and run PROGRAM ARGS...; the child writes straight to this terminal,
    so its own progress bars stay live."""
    args = [str(a) for a in args]
    line = shlex.join([shown, *args])
    console.stderr().print(f"$ {line}", style="dim", markup=False, highlight=False, soft_wrap=True)
    code = subprocess.run([*program, *args], check=False).returncode
    if code != 0:
        raise StepFailed(f"step '{ctx.step}' failed (exit {code}): {line}")


def avsrctl(ctx: DemoContext, *args: str | Path) -> None:
    run_command(ctx, AVSRCTL, list(args), shown="avsrctl")


def make_corpus(ctx: DemoContext) -> None:
    avsrctl(ctx, "demo-data", ctx.corpus, "--utterances", str(ctx.utterances), "--size", str(VIDEO_SIZE))
    splits = {s: len(read_manifest(ctx.corpus / f"{s}.tsv")) for s in ("train", "valid", "test")}
    ctx.rows.append(Row("corpus", "-", "-", ", ".join(f"{n} {s}" for s, n in splits.items()) + " utterances"))


def train(ctx: DemoContext) -> None:
    sets = [a for key, value in TRAIN_SETTINGS.items() for a in ("--set", f"{key}={value}")]
    avsrctl(
        ctx,
        "train",
        "--config",
        ctx.config,
        "--data",
        ctx.corpus,
        "--modality",
        "both",
        "--output",
        ctx.checkpoint.parent,
        "--max-epochs",
        str(ctx.epochs),
        "--save-every",
        "0",
        *sets,
    )
    summary = _training_summary(ctx.checkpoint.parent / "metrics.jsonl")
    loss = summary.get("valid_loss")
    ctx.rows.append(
        Row(
            "train",
            ctx.config,
            "both",
            f"{summary.get('epochs', ctx.epochs)} epoch(s), "
            f"{summary.get('step', '?')} steps, valid loss {'-' if loss is None else f'{loss:.2f}'}",
        )
    )


def evaluate(ctx: DemoContext) -> None:
    out = ctx.workdir / "eval"
    avsrctl(
        ctx,
        "eval",
        "--tsv",
        ctx.corpus / "test.tsv",
        "--checkpoint",
        ctx.checkpoint,
        "--modality",
        "all",
        "--output-dir",
        out,
    )
    for modality in ("audio", "video", "both"):
        ctx.rows.append(Row("eval", ctx.config, modality, _wer(out / modality / "wer.json")))
    ctx.notes.append(
        "a few minutes of training shows the pipeline, not what the model can learn: raise --utterances "
        "and --epochs, or run `make grid-recipe` (about two hours; figures in docs/RESULTS.md)"
    )


def baseline(ctx: DemoContext) -> None:
    out = ctx.workdir / "baseline"
    avsrctl(ctx, "eval", "--tsv", ctx.corpus / "test.tsv", "--output-dir", out)
    ctx.rows.append(Row("baseline", "faster-whisper tiny.en", "audio", _wer(out / "wer.json")))


def transcribe_test_clip(ctx: DemoContext) -> None:
    from avsrctl.data.media import ffmpeg_exe

    # The corpus keeps each utterance's audio and video in two files; a user's clip has both in one.
    first = read_manifest(ctx.corpus / "test.tsv")[0]
    clip = ctx.workdir / "transcripts" / f"{first.id}.mkv"
    clip.parent.mkdir(parents=True, exist_ok=True)
    run_command(
        ctx,
        [ffmpeg_exe()],
        ["-loglevel", "error", "-y", "-i", first.video, "-i", first.audio, "-c", "copy", clip],
        shown="ffmpeg",
    )
    _transcribe(ctx, clip, first.text)


def transcribe_real_clip(ctx: DemoContext) -> None:
    folder = media_dir()
    if folder is None:
        ctx.notes.append("no ../shared/media here: skipped the real GRID recording")
        return
    with (folder / "MANIFEST.tsv").open(encoding="utf-8") as f:
        grid = [r for r in csv.DictReader(f, delimiter="\t") if Path(r["file"]).name.startswith("grid_")]
    grid = [r for r in grid if (folder / r["file"]).is_file()]
    if not grid:
        ctx.notes.append(f"no GRID recording in {folder}: skipped the real clip")
        return
    _transcribe(ctx, folder / grid[0]["file"], grid[0]["reference_transcript"])


def _transcribe(ctx: DemoContext, clip: Path, reference: str) -> None:
    out = ctx.workdir / "transcripts" / f"{clip.stem}.txt"
    avsrctl(ctx, "transcribe", clip, "--checkpoint", ctx.checkpoint, "--output", out)
    text = " ".join(out.read_text(encoding="utf-8").split())
    result = escape(f'{clip.name}: "{text}"') + f'\n[dim]reference: "{escape(reference)}"[/]'
    ctx.rows.append(Row("transcribe", ctx.config, "both", result))


def _training_summary(metrics: Path) -> dict:
    """The last `summary` record `avsrctl train` wrote to metrics.jsonl (empty when there is none)."""
    records = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    return next((r for r in reversed(records) if r.get("type") == "summary"), {})


def _wer(report: Path) -> str:
    r = json.loads(report.read_text(encoding="utf-8"))
    return f"WER {100 * r['wer']:.1f}% ({r['errors']}/{r['ref_words']} words)"


def report(ctx: DemoContext, elapsed: float) -> None:
    from rich.table import Table

    table = Table(
        title=f"avsrctl demo: {ctx.config}, {ctx.utterances} utterances, {ctx.epochs} epoch(s)",
        title_justify="left",
        caption=f"total {elapsed:.0f} s",
        caption_justify="left",
    )
    for col in ("step", "model", "modality", "result", "seconds"):
        table.add_column(
            col,
            justify="right" if col == "seconds" else "left",
            overflow="fold",
            no_wrap=col in ("step", "modality", "seconds"),
            max_width=14 if col == "model" else None,
        )
    for r in ctx.rows:
        table.add_row(
            escape(r.step), escape(r.model), r.modality, r.result, "" if r.seconds is None else f"{r.seconds:.0f}"
        )
    console.stdout().print(table)
    for note in ctx.notes:
        console.log(f"[yellow]note:[/] {note}")


STEPS: tuple[Step, ...] = (
    Step("corpus", make_corpus),
    Step("train", train),
    Step("eval", evaluate),
    Step("baseline", baseline),
    Step("transcribe", transcribe_test_clip),
    Step("transcribe-real", transcribe_real_clip),
)


def prepare_workdir(work: Path) -> None:
    """Create WORK, or reuse one an earlier demo made; never write into anyone else's folder."""
    if work.exists() and not work.is_dir():
        raise UsageError(f"--work {work} is a file, not a folder")
    if work.is_dir() and any(work.iterdir()) and not (work / MARKER).is_file():
        raise UsageError(
            f"--work {work} is not empty and was not made by the demo; refusing to write into it",
            hint="pass a new or empty folder",
        )
    for name in OUTPUTS:  # a rerun starts clean: train and demo-data refuse to write over their outputs
        shutil.rmtree(work / name, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text("made by `python -m avsrctl.demo`; a rerun replaces its outputs\n", encoding="utf-8")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m avsrctl.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work",
        type=Path,
        help="folder to keep corpus, checkpoint and results in (default: a temporary folder, removed at the end)",
    )
    parser.add_argument(
        "--utterances", type=int, default=UTTERANCES, help=f"synthetic corpus size, all splits (default {UTTERANCES})"
    )
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"training epochs (default {EPOCHS})")
    parser.add_argument(
        "--config",
        default="offline-small",
        help="preset or YAML file (default offline-small; tiny: random tiny models, seconds)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, steps: tuple[Step, ...] = STEPS) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo and its commands never reach for a model hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    started = time.perf_counter()
    work = args.work.expanduser().resolve() if args.work else Path(tempfile.mkdtemp(prefix="avsrctl-demo-"))
    try:
        if args.work:
            prepare_workdir(work)
        ctx = DemoContext(work, args.config, args.utterances, args.epochs)
        for step in steps:
            console.log(f"[bold]{step.name}[/]")
            ctx.step, first, t0 = step.name, len(ctx.rows), time.perf_counter()
            step.run(ctx)
            if len(ctx.rows) > first:
                ctx.rows[first].seconds = time.perf_counter() - t0
        report(ctx, time.perf_counter() - started)
        if args.work:
            console.log(
                f"kept {work}: checkpoint train/final, WER reports in eval/ and baseline/, transcripts in transcripts/"
            )
    except KeyboardInterrupt:
        console.error("interrupted")
        return 130
    except AvsrError as e:
        # soft_wrap: the error stays one line however narrow the terminal
        console.stderr().print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True, highlight=False)
        if e.hint:
            console.stderr().print(f"[dim]hint: {escape(e.hint)}[/]", soft_wrap=True, highlight=False)
        return e.exit_code
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
