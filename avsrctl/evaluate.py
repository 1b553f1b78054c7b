"""Decode a manifest with a trained model and score it: the library behind `decode` and `eval`.

`decode_manifest` runs batched generation over length-bucketed batches and returns one
hypothesis per manifest row, in manifest order. An utterance whose media cannot be decoded
gets an empty hypothesis and is listed as failed (it still counts in the WER, as deletions:
dropping it silently would flatter the score). `run_decode` decodes clean audio and each
noise level (`--snr`), writes `hyp.wrd`, `results.jsonl`, `wer.json` into the output folder,
and returns the reports for the terminal table. `eval` scores `Run`s: a hypothesis file, the
faster-whisper baseline (`baseline_run`) or a checkpoint per modality (`checkpoint_runs`).

Output files are only written once the whole decode of a condition has finished, each
atomically, so an interrupted decode leaves the previous files intact and a rerun writes
the same files (generation is deterministic).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from avsrctl.atomic import write_files
from avsrctl.config import Config
from avsrctl.data.manifest import Manifest
from avsrctl.errors import UsageError
from avsrctl.lips import LipUse, LipViews, run_fields
from avsrctl.metrics import ErrorReport, result_paths, score, spelling_mapping, write_results

if TYPE_CHECKING:  # torch stays out of `eval --hyp` and the baseline
    from avsrctl.decoding import DecodingOptions


@dataclass
class DecodeOutput(LipViews):
    """Hypotheses for one manifest under one condition (clean or one SNR)."""

    modality: str
    hypotheses: list[str]  # one per manifest row, manifest order ('' for failed rows)
    failed: dict[str, str] = field(default_factory=dict)  # id -> reason the media could not be decoded
    seconds: float = 0.0
    snr_db: float | None = None
    lips: list[LipUse | None] | None = None  # 'both': how the model used each row's lips

    @property
    def utterances_per_second(self) -> float:
        return len(self.hypotheses) / self.seconds if self.seconds > 0 else math.inf


def decode_loader(dataset, cfg, batch_size: int | None = None):
    """Batches of `dataset` for decoding: sorted by length (no shuffle) to keep padding low, at most
    `batch_size` (default: the config's decode.batch_size) utterances and data.max_frames_per_batch
    frames each. Callers put results back in manifest order."""
    import torch

    from avsrctl.data.dataset import FrameBucketSampler

    sampler = FrameBucketSampler(
        dataset.lengths,
        max_frames=cfg.data.max_frames_per_batch,
        max_batch=batch_size or cfg.decode.batch_size,
        shuffle=False,
    )
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=dataset.collate, num_workers=cfg.data.num_workers
    )


def decode_manifest(
    model,
    manifest: Manifest,
    modality: str,
    options: DecodingOptions,
    cfg: Config,
    *,
    batch_size: int | None = None,
    noise=None,
    seed: int = 0,
    device: str = "cpu",
    on_batch: Callable[[int], None] | None = None,
) -> DecodeOutput:
    """Generate a hypothesis for every utterance of `manifest` (in manifest order).

    `noise` is a `NoiseSpec` added to the audio (deterministic by `seed`); `on_batch(n)` is
    called after each batch with the number of utterances it covered (progress bars).
    """
    import torch

    from avsrctl.data.dataset import AVDataset

    if modality not in model.modalities:
        raise UsageError(
            f"this checkpoint serves {', '.join(model.modalities)}, not --modality {modality}",
            hint="train a model for that modality, or pick one it has",
        )
    from avsrctl.decoding import sync_fusion

    # a fused model reading the lips alone also hears the voice, to say whether the lips follow it
    judge = modality == "video" and sync_fusion(model) is not None and manifest.has_audio
    dataset = AVDataset(
        manifest, modality, roi=cfg.data.roi, roi_size=cfg.data.roi_size, noise=noise, seed=seed, judge_audio=judge
    )
    loader = decode_loader(dataset, cfg, batch_size)
    by_id: dict[str, str] = {}
    lips_by_id: dict[str, LipUse] = {}
    failed: dict[str, str] = {}
    start = time.perf_counter()
    model.eval()
    with torch.no_grad():
        for batch in loader:
            failed.update(batch.meta.get("skip_reasons", {}))
            if len(batch):
                for result in model.generate(batch.to(device), modality, options):
                    by_id[result.id] = result.text
                    if result.video_weight is not None or result.lip_sync is not None:
                        lips_by_id[result.id] = LipUse(result.video_weight, result.lip_sync)
            if on_batch is not None:
                on_batch(len(batch) + len(batch.meta.get("skipped", [])))
    hypotheses = [by_id.get(u.id, "") for u in manifest]
    missing = [u.id for u in manifest if u.id not in by_id and u.id not in failed]
    assert not missing, f"utterances neither decoded nor reported as failed: {missing[:3]}"
    return DecodeOutput(
        modality,
        hypotheses,
        failed,
        time.perf_counter() - start,
        noise.snr_db if noise is not None else None,
        [lips_by_id.get(u.id) for u in manifest] if modality == "both" or judge else None,
    )


def score_hypotheses(
    manifest: Manifest, hypotheses: list[str], normalizer: str, hyp_name: str = "hypotheses"
) -> ErrorReport:
    return score(
        [u.text for u in manifest],
        hypotheses,
        normalizer,
        ids=[u.id for u in manifest],
        ref_name=str(manifest.wrd or manifest.tsv),
        hyp_name=hyp_name,
    )


def write_condition(
    output_dir: Path, manifest: Manifest, out: DecodeOutput, report: ErrorReport, settings: dict
) -> dict[str, Path]:
    """Write hyp.wrd, results.jsonl and wer.json for one condition."""
    mean, rows = run_fields(out)
    summary = {
        **report.to_dict(),
        "modality": out.modality,
        "snr_db": out.snr_db,
        "failed": out.failed,
        "n_failed": len(out.failed),
        "seconds": round(out.seconds, 3),
        "utterances_per_second": round(out.utterances_per_second, 3) if out.seconds > 0 else None,
        **mean,
        "manifest": str(manifest.tsv),
        "references": str(manifest.wrd) if manifest.wrd else None,
        "settings": settings,
    }
    return write_results(output_dir, report, [u.text for u in manifest], out.hypotheses, summary=summary, extra=rows)


def _progress_task(progress, description: str, total: int) -> Callable[[int], None] | None:
    """`advance(n)` of a new task on a rich Progress (None without one): the on_batch of decode_manifest."""
    if progress is None:
        return None
    task = progress.add_task(description, total=total)
    return lambda n: progress.advance(task, n)


WER_BY_SNR = "wer_by_snr.json"  # with --snr: one row per condition, beside the clean results


def snr_dirname(snr_db: float) -> str:
    """Folder name for one noise level: snr_-5, snr_0, snr_2.5."""
    return f"snr_{snr_db:g}"


def decode_outputs(output_dir: Path, snrs: Sequence[float] = ()) -> list[Path]:
    """Every file `run_decode` writes into `output_dir` (to check them against the inputs first)."""
    folders = [output_dir] + [output_dir / snr_dirname(float(s)) for s in snrs]
    files = [path for folder in folders for path in result_paths(folder).values()]
    return files + ([output_dir / WER_BY_SNR] if snrs else [])


def run_decode(
    model,
    cfg: Config,
    manifest: Manifest,
    modality: str,
    output_dir: Path,
    options: DecodingOptions,
    *,
    snrs: Sequence[float] = (),
    noise_kind: str = "babble",
    normalizer: str = "basic",
    seed: int = 0,
    device: str = "cpu",
    batch_size: int | None = None,
    extra_settings: dict | None = None,
    progress=None,
) -> list[tuple[DecodeOutput, ErrorReport]]:
    """Decode clean, then at each SNR level of `snrs`, and write each condition.

    With `snrs`, the clean condition is written to `output_dir` and each level to
    `output_dir/snr_<db>/`, plus `output_dir/wer_by_snr.json`. `batch_size`: utterances generated
    together (None: the config's decode.batch_size).
    """
    from avsrctl.data.noise import NoiseSpec

    settings = {
        "beam_size": options.beam_size,
        "max_new_tokens": options.max_new_tokens,
        "length_penalty": options.length_penalty,
        "normalizer": normalizer,
        "modality": modality,
        "seed": seed,
        **(extra_settings or {}),
    }
    conditions: list[NoiseSpec | None] = [None] + [NoiseSpec(noise_kind, float(s), 1.0) for s in snrs]
    results = []
    for noise in conditions:
        label = "clean" if noise is None else f"{noise.kind} {noise.snr_db:g} dB"
        on_batch = _progress_task(progress, f"decode {modality} ({label})", len(manifest))
        out = decode_manifest(
            model,
            manifest,
            modality,
            options,
            cfg,
            batch_size=batch_size,
            noise=noise,
            seed=seed,
            device=device,
            on_batch=on_batch,
        )
        report = score_hypotheses(manifest, out.hypotheses, normalizer)
        folder = output_dir if noise is None else output_dir / snr_dirname(noise.snr_db)
        cond_settings = {**settings, "noise": None if noise is None else {"kind": noise.kind, "snr_db": noise.snr_db}}
        write_condition(folder, manifest, out, report, cond_settings)
        results.append((out, report))
    if snrs:
        import json

        rows = [
            {"snr_db": out.snr_db, "noise": None if out.snr_db is None else noise_kind, **rep.to_dict()}
            for out, rep in results
        ]
        write_files({output_dir / WER_BY_SNR: json.dumps(rows, indent=2) + "\n"})
    return results


# ------------------------------------------------------------------------ eval


@dataclass
class Run(LipViews):
    """One set of hypotheses to score: from a file, the baseline, or a checkpoint in one modality."""

    system: str
    hypotheses: list[str]
    modality: str | None = None
    failed: dict[str, str] = field(default_factory=dict)  # id -> why its media could not be decoded
    settings: dict = field(default_factory=dict)
    lips: list[LipUse | None] | None = None  # 'both': how the model used each row's lips


def score_run(run: Run, manifest: Manifest, normalizers: list[str], hyp_name: str) -> tuple[list[ErrorReport], dict]:
    """Reports for every normaliser (the first is primary) and the JSON summary of the run."""
    reports = [score_hypotheses(manifest, run.hypotheses, n, hyp_name=hyp_name) for n in normalizers]
    summary = {**reports[0].to_dict(), "system": run.system, "tsv": str(manifest.tsv), "wrd": str(manifest.wrd)}
    if run.modality is not None:
        summary["modality"] = run.modality
    summary.update(run_fields(run)[0])
    if run.settings:
        summary["settings"] = run.settings
    if run.failed or run.modality is not None or "baseline" in run.system:
        summary["failed"] = run.failed
    if len(reports) > 1:
        summary["by_normalizer"] = {r.normalizer: r.to_dict() for r in reports}
    if "whisper" in normalizers:
        summary["whisper_spelling_mapping"] = spelling_mapping()[1]
    return reports, summary


def baseline_run(
    manifest: Manifest, model: str | None, beam_size: int, device: str | None, progress=None, cpu_threads: int = 0
) -> Run:
    """faster-whisper (the offline tiny.en unless `model` names another) over the manifest's audio."""
    from avsrctl.baseline import FasterWhisperRecognizer, WhisperOptions, recognize_manifest

    recognizer = FasterWhisperRecognizer(
        WhisperOptions(model=model, beam_size=beam_size, device=device or "auto", cpu_threads=cpu_threads)
    )
    on_utterance = _progress_task(progress, "transcribing", len(manifest))
    hyps, failed = recognize_manifest(
        manifest, recognizer, progress=(lambda i: on_utterance(1)) if on_utterance else None
    )
    settings = {"beam_size": beam_size, "device": recognizer.device, "compute_type": recognizer.compute_type}
    return Run(f"baseline {recognizer.name}", hyps, failed=failed, settings=settings)


def checkpoint_runs(
    model,
    cfg: Config,
    meta: dict,
    checkpoint: Path,
    manifest: Manifest,
    modality: str | None,
    beam_size: int | None,
    progress=None,
    batch_size: int | None = None,
    min_lip_sync: float | None = None,
) -> list[Run]:
    """Decode the manifest with a loaded checkpoint in `modality` ('all': each it serves; None: its own);
    `min_lip_sync`: the in-sync threshold of a fused model's lips (None: its config's)."""
    from avsrctl.checkpoint import trained_modality
    from avsrctl.decoding import DecodingOptions, check_options_fit, lip_sync_setting

    dev = str(model.device)
    if modality == "all":
        modalities = [m for m in ("audio", "video", "both") if m in model.modalities]
    else:
        modalities = [modality or trained_modality(cfg, meta)]
    options = DecodingOptions.from_config(cfg.decode, beam_size=beam_size, min_lip_sync=min_lip_sync)
    check_options_fit(model, options)
    runs = []
    for mod in modalities:
        on_batch = _progress_task(progress, f"decoding ({mod})", len(manifest))
        out = decode_manifest(model, manifest, mod, options, cfg, batch_size=batch_size, device=dev, on_batch=on_batch)
        settings = {
            "checkpoint": str(checkpoint),
            "beam_size": options.beam_size,
            "max_new_tokens": options.max_new_tokens,
            "batch_size": batch_size or cfg.decode.batch_size,
            "device": dev,
            **lip_sync_setting(model, mod, options),
        }
        runs.append(Run(f"{Path(checkpoint).name} ({mod})", out.hypotheses, mod, dict(out.failed), settings, out.lips))
    return runs
