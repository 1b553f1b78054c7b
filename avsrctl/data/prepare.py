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

The clips and their transcripts are found by sources.py; the split and the shard are splits.py's.
"""

from __future__ import annotations

import errno
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
from avsrctl.data.media import extract_audio, load_video, probe, save_video
from avsrctl.data.roi import apply_roi, check_mode, crop_method, source_side
from avsrctl.data.sources import Clip, find_clips, transcripts_for
from avsrctl.data.splits import SPLITS, Shard, assign_listed, split_names
from avsrctl.errors import DataError, MediaError, UsageError

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
