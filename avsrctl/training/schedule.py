"""Learning-rate schedule and optimiser: linear warm-up, then cosine decay to a floor.

The schedule is a pure function of the optimiser step, so resuming only needs the step
count (torch's LambdaLR keeps it in a JSON-friendly state dict).
"""

from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak lr after `step` optimiser steps.

    0 -> 1 linearly over `warmup_steps` (the first update already uses 1/warmup of the peak,
    never 0, so no step is wasted), then a half cosine from 1 down to `min_lr_ratio` at
    `total_steps`, and flat at the floor past it (training longer than planned stays stable).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_lr_ratio + (1.0 - min_lr_ratio) * cosine


class WarmupCosine:
    """A picklable-free callable for LambdaLR (its attributes land in the scheduler state dict)."""

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float):
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step: int) -> float:
        return warmup_cosine(
            step, warmup_steps=self.warmup_steps, total_steps=self.total_steps, min_lr_ratio=self.min_lr_ratio
        )


def build_optimizer(
    named_params: list[tuple[str, torch.nn.Parameter]], *, lr: float, weight_decay: float
) -> torch.optim.AdamW:
    """AdamW over trainable parameters only; biases, norms and scalar gates get no weight decay
    (decaying a fusion weight or a LayerNorm gain towards 0 is not regularisation)."""
    decay = [p for n, p in named_params if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in named_params if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if not groups:
        from avsrctl.errors import TrainingError

        raise TrainingError(
            "the model has no trainable parameters", hint="enable LoRA (model.llm.lora.enabled) or unfreeze an encoder"
        )
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-8)


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int, min_lr_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_lr_ratio))


def optimizer_param_order(named_params: list[tuple[str, torch.nn.Parameter]]) -> list[str]:
    """Names of the parameters in the order `build_optimizer` puts them (state dicts index by it)."""
    decay = [n for n, p in named_params if p.requires_grad and p.ndim >= 2]
    no_decay = [n for n, p in named_params if p.requires_grad and p.ndim < 2]
    return decay + no_decay
