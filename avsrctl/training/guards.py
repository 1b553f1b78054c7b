"""What the trainer (trainer.py) does when a step goes wrong.

- Utterances whose media failed to decode are left out of their micro-batch: each is counted
  and recorded (`record_skipped_media`).
- A non-finite loss or gradient skips the optimiser step; train.max_bad_steps of them in a row
  stop the run (`skip_bad_step`).
- A step that leaves a NaN or inf weight stops the run at once, naming the last good checkpoint
  (`check_weights`, `diverged`): a diverged model is never saved.

Each function takes the Trainer `tr` and reads or updates its counters, reporter and optimiser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import torch

from avsrctl import checkpoint as ckpt
from avsrctl.errors import TrainingError
from avsrctl.training import distributed as dist


def record_skipped_media(tr: Any, micro: list[Any]) -> None:
    """Count and record the utterances the micro-batches left out because their media failed."""
    for b in micro:
        skipped = b.meta.get("skipped") or []
        if skipped:
            tr.skipped_media += len(skipped)
            reasons = b.meta.get("skip_reasons") or {}
            tr.reporter.record(
                {
                    "type": "event",
                    "event": "skipped_media",
                    "step": tr.step,
                    "ids": skipped,
                    "reasons": [reasons.get(i, "") for i in skipped],
                }
            )
            tr.reporter.log(
                f"[yellow]skipped {len(skipped)} utterance(s) whose media failed: {', '.join(skipped[:5])}[/]"
            )


def skip_bad_step(tr: Any, ids: list[str], loss: float, grad_norm: float) -> None:
    """Drop the step's gradients after a non-finite loss or gradient; stop after train.max_bad_steps in a row."""
    tr.optimizer.zero_grad(set_to_none=True)
    if tr.scaler is not None:
        tr.scaler.update()
    tr.bad_streak += 1
    tr.bad_total += 1
    tr.reporter.record(
        {"type": "event", "event": "nonfinite", "step": tr.step, "loss": loss, "grad_norm": grad_norm, "ids": ids}
    )
    tr.reporter.log(
        f"[yellow]non-finite loss or gradient (loss {loss}, grad norm {grad_norm}): step "
        f"skipped ({tr.bad_streak} in a row); batch ids: {', '.join(ids[:8])}[/]"
    )
    if tr.bad_streak >= tr.tc.max_bad_steps:
        raise TrainingError(
            f"{tr.bad_streak} optimiser steps in a row had a non-finite loss or gradient "
            f"(train.max_bad_steps={tr.tc.max_bad_steps}); last batch ids: {', '.join(ids[:8])}",
            hint="lower train.lr, train in fp32 (train.mixed_precision=no), and check those utterances' "
            "media and transcripts; no checkpoint was written for the bad steps",
        )


def check_weights(tr: Any) -> None:
    """Stop the run when the step just taken left a NaN or inf weight (an lr far too high, an
    fp16 overflow): a finite loss and gradient do not guarantee finite weights after the update,
    and a diverged model must never be saved (not as `best`, not as `final`)."""
    finite = torch.stack([torch.isfinite(p).all() for p in tr.params]).all() if tr.params else True
    (bad,) = dist.all_reduce(tr.ctx, [float(not bool(finite))], "max")  # every rank stops together
    if bad:
        names = [n for n, p in tr.named_params if not bool(torch.isfinite(p).all())]
        where = f"{names[0]}" + (f" and {len(names) - 1} more tensors" if len(names) > 1 else "")
        diverged(
            tr,
            f"optimiser step {tr.step} left non-finite weights (NaN or inf) in {where or 'another rank'}",
            ckpt.find_latest(tr.output) if tr.ctx.is_main else None,
        )


def diverged(tr: Any, what: str, good: Path | None) -> NoReturn:
    """Record why the run diverged and stop it, naming the last good checkpoint `good` (None: none)."""
    tr.reporter.record({"type": "event", "event": "diverged", "step": tr.step, "reason": what})
    last = f"the last good checkpoint is {good}" if good else "no checkpoint was written before it"
    raise TrainingError(
        f"training diverged: {what}; {last}",
        hint="lower train.lr (and train in fp32: train.mixed_precision=no) and start a new run"
        + (f", e.g. with --init-from {good}" if good else ""),
    )
