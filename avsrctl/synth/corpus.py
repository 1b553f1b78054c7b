"""`avsrctl demo-data`: a synthetic audio-visual corpus with GRID's grammar.

Sentences follow GRID (command colour preposition letter digit adverb, e.g. "bin blue at f
two now"). Each speaker is an espeak-ng voice (language, variant, rate, pitch, loudness,
pacing) plus a rendered lower-face look; audio comes from `synth_speech`, the mouth video from
`synth_mouth` (articulation) and `synth_face` (drawing). The layout is AV-HuBERT's:

    OUT/{train,valid,test}.tsv + .wrd    OUT/audio/<id>.wav (16 kHz mono)
    OUT/video/<id>.mp4 (25 fps mouth ROI)    OUT/demo_data.json (settings, for resuming)

The test split uses held-out speakers: voice variants that no training speaker uses and
looks drawn from another random stream, so it measures generalisation to new speakers;
valid is a random slice of the training speakers' utterances. Everything is determined by
the seed: the same settings give the same transcripts, audio bytes and frames whatever
`jobs` is, because each utterance draws from its own seeded generator.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from avsrctl.data.manifest import SAMPLE_RATE, SAMPLES_PER_FRAME, Utterance, write_manifest
from avsrctl.data.synth_face import FaceLook, FaceRenderer, random_look
from avsrctl.data.synth_mouth import mouth_path, mouth_track, write_mouth
from avsrctl.data.synth_speech import (
    Voice,
    WordBank,
    _run,
    build_word_bank,
    ffmpeg_exe,
    installed_mbrola,
    installed_voices,
    speak,
    write_wav,
)
from avsrctl.errors import UsageError

GRAMMAR: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("command", ("bin", "lay", "place", "set")),
    ("colour", ("blue", "green", "red", "white")),
    ("preposition", ("at", "by", "in", "with")),
    ("letter", tuple("abcdefghijklmnopqrstuvxyz")),  # GRID has no "w"
    ("digit", ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")),
    ("adverb", ("again", "now", "please", "soon")),
)
VOCABULARY: tuple[str, ...] = tuple(w for _, words in GRAMMAR for w in words)  # 51 words
# espeak-ng variants; the two pools are disjoint so test speakers are new voices
TRAIN_VARIANTS = ("", "m1", "m2", "m3", "m4", "f1", "f2", "f3", "Andy", "Annie", "paul", "linda")
TEST_VARIANTS = ("m5", "m6", "m7", "f4", "f5", "john", "steph")
# MBROLA voices (`--mbrola`) are split the same way: us3 only ever speaks in test splits
TRAIN_MBROLA = ("mb-en1", "mb-us1", "mb-us2")
TEST_MBROLA = ("mb-us3",)
FORMAT_VERSION = 2  # 2: lower faces framed like real ROI crops (synth_face.py)
SETTINGS_FILE = "demo_data.json"
SPLITS = ("train", "valid", "test")

Progress = Callable[[str, int, int], None]  # (stage, done, total); stages "voices", "utterances"


@dataclass(frozen=True)
class Speaker:
    id: str  # "s01".. for training speakers, "t01".. for held-out test speakers
    voice: Voice
    look: FaceLook
    held_out: bool
    more_looks: tuple[FaceLook, ...] = ()  # --faces-per-speaker > 1: the other faces its utterances get

    @property
    def looks(self) -> tuple[FaceLook, ...]:
        return (self.look, *self.more_looks)


@dataclass(frozen=True)
class UtterancePlan:
    id: str
    split: str
    speaker: int  # index into the corpus's speaker list
    words: tuple[str, ...]
    seed: tuple[int, ...]  # this utterance's own random stream

    @property
    def text(self) -> str:
        return " ".join(self.words)


@dataclass(frozen=True)
class SplitSummary:
    name: str
    n_utterances: int
    n_speakers: int
    seconds: float

    @property
    def hours(self) -> float:
        return self.seconds / 3600


@dataclass(frozen=True)
class CorpusSummary:
    root: Path
    splits: tuple[SplitSummary, ...]
    generated: int  # utterances written by this run
    reused: int  # utterances found complete from an earlier run with the same settings
    elapsed_s: float

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "generated": self.generated,
            "reused": self.reused,
            "elapsed_s": round(self.elapsed_s, 2),
            "splits": {
                s.name: {"utterances": s.n_utterances, "speakers": s.n_speakers, "hours": round(s.hours, 4)}
                for s in self.splits
            },
        }


def sample_sentence(rng: np.random.Generator) -> tuple[str, ...]:
    return tuple(str(words[rng.integers(len(words))]) for _, words in GRAMMAR)


def is_grammatical(text: str) -> bool:
    words = text.split()
    return len(words) == len(GRAMMAR) and all(w in slot for w, (_, slot) in zip(words, GRAMMAR))


def make_speakers(n: int, held_out: bool, seed: int, mbrola: bool = False, faces: int = 1) -> list[Speaker]:
    """`n` speakers from the training or the held-out voice pool, fixed by `seed`.

    With `mbrola`, every second speaker uses an MBROLA voice (cycling through the pool, each
    with its own pitch and rate), so recorded-diphone speech is half the corpus. With `faces` > 1
    each speaker has that many faces (the first is its one face otherwise) and each utterance
    is drawn with one of them (`utterance_look`)."""
    languages, variants = installed_voices()
    wanted = TEST_VARIANTS if held_out else TRAIN_VARIANTS
    pool_variants = [v for v in wanted if v == "" or v in variants] or [""]
    combos = [(lang, var) for var in pool_variants for lang in languages]
    diphone: list[str] = []
    if mbrola:
        wanted_mb = TEST_MBROLA if held_out else TRAIN_MBROLA
        diphone = [v for v in installed_mbrola() if v in wanted_mb]
        if not diphone:
            raise UsageError(
                f"--mbrola: none of the MBROLA voices {', '.join(wanted_mb)} is installed",
                hint="install them with `make voices` (Debian/Ubuntu packages mbrola-en1, mbrola-us1..3)",
            )
    rng = np.random.default_rng([seed, 1 if held_out else 0, 0x5EED])
    order = rng.permutation(len(combos))
    speakers = []
    for i in range(n):
        lang, var = combos[order[i % len(combos)]]
        if diphone and i % 2 == 1:
            lang, var = diphone[(i // 2) % len(diphone)], ""
        voice = Voice(
            language=lang,
            variant=var,
            rate=int(rng.integers(140, 186)),
            pitch=int(rng.integers(30, 71)),
            amplitude=int(rng.integers(70, 131)),
            gap_s=float(rng.uniform(0.02, 0.10)),
        )
        # the look comes from a stream of its own, so a change to the face renderer never changes a voice
        look = random_look(np.random.default_rng([seed, 1 if held_out else 0, 0xFACE, i]))
        more = tuple(
            random_look(np.random.default_rng([seed, 1 if held_out else 0, 0xFACE, i, k])) for k in range(1, faces)
        )
        speakers.append(Speaker(f"{'t' if held_out else 's'}{i + 1:02d}", voice, look, held_out, more))
    return speakers


def utterance_look(plan: UtterancePlan, speaker: Speaker) -> int:
    """Which of the speaker's faces draws this utterance: from a stream of its own, so the audio never depends on it."""
    if not speaker.more_looks:
        return 0
    return int(np.random.default_rng([*plan.seed, 0xFACE]).integers(len(speaker.looks)))


def plan_corpus(n_utterances: int, speakers: list[Speaker], seed: int, valid_fraction: float) -> list[UtterancePlan]:
    """Transcripts and splits; utterances are shared evenly among the speakers."""
    rng = np.random.default_rng([seed, 0xC0DE])
    plans: list[UtterancePlan] = []
    for k, spk in enumerate(speakers):
        count = n_utterances // len(speakers) + (1 if k < n_utterances % len(speakers) else 0)
        for j in range(count):
            split = "test" if spk.held_out else "train"
            plans.append(UtterancePlan(f"{spk.id}_{j:04d}", split, k, sample_sentence(rng), (seed, k, j)))
    train = [i for i, p in enumerate(plans) if p.split == "train"]
    n_valid = min(len(train) - 1, round(valid_fraction * len(train))) if train else 0
    if valid_fraction > 0 and len(train) >= 2:
        n_valid = max(1, n_valid)
    for i in rng.permutation(train)[:n_valid]:
        p = plans[i]
        plans[i] = UtterancePlan(p.id, "valid", p.speaker, p.words, p.seed)
    return plans


# ---------------------------------------------------------------------------- media writing


@lru_cache(maxsize=1)
def _codec_args() -> tuple[str, ...]:
    encoders = _run([ffmpeg_exe(), "-hide_banner", "-encoders"], "ffmpeg -encoders").decode("utf-8", "replace")
    if " libx264 " in encoders:  # one thread keeps the bitstream identical from run to run
        return ("-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-threads", "1")
    return ("-c:v", "mpeg4", "-q:v", "3", "-pix_fmt", "yuv420p", "-threads", "1")


def write_mp4(path: Path, frames: np.ndarray) -> None:
    """(T, H, W, 3) uint8 RGB -> 25 fps mp4 through an ffmpeg pipe (argument list, no shell)."""
    n, h, w, _ = frames.shape
    args = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        "25",
        "-i",
        "pipe:0",
        *_codec_args(),
        "-r",
        "25",
        "-frames:v",
        str(n),
        "-map_metadata",
        "-1",
        "-fflags",
        "+bitexact",
        "-f",
        "mp4",
        str(path),
    ]
    _run(args, f"ffmpeg encode {path}", np.ascontiguousarray(frames).tobytes())


def _paths(root: Path, uid: str) -> tuple[Path, Path]:
    return root / "video" / f"{uid}.mp4", root / "audio" / f"{uid}.wav"


# ---------------------------------------------------------------------------- workers

_BANKS: dict[str, WordBank] = {}
_RENDERERS: dict[tuple[str, int, int], FaceRenderer] = {}


def _init_worker(banks: dict[str, WordBank]) -> None:
    _BANKS.clear()
    _BANKS.update(banks)


def render_utterance(plan: UtterancePlan, speaker: Speaker, bank: WordBank, size: int):
    """Audio, frames and the speech timing of one planned utterance (deterministic in plan.seed)."""
    rng = np.random.default_rng(plan.seed)
    spoken = speak(bank, list(plan.words), speaker.voice, rng)
    track = mouth_track(spoken.visemes, spoken.n_frames, speaker.look, rng)
    face = utterance_look(plan, speaker)
    key = (speaker.id, face, size)
    if key not in _RENDERERS:
        _RENDERERS[key] = FaceRenderer(speaker.looks[face], size)
    frames = _RENDERERS[key].render(track, rng)
    return spoken, track, frames


def _make_one(task: tuple[UtterancePlan, Speaker, int, str]) -> tuple[str, int, bool]:
    plan, speaker, size, root = task
    video, audio = _paths(Path(root), plan.id)
    mouth = mouth_path(video)
    if video.is_file() and audio.is_file():  # complete from an earlier run (files are renamed into place)
        # the frame count is the spoken length, which the plan's seed fixes; no need to render again
        rng = np.random.default_rng(plan.seed)
        spoken = speak(_BANKS[speaker.id], list(plan.words), speaker.voice, rng)
        if not mouth.is_file():  # a corpus written before the parameters were stored: the same seed gives them
            write_mouth(mouth, mouth_track(spoken.visemes, spoken.n_frames, speaker.look, rng))
        return plan.id, spoken.n_frames, True
    spoken, track, frames = render_utterance(plan, speaker, _BANKS[speaker.id], size)
    assert frames.shape[0] == spoken.n_frames and spoken.audio.size == SAMPLES_PER_FRAME * spoken.n_frames
    tmp_v, tmp_a = video.with_name(f".{video.name}.tmp"), audio.with_name(f".{audio.name}.tmp")
    write_mp4(tmp_v, frames)
    write_wav(tmp_a, spoken.audio)
    write_mouth(mouth, track)
    tmp_v.replace(video)
    tmp_a.replace(audio)
    return plan.id, spoken.n_frames, False


def _word_banks(speakers: list[Speaker], plans: list[UtterancePlan], jobs: int, progress: Progress | None):
    """One word bank per speaker with the words it speaks (subprocess-bound: threads suffice)."""
    needed: dict[int, set[str]] = {}
    for p in plans:
        needed.setdefault(p.speaker, set()).update(p.words)
    used = sorted(needed)
    banks = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        built = pool.map(lambda k: build_word_bank(speakers[k].voice, sorted(needed[k])), used)
        for i, (k, bank) in enumerate(zip(used, built), 1):
            banks[speakers[k].id] = bank
            if progress:
                progress("voices", i, len(used))
    return banks


# ---------------------------------------------------------------------------- the corpus


def _check_out(out: Path, settings: dict) -> None:
    """Refuse a non-empty folder unless it is a demo-data corpus made with the same settings."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder", hint="choose a new folder for the corpus")
    if not any(out.iterdir()):
        return
    stamp = out / SETTINGS_FILE
    try:
        previous = json.loads(stamp.read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(
            f"{out} is not empty and is not a demo-data corpus (no readable {SETTINGS_FILE})",
            hint="choose an empty or new folder; demo-data never overwrites other files",
        ) from None
    if previous != settings:
        diff = ", ".join(f"{k} {previous.get(k)!r} (now {v!r})" for k, v in settings.items() if previous.get(k) != v)
        raise UsageError(
            f"{out} holds a demo-data corpus made with other settings: {diff}",
            hint="rerun with the same settings to resume, or choose a new folder",
        )


def generate_corpus(
    out: str | os.PathLike,
    n_utterances: int = 300,
    n_speakers: int = 8,
    n_test_speakers: int = 2,
    seed: int = 0,
    size: int = 96,
    valid_fraction: float = 0.1,
    jobs: int | None = None,
    progress: Progress | None = None,
    *,
    test_only: bool = False,
    mbrola: bool = False,
    faces_per_speaker: int = 1,
) -> CorpusSummary:
    """Write a synthetic GRID-grammar corpus to `out` and return what it holds.

    `n_speakers` counts every speaker; `n_test_speakers` of them are held out for the test
    split. `test_only=True` writes only test.tsv/.wrd: `n_utterances` from `n_test_speakers`
    held-out speakers (use another seed than the training corpus for a fresh test set).
    Reruns with the same settings reuse finished utterances.
    """
    start = time.monotonic()
    jobs = min(2, os.cpu_count() or 1) if jobs is None else jobs
    if n_utterances < 1:
        raise UsageError(f"--utterances must be at least 1, got {n_utterances}")
    if n_test_speakers < 1:
        raise UsageError(f"--test-speakers must be at least 1, got {n_test_speakers}")
    if not test_only and n_test_speakers >= n_speakers:
        raise UsageError(
            f"--test-speakers ({n_test_speakers}) must be fewer than --speakers ({n_speakers})",
            hint="--speakers counts all speakers, including the held-out test speakers",
        )
    total_speakers = n_test_speakers if test_only else n_speakers
    if n_utterances < total_speakers:
        raise UsageError(f"--utterances ({n_utterances}) must be at least the number of speakers ({total_speakers})")
    if size < 16 or size > 512 or size % 2:
        raise UsageError(
            f"--size must be an even number of pixels from 16 to 512, got {size}",
            hint="H.264 with yuv420p needs even sides; LRS3 ROIs are 96",
        )
    if not 0.0 <= valid_fraction < 1.0:
        raise UsageError(f"--valid-fraction must be in [0, 1), got {valid_fraction}")
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if faces_per_speaker < 1:
        raise UsageError(f"--faces-per-speaker must be at least 1, got {faces_per_speaker}")

    out = Path(out).expanduser().resolve()
    settings = {
        "format": FORMAT_VERSION,
        "utterances": n_utterances,
        "speakers": n_speakers,
        "test_speakers": n_test_speakers,
        "seed": seed,
        "size": size,
        "valid_fraction": valid_fraction,
        "test_only": test_only,
    }
    if mbrola:  # recorded only when on, so corpora made before the option still resume
        settings["mbrola"] = True
    if faces_per_speaker != 1:  # likewise
        settings["faces_per_speaker"] = faces_per_speaker
    _check_out(out, settings)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "video").mkdir(parents=True, exist_ok=True)
    (out / SETTINGS_FILE).write_text(
        json.dumps({"generator": "avsrctl demo-data", "settings": settings}, indent=2) + "\n", encoding="utf-8"
    )

    speakers = [] if test_only else make_speakers(n_speakers - n_test_speakers, False, seed, mbrola, faces_per_speaker)
    speakers += make_speakers(n_test_speakers, True, seed, mbrola, faces_per_speaker)
    plans = plan_corpus(n_utterances, speakers, seed, valid_fraction)
    banks = _word_banks(speakers, plans, jobs, progress)

    tasks = [(p, speakers[p.speaker], size, str(out)) for p in plans]
    frames: dict[str, int] = {}
    reused = 0
    results = _map(tasks, jobs, banks)
    for i, (uid, n_frames, was_there) in enumerate(results, 1):
        frames[uid] = n_frames
        reused += was_there
        if progress:
            progress("utterances", i, len(tasks))

    summaries = []
    for split in SPLITS:
        chosen = [p for p in plans if p.split == split]
        if not chosen:
            continue
        rows = []
        for p in chosen:
            video, audio = _paths(out, p.id)
            rows.append(Utterance(p.id, video, audio, frames[p.id], SAMPLES_PER_FRAME * frames[p.id], p.text))
        write_manifest(out / f"{split}.tsv", out / f"{split}.wrd", out, rows)
        summaries.append(
            SplitSummary(
                split, len(rows), len({p.speaker for p in chosen}), sum(u.n_audio_samples for u in rows) / SAMPLE_RATE
            )
        )
    return CorpusSummary(out, tuple(summaries), len(plans) - reused, reused, time.monotonic() - start)


def _map(tasks, jobs: int, banks: dict[str, WordBank]):
    if jobs == 1 or len(tasks) < 8:
        _init_worker(banks)
        yield from map(_make_one, tasks)
        return
    # spawn: the parent may hold threads (progress bars) or torch, which fork does not copy safely
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(banks,)) as pool:
        yield from pool.imap_unordered(_make_one, tasks, chunksize=4)


def settings_of(out: str | os.PathLike) -> dict | None:
    """The settings stored in a demo-data corpus folder (None when it is not one)."""
    try:
        return json.loads((Path(out) / SETTINGS_FILE).read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


__all__ = [
    "GRAMMAR",
    "VOCABULARY",
    "CorpusSummary",
    "SplitSummary",
    "Speaker",
    "UtterancePlan",
    "generate_corpus",
    "is_grammatical",
    "make_speakers",
    "plan_corpus",
    "render_utterance",
    "sample_sentence",
    "settings_of",
]
