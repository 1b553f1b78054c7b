"""Which split (train/valid/test) each clip of `avsrctl prepare` lands in, and which shard prepares it.

A seeded split orders the clip names by a hash of (seed, name): the same names and seed give the
same split in any process, shard or worker count. `--split-list` files name each clip's split
instead. A shard takes the clips whose name hashes to it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from avsrctl.data.sources import Clip, text_lines
from avsrctl.errors import DataError, UsageError

SPLITS = ("train", "valid", "test")


def name_hash(text: str) -> int:
    """A stable 64-bit hash of `text` (the same in every process, unlike hash())."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def split_sizes(n: int, valid_fraction: float, test_fraction: float) -> dict[str, int]:
    """Utterances per split: a non-zero fraction gets at least one; training keeps at least one."""

    def count(f: float) -> int:
        return 0 if f <= 0 else max(1, round(n * f))

    n_valid, n_test = count(valid_fraction), count(test_fraction)
    if n_valid + n_test >= n:
        raise UsageError(
            f"{n} usable clips are too few for --valid-fraction {valid_fraction} and --test-fraction "
            f"{test_fraction}: training would get none",
            hint="lower the fractions, add clips, or use --split test for an evaluation set",
        )
    return {"train": n - n_valid - n_test, "valid": n_valid, "test": n_test}


def split_names(
    names: list[str], valid_fraction: float, test_fraction: float, seed: int, only: str | None = None
) -> dict[str, list[str]]:
    """Seeded split, each split sorted. `only` puts every name into that one split.

    The names are ordered by a hash of (seed, name): test takes the first, valid the next, train
    the rest. The same names and seed give the same split in any process, shard or worker count.
    """
    if only is not None:
        return {s: sorted(names) if s == only else [] for s in SPLITS}
    sizes = split_sizes(len(names), valid_fraction, test_fraction)
    order = sorted(names, key=lambda n: (name_hash(f"{seed}\0{n}"), n))
    n_test, n_valid = sizes["test"], sizes["valid"]
    test, valid, train = order[:n_test], order[n_test : n_test + n_valid], order[n_test + n_valid :]
    return {"train": sorted(train), "valid": sorted(valid), "test": sorted(test)}


def read_split_lists(lists: tuple[tuple[str, Path], ...]) -> dict[str, tuple[str, str]]:
    """Clip id -> (split, 'file:line' where it is listed), from files of one id per line ('#' comments
    and blank lines skipped). An id may be a clip's key ('spk1/00001'), its output name or its file stem."""
    listed: dict[str, tuple[str, str]] = {}
    for split, path in lists:
        if not Path(path).is_file():
            raise UsageError(f"--split-list {split}: file not found: {path}")
        lines = text_lines(Path(path))
        for number, line in enumerate(lines, start=1):
            clip_id = line.split("#", 1)[0].strip()
            if not clip_id:
                continue
            where = f"{path}:{number}"
            if clip_id in listed and listed[clip_id][0] != split:
                raise DataError(
                    f"{where}: clip '{clip_id}' is also listed for {listed[clip_id][0]} ({listed[clip_id][1]})"
                )
            listed.setdefault(clip_id, (split, where))
    return listed


def assign_listed(clips: list[Clip], lists: tuple[tuple[str, Path], ...]) -> dict[str, list[str]]:
    """Each clip's split from --split-list files (each split sorted). A listed id that matches no clip
    is an error naming its file and line (a typo would otherwise shrink a test set unnoticed); clips
    listed in no file are left out."""
    listed = read_split_lists(lists)
    members: dict[str, list[str]] = {s: [] for s in SPLITS}
    matched: set[str] = set()
    for clip in clips:
        for clip_id in (clip.key, clip.name, Path(clip.key).name):
            if clip_id in listed:
                members[listed[clip_id][0]].append(clip.name)
                matched.add(clip_id)
                break
    unmatched = [(where, clip_id) for clip_id, (_, where) in listed.items() if clip_id not in matched]
    if unmatched:
        where, clip_id = unmatched[0]
        more = f" (and {len(unmatched) - 1} more)" if len(unmatched) > 1 else ""
        raise DataError(f"{where}: no clip '{clip_id}' in the source folder{more}")
    return {s: sorted(m) for s, m in members.items()}


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based, as a job array's task id): the clips whose name hashes to it."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(f"--shard must be I/N with 0 <= I < N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None:
            raise UsageError(f"--shard must be I/N (e.g. 3/16, I counted from 0), got {text!r}")
        return cls(int(match[1]), int(match[2]))

    def holds(self, name: str) -> bool:
        return name_hash(name) % self.count == self.index

    @property
    def folder(self) -> str:
        return f"shard-{self.index:05d}-of-{self.count:05d}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
