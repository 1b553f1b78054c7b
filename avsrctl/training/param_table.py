"""Per-component parameter-update table: is each part learning, frozen, or exploding?

Every `--log-param-updates N` steps the trainer measures, per component (the rows of inspect-params:
connectors, fusion, CTC heads, LoRA adapters, marker embeddings, and each frozen part):
gradient norm (before clipping), parameter norm, update-to-weight ratio ||ΔW|| / ||W|| of
that one optimiser step, and the lr. Healthy Adam training shows ratios around 1e-4..1e-2;
0 means the part is not learning, >1e-1 means it is being overwritten.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Components, their labels and display order come from the one table in models/inspect.py
# (what inspect-params shows); component_of and OTHER are re-exported from here.
from avsrctl.models.inspect import LABELS, OTHER, component_of

__all__ = ["OTHER", "ComponentStats", "ParamUpdateTracker", "component_of", "render_table"]


@dataclass(frozen=True)
class ComponentStats:
    component: str
    trainable: bool  # any trainable parameter in it
    n_params: int
    grad_norm: float  # 0 for frozen parts
    param_norm: float
    update_ratio: float  # ||W_after - W_before|| / ||W_before||
    lr: float

    def to_record(self, step: int) -> dict:
        return {
            "type": "params",
            "step": step,
            "component": self.component,
            "trainable": self.trainable,
            "n_params": self.n_params,
            "grad_norm": self.grad_norm,
            "param_norm": self.param_norm,
            "update_ratio": self.update_ratio,
            "lr": self.lr,
        }


def _norm(tensors: list[torch.Tensor]) -> float:
    if not tensors:
        return 0.0
    return math.sqrt(sum(float(t.detach().float().pow(2).sum()) for t in tensors))


class ParamUpdateTracker:
    """Snapshot before `optimizer.step()`, measure after. Only trainable tensors are copied
    (connectors, fusion, LoRA: small); frozen parts are checked by their norm, which cannot
    move unless something updates them by mistake."""

    def __init__(self, model: torch.nn.Module):
        self.groups: dict[str, list[tuple[str, torch.nn.Parameter]]] = {}
        for name, p in model.named_parameters():
            self.groups.setdefault(component_of(name), []).append((name, p))
        self.groups = {k: self.groups[k] for k in LABELS if k in self.groups}
        self._before: dict[str, list[torch.Tensor]] = {}
        self._frozen_norm: dict[str, float] = {}
        self._grad: dict[str, float] = {}

    def trainable(self, component: str) -> bool:
        return any(p.requires_grad for _, p in self.groups[component])

    def before_step(self) -> None:
        """Call after gradients are final (unscaled, before clipping) and before the optimiser step."""
        self._before, self._frozen_norm, self._grad = {}, {}, {}
        for comp, params in self.groups.items():
            live = [p for _, p in params if p.requires_grad]
            if live:
                self._before[comp] = [p.detach().clone() for p in live]
                self._grad[comp] = _norm([p.grad for p in live if p.grad is not None])
            else:
                self._frozen_norm[comp] = _norm([p for _, p in params])

    def after_step(self, lr: float) -> list[ComponentStats]:
        stats = []
        for comp, params in self.groups.items():
            n = sum(p.numel() for _, p in params)
            if comp in self._before:
                live = [p for _, p in params if p.requires_grad]
                before = self._before[comp]
                w = _norm(before)
                delta = _norm([a.detach() - b for a, b in zip(live, before)])
                stats.append(
                    ComponentStats(comp, True, n, self._grad[comp], _norm(live), delta / w if w > 0 else 0.0, lr)
                )
            else:
                after = _norm([p for _, p in params])
                w = self._frozen_norm.get(comp, after)
                # a lower bound on ||ΔW||: enough to flag a frozen part that moved
                moved = abs(after - w) / w if w > 0 else 0.0
                stats.append(ComponentStats(comp, False, n, 0.0, after, moved, 0.0))
        self._before = {}
        return stats


def render_table(stats: list[ComponentStats], step: int):
    """A rich Table of the stats (imported lazily: rich is only needed when printing)."""
    from rich.table import Table

    table = Table(title=f"parameter updates at step {step}", title_justify="left", show_edge=False)
    for col in ("component", "state", "params", "grad norm", "param norm", "update/weight", "lr"):
        table.add_column(col, justify="left" if col == "component" else "right")
    for s in stats:
        ratio = f"{s.update_ratio:.2e}"
        if s.trainable and (s.update_ratio == 0 or s.update_ratio > 0.1):
            ratio = f"[bold red]{ratio}[/]"  # not learning, or being overwritten
        elif not s.trainable and s.update_ratio > 0:
            ratio = f"[bold red]{ratio}[/]"  # a frozen part moved
        label = s.component if s.trainable else f"[dim]{s.component}[/]"
        state = "train" if s.trainable else "[dim]frozen[/]"
        table.add_row(
            label,
            state,
            _count(s.n_params),
            f"{s.grad_norm:.3e}",
            f"{s.param_norm:.3e}",
            ratio,
            f"{s.lr:.2e}" if s.trainable else "-",
        )
    return table


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
