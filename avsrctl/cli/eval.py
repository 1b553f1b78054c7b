"""`avsrctl eval`: Score hypotheses, a checkpoint, or the faster-whisper baseline against references.

Three sources of hypotheses, one scorer:
  --hyp FILE       an existing hypothesis file, one line per manifest row, same order (repeat it to
                   score several systems side by side, each compared with the first);
  --checkpoint DIR a trained AVSR model, decoded per modality (`--modality all`: each it serves);
  neither          the baseline: faster-whisper with the offline Whisper tiny.en, audio only.
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
from avsrctl.errors import UsageError
from avsrctl.paths import refuse_overwrite


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

    from avsrctl.data.manifest import read_manifest
    from avsrctl.evaluate import Run, score_run

    manifest = read_manifest(tsv, wrd, check_files=hyp is None)
    if output_dir is not None:  # no result file may be one of the files read
        from avsrctl.metrics import result_paths

        media = [p for u in manifest for p in (u.video, u.audio)] if hyp is None else []
        outputs = [p for folder in _possible_folders(output_dir, hyp, modality) for p in result_paths(folder).values()]
        refuse_overwrite(outputs, [manifest.tsv, manifest.wrd, *(hyp or []), *media], "--output-dir")
    if hyp is not None:
        from avsrctl.metrics import read_hypotheses

        runs = [Run(f"hypotheses from {h}", read_hypotheses(h), settings={"hyp": str(h)}) for h in hyp]
    elif checkpoint is not None:
        runs = _checkpoint_runs(checkpoint, manifest, modality, beam_size, device, batch_size, min_lip_sync)
    else:
        runs = [_baseline_run(manifest, baseline_model, beam_size or 5, device, threads or 0)]

    names = list(NORMALIZERS) if normalizer == "all" else [normalizer]
    results = [score_run(run, manifest, names, hyp_name=run.settings.get("hyp", run.system)) for run in runs]

    if verbose:
        for run, (reports, _) in zip(runs, results):
            _show_alignments(reports[0], title=run.system if len(runs) > 1 else None, to_stderr=fmt == "json")
    pairs = _pairs(runs, [r for r, _ in results])
    for i, j, better, tied in pairs:
        results[i][1].setdefault("paired", {})[_label(runs[j])] = {
            "fewer_errors": round(better, 4),
            "as_many": round(tied, 4),
        }
    summaries = [summary for _, summary in results]
    if fmt == "json":
        payload = summaries[0] if len(summaries) == 1 else summaries
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        if len(runs) == 1:
            title = runs[0].system
        elif hyp is not None:
            title = f"{len(runs)} hypothesis files on {manifest.tsv.name}"
        else:
            title = f"{checkpoint} on {manifest.tsv.name}"
        console.stdout().print(_summary_table(runs, [r for r, _ in results], title))
    from avsrctl.cli.decode import log_interval, log_lip_use

    for run, (reports, _) in zip(runs, results):
        log_interval(_label(run), reports[0])
        log_lip_use(_label(run), run, run.settings.get("min_lip_sync"))
    for i, j, better, tied in pairs:
        console.log(
            f"{_label(runs[i])} vs {_label(runs[j])}: fewer errors in {100 * better:.0f}% of resamples, "
            f"as many in {100 * tied:.0f}% (paired bootstrap over utterances)"
        )
    if output_dir is not None:
        from avsrctl.evaluate import fusion_fields
        from avsrctl.metrics import write_results

        refs = [u.text for u in manifest]
        for k, (run, (reports, summary)) in enumerate(zip(runs, results), 1):
            folder = _run_folder(output_dir, k, len(runs), run.modality, run.settings.get("hyp"))
            rows = fusion_fields(run)[1]
            paths = write_results(folder, reports[0], refs, run.hypotheses, summary=summary, extra=rows)
            console.log(f"wrote {paths['wer']}, {paths['hyp'].name}, {paths['results'].name}")
    for run in runs:  # after the scores are shown and written, so the failures can be looked at
        check_failed_share(len(run.failed), len(manifest), max_failed)


def _run_folder(output_dir: Path, k: int, n_runs: int, modality: str | None, hyp: str | None) -> Path:
    """Where run `k` of `n_runs` writes: the folder itself for one run, else a subfolder per modality, or
    numbered per hypothesis file (two systems' files are often both named hyp.txt)."""
    if n_runs == 1:
        return output_dir
    if modality is not None:
        return output_dir / modality
    return output_dir / f"{k}-{Path(hyp).stem}"


def _possible_folders(output_dir: Path, hyp: list[Path] | None, modality: str | None) -> list[Path]:
    """Every folder `_run_folder` can give before the runs exist (with --modality all, each modality's)."""
    if hyp is not None:
        return [_run_folder(output_dir, k, len(hyp), None, str(h)) for k, h in enumerate(hyp, 1)]
    if modality == "all":
        return [output_dir] + [_run_folder(output_dir, 1, 2, m, None) for m in MODALITIES]
    return [output_dir]


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console.chatter(), transient=True)


def _warn_failed(failed: dict[str, str]) -> None:
    from rich.markup import escape

    for uid, reason in failed.items():
        console.log(f"[yellow]warning:[/] {escape(uid)}: scored as an empty hypothesis: {escape(reason)}")


def _baseline_run(manifest, model: str | None, beam_size: int, device: str | None, threads: int = 0):
    from avsrctl.baseline import describe_model
    from avsrctl.evaluate import baseline_run

    console.log(
        f"[dim]no --hyp or --checkpoint: scoring the baseline, faster-whisper {describe_model(model)} (audio only)[/]"
    )
    with _progress() as bar:
        run = baseline_run(manifest, model, beam_size, device, progress=bar, cpu_threads=threads)
    _warn_failed(run.failed)
    return run


def _checkpoint_runs(
    checkpoint: Path,
    manifest,
    modality: str | None,
    beam_size: int | None,
    device: str | None,
    batch_size=None,
    min_lip_sync: float | None = None,
):
    from avsrctl.checkpoint import load_checkpoint
    from avsrctl.decoding import use_min_lip_sync
    from avsrctl.evaluate import checkpoint_runs

    with console.chatter().status(f"loading {checkpoint}"):
        model, cfg, meta = load_checkpoint(checkpoint, device=device or "auto")
    if min_lip_sync is not None:
        use_min_lip_sync(model, min_lip_sync)
    with _progress() as bar:
        runs = checkpoint_runs(
            model, cfg, meta, checkpoint, manifest, modality, beam_size, progress=bar, batch_size=batch_size
        )
    for run in runs:
        _warn_failed(run.failed)
    return runs


def _label(run) -> str:
    """How a run is named in lines and tables: its modality, else its hypothesis file, else its system."""
    return run.modality or run.settings.get("hyp") or run.system


def _short_names(paths: list[Path]) -> list[str]:
    """The fewest trailing path parts that tell the files apart: hyp.txt and other/hyp.txt."""
    for k in range(1, max(len(p.parts) for p in paths) + 1):
        names = ["/".join(p.parts[-k:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def _pairs(runs, reports_per_run) -> list[tuple[int, int, float, float]]:
    """(i, j, fewer errors, as many): run i against run j on the same utterances, as shares of paired
    bootstrap resamples (`metrics.paired_comparison`). A checkpoint's 'both' is set against each single
    stream decoded beside it; of several hypothesis files, each against the first."""
    from avsrctl.metrics import paired_comparison

    errors = [[u.errors for u in reports[0].utterances] for reports in reports_per_run]
    modalities = [run.modality for run in runs]
    if "both" in modalities:
        i = modalities.index("both")
        pairs = [(i, modalities.index(m)) for m in ("audio", "video") if m in modalities]
    elif len(runs) > 1 and all(m is None for m in modalities):
        pairs = [(i, 0) for i in range(1, len(runs))]
    else:
        pairs = []
    return [(i, j, *paired_comparison(errors[i], errors[j])) for i, j in pairs]


def _summary_table(runs, reports_per_run, title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    several = len(runs) > 1
    from_files = all("hyp" in run.settings for run in runs)
    first = "hypotheses" if from_files else "modality"
    files = _short_names([Path(run.settings["hyp"]) for run in runs]) if from_files else None
    columns = ([first] if several else []) + ["normaliser", "WER", "CER", "sub", "del", "ins", "words", "utts"]
    for col in columns:
        table.add_column(col, justify="right" if col not in (first, "normaliser") else "left", no_wrap=col != first)
    for k, (run, reports) in enumerate(zip(runs, reports_per_run)):
        for r in reports:
            row = [
                f"{100 * r.wer:.2f}%",
                f"{100 * r.cer:.2f}%",
                str(r.substitutions),
                str(r.deletions),
                str(r.insertions),
                str(r.ref_words),
                str(r.n_utterances),
            ]
            name = _label(run) if files is None else files[k]
            table.add_row(*([name] if several else []), r.normalizer, *row)
    return table


def _show_alignments(report, *, title: str | None, to_stderr: bool) -> None:
    from rich.markup import escape

    from avsrctl.metrics import render_diff

    out = console.stderr() if to_stderr else console.stdout()
    if title:
        out.print(f"[bold underline]{escape(title)}[/]")
    for u in report.utterances:
        rate = "n/a" if u.wer is None else f"{100 * u.wer:.1f}%"
        out.print(f"[bold]{escape(u.id)}[/] [dim]({rate})[/] {render_diff(u)}")
