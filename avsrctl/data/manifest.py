"""AV-HuBERT/LRS3 manifests: `{split}.tsv` + `{split}.wrd`.

`{split}.tsv`: line 1 is the root folder; every further line has five tab-separated fields
`id, video, audio, n_video_frames, n_audio_samples`. Paths are relative to the root (never
climbing out of it with `..`) or absolute; an empty field or `-` marks a missing stream
(audio-only or video-only corpora).
`{split}.wrd`: one transcript per line, same order, no header. A word written `~word` is an
unsure word: the LLM reads it as `word`, but it carries no loss in training (`avsrctl adapt` marks so
the words its audio path heard with little confidence); WER normalisation and CTC drop the `~`.

Every validation error names the file and the 1-based line.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from avsrctl.errors import DataError, UsageError

SAMPLE_RATE = 16_000  # Hz, audio everywhere in avsrctl
VIDEO_FPS = 25  # frames per second of mouth-region video
SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS  # 640 audio samples per video frame
MISSING = ("", "-")
UNSURE = "~"  # prefix of a transcript word that is read but carries no loss (see above)


def unsure_words(text: str) -> list[tuple[str, bool]]:
    """A transcript's words as (word without the mark, unsure?)."""
    return [(w[1:], True) if w.startswith(UNSURE) and len(w) > 1 else (w, False) for w in text.split()]


def mark_unsure(words: list[str], unsure: list[bool]) -> str:
    """The transcript line of `words` with the unsure ones marked."""
    return " ".join(UNSURE + w if u else w for w, u in zip(words, unsure, strict=True))


@dataclass(frozen=True, slots=True)  # slots: 150k LRS3 rows in ~60 MB less
class Utterance:
    id: str
    video: Path | None  # absolute path, None when the corpus has no video
    audio: Path | None  # absolute path, None when the corpus has no audio
    n_video_frames: int  # 0 when video is None
    n_audio_samples: int  # 0 when audio is None
    text: str = ""
    line: int = 0  # 1-based line in the .tsv (0 for utterances built in code)

    def __reduce__(self):  # frozen + slots does not unpickle on Python 3.10 without this (DataLoader workers)
        return (
            Utterance,
            (self.id, self.video, self.audio, self.n_video_frames, self.n_audio_samples, self.text, self.line),
        )

    @property
    def n_frames(self) -> int:
        """Length in 25 Hz frames: the video length, or the audio length rounded up to whole frames."""
        if self.video is not None:
            return self.n_video_frames
        return math.ceil(self.n_audio_samples / SAMPLES_PER_FRAME)

    @property
    def seconds(self) -> float:
        return self.n_frames / VIDEO_FPS


@dataclass
class Manifest:
    root: Path
    tsv: Path
    wrd: Path | None
    utterances: list[Utterance] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self):
        return iter(self.utterances)

    def __getitem__(self, i: int) -> Utterance:
        return self.utterances[i]

    @property
    def has_audio(self) -> bool:
        return bool(self.utterances) and all(u.audio is not None for u in self.utterances)

    @property
    def has_video(self) -> bool:
        return bool(self.utterances) and all(u.video is not None for u in self.utterances)

    def require(self, modality: str, *, because: str | None = None, hint: str | None = None) -> None:
        """Raise a usage error when the manifest lacks a stream the modality reads; `because` and
        `hint` replace the message's '--modality M needs S' and its hint (for a setting that needs it)."""
        need = {"audio": ("audio",), "video": ("video",), "both": ("audio", "video")}[modality]
        for stream in need:
            missing = [u for u in self.utterances if getattr(u, stream) is None]
            if missing:
                raise UsageError(
                    f"{self.tsv}:{missing[0].line}: {because or f'--modality {modality} needs {stream}'}, "
                    f"but {len(missing)} of {len(self.utterances)} utterances have no {stream} path",
                    hint=hint
                    or f"use --modality {'video' if stream == 'audio' else 'audio'} or a manifest with {stream}",
                )


def split_paths(root: str | os.PathLike, split: str) -> tuple[Path, Path]:
    root = Path(root)
    return root / f"{split}.tsv", root / f"{split}.wrd"


def _read_lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte {raw[e.start]:#04x})", hint="re-encode the file as UTF-8"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.splitlines()


class _FileCheck:
    """Does a media path name an existing file? From the second file asked about in a folder on,
    one listing of that folder answers instead of a stat per file: 150k LRS3 rows sit in ~5k
    speaker folders, and on a cluster's network file system a listing costs about one stat."""

    def __init__(self) -> None:
        # folder -> its files; None: one file asked so far, or a folder that cannot be listed
        self.listings: dict[str, frozenset[str] | None] = {}
        self.unlistable: set[str] = set()

    def __call__(self, path: str) -> bool:
        folder, _, name = path.rpartition(os.sep)
        listing = self.listings.get(folder, False)
        if listing is False or folder in self.unlistable:  # a first file: a stat is cheaper than a listing
            self.listings[folder] = None
            return os.path.isfile(path)
        if listing is None:
            try:
                with os.scandir(folder or os.sep) as entries:  # paths here are absolute: '' is the root
                    listing = self.listings[folder] = frozenset(e.name for e in entries if e.is_file())
            except OSError:  # missing or unreadable folder: ask each file itself
                self.unlistable.add(folder)
                return os.path.isfile(path)
        return name in listing


def _inside(prefix: str, relative: str, stream: str, tsv: Path, line: int) -> str:
    """`prefix + relative`, refused when `relative` climbs out of the root (`../../../etc/passwd`):
    a row reaches outside its corpus only by an absolute path, which says so."""
    if ".." in relative.split(os.sep) and not os.path.normpath(prefix + relative).startswith(prefix):
        raise DataError(
            f"{tsv}:{line}: {stream} path {relative!r} climbs out of the root folder {prefix.rstrip(os.sep)}",
            hint="paths are relative to the root folder on line 1 and stay inside it; "
            "name a file elsewhere by its absolute path",
        )
    return prefix + relative


def _count(value: str, what: str, tsv: Path, line: int) -> int:
    if value in MISSING:
        return 0
    try:
        n = int(value)
    except ValueError:
        raise DataError(f"{tsv}:{line}: {what} must be a whole number, got {value!r}") from None
    if n < 0:
        raise DataError(f"{tsv}:{line}: {what} must not be negative, got {n}")
    return n


def read_manifest(
    tsv: str | os.PathLike,
    wrd: str | os.PathLike | None = None,
    *,
    check_files: bool = True,
    require_text: bool = True,
    read_text: bool = True,
) -> Manifest:
    """Read and validate a `.tsv` and its `.wrd` (default: the `.wrd` beside the `.tsv`, if any).

    `require_text=False` allows a manifest without transcripts (decoding unlabelled data).
    `read_text=False` never opens a `.wrd`, even one beside the `.tsv` (every text is empty): for
    data whose transcripts must stay unread (`avsrctl adapt` labels clips from their audio).
    About 10 us and 1 KB per row: an LRS3-sized manifest (150k rows) loads in ~1.5 s.
    """
    tsv = Path(tsv)
    if not read_text:
        wrd = None
    elif wrd is None:
        candidate = tsv.with_suffix(".wrd")
        wrd = candidate if candidate.exists() or require_text else None
    wrd = Path(wrd) if wrd is not None else None

    lines = _read_lines(tsv)
    if not lines or not lines[0].strip():
        raise DataError(
            f"{tsv}:1: the first line must be the root folder of the corpus",
            hint="AV-HuBERT manifests start with the root directory on a line of its own",
        )
    root_text = lines[0].strip()
    if "\t" in root_text:
        raise DataError(
            f"{tsv}:1: the first line must be the root folder, found tab-separated fields",
            hint="add the root folder (or '.') as line 1",
        )
    root = Path(root_text)
    if not root.is_absolute():
        root = (tsv.parent / root).resolve()

    texts: list[str] | None = None
    if wrd is not None:
        texts = _read_lines(wrd)
        n_rows = sum(1 for line in lines[1:] if line.strip())
        if len(texts) != n_rows:
            raise DataError(
                f"{wrd}: {len(texts)} transcripts for {n_rows} utterances in {tsv}",
                hint="the .wrd needs exactly one line per .tsv row, in the same order",
            )

    prefix = str(root).rstrip(os.sep) + os.sep
    exists = _FileCheck()
    utterances: list[Utterance] = []
    seen: dict[str, int] = {}
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 5:
            raise DataError(
                f"{tsv}:{i}: expected 5 tab-separated fields (id, video, audio, n_video, n_audio), got {len(fields)}"
            )
        uid, video, audio, n_video, n_audio = fields
        uid, video, audio = uid.strip(), video.strip(), audio.strip()
        if not uid:
            raise DataError(f"{tsv}:{i}: empty utterance id")
        if uid in seen:
            raise DataError(
                f"{tsv}:{i}: duplicate id '{uid}' (first on line {seen[uid]})",
                hint=f"ids must be unique: rename or drop one of lines {seen[uid]} and {i} (and its .wrd line)",
            )
        seen[uid] = i
        # plain strings first: pathlib parsing is most of the cost of a row, so it happens once per path
        v = None if video in MISSING else video if video.startswith(os.sep) else _inside(prefix, video, "video", tsv, i)
        a = None if audio in MISSING else audio if audio.startswith(os.sep) else _inside(prefix, audio, "audio", tsv, i)
        if v is None and a is None:
            raise DataError(f"{tsv}:{i}: '{uid}' has neither a video nor an audio path")
        nv = _count(n_video.strip(), "n_video_frames", tsv, i) if v is not None else 0
        na = _count(n_audio.strip(), "n_audio_samples", tsv, i) if a is not None else 0
        if check_files:
            for p in (v, a):
                if p is not None and not exists(p):
                    raise DataError(
                        f"{tsv}:{i}: media file not found: {p}", hint="paths are relative to the root folder on line 1"
                    )
        text = ""
        if texts is not None:
            k = len(utterances)
            text = " ".join(texts[k].split())
            if require_text and not text:
                raise DataError(
                    f"{wrd}:{k + 1}: empty transcript for '{uid}'",
                    hint=f"write the words spoken in '{uid}' on line {k + 1}, or drop the utterance from both "
                    f"{tsv.name} and {wrd.name}",
                )
        utterances.append(
            Utterance(uid, None if v is None else Path(v), None if a is None else Path(a), nv, na, text, i)
        )
    if not utterances:
        raise DataError(f"{tsv}: no utterances after the root line")
    return Manifest(root, tsv, wrd, utterances)


def _relative(path: Path | None, root: Path) -> str:
    if path is None:
        return "-"
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(Path(path).resolve())


def write_manifest(
    tsv: str | os.PathLike,
    wrd: str | os.PathLike | None,
    root: str | os.PathLike,
    utterances: list[Utterance],
    *,
    relative_root: bool = False,
) -> None:
    """Write a `.tsv` (paths relative to `root` where possible) and `.wrd`, each atomically.

    `relative_root` writes the root line relative to the `.tsv`'s folder ('.' when it is that
    folder), so the corpus can be moved or copied as a whole and still reads."""
    tsv, root = Path(tsv), Path(root)
    rows = [os.path.relpath(root.resolve(), tsv.parent.resolve()) if relative_root else str(root)]
    for u in utterances:
        if "\t" in u.id or "\n" in u.id:
            raise DataError(f"utterance id {u.id!r} contains a tab or newline")
        rows.append(
            "\t".join(
                [
                    u.id,
                    _relative(u.video, root),
                    _relative(u.audio, root),
                    str(u.n_video_frames),
                    str(u.n_audio_samples),
                ]
            )
        )
    _atomic_write(tsv, "\n".join(rows) + "\n")
    if wrd is not None:
        _atomic_write(Path(wrd), "".join(" ".join(u.text.split()) + "\n" for u in utterances))


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
