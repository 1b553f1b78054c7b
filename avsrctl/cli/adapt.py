"""`avsrctl adapt`: teach a fused model's lips a new face from its own untranscribed video, with
transcripts its audio path writes (avsrctl/training/adapt.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from avsrctl.cli import console
from avsrctl.cli.options import (
    CheckpointOpt,
    DeviceOpt,
    QuietOpt,
    ResumeOpt,
    SetOpt,
    ThreadsOpt,
    TrainSeedOpt,
    check_device,
    use_quiet,
    use_threads,
)
from avsrctl.errors import UsageError
from avsrctl.training.adapt import DEFAULT_CTC_EPOCHS, DEFAULT_EPOCHS, DEFAULT_VIDEO_EPOCHS  # no torch at import
from avsrctl.training.pseudo import DEFAULT_MIN_SCORE, DEFAULT_MIN_WORD_PROB, DEFAULT_VALID_FRACTION


def adapt(
    checkpoint: CheckpointOpt = None,
    data: Annotated[
        Optional[Path],
        typer.Option(
            "--data",
            help="A folder of clips with audio and video (.mp4, .mpg, ...), or a .tsv manifest. "
            "Transcripts beside them (.txt, .wrd) are never read.",
        ),
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--output",
            "-o",
            help="Run folder: pseudo/ (the labels), lips-ctc/ and lips-video/ (the lip stages), the fused checkpoints.",
        ),
    ] = None,
    min_score: Annotated[
        float,
        typer.Option(
            "--min-score",
            help="Keep a clip when the audio decode's mean token log-probability is at least this (it must "
            "also be non-empty and end at EOS); garbled decodes score lower.",
        ),
    ] = DEFAULT_MIN_SCORE,
    min_lip_sync: Annotated[
        float,
        typer.Option(
            "--min-lip-sync",
            help="Also require the sync classifier's mean in-sync probability to be at least this. 0 (default): "
            "off, because lips the model never saw may all score low.",
        ),
    ] = 0.0,
    min_word_prob: Annotated[
        float,
        typer.Option(
            "--min-word-prob",
            help="In a kept transcript, a word the audio path gave less than this probability (its least likely "
            "token's) is marked unsure: the lips read it in context but are not taught it. 0: teach every word.",
        ),
    ] = DEFAULT_MIN_WORD_PROB,
    speed: Annotated[
        str,
        typer.Option(
            "--speed",
            help="Speed at which the audio path hears the clips to transcribe them (tempo and pitch together; "
            "0.9: slower and lower). auto: the one where it is most confident on a sample of them, among 0.75 "
            "to 1.25. The lips always train on the clips at their own speed.",
        ),
    ] = "auto",
    ctc_epochs: Annotated[
        int,
        typer.Option(
            "--ctc-epochs", min=1, help="Passes of stage 1 (lips-ctc: the lip front-end alone, character CTC)."
        ),
    ] = DEFAULT_CTC_EPOCHS,
    video_epochs: Annotated[
        int, typer.Option("--video-epochs", min=1, help="Passes of stage 2 (lips-video: the lips through the LLM).")
    ] = DEFAULT_VIDEO_EPOCHS,
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, help="Passes of stage 3 (the fusion alone, babble on the audio).")
    ] = DEFAULT_EPOCHS,
    valid_fraction: Annotated[
        float,
        typer.Option(
            "--valid-fraction", help="Share of the kept clips held out for validation (at least one; 0: none)."
        ),
    ] = DEFAULT_VALID_FRACTION,
    beam_size: Annotated[
        Optional[int],
        typer.Option(
            "--beam-size", min=1, help="Beam width of the audio decode (default: the checkpoint's decode.beam_size)."
        ),
    ] = None,
    batch_size: Annotated[
        Optional[int],
        typer.Option(
            "--batch-size", min=1, help="Clips per decoding batch (default: the checkpoint's decode.batch_size)."
        ),
    ] = None,
    resume: ResumeOpt = None,
    overrides: SetOpt = None,
    seed: TrainSeedOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Teach a fused model's lips a new face from the face's own untranscribed video.

    Decodes each clip from its clean audio with the model's audio path (at the speed where it is most
    confident, --speed) and keeps the confident transcripts; in them, the words the audio path was unsure
    of are read but not taught (--min-word-prob).
    Then trains on them in three stages, each as `avsrctl train` does:
    (1) lips-ctc: the lip front-end alone with character CTC, from the checkpoint;
    (2) lips-video: the lips through the LLM, from the checkpoint and then (1);
    (3) the fused model, from the checkpoint and then (2), with babble on the audio: only the fusion
        trains, so the lips alone read as after (2).
    The audio encoder and connector stay frozen in every stage: the audio path teaches, it never learns.

    Writes pseudo/ (labels.jsonl: each clip's transcript, score and why it was kept or not),
    lips-ctc/ and lips-video/ (the lip stages' runs), and the fused stage's checkpoints (best, final),
    metrics.jsonl and config.yaml to --output.

    Ctrl-C saves a checkpoint and exits with code 130; continue with --resume auto (finished stages are skipped).
    """
    if checkpoint is None:
        raise UsageError("adapt needs --checkpoint: the fused model to adapt (a folder or a built-in name)")
    if data is None:
        raise UsageError("adapt needs --data: a folder of clips or a .tsv manifest of the new face")
    if output is None:
        raise UsageError("adapt needs --output: the run folder to write")
    check_device(device)
    factor = _speed(speed)
    use_threads(threads)
    use_quiet(quiet)

    from avsrctl.training.adapt import run_adaptation  # torch: only once the arguments are valid
    from avsrctl.training.pseudo import PseudoLabelRule

    result = run_adaptation(
        checkpoint,
        data,
        output,
        rule=PseudoLabelRule(min_score=min_score, min_lip_sync=min_lip_sync, min_word_prob=min_word_prob),
        ctc_epochs=ctc_epochs,
        video_epochs=video_epochs,
        epochs=epochs,
        valid_fraction=valid_fraction,
        overrides=overrides,
        seed=seed,
        beam_size=beam_size,
        batch_size=batch_size,
        resume=resume,
        speed=factor,
        device=device,
        console=console.chatter(),
    )
    if result.train.final_checkpoint is not None:
        console.stdout().print(str(result.train.final_checkpoint))


def _speed(value: str) -> float | None:
    """--speed: 'auto' (None) or a factor in [0.5, 2]."""
    if value.strip().lower() == "auto":
        return None
    try:
        factor = float(value)
    except ValueError:
        factor = float("nan")
    if not 0.5 <= factor <= 2.0:  # also refuses NaN
        raise UsageError(f"--speed must be 'auto' or a factor from 0.5 to 2 (got {value!r})", hint="e.g. --speed 0.9")
    return factor
