"""The training loop: AdamW on trainable parameters, warm-up + cosine lr, accumulation,
clipping, mixed precision, non-finite guard (guards.py), out-of-memory splitting (oom.py),
checkpoints, resume.

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
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from avsrctl import checkpoint as ckpt
from avsrctl.config import Config
from avsrctl.training import distributed as dist
from avsrctl.training.cache import FeatureCache, cache_streams
from avsrctl.training.guards import check_weights, diverged, record_skipped_media, skip_bad_step
from avsrctl.training.oom import AUX_LOSSES, accumulate
from avsrctl.training.param_table import ParamUpdateTracker, render_table
from avsrctl.training.progress import Reporter, StepWindow
from avsrctl.training.run_folder import epoch_name, prune_checkpoints, step_name
from avsrctl.training.schedule import build_optimizer, build_scheduler, optimizer_param_order
from avsrctl.training.signals import StopRequest, TrainingInterrupted
from avsrctl.training.state import flatten_optimizer, restore_trainer, trainer_state
from avsrctl.training.validation import ValidResult, validate


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


class Trainer:
    """Trains `model` on `train_set` (an AVDataset) for `modality`; see the module docstring."""

    def __init__(
        self,
        cfg: Config,
        model: torch.nn.Module,
        modality: str,
        train_set: Any,
        valid_set: Any | None,
        *,
        ctx: dist.DistContext,
        reporter: Reporter,
        cache: FeatureCache | None = None,
        sampler_cls: Any = None,
        meta: dict[str, Any] | None = None,
    ):
        if sampler_cls is None:
            from avsrctl.data.dataset import FrameBucketSampler as sampler_cls
        self.cfg, self.tc, self.modality, self.ctx = cfg, cfg.train, modality, ctx  # tc: cfg.train
        self.model, self.train_set, self.valid_set = model, train_set, valid_set
        self.reporter, self.cache, self.output = reporter, cache, Path(cfg.train.output)
        self.device = torch.device(ctx.device)
        self.sampler_cls = sampler_cls
        self.extra_meta = dict(meta or {})  # added to every checkpoint's meta.json (adapt: where the model came from)
        self.sampler = sampler_cls(
            train_set.lengths,
            cfg.data.max_frames_per_batch,
            cfg.data.max_batch_size,
            shuffle=True,
            seed=self.tc.seed,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
        )
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.named_params = named
        self.params = [p for _, p in named]
        self.param_names = optimizer_param_order(named)
        self.optimizer = build_optimizer(named, lr=self.tc.lr, weight_decay=self.tc.weight_decay)
        n_batches = int(dist.all_reduce(ctx, [len(self.sampler)], "min")[0])
        self.steps_per_epoch = max(1, math.ceil(n_batches / self.tc.grad_accum))
        planned = self.steps_per_epoch * self.tc.max_epochs
        self.total_steps = min(planned, self.tc.max_steps) if self.tc.max_steps else planned
        self.scheduler = build_scheduler(
            self.optimizer,
            warmup_steps=self.tc.warmup_steps,
            total_steps=self.total_steps,
            min_lr_ratio=self.tc.min_lr_ratio,
        )
        cuda = self.device.type == "cuda"
        precision = self.tc.mixed_precision if cuda else "no"  # autocast is a GPU feature here
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        self.tracker = ParamUpdateTracker(model) if self.tc.log_param_updates else None
        noisy = cfg.data.noise_kind != "none" and cfg.data.noise_prob > 0
        self.train_streams = cache_streams(modality, noisy_audio=noisy)
        self.valid_streams = cache_streams(modality, noisy_audio=False)
        self._batches: list[list[tuple[int, int]]] = []  # this epoch's batches (the loader's batch_sampler)
        self._loader: torch.utils.data.DataLoader | None = None
        # progress through the run (saved in trainer_state.json)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_valid_loss: float | None = None
        self.last_valid: ValidResult | None = None
        self.bad_streak, self.bad_total, self.skipped_media, self.oom_splits = 0, 0, 0, 0
        self.last_loss = math.nan
        self.stop = StopRequest(reporter.log)
        self._window = StepWindow()  # sums since the last metrics line

    # ------------------------------------------------------------------ run

    def fit(self, resume: Path | None = None) -> TrainResult:
        if resume is not None:
            restore_trainer(self, resume)
        dist.broadcast_params(self.ctx, self.params)  # every rank starts from rank 0's weights
        self.model.train()
        self.reporter.start(self.total_steps, self.step)
        restore = self.stop.install()
        final = None
        try:
            while self.epoch < self.tc.max_epochs and not self._max_steps_reached():
                self._run_epoch()
            if self.valid_set is not None and (self.last_valid is None or self.last_valid.step != self.step):
                self._validate()
            final = self._save("final")
        finally:
            restore()
            self.reporter.stop()
        return self._finish(final)

    def _max_steps_reached(self) -> bool:
        return bool(self.tc.max_steps) and self.step >= self.tc.max_steps

    def _run_epoch(self) -> None:
        self.sampler.set_epoch(self.epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(self.epoch)
        batches = list(self.sampler)
        n = int(dist.all_reduce(self.ctx, [len(batches)], "min")[0])  # every rank must take the same steps
        batches = batches[:n]
        accum = self.tc.grad_accum
        start = self.batch_in_epoch
        # (index, epoch) pairs: workers kept alive across epochs never see set_epoch
        self._batches[:] = [[(i, self.epoch) for i in b] for b in batches[start:]]
        it = iter(self._train_loader())
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
        self._check_stop()  # an interrupt saves at once: no validation pass first
        if self.valid_set is not None:
            self._validate()
        if self.tc.save_every and self.epoch % self.tc.save_every == 0:
            self._save(epoch_name(self.epoch))
        self._check_stop()

    def _train_loader(self) -> torch.utils.data.DataLoader:
        """One DataLoader for the whole run: with data.num_workers > 0 its workers stay alive across
        epochs (persistent_workers), so what they keep (data.frame_memory_mb of decoded frames, per
        worker) is not thrown away each epoch. Each epoch refills `self._batches` in place."""
        if self._loader is None:
            workers = self.cfg.data.num_workers
            self._loader = torch.utils.data.DataLoader(
                self.train_set,
                batch_sampler=self._batches,
                collate_fn=self.train_set.collate,
                num_workers=workers,
                persistent_workers=workers > 0,
                pin_memory=self.device.type == "cuda",  # Batch.pin_memory
                # a private generator: creating the iterator must not draw from the global RNG (resume)
                generator=torch.Generator().manual_seed(self.tc.seed),
            )
        return self._loader

    def _after_step(self, stepped: bool) -> bool:
        """Periodic work after an optimiser step; True ends the epoch early (max_steps)."""
        self._check_stop()  # an interrupt saves at once: no validation pass first
        if stepped and self.tc.eval_steps and self.step % self.tc.eval_steps == 0 and self.valid_set is not None:
            self._validate()
        if stepped and self.tc.save_steps and self.step % self.tc.save_steps == 0:
            self._save(step_name(self.step))
        self._check_stop()
        return self._max_steps_reached()

    # ------------------------------------------------------------------ one step

    def _optimizer_step(self, micro: list[Any]) -> bool:
        """One optimiser step over the micro-batches; False when it was skipped."""
        t0 = time.monotonic()
        record_skipped_media(self, micro)
        pieces = [b for b in micro if len(b)]
        loss_sum, tokens, utts, bad_ids, aux = (
            accumulate(self, pieces) if pieces else (0.0, 0, 0, [], [0.0] * len(AUX_LOSSES))
        )
        # The same collectives on every rank, in this order, whether or not it had data (distributed.py)
        loss_all, tok_all, utt_all, *aux_all = dist.all_reduce(self.ctx, [loss_sum, tokens, utts, *aux])
        if tok_all == 0:  # every utterance of the step failed to decode on every rank
            self.optimizer.zero_grad(set_to_none=True)
            return False
        dist.all_reduce_grads(self.ctx, self.params)  # summed over ranks
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        factor = 1.0 / tok_all  # the gradient of the summed token loss -> the step's mean
        for p in self.params:
            if p.grad is not None:
                p.grad.mul_(factor)
        if self.tracker is not None and self._table_due():
            self.tracker.before_step()  # gradient norms before clipping, weights before the update
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.tc.grad_clip))
        bad_loss, bad_grad = dist.all_reduce(
            self.ctx, [float(not math.isfinite(loss_sum)), float(not math.isfinite(grad_norm))], "max"
        )
        lr = self.optimizer.param_groups[0]["lr"]
        if bad_loss or (bad_grad and self.scaler is None):
            skip_bad_step(self, bad_ids or [i for b in pieces for i in b.ids], loss_all / tok_all, grad_norm)
            return False
        if bad_grad:  # fp16 overflow: the scaler lowers its scale; not a data problem
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            self.reporter.record(
                {"type": "event", "event": "fp16_overflow", "step": self.step, "scale": float(self.scaler.get_scale())}
            )
            return False
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        check_weights(self)
        self.bad_streak = 0
        if self.tracker is not None and self._table_due(done=True):
            stats = self.tracker.after_step(lr)
            self.reporter.show(render_table(stats, self.step))
            for s in stats:
                self.reporter.record(s.to_record(self.step))
        self._log_step(loss_all, tok_all, utt_all, lr, grad_norm, time.monotonic() - t0, aux_all)
        return True

    def _table_due(self, done: bool = False) -> bool:
        n = self.tc.log_param_updates
        return bool(n) and (self.step + (0 if done else 1)) % n == 0

    def _prepare(self, mb: Any, streams: tuple[str, ...]) -> Any:
        batch = mb.to(self.device)
        if self.cache is not None and streams:
            self.cache.fill(batch, self.model, streams)
        return batch

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _log_step(
        self,
        loss_sum: float,
        tokens: float,
        utts: float,
        lr: float,
        grad_norm: float,
        seconds: float,
        aux_sums: list[float] | None = None,
    ) -> None:
        self._window.add(loss_sum, tokens, utts, seconds, aux_sums)
        due = self.step % self.tc.log_every == 0 or self.step == self.total_steps
        built = getattr(self.model, "loss_weights", {})  # the auxiliary losses the model computes, by name
        shown = {
            "ctc": "ctc" in built and self.tc.objective == "llm",  # with the CTC objective, `loss` is the CTC
            "articulation": "articulation" in built,
            "sync": "sync" in built or "lip_sync" in built,  # the fusion's, or a video model's lip-sync loss
        }
        loss = self._window.report(
            self.reporter,
            step=self.step,
            epoch=self.epoch,
            lr=lr,
            grad_norm=grad_norm,
            due=due,
            aux_shown=tuple(name for name in AUX_LOSSES if shown[name]),
        )
        if due:
            self.last_loss = loss
            self._window = StepWindow()

    # ------------------------------------------------------------------ validation

    def _validate(self) -> None:
        result = None
        if self.ctx.is_main:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                result = validate(
                    self.model,
                    self.valid_set,
                    self.modality,
                    self.cfg,
                    step=self.step,
                    epoch=self.epoch,
                    prepare=lambda b: self._prepare(b, self.valid_streams),
                    autocast=self._autocast,
                    sampler_cls=self.sampler_cls,
                    stopped=lambda: self.stop.pending,
                )
            self.model.train()
        result = dist.broadcast_object(self.ctx, result)
        if result is None:  # interrupted: the caller's stop check saves the checkpoint
            return
        if result.n_nonfinite and not result.n_utts:  # finite weights, but no utterance gives a finite loss
            best = self.output / "best" if self.best_valid_loss is not None else None
            diverged(
                self,
                f"validation at step {self.step} gave a non-finite loss on every batch ({result.n_nonfinite})",
                best,
            )
        self.last_valid = result
        self.reporter.record(result.to_record())
        wer = f"{result.wer:.2%}" if result.wer is not None else "n/a"
        self.reporter.log(
            f"validation at step {self.step}: loss {result.loss:.4f}, WER {wer} ({result.n_wer_utts} utts decoded)"
        )
        if math.isfinite(result.loss) and (self.best_valid_loss is None or result.loss < self.best_valid_loss):
            self.best_valid_loss = result.loss
            self._save("best")

    # ------------------------------------------------------------------ checkpoints

    def _save(self, name: str) -> Path:
        state = trainer_state(self)  # a collective (RNG gather): every rank takes part
        path = self.output / name
        if self.ctx.is_main:
            tensors, opt_json = flatten_optimizer(self.optimizer.state_dict(), self.param_names)
            state["optimizer"] = opt_json
            v = self.last_valid if self.last_valid is not None and self.last_valid.step == self.step else None
            meta = {
                "modality": self.modality,
                "step": self.step,
                "epoch": self.epoch,
                "valid_loss": v.loss if v else None,
                "valid_wer": v.wer if v else None,
                **self.extra_meta,
            }
            path = ckpt.save_checkpoint(
                self.output,
                name,
                model=self.model,
                cfg=self.cfg,
                meta=meta,
                optimizer_tensors=tensors,
                trainer_state=state,
            )
            for old in prune_checkpoints(self.output, self.tc.keep_last):
                self.reporter.log(f"[dim]removed old checkpoint {old.name} (--keep-last {self.tc.keep_last})[/]")
            self.reporter.record({"type": "event", "event": "checkpoint", "step": self.step, "name": name})
            self.reporter.log(f"[dim]saved checkpoint {path}[/]")
        dist.barrier(self.ctx)
        return path

    # ------------------------------------------------------------------ stopping

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop after the current optimiser step with a checkpoint, as a signal would."""
        self.stop.request(signum)

    def _check_stop(self) -> None:
        flag = dist.all_reduce(self.ctx, [float(self.stop.pending)], "max")[0]
        if not flag:
            return
        path = self._save(step_name(self.step))
        name = self.stop.name
        self.reporter.record({"type": "event", "event": "interrupt", "step": self.step, "signal": name})
        raise TrainingInterrupted(
            f"{name}: stopped at step {self.step}; checkpoint saved to {path}",
            hint="continue with `avsrctl train ... --resume auto` (same --output)",
        )

    # ------------------------------------------------------------------ end

    def _finish(self, final: Path | None) -> TrainResult:
        if self.cache is not None:
            self.cache.flush()
        cache_stats = self.cache.stats() if self.cache is not None else None
        # counted per rank: the summary holds the whole job's (a collective every rank reaches here)
        skipped, ooms = (int(v) for v in dist.all_reduce(self.ctx, [self.skipped_media, self.oom_splits]))
        self.skipped_media, self.oom_splits = skipped, ooms
        summary = {
            "type": "summary",
            "step": self.step,
            "epochs": self.epoch,
            "best_valid_loss": self.best_valid_loss,
            "skipped_media": self.skipped_media,
            "nonfinite_steps": self.bad_total,
            "oom_splits": self.oom_splits,
            "cache": cache_stats,
        }
        if self.last_valid is not None:
            summary.update(valid_loss=self.last_valid.loss, valid_wer=self.last_valid.wer)
        self.reporter.record(summary)
        if self.ctx.is_main:
            self.reporter.plot()
        return TrainResult(
            self.output,
            self.step,
            self.epoch,
            self.last_loss,
            self.best_valid_loss,
            self.last_valid.to_record() if self.last_valid else None,
            final if self.ctx.is_main else None,
            self.skipped_media,
            self.bad_total,
            self.oom_splits,
            cache_stats,
        )
