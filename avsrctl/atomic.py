"""Atomic writes: a file appears whole under its name, or the previous one stays.

Every writer in avsrctl goes through here: the data is written beside the target under a
temporary name (same suffix, so ffmpeg and matplotlib still pick the format), then renamed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def temp_path(path: Path) -> Path:
    """`dir/.name.<pid>.tmp.suffix` beside `path`: one per process, the suffix kept."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable; a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: str | bytes | Callable[[Path], None], *, durable: bool = False) -> Path:
    """Write `data` (text, bytes, or a `write(tmp_path)` callable) to `path` atomically.

    `durable` also fsyncs the file and its folder, so the rename survives a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        if callable(data):
            data(tmp)
        elif isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_files(files: dict[Path, str]) -> None:
    """Write several text files all or none: each under a temporary name first, then every rename.

    A full disk or an interrupt leaves the previous set whole, never half a file or a mix.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_path(path)
            staged.append((tmp, path))
            try:
                tmp.write_text(text, encoding="utf-8")
            except OSError as e:  # a failed write() carries no file name: give it the one the user knows
                raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
