"""Multi-process training under torchrun: process group, DDP wrapping, small collectives.

`torchrun --nproc-per-node N -m avsrctl train ...` sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; `init_distributed` reads them (backend nccl on CUDA, gloo on
CPU). With WORLD_SIZE unset or 1 every helper here is a no-op, so the trainer has one code
path. Only rank 0 writes checkpoints, metrics and progress.

Gradients are summed by one explicit collective per optimiser step (`all_reduce_grads`), not
by DistributedDataParallel's backward hooks. DDP starts its all-reduce inside backward, so a
rank whose step had no data (every clip failed to decode) or that redid a backward after an
out-of-memory error would call collectives the others are not in, and the job would hang.
Here every rank calls the same collectives in the same order whatever its data: forward and
backward are local, then `all_reduce` of the step's sums, then `all_reduce_grads`. The price
is no overlap of communication with backward, small for what trains here (connectors, fusion,
LoRA: tens of MB of gradients).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from avsrctl.errors import TrainingError, UsageError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None  # None: a single process, no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"environment variable {name}={raw!r} is not a whole number") from None


def pick_device(local_rank: int = 0) -> str:
    if torch.cuda.is_available():
        return f"cuda:{local_rank}"
    return "cpu"


def init_distributed(device: str | None = None) -> DistContext:
    """Join the process group torchrun describes (or return a single-process context)."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if device is None:
        device = pick_device(local)
    if world <= 1:
        return DistContext(device=device)
    cuda = device.startswith("cuda")
    if cuda:
        if local >= torch.cuda.device_count():
            raise UsageError(
                f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs are visible",
                hint="use --nproc-per-node at most the number of GPUs",
            )
        torch.cuda.set_device(local)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend=backend)
        except (RuntimeError, ValueError) as e:
            raise TrainingError(
                f"cannot join the process group ({backend}, rank {rank}/{world}): {e}",
                hint="launch with torchrun, which sets MASTER_ADDR/MASTER_PORT",
            ) from None
    return DistContext(rank=rank, world_size=world, local_rank=local, device=device, backend=backend)


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


_BUCKET = 1 << 25  # gradient elements summed per all_reduce call (128 MB in float32)


def broadcast_params(ctx: DistContext, params: list[torch.Tensor]) -> None:
    """Rank 0's values of `params` on every rank (what DDP does when it wraps a model)."""
    if not ctx.enabled:
        return
    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=0)


def _buckets(params: list[torch.Tensor]) -> list[list[int]]:
    """Indices of `params` grouped by dtype and device, at most _BUCKET elements a group (one
    oversized tensor forms its own)."""
    groups: dict[tuple, list[list[int]]] = {}
    for i, p in enumerate(params):
        runs = groups.setdefault((p.dtype, p.device), [[]])
        if runs[-1] and sum(params[j].numel() for j in runs[-1]) + p.numel() > _BUCKET:
            runs.append([])
        runs[-1].append(i)
    return [run for runs in groups.values() for run in runs if run]


def all_reduce_grads(ctx: DistContext, params: list[torch.Tensor]) -> None:
    """Sum every parameter's .grad over ranks (not the mean: the caller divides by the step's tokens).

    A collective every rank must call once per optimiser step with the same `params`, whatever
    its data: a rank that computed no gradient (no data this step, or a parameter its modality
    dropout left unused) contributes zeros. A parameter no rank has a gradient for keeps
    `grad=None`, as in a single process, so the optimiser skips it there too.
    """
    if not ctx.enabled or not params:
        return
    dev = ctx.device if ctx.backend == "nccl" else "cpu"
    present = torch.tensor([float(p.grad is not None) for p in params], dtype=torch.float32, device=dev)
    dist.all_reduce(present)
    for idx in _buckets(params):
        flat = torch.cat(
            [
                params[i].grad.reshape(-1) if params[i].grad is not None else params[i].new_zeros(params[i].numel())
                for i in idx
            ]
        )  # (sum of numel,)
        dist.all_reduce(flat)
        offset = 0
        for i in idx:
            p, n = params[i], params[i].numel()
            if present[i] > 0:
                p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n


def all_reduce(ctx: DistContext, values: list[float], op: str = "sum") -> list[float]:
    """Sum (or max, or min) a few numbers over ranks; identity in a single process."""
    if not ctx.enabled:
        return list(values)
    dev = ctx.device if ctx.backend == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=dev)
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
    return t.tolist()


def gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's `obj` (JSON-like), in rank order, on every rank."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        if ctx.backend == "nccl":
            dist.barrier(device_ids=[ctx.local_rank])
        else:
            dist.barrier()
