"""The run folder of `avsrctl train`: periodic checkpoint names, pruning, and which checkpoint a
run resumes from. Writing and finding one checkpoint is avsrctl/checkpoint.py.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from pathlib import Path
from typing import Any

from avsrctl.checkpoint import RESUMABLE, find_latest, is_complete, list_checkpoints, read_latest_name
from avsrctl.errors import TrainingError, UsageError

PERIODIC = re.compile(r"^(epoch-\d{4,}|step-\d{6,})$")
STATE_BYTES = 64 * 1024  # trainer_state.json (RNG states), meta.json and config.yaml, rounded up
LOCK = ".lock"  # held (flock) by the one `avsrctl train` writing into the run folder; holds its PID


class RunLock:
    """One training per run folder: an exclusive `flock` on OUTPUT/.lock, held for the whole run.

    The operating system drops the lock when the process dies (even by SIGKILL), so a crash never
    leaves the folder locked. A second run into the folder is refused naming the holder's PID.
    """

    def __init__(self, output: Path):
        self.output, self.path, self.fd = Path(output), Path(output) / LOCK, None

    def acquire(self) -> RunLock:
        while True:
            try:
                self.output.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise not_writable(self.output, e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise UsageError(
                    f"{self.output} is in use by another training (pid {holder} holds {self.path})",
                    hint="wait for that run to finish or stop it, or train into another --output",
                ) from None
            # The holder removes the file when it releases: a lock on a file no longer under the
            # name would not exclude the next run, so open the name again.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # still locked: no other run can take the old file meanwhile
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def clean_leftovers(output: Path) -> list[str]:
    """Remove what interrupted saves left in OUTPUT: `.tmp-<name>` checkpoint folders and
    `.<name>.<pid>.tmp.<suffix>` files. Call it only while holding the run's `RunLock`: then no
    other process can be writing them, so they are provably dead. Returns the names removed."""
    removed = []
    for p in sorted(Path(output).iterdir()):
        if p.name.startswith(".tmp-") and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif re.match(r"^\..+\.\d+\.tmp(\.[^.]+)?$", p.name) and p.is_file():
            p.unlink(missing_ok=True)
        else:
            continue
        removed.append(p.name)
    return removed


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


def not_writable(output: Path, e: OSError) -> UsageError:
    return UsageError(
        f"output folder {output} is not writable ({e.strerror or e})", hint="choose another folder with --output"
    )


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
        raise not_writable(output, e) from None
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
