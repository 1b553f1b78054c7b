"""Build an AV-HuBERT-style corpus ({train,valid,test}.tsv/.wrd) from a folder of clips.

Input: a folder (searched recursively) of media files in any container ffmpeg reads, each
with a same-named `.txt` transcript beside it (LRS3's `Text:  ...` first line is understood),
or one transcripts file of `<clip-stem> <text>` / `<clip-stem>\\t<text>` lines.

Output under OUT: `audio/<name>.wav` (16 kHz mono), `video/<name>.mp4` (square mouth crops
at 25 fps, when a ROI mode crops; with roi 'none' the manifest points at the source video),
the three manifests split at random with a seed, and `prepare.json` (options and counts).
Every file is written under a temporary name and renamed, so a killed run leaves no half
file, and a re-run reuses outputs that exist with a non-zero size. Output names are
sanitised clip paths (letters, digits, '.', '_', '-'), so nothing is written outside OUT.
Clips that fail to decode are reported and left out; they never stop the run.
"""

from __future__ import annotations

import json
import os
import re
import wave
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from avsrctl.data.manifest import Utterance, write_manifest
from avsrctl.data.media import MEDIA_EXTENSIONS, extract_audio, load_video, probe, save_video
from avsrctl.data.roi import apply_roi, check_mode, source_side
from avsrctl.errors import DataError, MediaError, UsageError

SPLITS = ("train", "valid", "test")
MAX_NAME = 150  # characters in an output file stem


@dataclass(frozen=True)
class PrepareOptions:
    transcripts: Path | None = None  # one file of '<clip-stem> <text>' lines instead of .txt files
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    roi: str = "auto"  # 'auto' | 'haar' write mouth-crop mp4s; 'none' references the source video
    roi_size: int = 96

    def __post_init__(self) -> None:
        check_mode(self.roi)
        for name in ("valid_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise UsageError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise UsageError(f"--valid-fraction ({self.valid_fraction}) + --test-fraction ({self.test_fraction}) "
                             "must leave something for training")
        if self.roi_size <= 0:
            raise UsageError(f"--roi-size must be positive, got {self.roi_size}")


@dataclass(frozen=True)
class Clip:
    path: Path  # the source media file
    key: str  # path relative to SRC without the suffix ('spk1/00001'); matches transcript keys
    name: str  # sanitised output stem and utterance id ('spk1_00001')


@dataclass(frozen=True)
class PrepareResult:
    out: Path
    splits: dict[str, int]  # utterances per written split
    prepared: int  # clips whose outputs were written by this run
    reused: int  # clips whose outputs were already there
    failed: dict[str, str] = field(default_factory=dict)  # clip key -> reason

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


# -------------------------------------------------------------------- finding clips


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
        raise UsageError(f"no media clips found in {src}",
                         hint=f"prepare reads files ending in {', '.join(MEDIA_EXTENSIONS)}")
    by_name: dict[str, Clip] = {}
    for clip in clips:
        if clip.name in by_name:
            raise DataError(f"two clips map to the same output name '{clip.name}': {by_name[clip.name].path} and "
                            f"{clip.path}", hint="keep one media file per clip name (e.g. not both clip.mp4 and clip.wav)")
        by_name[clip.name] = clip
    return clips


# -------------------------------------------------------------------- transcripts


def _text_lines(path: Path) -> list[str]:
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
    for i, line in enumerate(_text_lines(path), start=1):
        if not line.strip():
            continue
        key, _, text = line.partition("\t") if "\t" in line else line.strip().partition(" ")
        key, text = key.strip(), " ".join(text.split())
        if not text:
            raise DataError(f"{path}:{i}: no transcript after the clip name '{key}'",
                            hint="each line is '<clip-stem> <text>' (space or tab separated)")
        if key in texts:
            raise DataError(f"{path}:{i}: clip '{key}' listed twice (first on line {texts[key][1]})")
        texts[key] = (text, i)
    if not texts:
        raise DataError(f"{path}: no transcripts in the file")
    return {k: v for k, (v, _) in texts.items()}


def read_txt(path: Path) -> str:
    """A clip's .txt transcript: the whole file on one line, or the 'Text:' line of LRS3's format."""
    lines = _text_lines(path)
    for line in lines:
        if line.startswith("Text:"):
            return " ".join(line[len("Text:"):].split())
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
        raise DataError(f"{len(missing)} of {len(clips)} clips have no transcript {where}: {shown}",
                        hint="give each clip a same-named .txt file, or pass --transcripts FILE")
    return found


# ---------------------------------------------------------------------- splitting


def split_sizes(n: int, valid_fraction: float, test_fraction: float) -> dict[str, int]:
    """Utterances per split: a non-zero fraction gets at least one; training keeps at least one."""
    def count(f: float) -> int:
        return 0 if f <= 0 else max(1, round(n * f))

    n_valid, n_test = count(valid_fraction), count(test_fraction)
    if n_valid + n_test >= n:
        raise UsageError(f"{n} usable clips are too few for --valid-fraction {valid_fraction} and --test-fraction "
                         f"{test_fraction}: training would get none", hint="lower the fractions or add clips")
    return {"train": n - n_valid - n_test, "valid": n_valid, "test": n_test}


def split_names(names: list[str], valid_fraction: float, test_fraction: float, seed: int) -> dict[str, list[str]]:
    """Seeded random split (the same names and seed give the same split); each split sorted."""
    sizes = split_sizes(len(names), valid_fraction, test_fraction)
    order = [sorted(names)[k] for k in np.random.default_rng(seed).permutation(len(names))]
    test, valid, train = (order[: sizes["test"]], order[sizes["test"]: sizes["test"] + sizes["valid"]],
                          order[sizes["test"] + sizes["valid"]:])
    return {"train": sorted(train), "valid": sorted(valid), "test": sorted(test)}


# ------------------------------------------------------------------ one clip


def _done(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _inside(out: Path, path: Path) -> Path:
    if not path.resolve().is_relative_to(out.resolve()):
        raise DataError(f"refusing to write outside the output folder {out}: {path}")
    return path


def _wav_samples(path: Path) -> int:
    with wave.open(str(path), "rb") as w:
        return w.getnframes()


def prepare_clip(clip: Clip, out: Path, roi: str, roi_size: int) -> tuple[Utterance, bool]:
    """Write one clip's outputs (or reuse them). Returns (utterance without text, reused?).

    On a MediaError the files this call wrote are removed again, so a failed clip leaves nothing.
    """
    info = probe(clip.path)
    if not (info.has_audio or info.has_video):
        raise MediaError(f"{clip.path}: no audio or video stream")
    written: list[Path] = []
    try:
        video, n_frames = None, 0
        if info.has_video and roi == "none":
            video = clip.path.resolve()
            n_frames = load_video(video, size=16).shape[0]  # frames at 25 fps; tiny frames decode fast
        elif info.has_video:
            video = _inside(out, out / "video" / f"{clip.name}.mp4")
            if _done(video):
                n_frames = load_video(video).shape[0]
            else:
                frames = load_video(clip.path, max_short_side=source_side(roi_size))  # (T, H, W, 3)
                crops = apply_roi(frames, roi, roi_size, path=clip.path)  # (T, roi, roi, 3)
                save_video(video, crops)
                written.append(video)
                n_frames = crops.shape[0]
        audio, n_samples = None, 0
        if info.has_audio:
            audio = _inside(out, out / "audio" / f"{clip.name}.wav")
            try:
                n_samples = _wav_samples(audio) if _done(audio) else 0
            except (wave.Error, EOFError):
                n_samples = 0  # an unreadable leftover: write it again
            if n_samples == 0:
                extract_audio(clip.path, audio)
                written.append(audio)
                n_samples = _wav_samples(audio)
                if n_samples == 0:
                    raise MediaError(f"{clip.path}: zero-length audio stream")
    except (MediaError, wave.Error, EOFError) as e:
        for path in written:
            path.unlink(missing_ok=True)
        raise e if isinstance(e, MediaError) else MediaError(f"{clip.path}: extracted audio is unreadable ({e})")
    return Utterance(clip.name, video, audio, n_frames, n_samples), not written


# ----------------------------------------------------------------------- corpus


def prepare_corpus(src: str | os.PathLike, out: str | os.PathLike, options: PrepareOptions = PrepareOptions(),
                   progress: Callable[[int, int, str], None] | None = None) -> PrepareResult:
    """Turn SRC's clips and transcripts into OUT/{train,valid,test}.tsv/.wrd plus extracted media.

    `progress(done, total, clip_key)` is called after each clip (the CLI draws a bar with it).
    """
    src, out = Path(src), Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output must be a folder, got a file: {out}")
    clips = find_clips(src, exclude=out)
    texts = transcripts_for(clips, options.transcripts)
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, Utterance] = {}
    failed: dict[str, str] = {}
    prepared = reused = 0
    for k, clip in enumerate(clips, start=1):
        try:
            utt, was_reused = prepare_clip(clip, out, options.roi, options.roi_size)
            done[clip.name] = Utterance(utt.id, utt.video, utt.audio, utt.n_video_frames, utt.n_audio_samples,
                                        texts[clip.name])
            reused += was_reused
            prepared += not was_reused
        except MediaError as e:
            failed[clip.key] = str(e)
        if progress is not None:
            progress(k, len(clips), clip.key)
    if not done:
        first = next(iter(failed.items()))
        raise DataError(f"none of the {len(clips)} clips in {src} could be decoded (first: {first[1]})")
    names = split_names(list(done), options.valid_fraction, options.test_fraction, options.seed)
    root = out.resolve()
    for split, members in names.items():
        if members:
            write_manifest(out / f"{split}.tsv", out / f"{split}.wrd", root, [done[n] for n in members])
    result = PrepareResult(out=root, splits={s: len(m) for s, m in names.items() if m}, prepared=prepared,
                           reused=reused, failed=failed)
    record = {"source": str(src.resolve()), "options": {k: (str(v) if isinstance(v, Path) else v)
                                                         for k, v in asdict(options).items()}, **result.to_dict()}
    tmp = out / ".prepare.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "prepare.json")
    return result
