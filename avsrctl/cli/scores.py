"""How `decode` and `eval` show scores: tables on stdout, per-utterance pairs or alignments, and the
stderr lines (the WER's interval, how a fused model used the lips, utterances scored as empty)."""

from __future__ import annotations

from pathlib import Path

from avsrctl.cli import console
from avsrctl.wording import plural


def results_table(rows: list[tuple[str, object, object]], title: str):
    """decode's rich table of (condition, DecodeOutput, ErrorReport) rows."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("condition", "WER %", "CER %", "sub", "del", "ins", "words", "utts", "failed", "utt/s"):
        table.add_column(col, justify="left" if col == "condition" else "right")
    for label, out, rep in rows:
        table.add_row(
            label,
            f"{100 * rep.wer:.2f}",
            f"{100 * rep.cer:.2f}",
            str(rep.substitutions),
            str(rep.deletions),
            str(rep.insertions),
            str(rep.ref_words),
            str(rep.n_utterances),
            str(len(out.failed)),
            f"{out.utterances_per_second:.2f}" if out.seconds > 0 else "-",
        )
    return table


def _short_names(paths: list[Path]) -> list[str]:
    """The fewest trailing path parts that tell the files apart: hyp.txt and other/hyp.txt."""
    for k in range(1, max(len(p.parts) for p in paths) + 1):
        names = ["/".join(p.parts[-k:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def summary_table(runs, reports_per_run, title: str):
    """eval's rich table: one row per run and normaliser (`evaluate.Run`, its `ErrorReport`s)."""
    from rich.table import Table

    from avsrctl.eval_runs import run_label

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
            name = run_label(run) if files is None else files[k]
            table.add_row(*([name] if several else []), r.normalizer, *row)
    return table


def print_verbose(manifest, report, lips=None, min_lip_sync: float = 0.0) -> None:
    """decode -v: each utterance's reference, hypothesis and differences; for a fused model how it used
    the lips (`lips.LipUse` per row, worded by `lips.utterance_note`)."""
    from avsrctl.lips import utterance_note
    from avsrctl.metrics import render_diff

    con = console.stdout()
    for utt, u, use in zip(report.utterances, manifest, lips or [None] * len(manifest)):
        mark = "[green]ok[/]" if utt.errors == 0 else f"[red]{utt.errors} err[/]"
        con.print(f"[bold]{u.id}[/] {mark}{utterance_note(use, min_lip_sync)}")
        con.print(f"  REF: {utt.reference}", markup=False)
        con.print(f"  HYP: {utt.hypothesis}", markup=False)
        if utt.errors:
            con.print(f"  DIF: {render_diff(utt)}")


def show_alignments(report, *, title: str | None, to_stderr: bool) -> None:
    """eval -v: each utterance's alignment (substitutions, deletions, insertions) and its WER."""
    from rich.markup import escape

    from avsrctl.metrics import render_diff

    out = console.stderr() if to_stderr else console.stdout()
    if title:
        out.print(f"[bold underline]{escape(title)}[/]")
    for u in report.utterances:
        rate = "n/a" if u.wer is None else f"{100 * u.wer:.1f}%"
        out.print(f"[bold]{escape(u.id)}[/] [dim]({rate})[/] {render_diff(u)}")


def warn_failed(failed: dict[str, str]) -> None:
    """One warning per utterance whose media could not be decoded (id -> reason)."""
    from rich.markup import escape

    for uid, reason in failed.items():
        console.log(f"[yellow]warning:[/] {escape(uid)}: scored as an empty hypothesis: {escape(reason)}")


def log_interval(label: str, report) -> None:
    """One stderr line: the WER of an `ErrorReport` with its 95% bootstrap interval over utterances."""
    if report.wer_ci95 is not None:
        lo, hi = report.wer_ci95
        console.log(
            f"{label}: WER {100 * report.wer:.1f}%, 95% interval {100 * lo:.1f}-{100 * hi:.1f}% "
            f"(bootstrap over {plural(report.n_utterances, 'utterance')})"
        )


def log_lip_use(label: str, out, min_lip_sync: float | None) -> None:
    """A fused model's decode (`DecodeOutput` or `Run`): one stderr line on how it used the lips."""
    from avsrctl.lips import lip_use_line

    summary = out.lip_summary(min_lip_sync)
    if summary is not None:
        console.log(f"{label}: {lip_use_line(*summary, 'utterance')}")
