"""`avsrctl decode`: batched generation over a manifest with a trained checkpoint, then scoring."""

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
from avsrctl.errors import UsageError
from avsrctl.paths import refuse_overwrite
from avsrctl.wording import plural


def results_table(rows: list[tuple[str, object, object]], title: str):
    """A rich table of (condition, DecodeOutput, ErrorReport) rows."""
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


def print_verbose(manifest, report, lips=None, min_lip_sync: float = 0.0) -> None:
    """Each utterance's reference, hypothesis and differences; for a fused model how it used the lips
    (`LipUse` per row; an in-sync probability below `min_lip_sync` means they were set aside)."""
    from avsrctl.metrics import render_diff

    con = console.stdout()
    for utt, u, use in zip(report.utterances, manifest, lips or [None] * len(manifest)):
        mark = "[green]ok[/]" if utt.errors == 0 else f"[red]{utt.errors} err[/]"
        shown = "" if use is None or use.video_weight is None else f"  video weight {use.video_weight:.2f}"
        if use is not None and use.lip_sync is not None:
            low = use.lip_sync < min_lip_sync
            if use.video_weight is None:  # lips read alone
                shown += f"  lips in sync {use.lip_sync:.2f}{' (below the threshold)' if low else ''}"
            else:
                shown += f", lips in sync {use.lip_sync:.2f}{' (set aside: read from the audio alone)' if low else ''}"
        con.print(f"[bold]{u.id}[/] {mark}{shown}")
        con.print(f"  REF: {utt.reference}", markup=False)
        con.print(f"  HYP: {utt.hypothesis}", markup=False)
        if utt.errors:
            con.print(f"  DIF: {render_diff(utt)}")


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

    from avsrctl.checkpoint import load_checkpoint, trained_modality
    from avsrctl.decoding import DecodingOptions, use_min_lip_sync

    with console.chatter().status(f"loading {checkpoint}"):
        model, cfg, meta = load_checkpoint(checkpoint, device=device or "auto")
    if min_lip_sync is not None:
        use_min_lip_sync(model, min_lip_sync)
    dev = str(model.device)
    modality = modality or trained_modality(cfg, meta)
    options = DecodingOptions.from_config(cfg.decode, beam_size=beam_size, max_new_tokens=max_new_tokens)
    if single_file is not None:
        _decode_single(model, cfg, single_file, modality, options, dev, fmt)
        return
    _decode_manifest(
        model,
        cfg,
        checkpoint,
        tsv,
        wrd,
        modality,
        options,
        output_dir,
        snr or [],
        noise,
        normalizer,
        batch_size,
        verbose,
        dev,
        seed,
        fmt,
        max_failed,
    )


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


def _decode_single(model, cfg, path: Path, modality: str, options, device: str, fmt: str) -> None:
    import torch

    from avsrctl.data.dataset import load_clip

    batch = load_clip(path, modality, roi=cfg.data.roi, roi_size=cfg.data.roi_size)
    with torch.no_grad():
        (result,) = model.generate(batch.to(device), modality, options)
    if fmt == "json":
        print(json.dumps({"file": str(path), **result.to_dict()}, ensure_ascii=False))
    else:
        print(result.text)


def _decode_manifest(
    model,
    cfg,
    checkpoint,
    tsv,
    wrd,
    modality,
    options,
    output_dir,
    snrs,
    noise,
    normalizer,
    batch_size,
    verbose,
    device,
    seed,
    fmt,
    max_failed,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from avsrctl.data.manifest import read_manifest, split_paths
    from avsrctl.decoding import lip_sync_setting
    from avsrctl.evaluate import decode_outputs, run_decode
    from avsrctl.pretrained import outputs_beside

    if tsv is None:
        if cfg.data.root is None:
            raise UsageError(
                "no --tsv given and the checkpoint's config has no data.root", hint="pass --tsv test.tsv --wrd test.wrd"
            )
        tsv, default_wrd = split_paths(cfg.data.root, cfg.data.test_split)
        wrd = wrd or default_wrd
    manifest = read_manifest(tsv, wrd)
    manifest.require(modality)
    out_dir = output_dir or outputs_beside(checkpoint) / "decode" / f"{Path(tsv).stem}-{modality}"
    media = [p for u in manifest for p in (u.video, u.audio)]
    refuse_overwrite(decode_outputs(out_dir, snrs), [manifest.tsv, manifest.wrd, *media], "--output-dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    if batch_size is not None:
        cfg.decode.batch_size = batch_size

    lips = lip_sync_setting(model, modality)  # the threshold this decode reads the lips with
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console.chatter(), transient=True) as progress:
        results = run_decode(
            model,
            cfg,
            manifest,
            modality,
            out_dir,
            options,
            snrs=snrs,
            noise_kind=noise,
            normalizer=normalizer,
            seed=seed,
            device=device,
            progress=progress,
            extra_settings={"checkpoint": str(checkpoint), "batch_size": cfg.decode.batch_size, **lips},
        )
    clean_out, clean_report = results[0]
    if verbose:
        threshold = lips.get("min_lip_sync", 0.0)
        print_verbose(manifest, clean_report, clean_out.lips, threshold)
    if clean_out.failed:
        first = next(iter(clean_out.failed.items()))
        console.log(
            f"[yellow]{len(clean_out.failed)} utterance(s) could not be decoded and count as empty "
            f"hypotheses[/] (first: {first[0]}: {first[1]})"
        )
    rows = [("clean" if out.snr_db is None else f"{noise} {out.snr_db:g} dB", out, rep) for out, rep in results]
    if fmt == "json":
        print(
            json.dumps(
                [{"condition": label, "failed": len(out.failed), **rep.to_dict()} for label, out, rep in rows], indent=2
            )
        )
    else:
        console.stdout().print(results_table(rows, f"{manifest.tsv.name} · {modality} · {normalizer} normaliser"))
    for label, out, rep in rows:
        log_interval(label, rep)
        log_lip_use(label, out, lips.get("min_lip_sync"))
    console.log(f"wrote {out_dir}/hyp.wrd, results.jsonl, wer.json")
    for _, out, _ in rows:  # after the results are written, so the failures can be looked at
        check_failed_share(len(out.failed), len(manifest), max_failed)


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
    from avsrctl.wording import lip_use_line

    summary = out.lip_summary(min_lip_sync)
    if summary is not None:
        console.log(f"{label}: {lip_use_line(*summary, 'utterance')}")
