"""Multi-process training under torchrun: process group, DDP wrapping, small collectives.

`torchrun --nproc-per-node N -m avsrctl train ...` sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; `init_distributed` reads them (backend nccl on CUDA, gloo on
CPU). With WORLD_SIZE unset or 1 every helper here is a no-op, so the trainer has one code
path. Only rank 0 writes checkpoints, metrics and progress.
"""

from __future__ import annotations

import contextlib
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


def wrap_model(model: torch.nn.Module, ctx: DistContext, *, find_unused: bool) -> torch.nn.Module:
    """DistributedDataParallel over the trainable parameters (frozen ones are skipped by DDP)."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.local_rank] if ctx.device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def unwrap(model: torch.nn.Module) -> Any:
    return getattr(model, "module", model)


def no_sync(model: torch.nn.Module, skip: bool):
    """Skip DDP's gradient all-reduce on accumulation micro-batches (all but the last)."""
    if skip and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


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
