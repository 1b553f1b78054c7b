"""Trainer state inside a checkpoint: what `trainer_state.json` holds, the optimiser by parameter
name, the RNG states as JSON, and a resume that puts all of it back.

The checkpoint folder itself (weights, config, meta, atomic writes) is avsrctl/checkpoint.py.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsrctl import checkpoint as ckpt
from avsrctl.checkpoint import cpu_tensors
from avsrctl.errors import CheckpointError, TrainingError
from avsrctl.training import distributed as dist


def flatten_optimizer(opt_state: dict, param_names: list[str]) -> tuple[dict[str, torch.Tensor], dict]:
    """Split `optimizer.state_dict()` into safetensors-ready tensors and a JSON part.

    Parameters are referred to by name instead of position, so a resume can check that the
    optimiser state belongs to the same parameters.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, fields in opt_state["state"].items():
        name = param_names[int(idx)]
        for key, value in fields.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{name}/{key}"] = value
            else:
                scalars[f"{name}/{key}"] = value
    groups = []
    for g in opt_state["param_groups"]:
        g = dict(g)
        g["params"] = [param_names[int(i)] for i in g["params"]]
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()})
    return cpu_tensors(tensors), {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], json_part: dict, param_names: list[str]) -> dict:
    """Inverse of `flatten_optimizer` for the current parameter order; names must match."""
    index = {n: i for i, n in enumerate(param_names)}
    saved = [n for g in json_part["param_groups"] for n in g["params"]]
    missing, extra = sorted(set(param_names) - set(saved)), sorted(set(saved) - set(param_names))
    if missing or extra:
        raise CheckpointError(
            f"optimizer state is for other parameters: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(extra)} unexpected (e.g. {extra[:3]})",
            hint="resume with the same config and --modality as the run that wrote the checkpoint",
        )
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        name, field = key[len("state/") :].rsplit("/", 1)
        state.setdefault(index[name], {})[field] = value
    for key, value in json_part.get("scalars", {}).items():
        name, field = key.rsplit("/", 1)
        state.setdefault(index[name], {})[field] = value
    groups = []
    for g in json_part["param_groups"]:
        g = dict(g)
        g["params"] = [index[n] for n in g["params"]]
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def capture_rng() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python RNG states as JSON (base64 bytes and lists)."""
    np_state = np.random.get_state()
    state = {
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii"),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode("ascii") for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    def as_tensor(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()

    torch.set_rng_state(as_tensor(state["torch"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        saved = [as_tensor(s) for s in state["cuda"]]
        if len(saved) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved)


def trainer_state(tr: Any) -> dict:
    """What `trainer_state.json` holds for a Trainer `tr` (a collective: every rank calls it)."""
    sched = tr.scheduler.state_dict()
    sched["lr_lambdas"] = [None] * len(sched.get("lr_lambdas", []))  # rebuilt from the config on load
    return {
        "step": tr.step,
        "epoch": tr.epoch,
        "batch_in_epoch": tr.batch_in_epoch,
        "total_steps": tr.total_steps,
        "scheduler": sched,
        "scaler": tr.scaler.state_dict() if tr.scaler is not None else None,
        "rng": dist.gather_objects(tr.ctx, capture_rng()),
        "world_size": tr.ctx.world_size,
        "best_valid_loss": tr.best_valid_loss,
        "nonfinite_steps": tr.bad_total,
        "skipped_media": tr.skipped_media,
        "oom_splits": tr.oom_splits,
        "seed": tr.tc.seed,
        "modality": tr.modality,
        "param_names": tr.param_names,
    }


def restore_trainer(tr: Any, path: Path) -> None:
    """Resume Trainer `tr` from checkpoint `path`: weights, optimiser, scheduler, scaler, counters and RNG."""
    path = Path(path)
    if not ckpt.is_complete(path, resumable=True):
        raise TrainingError(
            f"{path}: not a resumable checkpoint (needs {', '.join(ckpt.RESUMABLE)})",
            hint="resume from an epoch-*/step-*/best/final folder written by `avsrctl train`",
        )
    ckpt.load_weights_into(tr.model, path, device="cpu")
    state = ckpt.read_json(path / ckpt.STATE)
    tensors = ckpt.read_tensors(path / ckpt.OPTIMIZER)
    tr.optimizer.load_state_dict(unflatten_optimizer(tensors, state["optimizer"], tr.param_names))
    sched = dict(state["scheduler"])
    sched["lr_lambdas"] = [None] * len(tr.scheduler.lr_lambdas)
    tr.scheduler.load_state_dict(sched)
    if tr.scaler is not None and state.get("scaler"):
        tr.scaler.load_state_dict(state["scaler"])
    tr.step, tr.epoch = int(state["step"]), int(state["epoch"])
    tr.batch_in_epoch = int(state["batch_in_epoch"])
    tr.best_valid_loss = state.get("best_valid_loss")
    tr.bad_total = int(state.get("nonfinite_steps", 0))
    tr.skipped_media = int(state.get("skipped_media", 0))
    tr.oom_splits = int(state.get("oom_splits", 0))
    rng = state.get("rng") or []
    if len(rng) == tr.ctx.world_size:
        restore_rng(rng[tr.ctx.rank])
    else:  # another number of processes: fresh, distinct streams per rank
        torch.manual_seed(tr.tc.seed + tr.step * 1000 + tr.ctx.rank)
        tr.reporter.log(
            f"[yellow]checkpoint written by {len(rng)} process(es), resuming with "
            f"{tr.ctx.world_size}: data order and RNG differ from an uninterrupted run[/]"
        )
    tr.reporter.truncate_after(tr.step)
    tr.reporter.record({"type": "event", "event": "resume", "step": tr.step, "from": str(path)})
    tr.reporter.log(f"resuming from {path} at step {tr.step} (epoch {tr.epoch + 1}, micro-batch {tr.batch_in_epoch})")
