"""Everything `avsrctl train` does before the first step: check the data and the output folder,
pick the checkpoint to resume from, seed, build the model, datasets and feature cache, then
hand them to the Trainer. Library callers use `run_training(cfg, modality=...)`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsrctl.checkpoint import (
    CONFIG,
    WEIGHTS,
    check_tokenizer,
    checkpoint_folder,
    list_checkpoints,
    read_checkpoint_config,
    read_meta,
    read_tensors,
    require_finite,
)
from avsrctl.config import Config
from avsrctl.data.roi import crop_method
from avsrctl.errors import CheckpointError, TrainingError, UsageError
from avsrctl.models.weights import trainable_mismatches
from avsrctl.training import distributed as D
from avsrctl.training.progress import Reporter
from avsrctl.training.run_folder import RunLock, check_free_space, check_output, clean_leftovers
from avsrctl.training.signals import TrainingInterrupted
from avsrctl.training.trainer import Trainer, TrainResult
from avsrctl.wording import plural


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_manifests(cfg: Config, modality: str) -> tuple[Any, Any | None]:
    """(train, valid) manifests; valid is None when the corpus has no valid split."""
    from avsrctl.data.manifest import read_manifest, split_paths

    root = cfg.data.root
    if root is None:
        raise UsageError(
            "no training data: the config has no data.root",
            hint="point at a corpus with `--data DIR` (or `--set data.root=DIR`), or make a small synthetic one "
            "with `avsrctl demo-data DIR`",
        )
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UsageError(
            f"data folder not found: {root}",
            hint="pass a folder holding train.tsv/train.wrd, or make one with `avsrctl demo-data DIR`",
        )
    tsv, wrd = split_paths(root, cfg.data.train_split)
    if not tsv.is_file():
        raise UsageError(
            f"{tsv}: no '{cfg.data.train_split}' manifest in {root}",
            hint="a corpus needs {split}.tsv + {split}.wrd; `avsrctl prepare` builds them",
        )
    train = read_manifest(tsv, wrd)
    train.require(modality)
    if modality == "video" and cfg.model.losses.lip_sync > 0:
        train.require(
            "audio",
            because="model.losses.lip_sync trains the lips against each utterance's audio",
            hint="set model.losses.lip_sync=0, or train on a manifest with audio",
        )
    if cfg.data.max_seconds is not None:
        kept = [u for u in train.utterances if u.seconds <= cfg.data.max_seconds]
        if not kept:
            raise UsageError(f"data.max_seconds={cfg.data.max_seconds} drops every utterance of {tsv}")
        train.utterances = kept
    vtsv, vwrd = split_paths(root, cfg.data.valid_split)
    valid = None
    if vtsv.is_file():
        valid = read_manifest(vtsv, vwrd)
        valid.require(modality)
    return train, valid


def _check_same_model(cfg: Config, path: Path) -> None:
    """A resumed run continues the same run: the model config and the seed (which drives the data
    order, dropout and noise draws) must be the checkpoint's."""
    old = read_checkpoint_config(path)
    if old.train.seed != cfg.train.seed:
        raise UsageError(
            f"--resume {path}: the checkpoint was trained with seed {old.train.seed}, now seed {cfg.train.seed}; "
            "resuming would continue a different run",
            hint=f"resume with --seed {old.train.seed}, or start a new run with another --output",
        )
    if sorted(old.train.freeze) != sorted(cfg.train.freeze):
        raise UsageError(
            f"--resume {path}: the checkpoint was trained with train.freeze {old.train.freeze}, now "
            f"{cfg.train.freeze}; resuming would continue a different run",
            hint=f"resume with the checkpoint's config: --config {path / CONFIG}",
        )
    if old.model.model_dump(mode="json") != cfg.model.model_dump(mode="json"):
        a, b = old.model.model_dump(mode="json"), cfg.model.model_dump(mode="json")
        diff = _first_difference(a, b, "model")
        raise UsageError(
            f"--resume {path}: the model config differs from the checkpoint's ({diff})",
            hint=f"resume with the checkpoint's config: --config {path / CONFIG}",
        )


def _first_difference(a: Any, b: Any, key: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{key}.{k}")
    return f"{key}: checkpoint {a!r}, now {b!r}"


def media_map(*manifests: Any) -> dict[str, dict[str, Path | None]]:
    out: dict[str, dict[str, Path | None]] = {}
    for m in manifests:
        if m is not None:
            for u in m.utterances:
                out[u.id] = {"audio": u.audio, "video": u.video}
    return out


def run_training(
    cfg: Config,
    *,
    modality: str | None = None,
    resume: str | None = None,
    console: Any = None,
    model: Any = None,
    device: str | None = None,
    live: bool | None = None,
    trainer_hook: Any = None,
    meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Train as `avsrctl train` does. `model` replaces the one built from the config (tests);
    `trainer_hook(trainer)` runs before training starts (tests and tools); `meta` is added to every
    checkpoint's meta.json (`avsrctl adapt` records there where the model came from)."""
    from avsrctl.data.dataset import AVDataset
    from avsrctl.data.noise import NoiseSpec

    modality = modality or cfg.model.modality
    if modality != cfg.model.modality:
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"modality": modality})})
    if cfg.model.losses.lip_sync > 0 and modality != "video":
        raise UsageError(
            f"model.losses.lip_sync trains a video model's lips; this run trains '{modality}'",
            hint="set model.losses.lip_sync=0 (a fused model has model.losses.sync)",
        )
    ctx = D.init_distributed(device)
    lock, fresh_folder = None, False
    output = Path(cfg.train.output).expanduser()
    try:
        train_m, valid_m = load_manifests(cfg, modality)
        resume_path = None
        if ctx.is_main:
            fresh_folder = not output.exists()
            lock = RunLock(output).acquire()  # before anything is written: one run per folder
            resume_path = check_output(output, resume)
        resume_path = D.broadcast_object(ctx, str(resume_path) if resume_path else None)
        resume_path = Path(resume_path) if resume_path else None
        if resume_path is not None:
            _check_same_model(cfg, resume_path)
        seed_everything(cfg.train.seed)  # same initial weights on every rank
        if model is None:  # built before the run folder is written to: a config that cannot build leaves it as it was
            from avsrctl.models.builder import build_model

            # Built for the device it trains on: model.llm.dtype resolves per device (bfloat16 on a
            # GPU, float32 on the CPU), and a float32 model moved to the GPU afterwards stays float32.
            model = build_model(cfg, device=ctx.device, training=True)
        n_frozen = freeze_components(model, cfg.train.freeze)
        reporter = Reporter(output, console, enabled=ctx.is_main, live=live, log_every=cfg.train.log_every)
        if n_frozen:
            reporter.log(f"train.freeze: {', '.join(cfg.train.freeze)} kept as they are ({n_frozen} tensors)")
        if ctx.is_main:
            removed = clean_leftovers(output)
            if removed:
                reporter.log(f"[dim]removed what an interrupted save left: {', '.join(removed)}[/]")
        if resume is not None and resume_path is None:
            reporter.log(f"--resume {resume}: no checkpoint in {output} yet, starting a new run")

        if resume_path is None and cfg.train.init_from:
            _init_from(model, cfg.train.init_from, reporter, cfg)
        model.to(ctx.device)
        if ctx.is_main:
            check_free_space(output, model)
        seed_everything(cfg.train.seed + ctx.rank)  # distinct dropout/modality-dropout streams per rank

        noise = NoiseSpec.from_config(cfg.data)
        train_set = AVDataset(
            train_m,
            modality,
            with_audio=getattr(model, "lip_sync", None) is not None,  # the lip-sync loss's partner reads it
            roi=cfg.data.roi,
            roi_size=cfg.data.roi_size,
            noise=noise,
            seed=cfg.train.seed,
            frame_memory_mb=cfg.data.frame_memory_mb,
            video_augment=cfg.data.video_augment,
            video_corruption=cfg.data.video_corruption,
            articulation=cfg.model.losses.articulation > 0,
        )
        valid_set = None
        if valid_m is not None:
            valid_set = AVDataset(
                valid_m,
                modality,
                roi=cfg.data.roi,
                roi_size=cfg.data.roi_size,
                frame_memory_mb=cfg.data.frame_memory_mb,
            )
        else:
            reporter.log(
                f"[yellow]no '{cfg.data.valid_split}' manifest in {cfg.data.root}: training without "
                "validation (no 'best' checkpoint)[/]"
            )
        cache = _feature_cache(cfg, model, modality, noise, reporter, train_m, valid_m)
        if cache is not None:  # a warm cache replaces media decoding, not only the encoders
            from functools import partial

            from avsrctl.training.cache import cache_streams

            noisy = noise is not None and noise.prob > 0
            train_set.use_features(partial(cache.lookup, streams=cache_streams(modality, noisy_audio=noisy)))
            if valid_set is not None:
                valid_set.use_features(partial(cache.lookup, streams=cache_streams(modality, noisy_audio=False)))
        n_train = len(train_m)
        reporter.log(
            f"training {modality} on {n_train} utterances ({sum(u.seconds for u in train_m) / 3600:.2f} h)"
            f"{f', validating on {len(valid_m)}' if valid_m is not None else ''}; device {ctx.device}"
            f"{f', {ctx.world_size} processes' if ctx.enabled else ''}; output {output}"
        )
        trainer = Trainer(
            cfg, model, modality, train_set, valid_set, ctx=ctx, reporter=reporter, cache=cache, meta=meta
        )
        # Only now, with every check passed, is the run folder written to: a refused run leaves
        # it as it was (a new one is removed again below).
        if resume_path is None:
            reporter.reset()
        if ctx.is_main:
            cfg.save(output / CONFIG)
        D.barrier(ctx)
        if trainer_hook is not None:
            trainer_hook(trainer)
        result = trainer.fit(resume_path)
        _report(reporter, result)
        # Every rank reaches here before any tears the process group down: rank 0 may still be
        # saving the final checkpoint, and a peer leaving mid-way aborts gloo's worker threads.
        D.barrier(ctx)
        return result
    except KeyboardInterrupt:  # before the trainer catches Ctrl-C (building, loading), or a second one
        if list_checkpoints(output):
            raise  # the CLI's hint: continue with --resume auto
        raise TrainingInterrupted(
            "interrupted before the first checkpoint: nothing was saved",
            hint="rerun the same command to start the run again",
        ) from None
    finally:
        if lock is not None:
            lock.release()
            if fresh_folder and output.is_dir() and not any(output.iterdir()):
                output.rmdir()  # a run that failed before writing anything leaves no empty folder behind
        D.shutdown(ctx)


def freeze_components(model: Any, components: list[str]) -> int:
    """Take the parameters of the named components (train.freeze, labels of models/inspect.py) out of
    training, before any weights load: --init-from and --resume then restore them as frozen weights
    that the run's checkpoints keep. Returns how many tensors it froze; a component the model does
    not have is an error."""
    from avsrctl.training.param_table import component_of

    if not components:
        return 0
    named = list(model.named_parameters())
    present = {component_of(n) for n, _ in named}
    missing = [c for c in components if c not in present]
    if missing:
        raise UsageError(
            f"train.freeze: this model has no {', '.join(repr(c) for c in missing)}",
            hint=f"it has: {', '.join(sorted(present))} (avsrctl inspect-params lists them)",
        )
    chosen = set(components)
    frozen = [p for n, p in named if component_of(n) in chosen and p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    return len(frozen)


def init_weights_from(model: Any, paths: list[str | os.PathLike]) -> list[tuple[Path, list[str]]]:
    """Warm-start a new run (--init-from): copy every weight of `model` that a checkpoint also holds.

    Frozen parameters load too: a lip front-end trained (unfrozen) in one run and frozen in this
    one keeps its trained weights, and is stored in this run's checkpoints from then on
    (`AVSRModel.keep_loaded`), since a rebuild from config.yaml would give its initial weights.
    Checkpoints apply in order, so a later one wins where two hold the same weight (e.g. a video
    model's vision tower, then an audio model's LoRA). A weight with another shape is an error;
    weights the model does not have are ignored (an audio model's checkpoint into a fused model is
    the point). Returns, per checkpoint, the names it set.
    """
    params = {n: p.detach() for n, p in model.named_parameters()}
    if not hasattr(model, "keep_loaded"):  # a model that can only store its trainable weights
        params = model.trainable_state_dict()
    merged: dict[str, torch.Tensor] = {}
    report = []
    for p in paths:
        path = checkpoint_folder(p)
        state = read_tensors(path / WEIGHTS)
        require_finite(state, path / WEIGHTS)
        taken = sorted(set(state) & set(params))
        problems = trainable_mismatches(params, {k: state[k] for k in taken}, strict=False)
        if problems:
            raise CheckpointError(
                f"--init-from {path}: {'; '.join(problems)}",
                hint="initialise from a checkpoint of the same encoder/LLM sizes (its config.yaml)",
            )
        if not taken:
            raise CheckpointError(
                f"--init-from {path}: none of its {len(state)} weights belong to this model",
                hint="pass a checkpoint trained with the same LLM and connectors",
            )
        check_tokenizer(model, read_meta(path), f"--init-from {path}")
        merged.update({k: state[k] for k in taken})
        report.append((path, taken))
    if hasattr(model, "keep_loaded"):
        model.keep_loaded(merged)
    model.load_trainable_state_dict(merged, strict=False)
    return report


def _init_from(model: Any, paths: list[Path], reporter: Reporter, cfg: Config | None = None) -> None:
    from collections import Counter

    from avsrctl.checkpoint import read_checkpoint_config
    from avsrctl.training.param_table import component_of

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    for path, names in init_weights_from(model, paths):
        parts = ", ".join(f"{c} {n}" for c, n in Counter(component_of(k) for k in names).items())
        reporter.log(f"initialised {len(names)} tensors from {path} ({parts})")
        frozen = [k for k in names if k not in trainable]
        if frozen:
            where = ", ".join(sorted({component_of(k) for k in frozen}))
            reporter.log(
                f"[yellow]{len(frozen)} frozen tensors ({where}) took their trained weights from {path}; "
                "they stay frozen and are saved in this run's checkpoints[/]"
            )
        if cfg is None:
            continue
        # A connector's token compression K has no weights, so a different K loads silently; but the
        # LLM adapters learnt that stream at the source's token rate (a fused model decoded from one
        # stream reads it through that connector at this run's K).
        source = read_checkpoint_config(path).model
        for stream in ("audio", "video"):
            key = f"{stream}_connector"
            if not any(k.startswith(key + ".") for k in names):
                continue
            was, now = getattr(source, key).compression, getattr(cfg.model, key).compression
            if was != now:
                reporter.log(
                    f"[yellow]{path} trained the {stream} connector at K={was} frames per token; this run "
                    f"uses K={now}, so this model's {stream}-only path reads tokens at a rate its LLM "
                    f"adapters never saw (set model.{key}.compression={was} to keep it)[/]"
                )
        # Nor have the lip front-end's per-clip normalisations: the loaded encoder would compute
        # features its later layers never saw.
        if any(k.startswith("video_encoder.") for k in names):
            for setting in ("utterance_norm", "utterance_scale"):
                was, now = getattr(source.video_encoder, setting), getattr(cfg.model.video_encoder, setting)
                if was != now:
                    reporter.log(
                        f"[yellow]{path} trained the video encoder with {setting}={str(was).lower()}; this run "
                        f"uses {str(now).lower()}, so the encoder computes features its later layers never saw "
                        f"(set model.video_encoder.{setting}={str(was).lower()} to keep it)[/]"
                    )


def _feature_cache(cfg: Config, model: Any, modality: str, noise: Any, reporter: Reporter, *manifests: Any) -> Any:
    if cfg.train.cache_features is None:
        return None
    from avsrctl.training.cache import FeatureCache, check_cacheable

    identities = check_cacheable(model, modality, video_augment=cfg.data.video_augment)
    if noise is not None and modality in ("audio", "both"):
        reporter.log(
            "[yellow]training noise is on: audio features change every epoch, so they are neither "
            "cached nor reused for training (video features and clean validation audio still are)[/]"
        )
    if not any(identities.values()):
        raise TrainingError("--cache-features: the encoders report no identity to key the cache by")
    return FeatureCache(
        cfg.train.cache_features,
        media=media_map(*manifests),
        identities=identities,
        # 'auto' crops by landmarks or by the face box depending on the install: the key says which
        preprocessing={"roi": cfg.data.roi, "crop": crop_method(cfg.data.roi), "roi_size": cfg.data.roi_size},
    )


def _report(reporter: Reporter, r: TrainResult) -> None:
    best = f"{r.best_valid_loss:.4f}" if r.best_valid_loss is not None else "n/a"
    wer = r.last_valid.get("wer") if r.last_valid else None
    reporter.log(
        f"done: {plural(r.steps, 'step')}, {plural(r.epochs, 'epoch')}; last train loss {r.last_loss:.4f}; "
        f"best valid loss {best}; last valid WER {f'{wer:.2%}' if wer is not None else 'n/a'}"
    )
    notes = []
    if r.skipped_media:
        notes.append(
            f"{plural(r.skipped_media, 'utterance')} skipped because their media failed (ids in metrics.jsonl)"
        )
    if r.nonfinite_steps:
        notes.append(f"{plural(r.nonfinite_steps, 'step')} skipped for a non-finite loss or gradient")
    if r.oom_splits:
        notes.append(f"{plural(r.oom_splits, 'micro-batch', 'micro-batches')} split after running out of memory")
    if r.cache:
        notes.append(f"feature cache: {r.cache['hits']} hits, {r.cache['misses']} computed")
    for n in notes:
        reporter.log(f"[yellow]{n}[/]")
    if r.final_checkpoint is not None:
        reporter.log(f"final checkpoint: {r.final_checkpoint}")
