"""`avsrctl prepare`: Build {train,valid,test}.tsv/.wrd from a folder of clips with transcripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from avsrctl.cli import console
from avsrctl.cli.options import FormatOpt, SeedOpt
from avsrctl.errors import UsageError


def prepare(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="Folder of clips (any container ffmpeg reads), searched recursively.")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output corpus folder: {train,valid,test}.tsv/.wrd, audio/, video/.")],
    transcripts: Annotated[
        Optional[Path],
        typer.Option("--transcripts", help="One file of '<clip-stem> <text>' lines (or TSV) instead of a .txt per clip."),
    ] = None,
    valid_fraction: Annotated[float, typer.Option("--valid-fraction", help="Share of clips for validation.")] = 0.1,
    test_fraction: Annotated[float, typer.Option("--test-fraction", help="Share of clips for the test split.")] = 0.1,
    seed: SeedOpt = 0,
    roi: Annotated[
        str,
        typer.Option("--roi", help="Mouth crop: 'auto' crops frames larger than 2 x roi-size, 'haar' always crops, "
                                   "'none' keeps the source video (already mouth crops)."),
    ] = "auto",
    roi_size: Annotated[int, typer.Option("--roi-size", help="Side of the square mouth crop in pixels.")] = 96,
    format: FormatOpt = "text",
) -> None:
    """Build {train,valid,test}.tsv/.wrd from a folder of clips with transcripts.

    Audio is extracted to 16 kHz mono wav, video cropped to the mouth (96x96 mp4 at 25 fps).
    Re-running reuses finished files; clips that cannot be decoded are reported and left out.
    """
    if format not in ("text", "json"):
        raise UsageError(f"--format must be text or json, got {format!r}")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from avsrctl.data.prepare import PrepareOptions, prepare_corpus

    options = PrepareOptions(transcripts=transcripts, valid_fraction=valid_fraction, test_fraction=test_fraction,
                             seed=seed, roi=roi, roi_size=roi_size)
    columns = (TextColumn("[bold]prepare"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns, console=console.stderr(), transient=True) as bar:
        task = bar.add_task("", total=None)

        def on_clip(done: int, total: int, key: str) -> None:
            bar.update(task, completed=done, total=total, description=key)

        result = prepare_corpus(src, out, options, progress=on_clip)

    if result.failed:
        shown = ", ".join(list(result.failed)[:5]) + (" ..." if len(result.failed) > 5 else "")
        console.log(f"[yellow]warning:[/] {len(result.failed)} clip(s) could not be decoded and were left out: {shown}")
        for key, reason in list(result.failed.items())[:3]:
            console.log(f"[dim]  {key}: {reason}[/]")
    if format == "json":
        print(json.dumps(result.to_dict(), indent=2))
        return
    splits = ", ".join(f"{name} {n}" for name, n in result.splits.items())
    print(f"{result.out}: {splits} utterances (prepared {result.prepared}, reused {result.reused}, "
          f"failed {len(result.failed)})")
