"""An output never replaces an input: the one check every command that writes makes before work.

A file counts as the same under any of its names: `clip.wav`, `./clip.wav`, a symlink to it,
or a hard link to it (same device and inode). Writes in avsrctl are atomic renames, so a link
itself would be replaced rather than the file behind it, but a user who names an input as the
output meant that file: it is refused either way, before any model loads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from avsrctl.errors import UsageError

PathLike = str | os.PathLike


def file_key(path: PathLike) -> tuple[int, int] | None:
    """(device, inode) of the file `path` leads to (symlinks followed); None when there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # missing, unreadable, or a name the OS cannot take
        return None
    return st.st_dev, st.st_ino


def is_inside(path: PathLike, folder: PathLike) -> bool:
    """Does `path` lead inside `folder` (or to it), following symlinks?"""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def refuse_overwrite(
    outputs: Iterable[PathLike | None], inputs: Iterable[PathLike | None], what: str, *, inside: bool = False
) -> None:
    """A usage error when an output (file or folder to be written) is one of the inputs; with `inside`,
    also when it lies inside an input folder. `what` names the option (`-o`, `--output-dir`); None
    entries (options not given) are skipped.

    Only an output that exists already can be an existing input, so when none does (a fresh
    output folder) the inputs are not even looked at: a 150k-clip manifest costs nothing."""
    ins = [Path(i) for i in inputs if i is not None]
    outs = [Path(o) for o in outputs if o is not None]
    existing = {key: out for out in outs if (key := file_key(out)) is not None}
    for src in ins if existing else ():
        out = existing.get(file_key(src))
        if out is not None:
            raise UsageError(
                f"{what} {out} is the input {src}: writing there would replace it",
                hint=f"choose another {what}; inputs are never overwritten",
            )
    for out in outs if inside else ():
        for src in ins:
            if src.is_dir() and is_inside(out, src):
                raise UsageError(
                    f"{what} {out} is inside the input folder {src}", hint=f"choose another {what}, outside {src}"
                )
