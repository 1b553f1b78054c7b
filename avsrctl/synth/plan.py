"""The plan of a synthetic corpus: GRID's grammar, the speakers, and who says what in which split.

Sentences follow GRID (command colour preposition letter digit adverb, e.g. "bin blue at f
two now"). Each speaker is an espeak-ng voice (language, variant, rate, pitch, loudness,
pacing) plus one or more rendered lower-face looks. The test split uses held-out speakers:
voice variants that no training speaker uses and looks drawn from another random stream, so it
measures generalisation to new speakers; valid is a random slice of the training speakers'
utterances. Every choice here is drawn from generators seeded by the corpus seed, and each
utterance gets a seed of its own (`UtterancePlan.seed`) for everything corpus.py renders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avsrctl.errors import UsageError
from avsrctl.synth.face import FaceLook, random_look
from avsrctl.synth.speech import Voice, installed_mbrola, installed_voices

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
