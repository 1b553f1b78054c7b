"""Atomic writes: a file appears whole under its name, or the previous one stays.

Every writer in avsrctl goes through here: the data is written beside the target under a
temporary name (same suffix, so ffmpeg and matplotlib still pick the format), then renamed.
A folder of files (a checkpoint, a built-in model) is written the same way by `write_folder`.
"""

from __future__ import annotations

import os
import shutil
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


def recover_replaced(final: Path) -> None:
    """Put back a folder that a crash left moved aside by `write_folder`.

    Replacing an existing folder (a checkpoint's `best`, `final`) takes two renames: old ->
    `.old-<name>`, new -> `<name>`. A kill between them leaves only `.old-<name>`, which is complete:
    rename it back.
    """
    old = final.parent / f".old-{final.name}"
    if not final.exists() and old.is_dir():
        os.replace(old, final)


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


def write_folder(final: Path, fill: Callable[[Path], None], *, mode: int | None = None) -> Path:
    """Write the folder `final` whole or not at all, and return it.

    `fill(tmp)` writes the files into `tmp` (`.tmp-<name>` beside `final`); each file then gets
    `mode` (default: what the umask gives a new file), is fsync'd, and `tmp` is renamed to `final`.
    An existing `final` is first moved aside to `.old-<name>` (os.replace cannot replace a
    non-empty folder; `recover_replaced` puts it back after a crash between the two renames)
    and removed after. On any failure `tmp` is removed and the previous `final` stays.
    """
    final = Path(final)
    tmp, old = final.parent / f".tmp-{final.name}", final.parent / f".old-{final.name}"
    recover_replaced(final)
    if tmp.exists():  # left by a crash during an earlier write
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
        mode = 0o666 & ~_umask() if mode is None else mode  # safetensors creates its files 0600 whatever the umask
        for path in sorted(tmp.iterdir()):
            os.chmod(path, mode)
            fsync_file(path)
        fsync_dir(tmp)
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(final.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
