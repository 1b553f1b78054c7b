"""The input of `avsrctl prepare`: the clips of a source folder and their transcripts.

A clip is a media file under the source folder (searched recursively, hidden files skipped); its key
is its path relative to the folder without the suffix ('spk1/00001'), its name the sanitised output
stem ('spk1_00001'). Its transcript is a same-named `.txt` beside it (LRS3's `Text:  ...` line is
understood) or a line of one transcripts file (`<clip-stem> <text>` or `<clip-stem>\\t<text>`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from avsrctl.data.media import MEDIA_EXTENSIONS
from avsrctl.errors import DataError, UsageError

MAX_NAME = 150  # characters in an output file stem


@dataclass(frozen=True)
class Clip:
    path: Path  # the source media file
    key: str  # path relative to SRC without the suffix ('spk1/00001'); matches transcript keys
    name: str  # sanitised output stem and utterance id ('spk1_00001')


def safe_name(key: str) -> str:
    """An output stem from a clip key: path separators become '_', anything odd becomes '_',
    no leading dots, never '..' or an absolute path. Empty results become 'clip'."""
    parts = [p for p in re.split(r"[\\/]+", key) if p not in ("", ".", "..")]
    name = re.sub(r"[^\w.-]+", "_", "_".join(parts)).lstrip(".-")
    return name[:MAX_NAME] or "clip"


def find_clips(src: Path, exclude: Path | None = None) -> list[Clip]:
    """Media files under `src` (recursive, hidden files and `exclude` skipped), sorted by key."""
    if not src.exists():
        raise UsageError(f"source folder not found: {src}")
    if not src.is_dir():
        raise UsageError(f"source must be a folder of clips, got a file: {src}")
    excluded = exclude.resolve() if exclude is not None else None
    clips = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in MEDIA_EXTENSIONS:
            continue
        if excluded is not None and path.resolve().is_relative_to(excluded):
            continue
        if path.is_file():
            key = rel.with_suffix("").as_posix()
            clips.append(Clip(path, key, safe_name(key)))
    if not clips:
        raise UsageError(
            f"no media clips found in {src}", hint=f"prepare reads files ending in {', '.join(MEDIA_EXTENSIONS)}"
        )
    by_name: dict[str, Clip] = {}
    for clip in clips:
        if clip.name in by_name:
            raise DataError(
                f"two clips map to the same output name '{clip.name}': {by_name[clip.name].path} and {clip.path}",
                hint="keep one media file per clip name (e.g. not both clip.mp4 and clip.wav)",
            )
        by_name[clip.name] = clip
    return clips


# ---------------------------------------------------------------------- transcripts


def text_lines(path: Path) -> list[str]:
    """A UTF-8 text file's lines (a byte-order mark dropped); DataError naming the file, and the line of bad bytes."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return raw.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8", hint="re-encode the file as UTF-8") from None


def read_transcript_file(path: Path) -> dict[str, str]:
    """`<clip-stem> <text>` or `<clip-stem>\\t<text>` per line; blank lines ignored."""
    if not path.is_file():
        raise UsageError(f"transcripts file not found: {path}")
    texts: dict[str, tuple[str, int]] = {}
    for i, line in enumerate(text_lines(path), start=1):
        if not line.strip():
            continue
        key, _, text = line.partition("\t") if "\t" in line else line.strip().partition(" ")
        key, text = key.strip(), " ".join(text.split())
        if not text:
            raise DataError(
                f"{path}:{i}: no transcript after the clip name '{key}'",
                hint="each line is '<clip-stem> <text>' (space or tab separated)",
            )
        if key in texts:
            raise DataError(f"{path}:{i}: clip '{key}' listed twice (first on line {texts[key][1]})")
        texts[key] = (text, i)
    if not texts:
        raise DataError(f"{path}: no transcripts in the file")
    return {k: v for k, (v, _) in texts.items()}


def read_txt(path: Path) -> str:
    """A clip's .txt transcript: the whole file on one line, or the 'Text:' line of LRS3's format."""
    lines = text_lines(path)
    for line in lines:
        if line.startswith("Text:"):
            return " ".join(line[len("Text:") :].split())
    return " ".join(" ".join(lines).split())


def transcripts_for(clips: list[Clip], transcripts: Path | None) -> dict[str, str]:
    """Clip name -> transcript; DataError listing the clips that have none."""
    table = read_transcript_file(transcripts) if transcripts is not None else None
    found: dict[str, str] = {}
    missing: list[str] = []
    for clip in clips:
        if table is not None:
            text = table.get(clip.key, table.get(clip.path.stem, table.get(clip.name)))
        else:
            txt = clip.path.with_suffix(".txt")
            text = read_txt(txt) if txt.is_file() else None
        if text:
            found[clip.name] = text
        else:
            missing.append(clip.key)
    if missing:
        where = f"in {transcripts}" if transcripts is not None else "(no non-empty .txt beside the clip)"
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(
            f"{len(missing)} of {len(clips)} clips have no transcript {where}: {shown}",
            hint="give each clip a same-named .txt file, or pass --transcripts FILE",
        )
    return found
