"""Build an AV-HuBERT-style corpus ({train,valid,test}.tsv/.wrd) from a folder of clips.

Input: a folder (searched recursively) of media files in any container ffmpeg reads, each
with a same-named `.txt` transcript beside it (LRS3's `Text:  ...` first line is understood),
or one transcripts file of `<clip-stem> <text>` / `<clip-stem>\\t<text>` lines.

Output under OUT: `audio/<name>.wav` (16 kHz mono), `video/<name>.mp4` (square mouth crops
at 25 fps, when a ROI mode crops; with roi 'none' the manifest points at the source video),
the manifests, `failures.tsv` (clip, reason) and `prepare.json` (options and counts).
Every file is written under a temporary name and renamed, so a killed run leaves no half
file, and a re-run reuses outputs that exist with a non-zero size. Output names are
sanitised clip paths (letters, digits, '.', '_', '-'), so nothing is written outside OUT.
Clips that fail to decode are recorded with their reason and left out; they never stop the run.

At scale: `workers` processes prepare clips in parallel, and `shard=Shard(i, n)` prepares
only the clips whose name hashes to shard i, writing `OUT/parts/shard-<i>-of-<n>/` instead of
the manifests; `merge_parts(OUT)` joins the n parts. Which split a clip lands in depends only
on the clip names and the seed (a hash order), never on workers or shards, so n shards merge
to exactly the corpus of one run.
"""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import os
import re
import wave
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

from avsrctl.atomic import write_atomic
from avsrctl.data.manifest import Utterance, read_manifest, write_manifest
from avsrctl.data.media import MEDIA_EXTENSIONS, extract_audio, load_video, probe, save_video
from avsrctl.data.roi import apply_roi, check_mode, crop_method, source_side
from avsrctl.errors import DataError, MediaError, UsageError

SPLITS = ("train", "valid", "test")
MAX_NAME = 150  # characters in an output file stem
FAILURES = "failures.tsv"  # clip key <tab> reason, one line per clip that could not be prepared
PARTS = "parts"  # OUT/parts/shard-<i>-of-<n>/ holds one shard's manifests until `merge_parts`
PART_DONE = "done.json"  # written last in a part folder: the part is complete
FATAL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # no later clip could be written either


@dataclass(frozen=True)
class PrepareOptions:
    transcripts: Path | None = None  # one file of '<clip-stem> <text>' lines instead of .txt files
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    roi: str = "auto"  # 'auto' | 'haar' write mouth-crop mp4s; 'none' references the source video
    roi_size: int = 96
    split: str | None = None  # every clip into this one split (an evaluation set); the fractions are unused
    # a corpus's own split: (split, file of clip ids) pairs; clips listed nowhere are left out
    split_lists: tuple[tuple[str, Path], ...] = ()

    def __post_init__(self) -> None:
        check_mode(self.roi)
        if self.split is not None and self.split not in SPLITS:
            raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.split is not None and self.split_lists:
            raise UsageError("--split and --split-list both choose the split: give one of them")
        for split, _ in self.split_lists:
            if split not in SPLITS:
                raise UsageError(f"--split-list takes SPLIT=FILE with SPLIT one of {', '.join(SPLITS)}, got {split!r}")
        for name in ("valid_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise UsageError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise UsageError(
                f"--valid-fraction ({self.valid_fraction}) + --test-fraction ({self.test_fraction}) "
                "must leave something for training"
            )
        if self.roi_size <= 0:
            raise UsageError(f"--roi-size must be positive, got {self.roi_size}")


@dataclass(frozen=True)
class Clip:
    path: Path  # the source media file
    key: str  # path relative to SRC without the suffix ('spk1/00001'); matches transcript keys
    name: str  # sanitised output stem and utterance id ('spk1_00001')


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
        return _hash(name) % self.count == self.index

    @property
    def folder(self) -> str:
        return f"shard-{self.index:05d}-of-{self.count:05d}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class PrepareResult:
    out: Path
    splits: dict[str, int]  # utterances per written split
    prepared: int  # clips whose outputs were written by this run
    reused: int  # clips whose outputs were already there
    failed: dict[str, str] = field(default_factory=dict)  # clip key -> reason
    shard: str | None = None  # 'i/n' for one shard's part, None for a whole corpus

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
    lines = _text_lines(path)
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


# ---------------------------------------------------------------------- splitting


def _hash(text: str) -> int:
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
    order = sorted(names, key=lambda n: (_hash(f"{seed}\0{n}"), n))
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
        lines = _text_lines(Path(path))
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


def _prepare_one(clip: Clip, out: Path, roi: str, roi_size: int) -> tuple[Utterance | None, bool, str | None]:
    """(utterance, reused?, None) or (None, False, reason): one clip, in this process or a worker."""
    try:
        utt, reused = prepare_clip(clip, out, roi, roi_size)
        return utt, reused, None
    except OSError as e:
        if e.errno in FATAL_ERRNOS:
            raise
        return None, False, _one_line(f"{clip.path}: {e}")
    except (MediaError, DataError) as e:
        return None, False, _one_line(str(e))
    except Exception as e:  # noqa: BLE001  a bad clip (a cv2 or decoder error) must not stop a 150k-clip run
        return None, False, _one_line(f"{clip.path}: {type(e).__name__}: {e}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _worker_init() -> None:
    try:  # N worker processes each using every core for OpenCV would oversubscribe the machine
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def _run_clips(
    clips: list[Clip], out: Path, options: PrepareOptions, workers: int
) -> Iterator[tuple[Clip, tuple[Utterance | None, bool, str | None]]]:
    """Each clip with its `_prepare_one` result, in completion order; `workers` > 1 uses processes."""
    if workers <= 1 or len(clips) <= 1:
        for clip in clips:
            yield clip, _prepare_one(clip, out, options.roi, options.roi_size)
        return
    # spawn: the parent may run threads (the progress bar), which fork does not survive safely
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init) as pool:
        todo = iter(clips)
        pending = {}

        def submit() -> None:
            clip = next(todo, None)
            if clip is not None:
                pending[pool.submit(_prepare_one, clip, out, options.roi, options.roi_size)] = clip

        for _ in range(4 * workers):  # a bounded window: 150k futures at once would cost memory, not speed
            submit()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                clip = pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    raise DataError(
                        f"a worker process died while preparing {clip.path}",
                        hint="re-run the same command: finished clips are reused",
                    ) from None
                submit()
                yield clip, result


def prepare_corpus(
    src: str | os.PathLike,
    out: str | os.PathLike,
    options: PrepareOptions = PrepareOptions(),
    progress: Callable[[int, int, str, int], None] | None = None,
    *,
    workers: int = 1,
    shard: Shard | None = None,
) -> PrepareResult:
    """Turn SRC's clips and transcripts into OUT/{train,valid,test}.tsv/.wrd plus extracted media.

    `progress(done, total, clip_key, failed)` is called after each clip (the CLI draws a bar with it).
    `workers` processes prepare clips in parallel. With `shard`, only that shard's clips are prepared
    and their manifests go to `OUT/parts/<shard>/` for `merge_parts`.
    """
    src, out = Path(src), Path(out)
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"output must be a folder, got a file: {out}")
    _check_same_crops(out, options)
    clips = find_clips(src, exclude=out)
    mine = clips if shard is None else [c for c in clips if shard.holds(c.name)]
    if options.split_lists:  # the corpus's own split; clips listed nowhere are not prepared
        names = assign_listed(clips, options.split_lists)
        listed = {n for members in names.values() for n in members}
        mine = [c for c in mine if c.name in listed]
    texts = transcripts_for(mine, options.transcripts) if mine else {}
    if not options.split_lists:  # every clip's split, from all clip names: the same in every shard and in one run
        names = split_names(
            [c.name for c in clips], options.valid_fraction, options.test_fraction, options.seed, only=options.split
        )
    split_of = {n: split for split, members in names.items() for n in members}
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, Utterance] = {}
    failed: dict[str, str] = {}
    prepared = reused = 0
    for k, (clip, (utt, was_reused, reason)) in enumerate(_run_clips(mine, out, options, workers), start=1):
        if utt is None:
            failed[clip.key] = reason or "unknown error"
        else:
            done[clip.name] = Utterance(
                utt.id, utt.video, utt.audio, utt.n_video_frames, utt.n_audio_samples, texts[clip.name]
            )
            reused += was_reused
            prepared += not was_reused
        if progress is not None:
            progress(k, len(mine), clip.key, len(failed))
    if shard is None and not done:
        first = next(iter(failed.items()))
        raise DataError(f"none of the {len(clips)} clips in {src} could be decoded (first: {first[1]})")
    root = out.resolve()
    target = out if shard is None else out / PARTS / shard.folder
    members = {split: sorted(n for n in done if split_of[n] == split) for split in SPLITS}
    for split, chosen in members.items():
        if chosen:
            write_manifest(
                target / f"{split}.tsv", target / f"{split}.wrd", root, [done[n] for n in chosen], relative_root=True
            )
    write_failures(target / FAILURES, failed)
    result = PrepareResult(
        out=root,
        splits={s: len(m) for s, m in members.items() if m},
        prepared=prepared,
        reused=reused,
        failed=dict(sorted(failed.items())),
        shard=None if shard is None else str(shard),
    )
    record = {"source": str(src.resolve()), "options": _options_record(options), **result.to_dict()}
    write_atomic(target / ("prepare.json" if shard is None else PART_DONE), json.dumps(record, indent=2) + "\n")
    return result


def _crops(options: dict) -> tuple:
    """What decides a clip's crop in a prepare.json's options; records from before 'crop' was kept had
    'auto' cut by the face box."""
    roi = options.get("roi")
    return roi, options.get("roi_size"), options.get("crop", "haar" if roi in ("auto", "haar") else roi)


def _check_same_crops(out: Path, options: PrepareOptions) -> None:
    """Refuse to add crops of another kind to OUT: clips already there are reused, not cut again."""
    record = out / "prepare.json"
    try:
        before = json.loads(record.read_text(encoding="utf-8")).get("options") or {}
    except (OSError, ValueError, AttributeError):
        return  # no earlier run (or an unreadable record): nothing to mix with
    old, new = _crops(before), _crops(_options_record(options))
    if old[0] is not None and old != new:
        raise UsageError(
            f"{record}: its clips were cut with roi={old[0]} roi_size={old[1]} ({old[2]} crops); "
            f"this run asks for roi={new[0]} roi_size={new[1]} ({new[2]} crops)",
            hint=f"prepare into a new folder, or delete {out / 'video'} to cut every clip again",
        )


def _options_record(options: PrepareOptions) -> dict:
    """The options, plus the crop the ROI mode gave on this machine ('auto' crops by landmarks when installed)."""
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
    record["split_lists"] = [[split, str(path)] for split, path in options.split_lists]
    return {**record, "crop": crop_method(options.roi)}


def write_failures(path: Path, failed: dict[str, str]) -> None:
    """`failures.tsv`: a header, then `clip key <tab> reason` per failed clip (sorted); empty when none failed."""
    lines = ["clip\treason"] + [f"{_one_line(k)}\t{_one_line(v)}" for k, v in sorted(failed.items())]
    write_atomic(path, "\n".join(lines) + "\n")


def read_failures(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    rows = path.read_text(encoding="utf-8").splitlines()[1:]
    return dict(row.split("\t", 1) if "\t" in row else (row, "") for row in rows if row.strip())


# ----------------------------------------------------------------------- merging


def _parts(out: Path) -> tuple[int, dict[int, Path]]:
    """(n, {i: folder}) of OUT/parts/shard-<i>-of-<n>; one shard count only."""
    parts_dir = out / PARTS
    if not parts_dir.is_dir():
        raise UsageError(
            f"nothing to merge: {parts_dir} not found",
            hint="prepare the shards first: avsrctl prepare SRC OUT --shard I/N",
        )
    found: dict[int, dict[int, Path]] = {}
    for folder in sorted(parts_dir.iterdir()):
        match = re.fullmatch(r"shard-(\d+)-of-(\d+)", folder.name)
        if match and folder.is_dir():
            found.setdefault(int(match[2]), {})[int(match[1])] = folder
    if not found:
        raise UsageError(f"nothing to merge: no shard-<i>-of-<n> folders in {parts_dir}")
    if len(found) > 1:
        counts = ", ".join(f"{n} ({len(f)} part(s))" for n, f in sorted(found.items()))
        raise DataError(
            f"{parts_dir} holds parts of different shard counts: {counts}",
            hint="delete the folders of the shard count you no longer use",
        )
    return next(iter(found.items()))


def merge_parts(out: str | os.PathLike) -> PrepareResult:
    """Join OUT/parts/shard-*-of-N into OUT/{train,valid,test}.tsv/.wrd, failures.tsv and prepare.json.

    Refuses (one line naming the part) a missing or unfinished part, parts made with other options,
    and an utterance id found in two parts. Writes nothing unless every check passes.
    """
    out = Path(out)
    n, folders = _parts(out)
    missing = [i for i in range(n) if i not in folders]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        shard = Shard(missing[0], n)
        raise DataError(
            f"missing part {shard}: {out / PARTS / shard.folder} not found{more}",
            hint=f"run: avsrctl prepare SRC {out} --shard {shard} (same options), then --merge again",
        )
    records = []
    for i in range(n):
        path = folders[i] / PART_DONE
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise DataError(
                f"part {i}/{n} is not finished: {path} not found",
                hint=f"re-run its shard (avsrctl prepare SRC {out} --shard {i}/{n}); it resumes",
            ) from None
        except (OSError, ValueError) as e:
            raise DataError(
                f"part {i}/{n}: cannot read {path} ({e})",
                hint=f"re-run its shard (avsrctl prepare SRC {out} --shard {i}/{n})",
            ) from None
    first = records[0]
    for i, record in enumerate(records):
        for key in ("source", "options"):
            if record.get(key) != first.get(key):
                raise DataError(
                    f"part {i}/{n} was prepared with other {key} than part 0/{n}: "
                    f"{record.get(key)!r} vs {first.get(key)!r}",
                    hint="re-run the odd shard with the same SRC and options",
                )
    by_split: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
    seen: dict[str, str] = {}
    failed: dict[str, str] = {}
    for i, record in enumerate(records):
        for split in record.get("splits", {}):
            tsv = folders[i] / f"{split}.tsv"
            for utt in read_manifest(tsv):
                where = f"part {i}/{n} ({split})"
                if utt.id in seen:
                    raise DataError(
                        f"duplicate id '{utt.id}' in {where} and {seen[utt.id]}: {tsv}:{utt.line}",
                        hint="every clip belongs to one shard: were the parts made from different "
                        "sources, or is a stale part folder left over?",
                    )
                seen[utt.id] = where
                by_split[split].append(utt)
        failed.update(read_failures(folders[i] / FAILURES))
    if not seen:
        raise DataError(f"none of the clips in the {n} parts under {out / PARTS} could be decoded")
    root = out.resolve()
    for split, utts in by_split.items():
        if utts:
            write_manifest(
                out / f"{split}.tsv", out / f"{split}.wrd", root, sorted(utts, key=lambda u: u.id), relative_root=True
            )
    write_failures(out / FAILURES, failed)
    result = PrepareResult(
        out=root,
        splits={s: len(u) for s, u in by_split.items() if u},
        prepared=sum(r.get("prepared", 0) for r in records),
        reused=sum(r.get("reused", 0) for r in records),
        failed=dict(sorted(failed.items())),
    )
    record = {"source": first.get("source"), "options": first.get("options"), "merged_parts": n, **result.to_dict()}
    write_atomic(out / "prepare.json", json.dumps(record, indent=2) + "\n")
    return result
