"""`avsrctl demo-data`: a synthetic audio-visual corpus with GRID's grammar.

plan.py decides the speakers and who says what in which split; here each planned utterance is
rendered (audio from speech.py, articulation from mouth.py, frames from face.py) and written
through data/media.py. The layout is AV-HuBERT's:

    OUT/{train,valid,test}.tsv + .wrd    OUT/audio/<id>.wav (16 kHz mono)
    OUT/video/<id>.mp4 (25 fps mouth ROI)    OUT/demo_data.json (settings, for resuming)
    OUT/video/<id>.mouth.npy (the rendered mouth parameters, data/mouth_params.py)

Everything is determined by the seed: the same settings give the same transcripts, audio bytes
and frames whatever `jobs` is, because each utterance draws from its own seeded generator.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from avsrctl.data.manifest import SAMPLE_RATE, SAMPLES_PER_FRAME, Utterance, write_manifest
from avsrctl.data.media import save_audio, save_video
from avsrctl.data.mouth_params import mouth_path, write_mouth
from avsrctl.errors import UsageError
from avsrctl.synth.face import FaceRenderer
from avsrctl.synth.mouth import mouth_track
from avsrctl.synth.plan import Speaker, UtterancePlan, make_speakers, plan_corpus, utterance_look
from avsrctl.synth.speech import WordBank, build_word_bank, speak

FORMAT_VERSION = 2  # 2: lower faces framed like real ROI crops (face.py)
SETTINGS_FILE = "demo_data.json"
SPLITS = ("train", "valid", "test")

Progress = Callable[[str, int, int], None]  # (stage, done, total); stages "voices", "utterances"


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


# ---------------------------------------------------------------------------- media writing


def write_mp4(path: str | os.PathLike, frames: np.ndarray) -> None:
    """(T, H, W, 3) uint8 RGB -> 25 fps mp4 as demo-data writes its clips: H.264 at CRF 20, the same bytes on every run."""
    save_video(path, frames, crf=20, reproducible=True)


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
    # each file is written under a temporary name and renamed; the wav comes last, so an utterance
    # whose video and audio both exist is complete
    write_mouth(mouth, track)
    write_mp4(video, frames)
    save_audio(audio, spoken.audio)
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


__all__ = ["CorpusSummary", "SplitSummary", "generate_corpus", "render_utterance", "settings_of", "write_mp4"]
