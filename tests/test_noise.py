"""Noise at an exact SNR, deterministic by seed; babble never contains the utterance itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avsrctl.data.manifest import Manifest, Utterance
from avsrctl.data.noise import ManifestNoiser, NoiseSpec, add_noise, babble, snr_db
from avsrctl.errors import MediaError, UsageError


def speechlike(seed: int, n: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + seed)  # syllable-rate loudness changes
    return (0.3 * envelope * np.sin(2 * np.pi * (150 + 20 * seed) * t) + 0.01 * rng.standard_normal(n)).astype(
        np.float32
    )


@pytest.mark.parametrize("target", [-5.0, 0.0, 10.0, 20.0])
def test_white_noise_snr_is_exact(target):
    clean = speechlike(1)
    noisy = add_noise(clean, target, "white", np.random.default_rng(0))
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert snr_db(clean, noisy) == pytest.approx(target, abs=0.1)


@pytest.mark.parametrize("target", [0.0, 5.0, 15.0])
def test_babble_snr_is_exact(target):
    clean = speechlike(1)
    pool = [speechlike(s, n) for s, n in [(2, 9000), (3, 20000), (4, 16000), (5, 5000), (6, 12000)]]
    noisy = add_noise(clean, target, "babble", np.random.default_rng(0), babble_pool=pool)
    assert snr_db(clean, noisy) == pytest.approx(target, abs=0.1)


def test_babble_mixes_several_talkers_looped_to_length():
    pool = [np.sin(2 * np.pi * f * np.arange(4000) / 16000) for f in (200, 700, 1900, 3100)]
    mix = babble(16000, pool, np.random.default_rng(3), talkers=3)
    assert mix.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(mix))
    freqs = np.fft.rfftfreq(16000, 1 / 16000)
    present = [f for f in (200, 700, 1900, 3100) if spectrum[np.argmin(np.abs(freqs - f))] > 0.1 * spectrum.max()]
    assert len(present) == 3  # exactly the three talkers drawn, each looped over the whole length
    assert np.abs(mix[-4000:]).max() > 0.5


def test_deterministic_by_seed():
    clean = speechlike(1)
    a = add_noise(clean, 5, "white", np.random.default_rng(7))
    b = add_noise(clean, 5, "white", np.random.default_rng(7))
    c = add_noise(clean, 5, "white", np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_silence_and_bad_arguments():
    silent = np.zeros(1000, np.float32)
    np.testing.assert_array_equal(add_noise(silent, 0, "white", np.random.default_rng(0)), silent)
    with pytest.raises(UsageError, match="babble noise needs a pool"):
        add_noise(speechlike(1), 0, "babble", np.random.default_rng(0))
    with pytest.raises(UsageError, match="unknown noise kind 'pink'"):
        add_noise(speechlike(1), 0, "pink")
    with pytest.raises(MediaError, match="at least one non-silent"):
        babble(100, [np.zeros(10)], np.random.default_rng(0))
    with pytest.raises(UsageError, match=r"probability must be in \[0, 1\]"):
        NoiseSpec("white", 0, 1.5)


def test_noise_spec_from_config():
    from avsrctl.config import DataConfig

    assert NoiseSpec.from_config(DataConfig()) is None
    spec = NoiseSpec.from_config(DataConfig(noise_kind="babble", noise_snr_db=5, noise_prob=0.5))
    assert spec == NoiseSpec("babble", 5.0, 0.5)


# ------------------------------------------------------------------ per manifest


def fake_manifest(n: int) -> tuple[Manifest, dict[Path, np.ndarray]]:
    """A manifest whose 'audio files' are served from memory by a fake loader."""
    audio = {Path(f"/corpus/u{i}.wav"): speechlike(i, 8000 + 500 * i) for i in range(n)}
    utts = [Utterance(f"u{i}", None, p, 0, len(a)) for i, (p, a) in enumerate(audio.items())]
    return Manifest(Path("/corpus"), Path("/corpus/test.tsv"), None, utts), audio


def test_manifest_babble_never_uses_the_utterance_itself():
    manifest, audio = fake_manifest(5)
    loaded: list[Path] = []

    def loader(path):
        loaded.append(path)
        return audio[path]

    noiser = ManifestNoiser(manifest, NoiseSpec("babble", 0.0), seed=1, loader=loader)
    for index in range(5):
        for epoch in range(4):
            loaded.clear()
            pool = noiser.babble_pool(index, noiser.rng(index, epoch), 6)
            assert manifest[index].audio not in loaded and 1 <= len(pool) <= 4
            clean = audio[manifest[index].audio]
            assert snr_db(clean, noiser(index, clean, epoch)) == pytest.approx(0.0, abs=0.1)


def test_manifest_noise_is_reproducible_per_index_and_epoch():
    manifest, audio = fake_manifest(4)
    make = lambda: ManifestNoiser(manifest, NoiseSpec("babble", 5.0), seed=3, loader=audio.__getitem__)  # noqa: E731
    first, second = make(), make()
    clean = audio[manifest[2].audio]
    order_a = [first(i, audio[manifest[i].audio]) for i in (0, 1, 2)][2]
    order_b = second(2, clean)  # read alone, in another order: same noise
    np.testing.assert_array_equal(order_a, order_b)
    assert not np.array_equal(second(2, clean, epoch=1), order_b)


def test_probability_gates_noise():
    manifest, audio = fake_manifest(3)
    clean = audio[manifest[0].audio]
    never = ManifestNoiser(manifest, NoiseSpec("white", 0.0, prob=0.0), loader=audio.__getitem__)
    np.testing.assert_array_equal(never(0, clean), clean)
    half = ManifestNoiser(manifest, NoiseSpec("white", 0.0, prob=0.5), loader=audio.__getitem__)
    noisy = sum(not np.array_equal(half(0, clean, epoch), clean) for epoch in range(40))
    assert 10 <= noisy <= 30


def test_babble_needs_two_utterances():
    manifest, _ = fake_manifest(1)
    with pytest.raises(UsageError, match="at least 2 utterances"):
        ManifestNoiser(manifest, NoiseSpec("babble", 0.0))


def test_manifest_noise_on_audio_files_is_seeded_and_at_the_snr(tmp_path):
    from avsrctl.data.media import load_audio, save_audio

    utts = []
    for i in range(3):
        save_audio(tmp_path / f"u{i}.wav", speechlike(i, 6000))
        utts.append(Utterance(f"u{i}", None, tmp_path / f"u{i}.wav", 0, 6000))
    manifest = Manifest(tmp_path, tmp_path / "test.tsv", None, utts)

    def noisy_run():
        noiser = ManifestNoiser(manifest, NoiseSpec("babble", 10.0, 1.0), seed=5)
        return [(u.id, noiser(i, load_audio(u.audio))) for i, u in enumerate(manifest)]

    run1, run2 = noisy_run(), noisy_run()
    assert [k for k, _ in run1] == ["u0", "u1", "u2"]
    for (_, a), (_, b), i in zip(run1, run2, range(3)):
        np.testing.assert_array_equal(a, b)
        clean = speechlike(i, 6000)
        assert snr_db(clean, a) == pytest.approx(10.0, abs=0.1)  # 16-bit wav quantisation is far below 0.1 dB


def test_snr_spread_draws_each_utterance_within_the_range():
    manifest, audio = fake_manifest(3)
    clean = audio[manifest[0].audio]
    noiser = ManifestNoiser(manifest, NoiseSpec("white", 0.0, snr_spread=5.0), loader=audio.__getitem__)
    measured = [snr_db(clean, noiser(0, clean, epoch)) for epoch in range(30)]
    assert all(-5.1 <= m <= 5.1 for m in measured)
    assert max(measured) - min(measured) > 5  # really spread, not one fixed SNR
    with pytest.raises(UsageError, match="spread must be a non-negative"):
        NoiseSpec("white", 0.0, snr_spread=-1.0)
    from avsrctl.config import DataConfig

    spec = NoiseSpec.from_config(DataConfig(noise_kind="white", noise_prob=1.0, noise_snr_spread_db=5))
    assert spec.snr_spread == 5.0
