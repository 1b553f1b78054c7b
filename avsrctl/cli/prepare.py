"""`avsrctl prepare`: Build {train,valid,test}.tsv/.wrd from a folder of clips with transcripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from avsrctl.cli import console
from avsrctl.cli.options import QuietOpt, SeedOpt, SummaryFormatOpt, use_quiet
from avsrctl.errors import UsageError

SPLIT_CHOICES = ("train", "valid", "test")  # avsrctl.data.prepare.SPLITS, without importing it for --help


def prepare(
    src: Annotated[
        Optional[Path],
        typer.Argument(
            metavar="SRC",
            help="Folder of clips (any container ffmpeg reads), searched recursively. "
            "With --merge: the OUT folder whose parts to join.",
        ),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Argument(metavar="OUT", help="Output corpus folder: {train,valid,test}.tsv/.wrd, audio/, video/."),
    ] = None,
    transcripts: Annotated[
        Optional[Path],
        typer.Option(
            "--transcripts", help="One file of '<clip-stem> <text>' lines (or TSV) instead of a .txt per clip."
        ),
    ] = None,
    valid_fraction: Annotated[float, typer.Option("--valid-fraction", help="Share of clips for validation.")] = 0.1,
    test_fraction: Annotated[float, typer.Option("--test-fraction", help="Share of clips for the test split.")] = 0.1,
    split: Annotated[
        Optional[str],
        typer.Option(
            "--split",
            help="Put every clip into this one split (train, valid or test), e.g. --split test to turn "
            "your own clips into test.tsv/.wrd for `avsrctl eval`; the fractions are then unused.",
        ),
    ] = None,
    split_list: Annotated[
        Optional[list[str]],
        typer.Option(
            "--split-list",
            metavar="SPLIT=FILE",
            help="Honour a corpus's own split: FILE lists the clip ids (one per line: key, name or file "
            "stem) for SPLIT (train, valid or test); repeat per split. Clips listed nowhere are left out.",
        ),
    ] = None,
    seed: SeedOpt = 0,
    roi: Annotated[
        str,
        typer.Option(
            "--roi",
            help="Mouth crop: 'auto' crops frames larger than 2 x roi-size, 'haar' always crops, "
            "'landmarks' always crops, placed by face landmarks (pip install 'avsrctl\\[landmarks]'), "
            "'none' keeps the source video (already mouth crops).",
        ),
    ] = "auto",
    roi_size: Annotated[int, typer.Option("--roi-size", help="Side of the square mouth crop in pixels.")] = 96,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes preparing clips in parallel (about one per core).")
    ] = 1,
    shard: Annotated[
        Optional[str],
        typer.Option(
            "--shard",
            metavar="I/N",
            help="Prepare only shard I of N (I from 0, e.g. $SLURM_ARRAY_TASK_ID) into "
            "OUT/parts/; join the N parts with --merge.",
        ),
    ] = None,
    merge: Annotated[
        bool,
        typer.Option(
            "--merge", help="Join OUT/parts/ (from --shard runs) into the manifests: avsrctl prepare --merge OUT."
        ),
    ] = False,
    format: SummaryFormatOpt = "text",
    quiet: QuietOpt = False,
) -> None:
    """Build {train,valid,test}.tsv/.wrd from a folder of clips with transcripts.

    Audio is extracted to 16 kHz mono wav, video cropped to the mouth (96x96 mp4 at 25 fps).
    Re-running reuses finished files; clips that cannot be decoded are listed in OUT/failures.tsv
    with their reason and left out. Splits depend only on the clip names and --seed, so --shard
    runs joined with --merge give the same corpus as one run.
    """
    use_quiet(quiet)
    if format not in ("text", "json"):
        raise UsageError(f"--format must be text or json, got {format!r}")
    if split is not None and split not in SPLIT_CHOICES:
        raise UsageError(f"--split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
    if merge:
        if src is None or out is not None:
            raise UsageError("--merge takes one folder: avsrctl prepare --merge OUT")
        if shard is not None:
            raise UsageError("--merge joins the parts of every shard: drop --shard")
        from avsrctl.data.prepare import merge_parts

        _report(merge_parts(src), format)
        return
    if src is None or out is None:
        raise UsageError("prepare needs SRC and OUT (or --merge OUT)")
    if split is not None and (valid_fraction, test_fraction) != (0.1, 0.1):
        raise UsageError(f"--split {split} puts every clip into {split}: drop --valid-fraction/--test-fraction")
    lists = tuple(_split_list(item) for item in split_list or ())
    if lists and (valid_fraction, test_fraction) != (0.1, 0.1):
        raise UsageError("--split-list chooses every split: drop --valid-fraction/--test-fraction")
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:.1f} clips/s" if task.speed else "- clips/s")

    from avsrctl.data.prepare import PrepareOptions, Shard, prepare_corpus

    part = Shard.parse(shard) if shard is not None else None
    options = PrepareOptions(
        transcripts=transcripts,
        valid_fraction=valid_fraction,
        test_fraction=test_fraction,
        seed=seed,
        roi=roi,
        roi_size=roi_size,
        split=split,
        split_lists=lists,
    )
    label = f"prepare {part}" if part is not None else "prepare"
    columns = (
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        Rate(),
        TimeRemainingColumn(),
        TextColumn("[yellow]{task.fields[failed]} failed[/] {task.description}"),
    )
    with Progress(*columns, console=console.chatter(), transient=True) as bar:
        task = bar.add_task("", total=None, failed=0)

        def on_clip(done: int, total: int, key: str, failed: int) -> None:
            bar.update(task, completed=done, total=total, description=key, failed=failed)

        result = prepare_corpus(src, out, options, progress=on_clip, workers=workers, shard=part)
    _report(result, format)


def _split_list(item: str) -> tuple[str, Path]:
    split, sep, path = item.partition("=")
    if not sep or split not in SPLIT_CHOICES or not path:
        raise UsageError(f"--split-list takes SPLIT=FILE with SPLIT one of {', '.join(SPLIT_CHOICES)}, got {item!r}")
    return split, Path(path)


def _report(result, format: str) -> None:
    if result.failed:
        shown = ", ".join(list(result.failed)[:5]) + (" ..." if len(result.failed) > 5 else "")
        from avsrctl.data.prepare import FAILURES, PARTS, Shard

        folder = result.out if result.shard is None else result.out / PARTS / Shard.parse(result.shard).folder
        console.log(
            f"[yellow]warning:[/] {len(result.failed)} clip(s) could not be prepared and were left out "
            f"(reasons in {folder / FAILURES}): {shown}"
        )
        for key, reason in list(result.failed.items())[:3]:
            console.log(f"[dim]  {key}: {reason}[/]")
    if format == "json":
        print(json.dumps(result.to_dict(), indent=2))
        return
    splits = ", ".join(f"{name} {n}" for name, n in result.splits.items()) or "no"
    where = f"{result.out} part {result.shard}" if result.shard is not None else f"{result.out}"
    print(
        f"{where}: {splits} utterances (prepared {result.prepared}, reused {result.reused}, "
        f"failed {len(result.failed)})"
    )
