"""The training loop: AdamW on trainable parameters, warm-up + cosine lr, accumulation,
clipping, mixed precision, non-finite guard, out-of-memory splitting, checkpoints, resume.

One optimiser step takes `train.grad_accum` micro-batches from `FrameBucketSampler`. Each
micro-batch contributes `loss * n_tokens` to the gradient and the sum is divided by the
tokens of the whole step (over all ranks), so accumulation, a micro-batch split in halves
after an out-of-memory error, and DDP all give the token-weighted mean loss of the step.

Resuming restores weights, optimiser, scheduler, scaler and RNG states and skips the
micro-batches the epoch already used: on CPU the continued run repeats the uninterrupted
run's losses step by step.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from avsrctl.config import Config
from avsrctl.errors import TrainingError
from avsrctl.training import checkpoint as ckpt
from avsrctl.training import distributed as D
from avsrctl.training.cache import FeatureCache, cache_streams
from avsrctl.training.param_table import ParamUpdateTracker, render_table
from avsrctl.training.progress import Reporter
from avsrctl.training.schedule import build_optimizer, build_scheduler, optimizer_param_order
from avsrctl.training.validation import ValidResult, validate

FAULT_OOM_ENV = "AVSRCTL_FAULT_OOM_STEPS"  # e.g. "3,7": raise OutOfMemoryError once in those steps (testing)


class TrainingInterrupted(TrainingError):
    """SIGINT/SIGTERM: the current step finished and a checkpoint was written."""

    exit_code = 130


@dataclass(frozen=True)
class TrainResult:
    output: Path
    steps: int
    epochs: int  # completed epochs
    last_loss: float
    best_valid_loss: float | None
    last_valid: dict | None
    final_checkpoint: Path | None
    skipped_media: int
    nonfinite_steps: int
    oom_splits: int
    cache: dict | None


def _n_tokens(out: Any, batch: Any) -> int:
    n = getattr(out, "n_tokens", None)
    if n is None:
        return len(batch)
    return int(n.item() if isinstance(n, torch.Tensor) else n)


class Trainer:
    """Trains `model` on `train_set` (an AVDataset) for `modality`; see the module docstring."""

    def __init__(self, cfg: Config, model: torch.nn.Module, modality: str, train_set: Any, valid_set: Any | None,
                 *, ctx: D.DistContext, reporter: Reporter, cache: FeatureCache | None = None,
                 sampler_cls: Any = None):
        if sampler_cls is None:
            from avsrctl.data.dataset import FrameBucketSampler as sampler_cls
        self.cfg, self.t, self.modality, self.ctx = cfg, cfg.train, modality, ctx
        self.model, self.train_set, self.valid_set = model, train_set, valid_set
        self.reporter, self.cache, self.output = reporter, cache, Path(cfg.train.output)
        self.device = torch.device(ctx.device)
        self.sampler_cls = sampler_cls
        self.sampler = sampler_cls(train_set.lengths, cfg.data.max_frames_per_batch, cfg.data.max_batch_size,
                                   shuffle=True, seed=self.t.seed, num_replicas=ctx.world_size, rank=ctx.rank)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        self.param_names = optimizer_param_order(named)
        self.optimizer = build_optimizer(named, lr=self.t.lr, weight_decay=self.t.weight_decay)
        n_batches = int(D.all_reduce(ctx, [len(self.sampler)], "min")[0])
        self.steps_per_epoch = max(1, math.ceil(n_batches / self.t.grad_accum))
        planned = self.steps_per_epoch * self.t.max_epochs
        self.total_steps = min(planned, self.t.max_steps) if self.t.max_steps else planned
        self.scheduler = build_scheduler(self.optimizer, warmup_steps=self.t.warmup_steps,
                                         total_steps=self.total_steps, min_lr_ratio=self.t.min_lr_ratio)
        cuda = self.device.type == "cuda"
        precision = self.t.mixed_precision if cuda else "no"  # autocast is a GPU feature here
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        self.tracker = ParamUpdateTracker(model) if self.t.log_param_updates else None
        noisy = cfg.data.noise_kind != "none" and cfg.data.noise_prob > 0
        self.train_streams = cache_streams(modality, noisy_audio=noisy)
        self.valid_streams = cache_streams(modality, noisy_audio=False)
        self.ddp = model
        # progress through the run (saved in trainer_state.json)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_valid_loss: float | None = None
        self.last_valid: ValidResult | None = None
        self.bad_streak, self.bad_total, self.skipped_media, self.oom_splits = 0, 0, 0, 0
        self.last_loss = math.nan
        self._stop_signal: int | None = None
        self._faults = {int(s) for s in os.environ.get(FAULT_OOM_ENV, "").split(",") if s.strip().isdigit()}
        self.ctc_weight = cfg.model.ctc_weight
        self._window = self._empty_window()

    @staticmethod
    def _empty_window() -> dict[str, float]:
        """Sums over the optimiser steps since the last metrics line."""
        return {"loss": 0.0, "ctc": 0.0, "tokens": 0, "utts": 0, "seconds": 0.0, "steps": 0}

    # ------------------------------------------------------------------ run

    def fit(self, resume: Path | None = None) -> TrainResult:
        if resume is not None:
            self._load(resume)
        # modality dropout leaves a stream unused; the CTC objective alone never runs the LLM
        find_unused = (self.modality == "both" and self.cfg.model.fusion.modality_dropout > 0) \
            or self.t.objective == "ctc"
        self.ddp = D.wrap_model(self.model, self.ctx, find_unused=find_unused or self._has_unused_streams())
        self.model.train()
        self.reporter.start(self.total_steps, self.step)
        restore = self._install_signals()
        final = None
        try:
            while self.epoch < self.t.max_epochs and not self._max_steps_reached():
                self._run_epoch()
            if self.valid_set is not None and (self.last_valid is None or self.last_valid.step != self.step):
                self._validate()
            final = self._save("final")
        finally:
            restore()
            self.reporter.stop()
        return self._finish(final)

    def _has_unused_streams(self) -> bool:
        mods = set(ckpt.model_modalities(self.model))
        need = {"audio": {"audio"}, "video": {"video"}, "both": {"audio", "video", "both"}}[self.modality]
        return bool(mods - need)

    def _max_steps_reached(self) -> bool:
        return bool(self.t.max_steps) and self.step >= self.t.max_steps

    def _run_epoch(self) -> None:
        self.sampler.set_epoch(self.epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(self.epoch)
        batches = list(self.sampler)
        n = int(D.all_reduce(self.ctx, [len(batches)], "min")[0])  # every rank must take the same steps
        batches = batches[:n]
        accum = self.t.grad_accum
        start = self.batch_in_epoch
        loader = torch.utils.data.DataLoader(
            self.train_set, batch_sampler=batches[start:], collate_fn=self.train_set.collate,
            num_workers=self.cfg.data.num_workers, pin_memory=self.device.type == "cuda",
            # a private generator: creating the iterator must not draw from the global RNG (resume)
            generator=torch.Generator().manual_seed(self.t.seed + self.epoch),
        )
        it = iter(loader)
        for g in range(start, n, accum):
            micro = [next(it) for _ in range(min(accum, n - g))]
            stepped = self._optimizer_step(micro)
            self.batch_in_epoch = g + len(micro)
            if self._after_step(stepped):
                return
        self.epoch += 1
        self.batch_in_epoch = 0
        if self.cache is not None:
            self.cache.flush()  # the next epoch's DataLoader workers read what this one computed
        if self.valid_set is not None:
            self._validate()
        if self.t.save_every and self.epoch % self.t.save_every == 0:
            self._save(ckpt.epoch_name(self.epoch))
        self._check_stop()

    def _after_step(self, stepped: bool) -> bool:
        """Periodic work after an optimiser step; True ends the epoch early (max_steps)."""
        if stepped and self.t.eval_steps and self.step % self.t.eval_steps == 0 and self.valid_set is not None:
            self._validate()
        if stepped and self.t.save_steps and self.step % self.t.save_steps == 0:
            self._save(ckpt.step_name(self.step))
        self._check_stop()
        return self._max_steps_reached()

    # ------------------------------------------------------------------ one step

    def _optimizer_step(self, micro: list[Any]) -> bool:
        """One optimiser step over the micro-batches; False when it was skipped."""
        t0 = time.monotonic()
        for b in micro:
            skipped = b.meta.get("skipped") or []
            if skipped:
                self.skipped_media += len(skipped)
                reasons = b.meta.get("skip_reasons") or {}
                self.reporter.record({"type": "event", "event": "skipped_media", "step": self.step, "ids": skipped,
                                      "reasons": [reasons.get(i, "") for i in skipped]})
                self.reporter.log(f"[yellow]skipped {len(skipped)} utterance(s) whose media failed: "
                                  f"{', '.join(skipped[:5])}[/]")
        pieces = [b for b in micro if len(b)]
        loss_sum, tokens, utts, bad_ids, ctc_sum = self._accumulate(pieces) if pieces else (0.0, 0, 0, [], 0.0)
        loss_all, tok_all, utt_all, ctc_all = D.all_reduce(self.ctx, [loss_sum, tokens, utts, ctc_sum])
        if tok_all == 0:  # every utterance of the step failed to decode on every rank
            self.optimizer.zero_grad(set_to_none=True)
            return False
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        factor = self.ctx.world_size / tok_all  # DDP averaged over ranks; we want the sum / tokens
        for p in self.params:
            if p.grad is not None:
                p.grad.mul_(factor)
        if self.tracker is not None and self._table_due():
            self.tracker.before_step()  # gradient norms before clipping, weights before the update
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.t.grad_clip))
        bad_loss, bad_grad = D.all_reduce(self.ctx, [float(not math.isfinite(loss_sum)),
                                                     float(not math.isfinite(grad_norm))], "max")
        lr = self.optimizer.param_groups[0]["lr"]
        if bad_loss or (bad_grad and self.scaler is None):
            self._skip_bad_step(bad_ids or [i for b in pieces for i in b.ids], loss_all / tok_all, grad_norm)
            return False
        if bad_grad:  # fp16 overflow: the scaler lowers its scale; not a data problem
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            self.reporter.record({"type": "event", "event": "fp16_overflow", "step": self.step,
                                  "scale": float(self.scaler.get_scale())})
            return False
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.bad_streak = 0
        if self.tracker is not None and self._table_due(done=True):
            stats = self.tracker.after_step(lr)
            self.reporter.show(render_table(stats, self.step))
            for s in stats:
                self.reporter.record(s.to_record(self.step))
        self._log_step(loss_all, tok_all, utt_all, lr, grad_norm, time.monotonic() - t0, ctc_all)
        return True

    def _table_due(self, done: bool = False) -> bool:
        n = self.t.log_param_updates
        return bool(n) and (self.step + (0 if done else 1)) % n == 0

    def _accumulate(self, pieces: list[Any]) -> tuple[float, int, int, list[str], float]:
        """Forward and backward every micro-batch; on CUDA out-of-memory, split it in halves.

        Returns the token-weighted sums of the loss and of the auxiliary CTC loss (0 without one),
        the supervised tokens, the utterances and the ids of micro-batches with a non-finite loss.
        """
        queue = list(pieces)
        loss_sum, tokens, utts, bad_ids, ctc_sum, i = 0.0, 0, 0, [], 0.0, 0
        while i < len(queue):
            mb, phase = queue[i], "forward"
            try:
                self._maybe_fault(mb)
                with D.no_sync(self.ddp, skip=i < len(queue) - 1):
                    batch = self._prepare(mb, self.train_streams)
                    with self._autocast():
                        out = self.ddp(batch, self.modality, self.t.objective)
                    n = _n_tokens(out, batch)
                    phase = "backward"
                    objective = out.loss if getattr(out, "objective", None) is None else out.objective
                    weighted = objective.float() * n  # summed token loss; divided by all tokens later
                    (self.scaler.scale(weighted) if self.scaler is not None else weighted).backward()
            except torch.OutOfMemoryError:
                out = batch = weighted = objective = None  # drop references so the memory can be freed
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                halves = self._split_after_oom(mb)
                if phase == "backward":
                    # part of a backward may have landed in .grad: redo the step from a clean slate
                    self.optimizer.zero_grad(set_to_none=True)
                    queue = queue[:i] + halves + queue[i + 1:]
                    loss_sum, tokens, utts, bad_ids, ctc_sum, i = 0.0, 0, 0, [], 0.0, 0
                else:
                    queue[i:i + 1] = halves
                continue
            value = float(out.loss.detach())
            if not math.isfinite(value):
                bad_ids.extend(mb.ids)
            loss_sum += value * n
            if getattr(out, "ctc", None) is not None:
                ctc_sum += float(out.ctc.detach()) * n
            tokens += n
            utts += len(mb)
            i += 1
        return loss_sum, tokens, utts, bad_ids, ctc_sum

    def _split_after_oom(self, mb: Any) -> list[Any]:
        self.oom_splits += 1
        frames = int(mb.lengths.max()) if len(mb) else 0
        if len(mb) < 2:
            raise TrainingError(
                f"out of memory on a single utterance '{mb.ids[0]}' ({frames} frames, {frames / 25:.1f} s)",
                hint="lower data.max_seconds to drop very long utterances, use train.mixed_precision=bf16, "
                     "or train on a larger GPU")
        half = len(mb) // 2
        self.reporter.record({"type": "event", "event": "oom_split", "step": self.step, "batch_size": len(mb),
                              "frames": frames, "ids": list(mb.ids)})
        self.reporter.log(f"[yellow]out of memory on a micro-batch of {len(mb)} x {frames} frames: "
                          f"retrying it in halves (consider a lower data.max_frames_per_batch)[/]")
        return [mb.select(list(range(half))), mb.select(list(range(half, len(mb))))]

    def _maybe_fault(self, mb: Any) -> None:
        if self.step + 1 in self._faults and len(mb) > 1:
            self._faults.discard(self.step + 1)
            raise torch.OutOfMemoryError(f"injected by {FAULT_OOM_ENV} at step {self.step + 1}")

    def _prepare(self, mb: Any, streams: tuple[str, ...]) -> Any:
        batch = mb.to(self.device)
        if self.cache is not None and streams:
            self.cache.fill(batch, self.model, streams)
        return batch

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _skip_bad_step(self, ids: list[str], loss: float, grad_norm: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.update()
        self.bad_streak += 1
        self.bad_total += 1
        self.reporter.record({"type": "event", "event": "nonfinite", "step": self.step, "loss": loss,
                              "grad_norm": grad_norm, "ids": ids})
        self.reporter.log(f"[yellow]non-finite loss or gradient (loss {loss}, grad norm {grad_norm}): step "
                          f"skipped ({self.bad_streak} in a row); batch ids: {', '.join(ids[:8])}[/]")
        if self.bad_streak >= self.t.max_bad_steps:
            raise TrainingError(
                f"{self.bad_streak} optimiser steps in a row had a non-finite loss or gradient "
                f"(train.max_bad_steps={self.t.max_bad_steps}); last batch ids: {', '.join(ids[:8])}",
                hint="lower train.lr, train in fp32 (train.mixed_precision=no), and check those utterances' "
                     "media and transcripts; no checkpoint was written for the bad steps")

    def _log_step(self, loss_sum: float, tokens: float, utts: float, lr: float, grad_norm: float,
                  seconds: float, ctc_sum: float = 0.0) -> None:
        w = self._window
        w["loss"] += loss_sum
        w["ctc"] += ctc_sum
        w["tokens"] += tokens
        w["utts"] += utts
        w["seconds"] += seconds
        w["steps"] += 1
        due = self.step % self.t.log_every == 0 or self.step == self.total_steps
        loss = w["loss"] / max(1, w["tokens"])
        ups = w["utts"] / max(1e-9, w["seconds"])
        # with the CTC objective alone, `loss` already is the CTC
        ctc = w["ctc"] / max(1, w["tokens"]) if self.ctc_weight and self.t.objective == "llm" else None
        self.reporter.update(step=self.step, epoch=self.epoch, loss=loss, lr=lr, utt_per_s=ups, log_line=due, ctc=ctc)
        if due:
            record = {"type": "train", "step": self.step, "epoch": self.epoch + 1, "loss": loss,
                      "lr": lr, "grad_norm": grad_norm, "utt_per_s": ups, "tokens": int(w["tokens"])}
            self.reporter.record(record if ctc is None else {**record, "ctc": ctc})
            self.last_loss = loss
            self._window = self._empty_window()

    # ------------------------------------------------------------------ validation

    def _validate(self) -> None:
        result = None
        if self.ctx.is_main:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                result = validate(self.model, self.valid_set, self.modality, self.cfg, step=self.step,
                                  epoch=self.epoch, prepare=lambda b: self._prepare(b, self.valid_streams),
                                  autocast=self._autocast, sampler_cls=self.sampler_cls)
            self.model.train()
        result = D.broadcast_object(self.ctx, result)
        self.last_valid = result
        self.reporter.record(result.to_record())
        wer = f"{result.wer:.2%}" if result.wer is not None else "n/a"
        self.reporter.log(f"validation at step {self.step}: loss {result.loss:.4f}, WER {wer} "
                          f"({result.n_wer_utts} utts decoded)")
        if math.isfinite(result.loss) and (self.best_valid_loss is None or result.loss < self.best_valid_loss):
            self.best_valid_loss = result.loss
            self._save("best")

    # ------------------------------------------------------------------ checkpoints

    def _state(self) -> dict:
        sched = self.scheduler.state_dict()
        sched["lr_lambdas"] = [None] * len(sched.get("lr_lambdas", []))  # rebuilt from the config on load
        return {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "total_steps": self.total_steps, "scheduler": sched,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": D.gather_objects(self.ctx, ckpt.capture_rng()), "world_size": self.ctx.world_size,
            "best_valid_loss": self.best_valid_loss, "nonfinite_steps": self.bad_total,
            "skipped_media": self.skipped_media, "oom_splits": self.oom_splits, "seed": self.t.seed,
            "modality": self.modality, "param_names": self.param_names,
        }

    def _save(self, name: str) -> Path:
        state = self._state()  # a collective (RNG gather): every rank takes part
        path = self.output / name
        if self.ctx.is_main:
            tensors, opt_json = ckpt.flatten_optimizer(self.optimizer.state_dict(), self.param_names)
            state["optimizer"] = opt_json
            v = self.last_valid if self.last_valid is not None and self.last_valid.step == self.step else None
            meta = {"modality": self.modality, "step": self.step, "epoch": self.epoch,
                    "valid_loss": v.loss if v else None, "valid_wer": v.wer if v else None}
            path = ckpt.save_checkpoint(self.output, name, model=self.model, cfg=self.cfg, meta=meta,
                                        optimizer_tensors=tensors, trainer_state=state)
            for old in ckpt.prune_checkpoints(self.output, self.t.keep_last):
                self.reporter.log(f"[dim]removed old checkpoint {old.name} (--keep-last {self.t.keep_last})[/]")
            self.reporter.record({"type": "event", "event": "checkpoint", "step": self.step, "name": name})
            self.reporter.log(f"[dim]saved checkpoint {path}[/]")
        D.barrier(self.ctx)
        return path

    def _load(self, path: Path) -> None:
        path = Path(path)
        if not ckpt.is_complete(path, resumable=True):
            raise TrainingError(f"{path}: not a resumable checkpoint (needs {', '.join(ckpt.RESUMABLE)})",
                                hint="resume from an epoch-*/step-*/best/final folder written by `avsrctl train`")
        ckpt.load_weights_into(self.model, path, device="cpu")
        state = ckpt.read_json(path / ckpt.STATE)
        tensors = ckpt.read_tensors(path / ckpt.OPTIMIZER)
        self.optimizer.load_state_dict(ckpt.unflatten_optimizer(tensors, state["optimizer"], self.param_names))
        sched = dict(state["scheduler"])
        sched["lr_lambdas"] = [None] * len(self.scheduler.lr_lambdas)
        self.scheduler.load_state_dict(sched)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.best_valid_loss = state.get("best_valid_loss")
        self.bad_total = int(state.get("nonfinite_steps", 0))
        self.skipped_media = int(state.get("skipped_media", 0))
        self.oom_splits = int(state.get("oom_splits", 0))
        rng = state.get("rng") or []
        if len(rng) == self.ctx.world_size:
            ckpt.restore_rng(rng[self.ctx.rank])
        else:  # another number of processes: fresh, distinct streams per rank
            torch.manual_seed(self.t.seed + self.step * 1000 + self.ctx.rank)
            self.reporter.log(f"[yellow]checkpoint written by {len(rng)} process(es), resuming with "
                              f"{self.ctx.world_size}: data order and RNG differ from an uninterrupted run[/]")
        self.reporter.truncate_after(self.step)
        self.reporter.record({"type": "event", "event": "resume", "step": self.step, "from": str(path)})
        self.reporter.log(f"resuming from {path} at step {self.step} (epoch {self.epoch + 1}, "
                          f"micro-batch {self.batch_in_epoch})")

    # ------------------------------------------------------------------ signals

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            if self._stop_signal is not None:  # a second Ctrl-C: stop now, without a checkpoint
                raise KeyboardInterrupt
            self._stop_signal = signum
            self.reporter.log(f"[yellow]{signal.Signals(signum).name}: finishing the current step, then saving "
                              f"a checkpoint (press Ctrl-C again to quit without saving)[/]")

        for s in previous:
            signal.signal(s, handler)
        return lambda: [signal.signal(s, h) for s, h in previous.items()]

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop after the current optimiser step with a checkpoint, as a signal would."""
        self._stop_signal = signum

    def _check_stop(self) -> None:
        flag = D.all_reduce(self.ctx, [float(self._stop_signal is not None)], "max")[0]
        if not flag:
            return
        path = self._save(ckpt.step_name(self.step))
        name = signal.Signals(self._stop_signal).name if self._stop_signal else "signal on another rank"
        self.reporter.record({"type": "event", "event": "interrupt", "step": self.step, "signal": name})
        raise TrainingInterrupted(f"{name}: stopped at step {self.step}; checkpoint saved to {path}",
                                  hint="continue with `avsrctl train ... --resume auto` (same --output)")

    # ------------------------------------------------------------------ end

    def _finish(self, final: Path | None) -> TrainResult:
        if self.cache is not None:
            self.cache.flush()
        cache_stats = self.cache.stats() if self.cache is not None else None
        summary = {"type": "summary", "step": self.step, "epochs": self.epoch, "best_valid_loss": self.best_valid_loss,
                   "skipped_media": self.skipped_media, "nonfinite_steps": self.bad_total,
                   "oom_splits": self.oom_splits, "cache": cache_stats}
        if self.last_valid is not None:
            summary.update(valid_loss=self.last_valid.loss, valid_wer=self.last_valid.wer)
        self.reporter.record(summary)
        if self.ctx.is_main:
            self.reporter.plot()
        return TrainResult(self.output, self.step, self.epoch, self.last_loss,
                           self.best_valid_loss, self.last_valid.to_record() if self.last_valid else None,
                           final if self.ctx.is_main else None,
                           self.skipped_media, self.bad_total, self.oom_splits, cache_stats)
