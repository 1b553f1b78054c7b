"""Trainer state inside a checkpoint: the optimiser by parameter name and the RNG states as JSON.

The checkpoint folder itself (weights, config, meta, atomic writes) is avsrctl/checkpoint.py.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import numpy as np
import torch

from avsrctl.checkpoint import cpu_tensors
from avsrctl.errors import CheckpointError


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
        name, field = key[len("state/"):].rsplit("/", 1)
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
