"""The run folder of `avsrctl train`: periodic checkpoint names, pruning, and which checkpoint a
run resumes from. Writing and finding one checkpoint is avsrctl/checkpoint.py.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from avsrctl.checkpoint import RESUMABLE, find_latest, is_complete, list_checkpoints, read_latest_name
from avsrctl.errors import TrainingError, UsageError

PERIODIC = re.compile(r"^(epoch-\d{4,}|step-\d{6,})$")
STATE_BYTES = 64 * 1024  # trainer_state.json (RNG states), meta.json and config.yaml, rounded up


def epoch_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def prune_checkpoints(output: str | os.PathLike, keep_last: int | None) -> list[Path]:
    """Delete all but the `keep_last` newest periodic checkpoints (epoch-*/step-*); never best,
    final, or the one `latest` names. Returns the deleted folders."""
    if not keep_last:
        return []
    output = Path(output)
    periodic = [p for p in list_checkpoints(output) if PERIODIC.match(p.name)]
    protected = {read_latest_name(output)}
    doomed = periodic[:-keep_last] if len(periodic) > keep_last else []
    deleted = []
    for p in doomed:
        if p.name in protected:
            continue
        shutil.rmtree(p, ignore_errors=True)
        deleted.append(p)
    return deleted


def check_output(output: Path, resume: str | None) -> Path | None:
    """Make sure OUTPUT is writable and decide what to resume from (None: a fresh run).

    A folder that already holds checkpoints is never trained over silently.
    """
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / f".write-test-{os.getpid()}"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as e:
        raise UsageError(
            f"output folder {output} is not writable ({e.strerror})", hint="choose another folder with --output"
        ) from None
    existing = list_checkpoints(output)
    if resume is None:
        if existing:
            raise UsageError(
                f"{output} already holds checkpoints ({', '.join(p.name for p in existing[-3:])}); "
                "refusing to train over them",
                hint="continue that run with --resume auto, or start a new one with another --output",
            )
        return None
    if resume == "auto":
        return find_latest(output)
    path = Path(resume).expanduser()
    if not is_complete(path, resumable=True):
        missing = [n for n in RESUMABLE if not (path / n).is_file()]
        raise UsageError(
            f"--resume {path}: not a resumable checkpoint (missing {', '.join(missing)})",
            hint="pass a checkpoint folder from `avsrctl train` or --resume auto",
        )
    return path


def checkpoint_bytes(model: Any) -> int:
    """About what one checkpoint of `model` takes: trainable weights plus AdamW's two moments."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return 3 * weights + STATE_BYTES


def check_free_space(output: Path, model: Any) -> None:
    """Refuse to start when not even one checkpoint fits in OUTPUT (a full disk found after
    hours of training would lose them)."""
    need, free = checkpoint_bytes(model), shutil.disk_usage(output).free
    if free < need:
        raise TrainingError(
            f"output folder {output} has {free / 2**20:.2f} MiB free, but one checkpoint of this model "
            f"needs about {need / 2**20:.2f} MiB",
            hint="free disk space or choose another folder with --output",
        )
