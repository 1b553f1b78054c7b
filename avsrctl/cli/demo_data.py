"""`avsrctl demo-data`: Generate a synthetic audio-visual corpus with GRID's grammar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from avsrctl.cli import console
from avsrctl.cli.options import SUMMARY_FORMATS, SeedOpt, SummaryFormatOpt, check_choice


def demo_data(
    out: Annotated[
        Path,
        typer.Argument(
            help="Folder for the corpus: created if missing; must be empty or a demo-data corpus made with the same "
            "settings (then finished utterances are reused)."
        ),
    ],
    utterances: Annotated[int, typer.Option("--utterances", "-n", help="Number of utterances in all splits.")] = 300,
    speakers: Annotated[
        int, typer.Option("--speakers", help="Number of speakers, the held-out test speakers included.")
    ] = 8,
    test_speakers: Annotated[
        int,
        typer.Option(
            "--test-speakers", help="Speakers held out for the test split (voices and looks no training speaker has)."
        ),
    ] = 2,
    seed: SeedOpt = 0,
    size: Annotated[int, typer.Option("--size", help="Side of the square mouth-region video in pixels (even).")] = 96,
    valid_fraction: Annotated[
        float, typer.Option("--valid-fraction", help="Share of the training speakers' utterances set aside for valid.")
    ] = 0.1,
    jobs: Annotated[
        Optional[int], typer.Option("--jobs", "-j", help="Worker processes (default: min(2, CPU count)).")
    ] = None,
    test_only: Annotated[
        bool,
        typer.Option(
            "--test-only",
            help="Write only test.tsv/.wrd from --test-speakers held-out speakers; use another --seed "
            "than the training corpus for a fresh test set.",
        ),
    ] = False,
    mbrola: Annotated[
        bool,
        typer.Option(
            "--mbrola",
            help="Give every second speaker an MBROLA diphone voice (recorded speakers: more natural than "
            "espeak-ng's own); en1, us1, us2 train, us3 is held out. Install them with `make voices`.",
        ),
    ] = False,
    faces: Annotated[
        int,
        typer.Option(
            "--faces-per-speaker",
            help="Faces each speaker's utterances are drawn with (1: one face per speaker). More faces teach a "
            "lip reader mouths rather than faces; the voices stay as they are.",
        ),
    ] = 1,
    fmt: SummaryFormatOpt = "text",
) -> None:
    """Generate a synthetic audio-visual corpus with GRID's grammar.

    Sentences like "bin blue at f two now" spoken by espeak-ng voices, with a rendered mouth that follows the phonemes.

    Writes 16 kHz WAV audio, 25 fps mouth-region MP4 video and AV-HuBERT manifests ({train,valid,test}.tsv/.wrd).
    The same seed gives the same corpus.
    """
    check_choice("--format", fmt, SUMMARY_FORMATS)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from avsrctl.synth.corpus import generate_corpus

    labels = {"voices": "synthesising voices", "utterances": "rendering utterances"}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console.stderr(),
        transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(labels.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        summary = generate_corpus(
            out,
            utterances,
            speakers,
            test_speakers,
            seed,
            size,
            valid_fraction,
            jobs,
            progress,
            test_only=test_only,
            mbrola=mbrola,
            faces_per_speaker=faces,
        )

    if fmt == "json":
        console.stdout().print(json.dumps(summary.to_dict(), indent=2), markup=False)
        return
    total_h = sum(s.hours for s in summary.splits)
    n_utt = sum(s.n_utterances for s in summary.splits)
    lines = [f"corpus: {summary.root}", f"{'split':<6} {'utterances':>10} {'speakers':>8} {'hours':>7}"]
    lines += [f"{s.name:<6} {s.n_utterances:>10} {s.n_speakers:>8} {s.hours:>7.3f}" for s in summary.splits]
    lines.append(f"{'total':<6} {n_utt:>10} {'':>8} {total_h:>7.3f}")
    console.stdout().print("\n".join(lines), markup=False)
    console.log(
        f"[dim]{summary.generated} generated, {summary.reused} reused in {summary.elapsed_s:.1f} s; "
        f"train with `avsrctl train --data {summary.root}`[/]"
    )
