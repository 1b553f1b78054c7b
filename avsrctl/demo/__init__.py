"""`make demo` (`avsrctl demo`): avsrctl recognising speech, offline, in a few minutes.

Every step runs the real command in a subprocess and prints it first, so what scrolls by is
what a user can type next; each step's time is printed as it ends:
  1. train      - `avsrctl demo-data`: a small synthetic GRID-grammar corpus (48 px lips, test
                  speakers held out), then `avsrctl train` from scratch: live progress, one
                  parameter-update table, the loss falling. A few minutes only start the learning;
  2. synthetic  - the built-in model (`--checkpoint grid-small`, trained by `make grid-recipe`) on
                  that corpus's test split: audio, video and both, clean and in babble at -5 dB;
  3. real       - the built-in model on the real GRID recordings shipped in avsrctl/samples
                  (audio, video, both) next to faster-whisper tiny.en, and `avsrctl transcribe`
                  of one recording by each; then (3 drowned) that recording in babble at -5 dB
                  (3 to 6 voices of the synthetic test split over it, `avsrctl decode --snr`),
                  read by the built-in model from its audio alone and from both;
  4. summary    - one table of every figure this run computed (nothing is read from a file of
                  earlier results), whole names at 80 columns: each row gives the step over its
                  seconds, the model over its data, the modality over its condition, then the
                  result; below it, lines that set both against audio.
Without the built-in model (a build that has not run `make grid-recipe`), steps 2 and 3 say so
in one line and the rest still runs.

    avsrctl demo                             # offline-small training, grid-small
    avsrctl demo --work runs/demo            # keep corpus, checkpoints and results
    avsrctl demo --model runs/grid/train-both/final   # another trained checkpoint
    avsrctl demo --config tiny --utterances 24 --epochs 1 --model CKPT   # seconds (tests)

`run_demo` is the whole job; the `avsrctl demo` command (cli/demo.py) calls it under the CLI's error
boundary, and `python -m avsrctl.demo` (__main__.py) runs that command. The summary is report.py's.
"""

from __future__ import annotations

import json
import math
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
from avsrctl.demo.report import Row, comparison_lines, heard, print_report, summary_table
from avsrctl.errors import AvsrError, CheckpointError, UsageError
from avsrctl.wording import plural

AVSRCTL = [sys.executable, "-m", "avsrctl"]
MARKER = ".avsrctl-demo"  # marks a --work folder as the demo's own, so a rerun may replace its outputs
OUTPUTS = ("corpus", "train", "synthetic", "real", "transcripts", "drowned")  # what a rerun in the same folder replaces
UTTERANCES, EPOCHS = 48, 2  # about 2 minutes of offline-small training on 2 quiet CPU cores
VIDEO_SIZE = 48  # mouth video side in pixels: the GRID recipe's, so the built-in model reads this corpus
BABBLE_SNR_DB = -5  # other voices 5 dB louder than the speaker: audio alone mostly fails here
MODEL = "grid-small"  # the built-in model (avsrctl/pretrained.py)
BASELINE = "faster-whisper tiny.en"  # what `eval` / `transcribe` run without --checkpoint
# How long `make grid-recipe` takes: its training stages alone took 77 min (docs/RESULTS-synthetic.md), 88 min
# (docs/RESULTS.md, with preparing s1) and the adaptation 28 min, on 2 cores; corpus synthesis and evaluations add more.
RECIPE_TIME = "over three hours on 2 cores"

# On top of the chosen config for the from-scratch run. The video encoder (offline-small's lip
# front-end) sees the corpus's 48 px frames as they are, as in the GRID recipe. It trains, so
# --cache-features cannot be used here: the feature cache only holds frozen encoders' outputs.
TRAIN_SETTINGS = {
    "model.video_encoder.image_size": VIDEO_SIZE,
    "data.roi_size": VIDEO_SIZE,
    # Half the utterances lose one stream: a short run must show video alone often enough to learn it.
    "model.fusion.modality_dropout": 0.5,
    "data.max_batch_size": 4,  # a short run needs updates more than large batches (same compute per epoch)
    "train.warmup_steps": 5,  # a demo run has a few dozen steps; offline-small's 50 would never reach the peak
    "train.valid_max_utts": 8,  # validation decodes with the LLM: keep it a small share of the run
    "train.log_every": 2,  # enough loss records to see it fall in a run of a few dozen steps
    # GRID sentences are six words (~7 tokens); a briefly trained model babbles until this cap.
    "decode.max_new_tokens": 16,
}


@dataclass
class DemoContext:
    workdir: Path
    config: str
    utterances: int
    epochs: int
    model: str = MODEL  # a built-in name or a checkpoint folder
    missing: str | None = None  # why the model cannot run (a built-in not installed in this build)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wer: dict[tuple[str, str, str, str], float] = field(default_factory=dict)  # (model, data, modality, condition)
    drowned: dict[str, dict] = field(default_factory=dict)  # modality -> the drowned clip's results.jsonl row + data
    step: str = ""  # the step running now, named in a failure

    @property
    def corpus(self) -> Path:
        return self.workdir / "corpus"

    @property
    def checkpoint(self) -> Path:
        """The from-scratch run's final checkpoint."""
        return self.workdir / "train" / "final"

    @property
    def model_name(self) -> str:
        path = Path(self.model)
        return self.model if len(path.parts) < 3 else str(Path(*path.parts[-2:]))


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[DemoContext], None]


class StepFailed(AvsrError):
    """A command of the demo exited non-zero (its own error is printed just above)."""

    hint = "the command's own error is printed above it; run that command alone to look into it"


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


def say(message: str) -> None:
    console.stderr().print(message, soft_wrap=True, highlight=False)


# ----------------------------------------------------------------------- 1. corpus and a short training run


def make_corpus(ctx: DemoContext) -> None:
    avsrctl(ctx, "demo-data", ctx.corpus, "--utterances", str(ctx.utterances), "--size", str(VIDEO_SIZE))
    splits = {s: len(read_manifest(ctx.corpus / f"{s}.tsv")) for s in ("train", "valid", "test")}
    ctx.rows.append(
        Row("1 corpus", "-", "synthetic", "-", "-", ", ".join(f"{n} {s}" for s, n in splits.items()) + " utterances")
    )


def table_every(n_train: int, batch: int, epochs: int) -> int:
    """`--log-param-updates N` that prints the table once: past the middle of the run, before its end.

    Batches hold at most `batch` utterances, so a run has at least ceil(n_train / batch) steps an
    epoch (bucketing by length can add a few); 0.6 of that lands once, and 1.2 seldom exists."""
    return max(1, math.ceil(0.6 * math.ceil(n_train / batch) * epochs))


def train(ctx: DemoContext) -> None:
    n_train = len(read_manifest(ctx.corpus / "train.tsv"))
    every = table_every(n_train, TRAIN_SETTINGS["data.max_batch_size"], ctx.epochs)
    say(
        f"training {ctx.config} from scratch for {plural(ctx.epochs, 'epoch')} of {n_train} utterances: enough to see the "
        f"loss fall, not to recognise speech (that takes `make grid-recipe`, {RECIPE_TIME}; its model is step 2's)"
    )
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
        "--log-param-updates",
        str(every),
        *sets,
    )
    records = _records(ctx.checkpoint.parent / "metrics.jsonl")
    losses = [(r["step"], r["loss"]) for r in records if r.get("type") == "train" and r.get("loss") is not None]
    summary = next((r for r in reversed(records) if r.get("type") == "summary"), {})
    valid = summary.get("valid_loss")
    result = f"{summary.get('step', '?')} steps"
    if losses:
        result = f"train loss {losses[0][1]:.2f} (step {losses[0][0]}) -> {losses[-1][1]:.2f} (step {losses[-1][0]})"
    if valid is not None:
        result += f", valid loss {valid:.2f}"
    ctx.rows.append(Row("1 train", ctx.config, f"synthetic train ({n_train})", "both", "from scratch", result))
    ctx.notes.append(
        "a few minutes of training only starts learning: the loss falls, the transcripts are not right yet; "
        f"the built-in model {MODEL} is what `make grid-recipe` ({RECIPE_TIME}) trains"
    )


# ----------------------------------------------------------------------- 2. the built-in model, synthetic test split


def _model_ready(ctx: DemoContext, what: str) -> bool:
    if ctx.missing is None:
        return True
    say(f"[yellow]skipped {what}:[/] {escape(ctx.missing)}")
    return False


def synthetic(ctx: DemoContext) -> None:
    if not _model_ready(ctx, "the built-in model on the synthetic test split"):
        return
    test = ctx.corpus / "test.tsv"
    data = ("synthetic test", len(read_manifest(test)))
    babble = f"babble {BABBLE_SNR_DB} dB"
    for modality in ("audio", "video", "both"):
        out = ctx.workdir / "synthetic" / modality
        noisy = ["--snr", str(BABBLE_SNR_DB), "--noise", "babble"] if modality != "video" else []  # noise is audio
        avsrctl(
            ctx, "decode", "--checkpoint", ctx.model, "--tsv", test, "--modality", modality, "--output-dir", out, *noisy
        )
        _score(ctx, "2 built-in", ctx.model_name, data, modality, "clean", out / "wer.json")
        if noisy:
            from avsrctl.evaluate import snr_dirname

            _score(
                ctx, "2 built-in", ctx.model_name, data, modality, babble, out / snr_dirname(BABBLE_SNR_DB) / "wer.json"
            )


# ----------------------------------------------------------------------- 3. the real GRID recordings


def real(ctx: DemoContext) -> None:
    from avsrctl.data.samples import SAMPLES_DIR, write_sample_manifest

    tsv = write_sample_manifest(ctx.workdir / "real")
    n = len(read_manifest(tsv))
    say(f"wrote {tsv}: the {n} real GRID recordings shipped in {SAMPLES_DIR} (CC BY 4.0, see its README.md)")
    data = ("real GRID", n)
    if _model_ready(ctx, "the built-in model on the real GRID recordings"):
        out = ctx.workdir / "real" / "model"
        avsrctl(ctx, "eval", "--tsv", tsv, "--checkpoint", ctx.model, "--modality", "all", "--output-dir", out)
        for modality in ("audio", "video", "both"):
            _score(ctx, "3 real", ctx.model_name, data, modality, "clean", out / modality / "wer.json")
    out = ctx.workdir / "real" / "baseline"
    avsrctl(ctx, "eval", "--tsv", tsv, "--output-dir", out)
    _score(ctx, "3 real", BASELINE, data, "audio", "clean", out / "wer.json")


def transcribe(ctx: DemoContext) -> None:
    from avsrctl.data.samples import sample_clips
    from avsrctl.metrics import score

    clip = sample_clips()[0]
    folder = ctx.workdir / "transcripts"
    systems = [(BASELINE, [])]
    if _model_ready(ctx, f"`avsrctl transcribe --checkpoint {ctx.model}`"):
        systems.insert(0, (ctx.model_name, ["--checkpoint", ctx.model]))
    for name, extra in systems:
        out = folder / f"{clip.id}.{name.replace('/', '_').replace(' ', '_')}.txt"
        avsrctl(ctx, "transcribe", clip.path, *extra, "--output", out)
        text = " ".join(out.read_text(encoding="utf-8").split())
        r = score([clip.text], [text])
        modality = "both" if extra else "audio"
        ctx.rows.append(
            Row("3 transcribe", name, clip.path.name, modality, "clean", heard(text, r.hits, r.ref_words, clip.text))
        )


def drowned(ctx: DemoContext) -> None:
    """The first shipped clip drowned in babble at -5 dB, decoded from its audio alone and from both.

    `decode --snr` draws babble from the other utterances of its manifest (never the one it drowns),
    so the clip goes into a manifest with the synthetic test split's voices: 3 to 6 of them talk
    over the real speaker. Only the clip's rows are reported."""
    if not _model_ready(ctx, "the built-in model on a real recording in babble"):
        return
    from avsrctl.data.manifest import write_manifest
    from avsrctl.data.noise import BABBLE_TALKERS
    from avsrctl.data.samples import sample_clips, write_sample_manifest
    from avsrctl.evaluate import snr_dirname

    clip = sample_clips()[0]
    folder = ctx.workdir / "drowned"
    [utt] = [u for u in read_manifest(write_sample_manifest(folder, split="samples")) if u.id == clip.id]
    voices = read_manifest(ctx.corpus / "test.tsv").utterances[: BABBLE_TALKERS[1]]
    tsv = folder / "test.tsv"
    write_manifest(tsv, tsv.with_suffix(".wrd"), folder, [utt, *voices])
    say(f"wrote {tsv}: {clip.path.name} and {plural(len(voices), 'synthetic test voice')} for its babble")
    condition = f"babble {BABBLE_SNR_DB} dB"
    for modality in ("audio", "both"):
        out = folder / modality
        avsrctl(
            ctx,
            "decode",
            "--checkpoint",
            ctx.model,
            "--tsv",
            tsv,
            "--modality",
            modality,
            "--output-dir",
            out,
            "--snr",
            str(BABBLE_SNR_DB),
            "--noise",
            "babble",
        )
        [row] = [r for r in _records(out / snr_dirname(BABBLE_SNR_DB) / "results.jsonl") if r["id"] == clip.id]
        ctx.drowned[modality] = {**row, "data": clip.path.name}
        result = heard(row["hypothesis"], row["hits"], row["ref_words"], row["reference"])
        ctx.rows.append(Row("3 drowned", ctx.model_name, clip.path.name, modality, condition, result))


# ----------------------------------------------------------------------- 4. summary


def _records(metrics: Path) -> list[dict]:
    if not metrics.is_file():
        return []
    return [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]


def _score(
    ctx: DemoContext, step: str, model: str, data: tuple[str, int], modality: str, condition: str, report: Path
) -> None:
    """A row for the WER report a command wrote; `data` is (test set, utterances)."""
    r = json.loads(report.read_text(encoding="utf-8"))
    ctx.wer[(model, data[0], modality, condition)] = r["wer"]
    result = f"WER {100 * r['wer']:.1f}% ({r['errors']}/{r['ref_words']} words)"
    ctx.rows.append(Row(step, model, f"{data[0]} ({data[1]})", modality, condition, result))


def comparisons(ctx: DemoContext) -> list[str]:
    """Lines that set this run's figures side by side (only those it computed)."""
    return comparison_lines(ctx.wer, ctx.drowned, ctx.model_name, f"babble {BABBLE_SNR_DB} dB", BASELINE)


def summary(ctx: DemoContext, elapsed: float):
    """The summary table of this run's rows (`demo_report.summary_table`), titled with its settings."""
    title = (
        f"avsrctl demo: every figure of this run\nmodel {ctx.model_name}; training {ctx.config}, "
        f"{ctx.utterances} utterances, {plural(ctx.epochs, 'epoch')}"
    )
    return summary_table(ctx.rows, title, f"total {elapsed:.0f} s")


def report(ctx: DemoContext, elapsed: float) -> None:
    """The summary table and the comparison lines on stdout, the notes on stderr."""
    print_report(summary(ctx, elapsed), comparisons(ctx), ctx.notes)


STEPS: tuple[Step, ...] = (
    Step("corpus", make_corpus),
    Step("train", train),
    Step("synthetic", synthetic),
    Step("real", real),
    Step("transcribe", transcribe),
    Step("drowned", drowned),
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


def model_missing(model: str) -> str | None:
    """Why MODEL cannot run (a built-in not installed in this build), or None when it can. A name
    that is neither a built-in nor an existing folder is a usage error."""
    from avsrctl.pretrained import is_builtin_name, resolve_checkpoint

    try:
        path = resolve_checkpoint(model)
    except CheckpointError as e:
        if is_builtin_name(model):  # known, but not installed in this build
            return str(e)
        raise UsageError(f"--model {model}: {e}", hint=e.hint) from None
    if not path.is_dir():
        raise UsageError(f"--model {model}: no such checkpoint folder", hint="pass a folder written by `avsrctl train`")
    return None


def run_demo(
    work: Path | None = None,
    *,
    config: str = "offline-small",
    utterances: int = UTTERANCES,
    epochs: int = EPOCHS,
    model: str = MODEL,
    steps: tuple[Step, ...] | None = None,
) -> None:
    """Run `steps` (default: STEPS, all of them) in WORK (default: a temporary folder, removed at the end),
    then print the summary. A failing step raises its `AvsrError` (`StepFailed` for a command)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo and its commands never reach for a model hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    steps = STEPS if steps is None else steps
    started = time.perf_counter()
    folder = work.expanduser().resolve() if work else Path(tempfile.mkdtemp(prefix="avsrctl-demo-"))
    try:
        missing = model_missing(model)
        if work:
            prepare_workdir(folder)
        model = model if missing or not Path(model).exists() else str(Path(model).resolve())
        ctx = DemoContext(folder, config, utterances, epochs, model, missing)
        for step in steps:
            console.log(f"[bold]{step.name}[/]")
            ctx.step, first, t0 = step.name, len(ctx.rows), time.perf_counter()
            step.run(ctx)
            seconds = time.perf_counter() - t0
            if len(ctx.rows) > first:
                ctx.rows[first].seconds = seconds
            console.log(f"[bold]{step.name}[/]: {seconds:.0f} s")
        report(ctx, time.perf_counter() - started)
        if work:
            console.log(
                f"kept {folder}: checkpoint train/final, WER reports in synthetic/, real/ and drowned/, "
                "transcripts in transcripts/"
            )
    finally:
        if not work:
            shutil.rmtree(folder, ignore_errors=True)
