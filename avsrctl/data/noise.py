"""Additive noise at a chosen signal-to-noise ratio: white noise or babble from other talkers.

The SNR is exact by construction: the noise is scaled so that
10 * log10(mean(signal^2) / mean(noise^2)) equals `snr_db` over the whole utterance.
Babble is the sum of several other utterances (each looped or cut to the length, started at
a random offset, and brought to equal power first so no talker dominates).

Everything is deterministic given a seed: `ManifestNoiser` derives one random generator per
(seed, epoch, utterance index), so noisy training is reproducible across runs and worker
processes, and `decode --snr` sees the same noise every time. Its babble is drawn from other
utterances of the same manifest, never the utterance itself.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from avsrctl.errors import MediaError, UsageError

NOISE_KINDS = ("white", "babble")
BABBLE_TALKERS = (3, 6)  # inclusive range of talkers mixed into one babble track


@dataclass(frozen=True)
class NoiseSpec:
    """Noise for training or evaluation: kind, SNR in dB, and the probability an utterance gets it.
    With `snr_spread` > 0 each noisy utterance draws its SNR uniformly from snr_db +- snr_spread."""

    kind: str = "white"
    snr_db: float = 0.0
    prob: float = 1.0
    snr_spread: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise UsageError(f"unknown noise kind {self.kind!r}; choose one of {', '.join(NOISE_KINDS)}")
        if not 0.0 <= self.prob <= 1.0:
            raise UsageError(f"noise probability must be in [0, 1], got {self.prob}")
        if not np.isfinite(self.snr_db):
            raise UsageError(f"noise SNR must be a finite number of dB, got {self.snr_db}")
        if not (np.isfinite(self.snr_spread) and self.snr_spread >= 0):
            raise UsageError(f"noise SNR spread must be a non-negative number of dB, got {self.snr_spread}")

    @classmethod
    def from_config(cls, data) -> "NoiseSpec | None":
        """From `DataConfig` (noise_kind, noise_snr_db, noise_prob, noise_snr_spread_db); None when off."""
        if data.noise_kind == "none" or data.noise_prob <= 0:
            return None
        return cls(data.noise_kind, float(data.noise_snr_db), float(data.noise_prob), float(data.noise_snr_spread_db))


def power(x: np.ndarray) -> float:
    """Mean square of a signal (float64 accumulation)."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.mean(x * x)) if x.size else 0.0


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Measured SNR of `noisy` against `clean`: 10 log10(P_clean / P_(noisy - clean))."""
    noise = np.asarray(noisy, np.float64) - np.asarray(clean, np.float64)
    return 10.0 * np.log10(power(clean) / power(noise))


def _fit(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Loop or cut `x` to `n` samples, starting at a random offset."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    start = int(rng.integers(len(x)))
    reps = -(-(start + n) // len(x))  # ceil
    return np.tile(x, reps)[start : start + n]


def babble(n: int, pool: Sequence[np.ndarray], rng: np.random.Generator, talkers: int | None = None) -> np.ndarray:
    """Sum of several talkers from `pool`, each at equal power, looped/cut to n samples, float64."""
    usable = [p for p in pool if p is not None and len(p) and power(p) > 0]
    if not usable:
        raise MediaError("babble noise needs at least one non-silent utterance in the pool")
    if talkers is None:
        talkers = int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1))
    picks = rng.choice(len(usable), size=min(talkers, len(usable)), replace=False)
    mix = np.zeros(n, dtype=np.float64)
    for k in picks:
        track = _fit(usable[k], n, rng)
        mix += track / np.sqrt(power(track) + 1e-20)
    return mix


def add_noise(
    audio: np.ndarray,
    snr_db: float,
    kind: str = "white",
    rng: np.random.Generator | None = None,
    babble_pool: Sequence[np.ndarray] | None = None,
    *,
    talkers: int | None = None,
) -> np.ndarray:
    """Return float32 `audio + noise` with 10 log10(P_audio / P_noise) == snr_db.

    Silent audio (zero power) is returned unchanged: no SNR is defined for it. The result is
    not clipped (samples may leave [-1, 1] at low SNR; the encoders take floats). Babble mixes
    `talkers` utterances of `babble_pool` (default: a random 3 to 6, at most the pool size).
    """
    if kind not in NOISE_KINDS:
        raise UsageError(f"unknown noise kind {kind!r}; choose one of {', '.join(NOISE_KINDS)}")
    rng = rng if rng is not None else np.random.default_rng(0)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise MediaError(f"add_noise expects mono audio (S,), got shape {audio.shape}")
    p_signal = power(audio)
    if p_signal == 0.0:
        return audio.copy()
    if kind == "white":
        noise = rng.standard_normal(audio.shape[0])
    else:
        if not babble_pool:
            raise UsageError("babble noise needs a pool of other utterances (babble_pool)")
        noise = babble(audio.shape[0], babble_pool, rng, talkers)
    noise *= np.sqrt(p_signal / (power(noise) * 10.0 ** (snr_db / 10.0)))
    return (audio.astype(np.float64) + noise).astype(np.float32)


class ManifestNoiser:
    """Deterministic noise for the utterances of one manifest (training augmentation and `decode --snr`).

    `noiser(index, audio, epoch)` returns the noisy audio, or the clean audio when the
    utterance's draw misses `spec.prob`. The generator is seeded by (seed, epoch, index) so
    the outcome never depends on the order utterances are read in or on the worker reading
    them. Babble talkers are other utterances of the manifest (decoded once and cached).
    """

    def __init__(self, manifest, spec: NoiseSpec, seed: int = 0, *, cache_size: int = 256, loader=None):
        if spec.kind == "babble":
            if not manifest.has_audio:
                raise UsageError(f"{manifest.tsv}: babble noise needs audio for every utterance of the manifest")
            if len(manifest) < 2:
                raise UsageError(f"{manifest.tsv}: babble noise needs at least 2 utterances (it mixes other talkers)")
        self.manifest, self.spec, self.seed = manifest, spec, int(seed)
        self._cache: OrderedDict[int, np.ndarray | None] = OrderedDict()
        self._cache_size = cache_size
        if loader is None:
            from avsrctl.data.media import load_audio as loader
        self._load = loader

    def rng(self, index: int, epoch: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(epoch), int(index), 0x5EED])

    def remember(self, index: int, audio: np.ndarray | None) -> None:
        """Keep an utterance's clean audio for later babble draws (saves decoding it again)."""
        self._cache[index] = audio
        self._cache.move_to_end(index)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _audio(self, index: int) -> np.ndarray | None:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        try:
            audio = self._load(self.manifest[index].audio)
        except MediaError:
            audio = None  # an undecodable talker simply drops out of the babble
        self.remember(index, audio)
        return audio

    def babble_pool(self, index: int, rng: np.random.Generator, talkers: int) -> list[np.ndarray]:
        """`talkers` other utterances (fewer when the manifest is small), chosen by `rng`; never `index`."""
        others = np.delete(np.arange(len(self.manifest)), index)
        chosen = rng.choice(others, size=min(talkers, len(others)), replace=False)
        return [a for i in chosen if (a := self._audio(int(i))) is not None]

    def __call__(self, index: int, audio: np.ndarray, epoch: int = 0) -> np.ndarray:
        if self.spec.kind == "babble":
            self.remember(index, np.asarray(audio, dtype=np.float32))
        rng = self.rng(index, epoch)
        if rng.random() >= self.spec.prob:
            return np.asarray(audio, dtype=np.float32)
        snr = self.spec.snr_db
        if self.spec.snr_spread > 0:  # drawn only then, so a fixed SNR keeps its noise streams
            snr += float(rng.uniform(-self.spec.snr_spread, self.spec.snr_spread))
        if self.spec.kind == "white":
            return add_noise(audio, snr, "white", rng)
        pool = self.babble_pool(index, rng, int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1)))
        return add_noise(audio, snr, "babble", rng, pool, talkers=len(pool))
