"""Forward and backward of one optimiser step's micro-batches, and what happens on out-of-memory:
the micro-batch is split in halves and retried, down to one utterance. The halves' losses are
token-weighted like any micro-batches, so the optimiser step is the same.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from avsrctl.data.manifest import VIDEO_FPS
from avsrctl.errors import TrainingError


def split_in_halves(mb: Any, reporter: Any, step: int) -> list[Any]:
    """The two halves of micro-batch `mb` (a Batch), after logging the split; an error for a single utterance."""
    frames = int(mb.lengths.max()) if len(mb) else 0
    if len(mb) < 2:
        raise TrainingError(
            f"out of memory on a single utterance '{mb.ids[0]}' ({frames} frames, {frames / VIDEO_FPS:.1f} s)",
            hint="lower data.max_seconds to drop very long utterances, use train.mixed_precision=bf16, "
            "or train on a larger GPU",
        )
    half = len(mb) // 2
    reporter.record(
        {
            "type": "event",
            "event": "oom_split",
            "step": step,
            "batch_size": len(mb),
            "frames": frames,
            "ids": list(mb.ids),
        }
    )
    reporter.log(
        f"[yellow]out of memory on a micro-batch of {len(mb)} x {frames} frames: "
        f"retrying it in halves (consider a lower data.max_frames_per_batch)[/]"
    )
    return [mb.select(list(range(half))), mb.select(list(range(half, len(mb))))]


def _n_tokens(out: Any, batch: Any) -> int:
    n = getattr(out, "n_tokens", None)
    if n is None:
        return len(batch)
    return int(n.item() if isinstance(n, torch.Tensor) else n)


AUX_LOSSES = ("ctc", "articulation", "sync")  # the auxiliary losses an AVSROutput may carry


def accumulate(tr: Any, pieces: list[Any]) -> tuple[float, int, int, list[str], list[float]]:
    """Forward and backward every micro-batch of Trainer `tr`'s step; on out-of-memory, split it in halves.

    Returns the token-weighted sums of the loss, the supervised tokens, the utterances, the ids of
    micro-batches with a non-finite loss, and the token-weighted sums of the auxiliary losses in
    AUX_LOSSES order (0 for those the model does not compute).
    """
    queue = list(pieces)
    loss_sum, tokens, utts, bad_ids, aux, i = 0.0, 0, 0, [], [0.0] * len(AUX_LOSSES), 0
    while i < len(queue):
        mb, phase = queue[i], "forward"
        try:
            # Local work only: no collective runs inside forward or backward (distributed.py), so a
            # retry here, on one rank, cannot leave the other ranks waiting.
            batch = tr._prepare(mb, tr.train_streams)
            with tr._autocast():
                out = tr.model(batch, tr.modality, tr.tc.objective)
            n = _n_tokens(out, batch)
            phase = "backward"
            objective = out.loss if getattr(out, "objective", None) is None else out.objective
            weighted = objective.float() * n  # summed token loss; divided by all tokens later
            (tr.scaler.scale(weighted) if tr.scaler is not None else weighted).backward()
        except torch.OutOfMemoryError:
            out = batch = weighted = objective = None  # drop references so the memory can be freed
            if tr.device.type == "cuda":
                torch.cuda.empty_cache()
            tr.oom_splits += 1
            halves = split_in_halves(mb, tr.reporter, tr.step)
            if phase == "backward":
                # part of a backward may have landed in .grad: redo the step from a clean slate
                tr.optimizer.zero_grad(set_to_none=True)
                queue = queue[:i] + halves + queue[i + 1 :]
                loss_sum, tokens, utts, bad_ids, aux, i = 0.0, 0, 0, [], [0.0] * len(AUX_LOSSES), 0
            else:
                queue[i : i + 1] = halves
            continue
        value = float(out.loss.detach())
        if not math.isfinite(value):
            bad_ids.extend(mb.ids)
        loss_sum += value * n
        for k, name in enumerate(AUX_LOSSES):
            if getattr(out, name, None) is not None:
                aux[k] += float(getattr(out, name).detach()) * n
        tokens += n
        utts += len(mb)
        i += 1
    return loss_sum, tokens, utts, bad_ids, aux
