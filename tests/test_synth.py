from __future__ import annotations

import json
import shutil
import wave

import numpy as np
import pytest

from avsrctl.cli.main import run
from avsrctl.data import media
from avsrctl.data.manifest import SAMPLE_RATE, SAMPLES_PER_FRAME, read_manifest
from avsrctl.data.media import load_video
from avsrctl.data.mouth_params import OPEN, PARAMS, PRESS, mouth_path
from avsrctl.errors import UsageError
from avsrctl.synth import corpus as synth_corpus
from avsrctl.synth import plan as synth_plan
from avsrctl.synth.corpus import generate_corpus, render_utterance, settings_of, write_mp4
from avsrctl.synth.plan import (
    TEST_VARIANTS,
    TRAIN_VARIANTS,
    UtterancePlan,
    is_grammatical,
    make_speakers,
    plan_corpus,
    utterance_look,
)
from avsrctl.synth.speech import build_word_bank, installed_mbrola, parse_phonemes

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

SMALL = dict(n_utterances=12, n_speakers=4, n_test_speakers=1, seed=0, size=32, valid_fraction=0.1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    summary = generate_corpus(out, **SMALL, jobs=1)
    return out, summary


def _manifests(root):
    return {s: read_manifest(root / f"{s}.tsv") for s in ("train", "valid", "test")}


def _decode(path, size):
    """Frames of an mp4 as (T, size, size, 3) uint8."""
    frames = load_video(path)
    assert frames.shape[1:] == (size, size, 3)
    return frames


def test_layout_splits_and_speakers(corpus):
    root, summary = corpus
    for name in ("train.tsv", "train.wrd", "valid.tsv", "valid.wrd", "test.tsv", "test.wrd", "demo_data.json"):
        assert (root / name).is_file(), name
    m = _manifests(root)
    assert sum(len(x) for x in m.values()) == 12
    assert {s.name: s.n_utterances for s in summary.splits} == {k: len(v) for k, v in m.items()}
    train_spk = {u.id.split("_")[0] for u in m["train"]}
    assert train_spk == {"s01", "s02", "s03"}
    assert {u.id.split("_")[0] for u in m["valid"]} <= train_spk and len(m["valid"]) == 1
    assert {u.id.split("_")[0] for u in m["test"]} == {"t01"}  # held-out speaker only
    assert summary.generated == 12 and summary.reused == 0
    assert settings_of(root)["seed"] == 0


def test_audio_is_16k_mono_and_640_samples_per_frame(corpus):
    root, _ = corpus
    for u in (u for m in _manifests(root).values() for u in m):
        with wave.open(str(u.audio)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SAMPLE_RATE, 1, 2)
            assert w.getnframes() == u.n_audio_samples == SAMPLES_PER_FRAME * u.n_video_frames
            x = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        assert np.abs(x).max() > 3000  # speech, not silence
        assert 1.5 < u.seconds < 6.0


def test_video_decodes_with_manifest_frame_count(corpus):
    root, _ = corpus
    for u in _manifests(root)["test"]:
        frames = _decode(u.video, 32)
        assert frames.shape == (u.n_video_frames, 32, 32, 3)
        assert frames.std() > 5  # not a blank clip


def test_transcripts_follow_grid_grammar(corpus):
    root, _ = corpus
    texts = [u.text for m in _manifests(root).values() for u in m]
    assert all(is_grammatical(t) for t in texts), texts
    assert not is_grammatical("bin blue at w two now")  # GRID has no letter w
    assert len(set(texts)) > 6


def test_same_seed_same_corpus_whatever_the_jobs(corpus, tmp_path):
    root, _ = corpus
    generate_corpus(tmp_path, **SMALL, jobs=2)
    assert (root / "train.wrd").read_text() == (tmp_path / "train.wrd").read_text()
    assert (root / "test.tsv").read_text().splitlines()[1:] == (tmp_path / "test.tsv").read_text().splitlines()[1:]
    for u in _manifests(root)["train"]:
        assert (tmp_path / "audio" / u.audio.name).read_bytes() == u.audio.read_bytes()
        assert np.array_equal(_decode(tmp_path / "video" / u.video.name, 32), _decode(u.video, 32))


def test_other_seed_differs(corpus, tmp_path):
    root, _ = corpus
    generate_corpus(tmp_path, **{**SMALL, "seed": 1}, jobs=1)
    assert (root / "train.wrd").read_text() != (tmp_path / "train.wrd").read_text()
    a = (root / "audio" / "s01_0000.wav").read_bytes()
    assert a != (tmp_path / "audio" / "s01_0000.wav").read_bytes()


def test_rerun_reuses_and_other_settings_are_refused(corpus, tmp_path):
    root, _ = corpus
    again = generate_corpus(root, **SMALL, jobs=1)
    assert (again.generated, again.reused) == (0, 12)
    with pytest.raises(UsageError, match="other settings: seed 0 \\(now 5\\)"):
        generate_corpus(root, **{**SMALL, "seed": 5}, jobs=1)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a demo-data corpus"):
        generate_corpus(tmp_path, **SMALL, jobs=1)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_test_only_uses_held_out_voices(tmp_path):
    summary = generate_corpus(tmp_path, 3, 4, 1, seed=7, size=16, jobs=1, test_only=True)
    assert [s.name for s in summary.splits] == ["test"]
    assert not (tmp_path / "train.tsv").exists()
    assert len(read_manifest(tmp_path / "test.tsv")) == 3
    train = {s.voice.variant for s in make_speakers(12, False, 7)}
    test = {s.voice.variant for s in make_speakers(5, True, 7)}
    assert train <= set(TRAIN_VARIANTS) and test <= set(TEST_VARIANTS) and not train & test


def test_bad_options_are_usage_errors(tmp_path):
    for kwargs, msg in [
        ({"size": 33}, "--size"),
        ({"n_test_speakers": 4}, "--test-speakers"),
        ({"valid_fraction": 1.0}, "--valid-fraction"),
        ({"n_utterances": 2}, "--utterances"),
    ]:
        with pytest.raises(UsageError, match=msg):
            generate_corpus(tmp_path / "x", **{**SMALL, **kwargs}, jobs=1)


def test_phoneme_strings_map_to_visemes():
    assert parse_phonemes("b_'I_n") == (("bilabial", 0.6), ("I", 0.8), ("alveolar", 0.6))
    names = [v for v, _ in parse_phonemes("w_'aI2_t")]  # variant digits dropped, diphthong split
    assert names == ["round", "a", "I", "alveolar"]
    assert [v for v, _ in parse_phonemes("w_'0_n")][1] == "O"  # "0" is a vowel, not a digit mark


def test_mouth_closes_for_b_and_opens_for_vowels():
    speaker = make_speakers(1, False, 3)[0]
    words = ("bin", "blue", "at", "b", "five", "please")
    bank = build_word_bank(speaker.voice, sorted(set(words)))
    spoken, track, frames = render_utterance(UtterancePlan("x", "train", 0, words, (3, 0, 0)), speaker, bank, 64)
    assert frames.shape == (spoken.n_frames, 64, 64, 3) and len(track) == spoken.n_frames
    t = (np.arange(spoken.n_frames) + 0.5) / 25
    during = lambda names: np.array([any(v in names and a <= x < b for v, a, b in spoken.visemes) for x in t])  # noqa: E731
    closed, wide = during({"bilabial"}), during({"a"})
    assert closed.any() and wide.any()
    assert track[closed, OPEN].max() < 0.1 and track[closed, PRESS].mean() > 0.7
    assert track[wide, OPEN].mean() > 0.5
    # pixels: the dark mouth cavity grows with the opening parameter
    luma = frames[:, 22:56, 10:54].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # (T, h, w)
    # share of pixels below the nostrils much darker than the skin: the open cavity, not the lip seam
    dark = (luma < 0.3 * np.median(luma, axis=(1, 2), keepdims=True)).mean(axis=(1, 2))  # (T,)
    assert dark[wide].mean() > 0.03 and dark[closed].mean() < 0.01
    assert np.corrcoef(track[:, OPEN], dark)[0, 1] > 0.8


def test_cli_writes_corpus_and_json_summary(tmp_path, capsys):
    out = tmp_path / "c"
    assert (
        run(
            [
                "demo-data",
                str(out),
                "-n",
                "6",
                "--speakers",
                "3",
                "--test-speakers",
                "1",
                "--size",
                "16",
                "-j",
                "1",
                "--format",
                "json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert sum(s["utterances"] for s in summary["splits"].values()) == 6
    assert run(["demo-data", str(out), "-n", "9", "--size", "16"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_mbrola_speakers_alternate_and_keep_train_and_test_voices_apart(monkeypatch):
    monkeypatch.setattr(synth_plan, "installed_mbrola", lambda: ["mb-en1", "mb-us1", "mb-us2", "mb-us3"])
    plain = make_speakers(6, False, 3)
    train = make_speakers(6, False, 3, mbrola=True)
    test = make_speakers(4, True, 3, mbrola=True)
    assert [s.voice.language for s in train[1::2]] == ["mb-en1", "mb-us1", "mb-us2"]
    assert [s.voice.language for s in test[1::2]] == ["mb-us3", "mb-us3"]
    assert [s.voice for s in train[0::2]] == [s.voice for s in plain[0::2]]  # espeak speakers unchanged
    assert [s.look for s in train] == [s.look for s in plain]  # and every mouth looks the same
    monkeypatch.setattr(synth_plan, "installed_mbrola", lambda: [])
    with pytest.raises(UsageError, match="--mbrola: none of the MBROLA voices"):
        make_speakers(4, False, 3, mbrola=True)


@pytest.mark.skipif(not installed_mbrola(), reason="no MBROLA English voices installed (make voices)")
def test_mbrola_corpus_speaks_and_records_the_setting(tmp_path):
    generate_corpus(tmp_path, 10, 5, 2, seed=0, size=16, jobs=1, valid_fraction=0.0, mbrola=True)
    assert settings_of(tmp_path)["mbrola"] is True
    rows = [u for split in ("train", "test") for u in read_manifest(tmp_path / f"{split}.tsv")]
    diphone = [u for u in rows if u.id.startswith(("s02", "t02"))]  # every second speaker: MBROLA
    assert len(diphone) == 4
    for u in diphone:
        with wave.open(str(u.audio)) as w:
            assert w.getframerate() == SAMPLE_RATE
            x = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        assert x.size == u.n_audio_samples and np.abs(x).max() > 1000  # speech, not silence
    with pytest.raises(UsageError, match="mbrola"):
        generate_corpus(tmp_path, 10, 5, 2, seed=0, size=16, jobs=1, valid_fraction=0.0)  # now without it


def test_audio_does_not_depend_on_the_face_renderer(monkeypatch):
    """Voices and utterance audio come before any face draw: another look or renderer keeps every sample."""
    words = ("set", "red", "by", "k", "seven", "now")
    plan = UtterancePlan("x", "train", 0, words, (4, 0, 0))
    speakers = make_speakers(3, False, 4)
    bank = build_word_bank(speakers[0].voice, sorted(set(words)))
    spoken, _, _ = render_utterance(plan, speakers[0], bank, 32)

    def other_look(rng):
        rng.random(50)  # draws a different amount from its stream
        return speakers[1].look

    monkeypatch.setattr(synth_plan, "random_look", other_look)
    monkeypatch.setattr(
        synth_corpus.FaceRenderer, "render", lambda self, track, rng: rng.random((len(track), 32, 32, 3))
    )
    synth_corpus._RENDERERS.clear()
    again = make_speakers(3, False, 4)
    assert [s.voice for s in again] == [s.voice for s in speakers]
    assert again[0].look != speakers[0].look
    spoken2, _, _ = render_utterance(plan, again[0], bank, 32)
    synth_corpus._RENDERERS.clear()
    assert np.array_equal(spoken.audio, spoken2.audio)


def test_each_clip_stores_its_mouth_parameters_and_a_rerun_restores_missing_ones(corpus):
    root, _ = corpus
    for u in _manifests(root)["train"]:
        track = np.load(mouth_path(u.video))
        assert track.dtype == np.float16 and track.shape == (u.n_frames, len(PARAMS))
        assert 0.0 <= track.min() and track.max() <= 1.0
    first = _manifests(root)["train"][0]
    stored = np.load(mouth_path(first.video))
    assert stored[:, OPEN].std() > 0.05  # the mouth moves
    mouth_path(first.video).unlink()  # a corpus written before the parameters were stored
    again = generate_corpus(root, **SMALL, jobs=1)
    assert again.reused == 12  # nothing rendered again
    assert np.array_equal(np.load(mouth_path(first.video)), stored)  # the same seed gives the same track


def test_more_faces_per_speaker_change_the_video_and_never_the_audio(corpus, tmp_path):
    root, _ = corpus
    generate_corpus(tmp_path, **SMALL, jobs=1, faces_per_speaker=4)
    assert settings_of(tmp_path)["faces_per_speaker"] == 4 and "faces_per_speaker" not in settings_of(root)
    speakers = make_speakers(3, False, 0, faces=4)
    assert all(len(s.looks) == 4 and s.looks[0] == make_speakers(3, False, 0)[i].look for i, s in enumerate(speakers))
    plans = plan_corpus(12, speakers + make_speakers(1, True, 0, faces=4), 0, 0.1)
    faces = [utterance_look(p, speakers[p.speaker]) for p in plans if p.speaker < 3]
    assert len(set(faces)) > 1  # a speaker's utterances show several faces
    other_face = 0
    for u in _manifests(root)["train"]:
        assert (tmp_path / "audio" / u.audio.name).read_bytes() == u.audio.read_bytes()
        other_face += not np.array_equal(_decode(tmp_path / "video" / u.video.name, 32), _decode(u.video, 32))
    assert other_face > 0
    with pytest.raises(UsageError, match="faces-per-speaker"):
        generate_corpus(tmp_path / "x", **SMALL, jobs=1, faces_per_speaker=0)


def test_avsrctl_ffmpeg_runs_the_speech_resampler_and_the_clip_writer(tmp_path, monkeypatch):
    """$AVSRCTL_FFMPEG chooses the binary for demo-data too (it used to run imageio-ffmpeg's whatever it said)."""
    real, log = media.ffmpeg_exe(), tmp_path / "calls.log"
    wrapper = tmp_path / "ffmpeg-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("AVSRCTL_FFMPEG", str(wrapper))
    media.ffmpeg_exe.cache_clear()
    try:
        voice = make_speakers(1, False, 0)[0].voice  # an espeak-ng voice: 22.05 kHz, resampled by ffmpeg
        bank = build_word_bank(voice, ["bin", "blue"])
        assert bank.audio["bin"].size > 0 and "s16le" in log.read_text()
        write_mp4(tmp_path / "clip.mp4", np.zeros((5, 16, 16, 3), np.uint8))
        assert "clip" in log.read_text() and load_video(tmp_path / "clip.mp4").shape == (5, 16, 16, 3)
    finally:
        media.ffmpeg_exe.cache_clear()
