"""The demo's summary: one table of every figure a run computed, then the lines below it.

`Row` is one line of the table (the demo's steps add them); `summary_table` renders the rows narrow
enough for 80 columns (a pipe) with every name whole; `comparison_lines` sets figures side by side;
`print_report` prints the table and those lines on stdout and the notes on stderr.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich import box
from rich.markup import escape
from rich.table import Table

from avsrctl.cli import console


@dataclass
class Row:
    """One line of the summary table."""

    step: str
    model: str
    data: str
    modality: str
    condition: str
    result: str
    seconds: float | None = None  # on the first row of each step


def heard(text: str, hits: int, ref_words: int, reference: str) -> str:
    """A result cell for one transcript: the text, its words right, and the reference below it."""
    return escape(f'"{text}"') + f" ({hits}/{ref_words} words right)\n[dim]reference: {escape(reference)}[/]"


def summary_table(rows: list[Row], title: str, caption: str) -> Table:
    """One row per figure, narrow enough for 80 columns (a pipe) with every name whole: the step over
    its seconds, the model over its data, the modality over its condition; only the result wraps."""
    table = Table(
        title=title,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    table.add_column("step", no_wrap=True)
    table.add_column("model\ndata", no_wrap=True)  # names are never cut: the result column gives way
    table.add_column("modality\ncondition", no_wrap=True)
    table.add_column("result", overflow="fold")
    above = None  # (step, model, data) of the row above
    for r in rows:
        step, source = "", f"{escape(r.model)}\n{escape(r.data)}"
        if above is None or r.step != above[0]:  # a new step: its name and seconds, a blank line before it
            if above is not None:
                table.add_section()
            step = escape(r.step) + ("" if r.seconds is None else f"\n[dim]{r.seconds:.0f} s[/]")
        elif (r.model, r.data) == above[1:]:
            source = ""  # as on the row above
        above = (r.step, r.model, r.data)
        table.add_row(step, source, f"{r.modality}\n{escape(r.condition)}", r.result)
    return table


def comparison_lines(wer: dict, drowned: dict, model: str, babble: str, baseline: str) -> list[str]:
    """Lines that set a run's figures side by side, only those it computed: `wer` by (model, data,
    modality, condition), `drowned` the drowned clip's results.jsonl row (+ data) by modality; `babble`
    names the noisy condition, `baseline` the faster-whisper system."""
    lines = []
    a, b = wer.get((model, "synthetic test", "audio", babble)), wer.get((model, "synthetic test", "both", babble))
    if a is not None and b is not None:
        cut = f"{100 * (1 - b / a):.0f}% lower" if b < a else "not lower"
        lines.append(f"synthetic test, {babble}: both {100 * b:.1f}% vs audio {100 * a:.1f}% (lips: {cut})")
    a, b = wer.get((model, "real GRID", "audio", "clean")), wer.get((model, "real GRID", "both", "clean"))
    w = wer.get((baseline, "real GRID", "audio", "clean"))
    if a is not None and b is not None:
        base = f", {baseline} {100 * w:.1f}%" if w is not None else ""
        lines.append(f"real GRID, clean: both {100 * b:.1f}%, audio {100 * a:.1f}%{base}")
    a, b = drowned.get("audio"), drowned.get("both")
    if a is not None and b is not None:
        weight = b.get("video_weight")  # 0 when the model set the lips aside
        lips = "" if weight is None else "; lips set aside" if weight == 0 else f"; lip weight {weight:.2f}"
        lines.append(
            f"{b['data']}, {babble}: both {b['hits']}/{b['ref_words']} words right, "
            f"audio {a['hits']}/{a['ref_words']}{lips}"
        )
    return lines


def print_report(table: Table, lines: list[str], notes: list[str]) -> None:
    """The table and the comparison `lines` on stdout, each note on stderr."""
    out = console.stdout()
    out.print(table, soft_wrap=False)  # the table and its title fit the width
    for line in lines:
        out.print(line, highlight=False, soft_wrap=False)
    for note in notes:
        console.log(f"[yellow]note:[/] {escape(note)}")
