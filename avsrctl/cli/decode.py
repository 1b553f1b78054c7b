"""`avsrctl decode`: batched generation over a manifest with a trained checkpoint, then scoring.

This module parses and checks the options, builds a `decode_runs.DecodeRequest` and shows what
`decode_runs.run_decode_request` returns (the scores through cli/scores.py)."""

from __future__ import annotations

import json
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
    ModalityOpt,
    QuietOpt,
    ScoreFormatOpt,
    SeedOpt,
    ThreadsOpt,
    TsvOpt,
    WrdOpt,
    check_choice,
    check_failed_share,
    require_writable_folder,
    use_quiet,
    use_threads,
)
from avsrctl.cli.scores import log_interval, log_lip_use, print_verbose, results_table
from avsrctl.errors import UsageError


def decode(
    checkpoint: CheckpointOpt = None,
    tsv: TsvOpt = None,
    wrd: WrdOpt = None,
    modality: ModalityOpt = None,
    output_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--output-dir",
            "-o",
            help="Where hyp.wrd, results.jsonl, wer.json go. Default: CHECKPOINT/decode/<manifest>-<modality>.",
        ),
    ] = None,
    beam_size: BeamSizeOpt = None,
    max_new_tokens: Annotated[
        Optional[int], typer.Option("--max-new-tokens", help="Cap on generated tokens per utterance.")
    ] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Utterances generated together.")] = None,
    snr: Annotated[
        Optional[list[float]], typer.Option("--snr", help="Also decode with noise at this SNR in dB (repeatable).")
    ] = None,
    noise: Annotated[
        str, typer.Option("--noise", help="Noise for --snr: babble (other utterances) or white.")
    ] = "babble",
    single_file: Annotated[
        Optional[Path], typer.Option("--single-file", help="Decode one clip instead of a manifest; prints the text.")
    ] = None,
    normalizer: Annotated[str, typer.Option("--normalizer", help="basic, whisper or none.")] = "basic",
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print every reference/hypothesis pair with differences marked.")
    ] = False,
    min_lip_sync: MinLipSyncOpt = None,
    max_failed: MaxFailedOpt = MAX_FAILED,
    device: DeviceOpt = None,
    seed: SeedOpt = 0,
    fmt: ScoreFormatOpt = "table",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Decode a manifest with a trained checkpoint and score it (WER/CER, optionally per noise level)."""
    use_quiet(quiet)
    use_threads(threads)
    if checkpoint is None:
        raise UsageError(
            "--checkpoint is required", hint="point it at a folder written by `avsrctl train`, e.g. runs/tiny/best"
        )
    from avsrctl.data.noise import NOISE_KINDS

    check_choice("--normalizer", normalizer, NORMALIZERS)
    check_choice("--noise", noise, NOISE_KINDS)
    check_choice("--format", fmt, SCORE_FORMATS)
    for name, value in (("--max-new-tokens", max_new_tokens), ("--batch-size", batch_size)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    if single_file is not None and (tsv is not None or snr):
        raise UsageError("--single-file cannot be combined with --tsv or --snr")
    if single_file is not None and single_file.is_dir():
        raise UsageError(
            f"--single-file {single_file} is a folder, not a clip",
            hint="name one audio or video file; for a folder of clips use "
            "`avsrctl transcribe --checkpoint CKPT FOLDER --output-dir OUT`",
        )
    _check_checkpoint_is_a_folder(Path(checkpoint))
    check_choice("--modality", modality, MODALITIES)
    from avsrctl.decoding import check_min_lip_sync

    check_min_lip_sync(min_lip_sync)
    if single_file is None:  # every output place before loading the model and decoding
        if output_dir is not None:
            require_writable_folder(output_dir, "--output-dir")
        else:
            _check_default_output(Path(checkpoint))

    from avsrctl.decode_runs import ClipDecode, DecodeRequest, run_decode_request

    request = DecodeRequest(
        checkpoint=checkpoint,
        tsv=tsv,
        wrd=wrd,
        single_file=single_file,
        modality=modality,
        output_dir=output_dir,
        beam_size=beam_size,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        snrs=tuple(snr or ()),
        noise=noise,
        normalizer=normalizer,
        min_lip_sync=min_lip_sync,
        device=device,
        seed=seed,
    )
    done = run_decode_request(request, status=console.chatter().status, progress=_progress)
    if isinstance(done, ClipDecode):
        if fmt == "json":
            print(json.dumps({"file": str(done.path), **done.result.to_dict()}, ensure_ascii=False))
        else:
            print(done.result.text)
        return
    _show(done, normalizer, verbose, fmt, max_failed)


def _check_checkpoint_is_a_folder(checkpoint: Path) -> None:
    """A file given as --checkpoint (its model.safetensors, say) is named as one, not found out at the end."""
    if checkpoint.is_file():
        holder = checkpoint.parent
        raise UsageError(
            f"--checkpoint {checkpoint} is a file, not a checkpoint folder",
            hint=f"pass the folder that holds it: --checkpoint {holder}"
            if (holder / "config.yaml").is_file()
            else "point --checkpoint at a folder written by `avsrctl train`",
        )


def _check_default_output(checkpoint: Path) -> None:
    """The default output folder, CHECKPOINT/decode/..., must be writable before any work starts."""
    folder = checkpoint / "decode"
    if not checkpoint.is_dir():
        return  # loading names the missing checkpoint
    try:
        require_writable_folder(folder, "--output-dir")
    except UsageError as e:
        raise UsageError(
            f"default output folder {folder} (inside the checkpoint): {str(e).split(': ', 1)[-1]}",
            hint="write the results elsewhere with --output-dir DIR",
        ) from None


def _progress():
    """A transient progress bar on stderr (silent with --quiet), one task per condition."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, console=console.chatter(), transient=True)


def _show(done, normalizer: str, verbose: bool, fmt: str, max_failed: float) -> None:
    """A manifest's scores (`decode_runs.ManifestDecode`): on stdout as a table or JSON, then the stderr
    lines; exit 1 after that when too many utterances failed."""
    manifest, results = done.manifest, done.results
    clean_out, clean_report = results[0]
    if verbose:
        print_verbose(manifest, clean_report, clean_out.lips, done.min_lip_sync or 0.0)
    if clean_out.failed:
        first = next(iter(clean_out.failed.items()))
        console.log(
            f"[yellow]{len(clean_out.failed)} utterance(s) could not be decoded and count as empty "
            f"hypotheses[/] (first: {first[0]}: {first[1]})"
        )
    rows = [(done.label(out), out, rep) for out, rep in results]
    if fmt == "json":
        print(
            json.dumps(
                [{"condition": label, "failed": len(out.failed), **rep.to_dict()} for label, out, rep in rows], indent=2
            )
        )
    else:
        title = f"{manifest.tsv.name} · {done.modality} · {normalizer} normaliser"
        console.stdout().print(results_table(rows, title))
    for label, out, rep in rows:
        log_interval(label, rep)
        log_lip_use(label, out, done.min_lip_sync)
    console.log(f"wrote {done.output_dir}/hyp.wrd, results.jsonl, wer.json")
    for _, out, _ in rows:  # after the results are written, so the failures can be looked at
        check_failed_share(len(out.failed), len(manifest), max_failed)
