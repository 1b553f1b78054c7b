"""`avsrctl eval`: Score hypotheses, a checkpoint, or the faster-whisper baseline against references.

Three sources of hypotheses, one scorer:
  --hyp FILE       an existing hypothesis file, one line per manifest row, same order (repeat it to
                   score several systems side by side, each compared with the first);
  --checkpoint DIR a trained AVSR model, decoded per modality (`--modality all`: each it serves);
  neither          the baseline: faster-whisper with the offline Whisper tiny.en, audio only.
This module parses and checks the options; `eval_runs.run_eval` makes, pairs and scores the runs and
lays out the output folders, and cli/scores.py shows the results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from avsrctl.cli import console
from avsrctl.cli.options import (
    MAX_FAILED,
    MODALITIES,
    NORMALIZERS,
    SCORE_FORMATS,
    BeamSizeOpt,
    CheckpointOpt,
    DeviceOpt,
    MaxFailedOpt,
    MinLipSyncOpt,
    QuietOpt,
    ScoreFormatOpt,
    ThreadsOpt,
    TsvOpt,
    WrdOpt,
    check_choice,
    check_failed_share,
    require_writable_folder,
    use_quiet,
    use_threads,
)
from avsrctl.cli.scores import log_interval, log_lip_use, show_alignments, summary_table, warn_failed
from avsrctl.errors import UsageError


def eval_(
    tsv: TsvOpt = None,
    wrd: WrdOpt = None,
    hyp: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--hyp",
            help="Hypotheses to score: one line per .tsv row, same order (empty line = no output). "
            "Repeat it to score several systems side by side, each compared with the first.",
        ),
    ] = None,
    checkpoint: CheckpointOpt = None,
    modality: Annotated[
        Optional[str],
        typer.Option(
            "--modality",
            "-m",
            help="With --checkpoint: audio, video, both, or all (each modality the "
            "checkpoint serves; JSON output is then a list). Default: the checkpoint's modality.",
        ),
    ] = None,
    normalizer: Annotated[
        str,
        typer.Option(
            "--normalizer",
            "-n",
            help="basic (lower case, no punctuation but apostrophes), whisper "
            "(Whisper's English normaliser), none, or all (one row each; the first is primary).",
        ),
    ] = "basic",
    fmt: ScoreFormatOpt = "table",
    output_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--output-dir",
            "-o",
            help="Also write wer.json, hyp.wrd and results.jsonl here "
            "(one subfolder per modality with --modality all).",
        ),
    ] = None,
    baseline_model: Annotated[
        Optional[str],
        typer.Option(
            "--baseline-model",
            help="faster-whisper model for the baseline: a CTranslate2 folder or a "
            "name like small.en (needs a model hub). Default: the offline tiny.en.",
        ),
    ] = None,
    beam_size: BeamSizeOpt = None,
    device: DeviceOpt = None,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show each utterance's alignment (substitutions, deletions, insertions)."),
    ] = False,
    batch_size: Annotated[
        Optional[int],
        typer.Option(
            "--batch-size", min=1, help="With --checkpoint: utterances generated together (default: its config's)."
        ),
    ] = None,
    min_lip_sync: MinLipSyncOpt = None,
    max_failed: MaxFailedOpt = MAX_FAILED,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Score hypotheses, a checkpoint, or the faster-whisper baseline against references."""
    hyp = list(hyp or []) or None  # typer gives [] for a repeatable option never passed
    use_quiet(quiet)
    use_threads(threads)
    if tsv is None:
        raise UsageError("--tsv is required (the manifest whose .wrd holds the references)")
    check_choice("--format", fmt, SCORE_FORMATS)
    check_choice("--normalizer", normalizer, NORMALIZERS + ("all",))
    if hyp is not None and checkpoint is not None:
        raise UsageError("--hyp and --checkpoint both supply hypotheses: pass one")
    if baseline_model is not None and (hyp is not None or checkpoint is not None):
        raise UsageError("--baseline-model applies only when scoring the baseline (no --hyp, no --checkpoint)")
    check_choice("--modality", modality, MODALITIES + ("all",))
    if modality not in (None, "audio") and checkpoint is None:
        raise UsageError(
            f"--modality {modality} needs --checkpoint: "
            + ("--hyp files are scored as they are" if hyp is not None else "the baseline is audio only")
        )
    if hyp is not None and (beam_size is not None or device is not None):
        raise UsageError("--beam-size and --device apply to decoding, not to a --hyp file")
    if min_lip_sync is not None and checkpoint is None:
        raise UsageError("--min-lip-sync applies to --checkpoint decoding of a fused model")
    from avsrctl.decoding import check_min_lip_sync

    check_min_lip_sync(min_lip_sync)
    if batch_size is not None and checkpoint is None:
        raise UsageError("--batch-size applies to --checkpoint decoding (the baseline decodes one clip at a time)")
    if output_dir is not None:  # before any decoding or scoring
        require_writable_folder(output_dir, "--output-dir")

    from avsrctl.eval_runs import EvalRequest, run_eval, run_label

    request = EvalRequest(
        tsv=tsv,
        wrd=wrd,
        hyp=tuple(hyp or ()),
        checkpoint=checkpoint,
        modality=modality,
        normalizers=NORMALIZERS if normalizer == "all" else (normalizer,),
        output_dir=output_dir,
        baseline_model=baseline_model,
        beam_size=beam_size,
        device=device,
        batch_size=batch_size,
        min_lip_sync=min_lip_sync,
        cpu_threads=threads or 0,
    )
    outcome = run_eval(
        request, status=console.chatter().status, progress=_progress, note=lambda m: console.log(f"[dim]{m}[/]")
    )
    runs, reports = outcome.runs, outcome.reports
    for run in runs:
        warn_failed(run.failed)
    if verbose:
        for run, run_reports in zip(runs, reports):
            show_alignments(run_reports[0], title=run.system if len(runs) > 1 else None, to_stderr=fmt == "json")
    if fmt == "json":
        payload = outcome.summaries[0] if len(runs) == 1 else outcome.summaries
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        if len(runs) == 1:
            title = runs[0].system
        elif hyp is not None:
            title = f"{len(runs)} hypothesis files on {outcome.manifest.tsv.name}"
        else:
            title = f"{checkpoint} on {outcome.manifest.tsv.name}"
        console.stdout().print(summary_table(runs, reports, title))
    for run, run_reports in zip(runs, reports):
        log_interval(run_label(run), run_reports[0])
        log_lip_use(run_label(run), run, run.settings.get("min_lip_sync"))
    for i, j, better, tied in outcome.pairs:
        console.log(
            f"{run_label(runs[i])} vs {run_label(runs[j])}: fewer errors in {100 * better:.0f}% of resamples, "
            f"as many in {100 * tied:.0f}% (paired bootstrap over utterances)"
        )
    for paths in outcome.write():
        console.log(f"wrote {paths['wer']}, {paths['hyp'].name}, {paths['results'].name}")
    for run in runs:  # after the scores are shown and written, so the failures can be looked at
        check_failed_share(len(run.failed), len(outcome.manifest), max_failed)


def _progress():
    """A transient progress bar on stderr (silent with --quiet) for a decoding stage."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console.chatter(), transient=True)
