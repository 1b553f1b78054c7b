"""What a training run tells the world: a rich progress bar (or log lines) on stderr,
`metrics.jsonl` records, and `loss.png` at the end.

Only rank 0 reports (the others get `enabled=False`). The live bar needs a terminal; when
stderr is a file or a pipe (cluster logs) the same numbers come as one line every
`log_every` steps instead, so logs stay readable.

metrics.jsonl, one JSON object per line, each with a `type`:
  train   step, epoch, loss, lr, grad_norm, utt_per_s, elapsed_s
  valid   step, epoch, loss, wer, n_utts, n_wer_utts
  params  step, component, trainable, grad_norm, param_norm, update_ratio, lr
  event   step, event (nonfinite, oom_split, skipped_media, checkpoint, resume, interrupt), details
  summary the totals at the end
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from avsrctl.atomic import write_atomic
from avsrctl.training.oom import AUX_LOSSES

METRICS, LOSS_PNG = "metrics.jsonl", "loss.png"


def _fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class StepWindow:
    """Sums over the optimiser steps since the last metrics line; `report` shows and records their means."""

    def __init__(self) -> None:
        self.loss = self.seconds = 0.0
        self.aux: dict[str, float] = {}  # auxiliary loss name -> token-weighted sum
        self.tokens = self.utts = self.steps = 0

    def add(
        self, loss_sum: float, tokens: float, utts: float, seconds: float, aux_sums: list[float] | None = None
    ) -> None:
        """aux_sums: token-weighted sums of the auxiliary losses, in oom.AUX_LOSSES order."""
        self.loss += loss_sum
        for name, value in zip(AUX_LOSSES, aux_sums or []):
            self.aux[name] = self.aux.get(name, 0.0) + value
        self.tokens += tokens
        self.utts += utts
        self.seconds += seconds
        self.steps += 1

    def report(
        self,
        reporter: "Reporter",
        *,
        step: int,
        epoch: int,
        lr: float,
        grad_norm: float,
        due: bool,
        aux_shown: tuple[str, ...] = (),
    ) -> float:
        """Update the live line; when `due`, also write a 'train' record. Returns the token-weighted loss.
        `aux_shown` names the auxiliary losses (oom.AUX_LOSSES) to show and record."""
        loss = self.loss / max(1, self.tokens)
        ups = self.utts / max(1e-9, self.seconds)
        aux = {name: self.aux.get(name, 0.0) / max(1, self.tokens) for name in aux_shown}
        reporter.update(step=step, epoch=epoch, loss=loss, lr=lr, utt_per_s=ups, log_line=due, **aux)
        if due:
            record = {
                "type": "train",
                "step": step,
                "epoch": epoch + 1,
                "loss": loss,
                "lr": lr,
                "grad_norm": grad_norm,
                "utt_per_s": ups,
                "tokens": int(self.tokens),
            }
            record.update(aux)
            reporter.record(record)
        return loss


class Reporter:
    """Progress, log lines and metrics records of one run (a no-op when `enabled` is False)."""

    def __init__(
        self,
        output: Path | None,
        console: Any = None,
        *,
        enabled: bool = True,
        live: bool | None = None,
        log_every: int = 10,
    ):
        self.output = Path(output) if output is not None else None
        self.console = console
        self.enabled = enabled
        is_tty = bool(console is not None and getattr(console, "is_terminal", False))
        self.live = (is_tty if live is None else live) and console is not None and enabled
        self.log_every = max(1, log_every)
        self._progress = None
        self._task = None
        self._total = 0
        self._t0 = time.monotonic()
        self._first_step: int | None = None

    # ------------------------------------------------------------------ metrics

    @property
    def metrics_path(self) -> Path | None:
        return self.output / METRICS if self.output is not None else None

    def record(self, rec: dict[str, Any]) -> None:
        if not self.enabled or self.metrics_path is None:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, allow_nan=True) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (left by a run that died after its last checkpoint) before resuming."""
        path = self.metrics_path
        if not self.enabled or path is None or not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn last line from a crash
            if int(rec.get("step", 0) or 0) <= step and rec.get("type") != "summary":
                kept.append(line)
        write_atomic(path, "".join(k + "\n" for k in kept))

    def reset(self) -> None:
        """Start a fresh metrics file (a new run in a folder without checkpoints)."""
        if self.enabled and self.metrics_path is not None and self.metrics_path.exists():
            self.metrics_path.unlink()

    # ------------------------------------------------------------------ terminal

    def log(self, message: str) -> None:
        if not self.enabled or self.console is None:
            return
        if self._progress is not None:
            self._progress.console.print(message)
        else:
            self.console.print(message)

    def show(self, renderable: Any) -> None:
        self.log(renderable)

    def start(self, total_steps: int, start_step: int) -> None:
        self._total = total_steps
        self._t0 = time.monotonic()
        self._first_step = start_step
        if not self.live:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[ups]} utt/s"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            "train", total=total_steps, completed=start_step, epoch="-", loss="-", lr="-", ups="-"
        )

    def update(
        self,
        *,
        step: int,
        epoch: int,
        loss: float,
        lr: float,
        utt_per_s: float,
        log_line: bool,
        ctc: float | None = None,
        articulation: float | None = None,
        sync: float | None = None,
    ) -> None:
        """`loss` is the LLM's cross-entropy per token; `ctc`, `articulation` and `sync` the auxiliary
        losses when on."""
        if not self.enabled:
            return
        shown = f"{loss:.4f}" + (f" ctc {ctc:.3f}" if ctc is not None else "")
        shown += f" mouth {articulation:.3f}" if articulation is not None else ""
        shown += f" sync {sync:.3f}" if sync is not None else ""
        if self._progress is not None:
            self._progress.update(
                self._task, completed=step, epoch=epoch + 1, loss=shown, lr=f"{lr:.2e}", ups=f"{utt_per_s:.1f}"
            )
        elif log_line and self.console is not None:
            done = step - (self._first_step or 0)
            rate = done / max(1e-9, time.monotonic() - self._t0)
            eta = (self._total - step) / rate if rate > 0 else math.inf
            self.console.print(
                f"epoch {epoch + 1} step {step}/{self._total} loss {shown} lr {lr:.2e} "
                f"{utt_per_s:.1f} utt/s eta {_fmt_eta(eta)}"
            )

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # ------------------------------------------------------------------ plot

    def plot(self) -> Path | None:
        """Write loss.png (train loss per step, validation loss points) from metrics.jsonl."""
        if not self.enabled or self.metrics_path is None or not self.metrics_path.is_file():
            return None
        return plot_losses(self.metrics_path, self.output / LOSS_PNG)


def read_metrics(path: Path) -> list[dict]:
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def plot_losses(metrics: Path, target: Path) -> Path | None:
    records = read_metrics(metrics)
    train = [(r["step"], r["loss"]) for r in records if r.get("type") == "train" and _finite(r.get("loss"))]
    valid = [(r["step"], r["loss"]) for r in records if r.get("type") == "valid" and _finite(r.get("loss"))]
    if not train and not valid:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1)
    if valid:
        ax.plot(*zip(*valid), "o-", label="valid", markersize=4)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss (per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        write_atomic(target, fig.savefig)
    finally:
        plt.close(fig)
    return target


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
