"""The real GRID recordings shipped in avsrctl/samples/ (CC BY 4.0; attribution in its README.md).

Two 3 s talking-face clips with their transcripts, so that a fresh install (no ../shared) can be
tried on real video: `make demo` decodes them, and the tests use them. Each clip holds both
streams, so its manifest row names the same file as video and audio.

    from avsrctl.data.samples import write_sample_manifest
    tsv = write_sample_manifest("runs/samples")   # runs/samples/test.tsv + test.wrd
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from avsrctl.data.manifest import SAMPLES_PER_FRAME, VIDEO_FPS, Utterance, write_manifest
from avsrctl.errors import DataError

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"  # package data (pyproject: samples/*)
TRANSCRIPTS = "transcripts.tsv"  # file<TAB>transcript, with a header line


@dataclass(frozen=True)
class SampleClip:
    id: str  # the file name without its extension, e.g. grid_bbaf2n
    path: Path
    text: str


def sample_clips(folder: Path = SAMPLES_DIR) -> list[SampleClip]:
    """The shipped clips in the order transcripts.tsv lists them."""
    listing = folder / TRANSCRIPTS
    try:
        with listing.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except OSError as e:
        raise DataError(f"{listing}: cannot read the sample transcripts ({e.strerror or e})") from None
    clips = []
    for i, row in enumerate(rows, start=2):
        if not row.get("file") or not row.get("transcript"):
            raise DataError(f"{listing}:{i}: expected 'file<TAB>transcript', got {row}")
        clips.append(SampleClip(Path(row["file"]).stem, folder / row["file"], " ".join(row["transcript"].split())))
    return clips


def write_sample_manifest(out: str | os.PathLike, split: str = "test", folder: Path = SAMPLES_DIR) -> Path:
    """Write OUT/{split}.tsv and .wrd for the shipped clips (lengths from the files themselves) and
    return the .tsv path. The rows point at the clips where they are installed."""
    from avsrctl.data.media import probe

    out = Path(out)
    rows = []
    for clip in sample_clips(folder):
        info = probe(clip.path)  # names the file when it is missing or unreadable
        if info.duration is None or not (info.has_audio and info.has_video):
            raise DataError(f"{clip.path}: expected a clip with audio and video and a known duration")
        frames = round(info.duration * VIDEO_FPS)  # 75 for GRID's 3 s clips
        rows.append(Utterance(clip.id, clip.path, clip.path, frames, frames * SAMPLES_PER_FRAME, clip.text))
    write_manifest(out / f"{split}.tsv", out / f"{split}.wrd", folder, rows)
    return out / f"{split}.tsv"
