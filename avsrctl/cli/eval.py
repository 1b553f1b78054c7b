"""`avsrctl eval`: Score hypotheses, a checkpoint, or the faster-whisper baseline against references.

Three sources of hypotheses, one scorer:
  --hyp FILE       an existing hypothesis file, one line per manifest row, same order;
  --checkpoint DIR a trained AVSR model (arrives with `avsrctl decode`);
  neither          the baseline: faster-whisper with the offline Whisper tiny.en, audio only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from avsrctl.cli import console
from avsrctl.cli.options import CheckpointOpt, TsvOpt, WrdOpt
from avsrctl.errors import UsageError

NORMALIZER_CHOICES = ("basic", "whisper", "none", "all")


def eval_(
    tsv: TsvOpt = None,
    wrd: WrdOpt = None,
    hyp: Annotated[
        Optional[Path],
        typer.Option("--hyp", help="Hypotheses to score: one line per .tsv row, same order (empty line = no output)."),
    ] = None,
    checkpoint: CheckpointOpt = None,
    modality: Annotated[
        Optional[str], typer.Option("--modality", "-m", help="With --checkpoint: audio, video, both or all.")
    ] = None,
    normalizer: Annotated[
        str,
        typer.Option("--normalizer", "-n", help="basic (lower case, no punctuation but apostrophes), whisper "
                     "(Whisper's English normaliser), none, or all (one row each; the first is primary)."),
    ] = "basic",
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json (to stdout).")] = "table",
    output_dir: Annotated[
        Optional[Path],
        typer.Option("--output-dir", "-o", help="Also write wer.json, hyp.wrd and results.jsonl here."),
    ] = None,
    baseline_model: Annotated[
        Optional[str],
        typer.Option("--baseline-model", help="faster-whisper model for the baseline: a CTranslate2 folder or a "
                     "name like small.en (needs a model hub). Default: the offline tiny.en."),
    ] = None,
    beam_size: Annotated[int, typer.Option("--beam-size", min=1, help="Beam width of the baseline.")] = 5,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show each utterance's alignment (substitutions, deletions, insertions).")
    ] = False,
) -> None:
    """Score hypotheses, a checkpoint, or the faster-whisper baseline against references."""
    if tsv is None:
        raise UsageError("--tsv is required (the manifest whose .wrd holds the references)")
    if fmt not in ("table", "json"):
        raise UsageError(f"--format must be table or json, got {fmt!r}")
    if normalizer not in NORMALIZER_CHOICES:
        raise UsageError(f"--normalizer must be one of {', '.join(NORMALIZER_CHOICES)}, got {normalizer!r}")
    if hyp is not None and checkpoint is not None:
        raise UsageError("--hyp and --checkpoint both supply hypotheses: pass one")
    if baseline_model is not None and (hyp is not None or checkpoint is not None):
        raise UsageError("--baseline-model applies only when scoring the baseline (no --hyp, no --checkpoint)")
    if modality is not None and checkpoint is None and modality != "audio":
        raise UsageError(f"--modality {modality} needs --checkpoint: "
                         + ("--hyp files are scored as they are" if hyp is not None else "the baseline is audio only"))
    if modality is not None and modality not in ("audio", "video", "both", "all"):
        raise UsageError(f"--modality must be audio, video, both or all, got {modality!r}")
    if checkpoint is not None:
        raise UsageError("checkpoint evaluation arrives with `avsrctl decode`",
                         hint="score its output with --hyp, or leave out --checkpoint to score the baseline")

    from avsrctl.data.manifest import read_manifest
    from avsrctl.metrics import NORMALIZERS, read_hypotheses, score, write_results

    manifest = read_manifest(tsv, wrd, check_files=hyp is None)
    refs = [u.text for u in manifest]
    failed: dict[str, str] = {}
    if hyp is not None:
        hyps, system, hyp_name = read_hypotheses(hyp), f"hypotheses from {hyp}", str(hyp)
    else:
        hyps, failed, system = _baseline_hypotheses(manifest, baseline_model, beam_size)
        hyp_name = system

    names = list(NORMALIZERS) if normalizer == "all" else [normalizer]
    ids = [u.id for u in manifest]
    reports = [score(refs, hyps, n, ids=ids, ref_name=str(manifest.wrd), hyp_name=hyp_name) for n in names]
    primary = reports[0]
    summary = {**primary.to_dict(), "system": system, "tsv": str(manifest.tsv), "wrd": str(manifest.wrd)}
    if hyp is None:
        summary["failed"] = failed
    if len(reports) > 1:
        summary["by_normalizer"] = {r.normalizer: r.to_dict() for r in reports}
    if "whisper" in names:
        from avsrctl.metrics import spelling_mapping

        summary["whisper_spelling_mapping"] = spelling_mapping()[1]

    if verbose:
        _show_alignments(primary, to_stderr=fmt == "json")
    if fmt == "json":
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        console.stdout().print(_summary_table(reports, system))
    if output_dir is not None:
        paths = write_results(output_dir, primary, refs, hyps, summary=summary)
        console.log(f"wrote {paths['wer']}, {paths['hyp'].name}, {paths['results'].name}")


def _baseline_hypotheses(manifest, model: str | None, beam_size: int) -> tuple[list[str], dict[str, str], str]:
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from avsrctl.baseline import FasterWhisperRecognizer, WhisperOptions, describe_model, recognize_manifest

    console.log(f"[dim]no --hyp or --checkpoint: scoring the baseline, faster-whisper {describe_model(model)} "
                "(audio only)[/]")
    recognizer = FasterWhisperRecognizer(WhisperOptions(model=model, beam_size=beam_size))
    columns = (TextColumn("transcribing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console.stderr(), transient=True) as bar:
        task = bar.add_task("baseline", total=len(manifest))
        hyps, failed = recognize_manifest(manifest, recognizer, progress=lambda i: bar.advance(task))
    for uid, reason in failed.items():
        console.log(f"[yellow]warning:[/] {escape(uid)}: scored as an empty hypothesis: {escape(reason)}")
    return hyps, failed, f"baseline {recognizer.name}"


def _summary_table(reports, system: str):
    from rich.table import Table

    table = Table(title=f"{system}", title_justify="left")
    for col in ("normaliser", "WER", "CER", "sub", "del", "ins", "ref words", "utterances"):
        table.add_column(col, justify="left" if col == "normaliser" else "right")
    for r in reports:
        table.add_row(r.normalizer, f"{100 * r.wer:.2f}%", f"{100 * r.cer:.2f}%", str(r.substitutions),
                      str(r.deletions), str(r.insertions), str(r.ref_words), str(r.n_utterances))
    return table


def _show_alignments(report, *, to_stderr: bool) -> None:
    from rich.markup import escape

    from avsrctl.metrics import render_diff

    out = console.stderr() if to_stderr else console.stdout()
    for u in report.utterances:
        rate = "n/a" if u.wer is None else f"{100 * u.wer:.1f}%"
        out.print(f"[bold]{escape(u.id)}[/] [dim]({rate})[/] {render_diff(u)}")
