"""The GRID recipe (recipes/grid.py): its training stages, and its report (recipes/grid_report.py): what it
reads back from eval folders and writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))

import grid  # noqa: E402
import grid_report  # noqa: E402


def _scored(errors: list[int], words: int) -> dict:
    """A system's figures as the recipes' eval folders give them: WER over `words`, errors per utterance."""
    return {
        "wer": sum(errors) / words,
        "errors": sum(errors),
        "ref_words": words,
        "utterance_errors": {f"u{i}": e for i, e in enumerate(errors)},
    }


def _stub_training(monkeypatch, recipe) -> list[list[str]]:
    """`recipe.run` writes each stage's `final` and records its command; every start checkpoint
    reads as an audio path with token compression 4. Returns the recorded commands."""
    import types

    import avsrctl.checkpoint

    commands = []

    def run(argv, capture=False):
        out = Path(argv[argv.index("--output") + 1])
        (out / "final").mkdir(parents=True)
        commands.append([str(a) for a in argv])
        return "", 1.0, 10

    monkeypatch.setattr(recipe, "run", run)
    k = types.SimpleNamespace(model=types.SimpleNamespace(audio_connector=types.SimpleNamespace(compression=4)))
    monkeypatch.setattr(avsrctl.checkpoint, "read_checkpoint_config", lambda path: k)
    return commands


def test_each_training_stage_is_one_record_and_runs_in_order_from_the_ones_it_names(tmp_path, monkeypatch):
    import types

    commands = _stub_training(monkeypatch, grid)
    args = types.SimpleNamespace(epochs=4, video_ctc_epochs=16, video_epochs=6, both_epochs=3, lip_sync_weight=0.0)
    timings = {}
    models = grid.train_stages(args, tmp_path, tmp_path / "corpus", ["audio", "video", "both"], timings)
    assert models == {m: tmp_path / f"train-{m}" / "final" for m in ("audio", "video", "both")}
    assert [c[c.index("--output") + 1] for c in commands] == [str(tmp_path / f"train-{s.name}") for s in grid.STAGES]
    assert list(timings) == ["train-audio", "train-video-ctc", "train-video", "train-both"]
    assert timings["train-both"]["epochs"] == 3
    both = commands[-1]
    init = [both[i + 1] for i, a in enumerate(both) if a == "--init-from"]
    assert init == [str(tmp_path / "train-video" / "final"), str(tmp_path / "train-audio" / "final")]
    assert "model.audio_connector.compression=4" in both and "data.noise_kind=babble" in both
    assert grid.TRAIN_SETTINGS["both"] == grid.STAGES[-1].settings  # recipes/token_rate.py's view
    # a rerun finds every stage's `final` and trains nothing again
    commands.clear()
    assert grid.train_stages(args, tmp_path, tmp_path / "corpus", ["audio", "video", "both"], {}) == models
    assert commands == []


def _eval_folder(folder: Path, rows: list[dict], **summary) -> Path:
    folder.mkdir(parents=True)
    (folder / "wer.json").write_text(json.dumps(summary))
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_lips_counts_the_utterances_whose_lips_were_set_aside(tmp_path):
    rows = [{"id": "a", "video_weight": 0.0, "lip_sync": 0.2}, {"id": "b", "video_weight": 0.4, "lip_sync": 0.9}]
    rows.append({"id": "c", "video_weight": 0.0, "lip_sync": 0.49})
    folder = _eval_folder(
        tmp_path / "e", rows, mean_video_weight=0.1333, mean_lip_sync=0.53, settings={"min_lip_sync": 0.5}
    )
    assert grid.lips(folder) == {"video_weight": 0.1333, "lip_sync": 0.53, "set_aside": "2/3"}
    # a model without the sync classifier: a video weight, nothing about sync
    plain = _eval_folder(tmp_path / "p", [{"id": "a", "video_weight": 0.3}], mean_video_weight=0.3, settings={})
    assert grid.lips(plain) == {"video_weight": 0.3, "lip_sync": None}
    assert grid.lips(tmp_path / "absent") is None


def test_results_json_keeps_every_figure_and_how_the_lips_were_used(tmp_path):
    results = {"real-grid/both": {"wer": 1 / 24, "errors": 1, "ref_words": 24}}
    used = {"real-grid": {"video_weight": 0.0, "lip_sync": 0.1456, "set_aside": "4/4"}, "heldout": None}
    grid_report.write_json(tmp_path / "results.json", results, used)
    figures = json.loads((tmp_path / "results.json").read_text())
    assert figures == {
        "real-grid/both": {"wer": 0.0417, "errors": 1, "words": 24},
        "video-weight/real-grid": 0.0,
        "lip-sync/real-grid": 0.1456,
        "lips-set-aside/real-grid": "4/4",
    }


def test_the_targets_table_says_met_or_missed_from_the_figures():
    def fig(wer):
        return {"wer": wer, "errors": 0, "ref_words": 24}

    rows = grid_report._targets(
        {"real-grid/audio": fig(0.083), "real-grid/both": fig(0.125), "real-grid/video": fig(0.5)}
    )
    table = "\n".join(rows)
    assert "| real GRID, audio, basic normaliser | <= 10% | 8.3% | met |" in table
    assert "| real GRID, clean: both <= audio | <= 8.3% | 12.5% | missed |" in table
    assert "| real GRID, video | <= 60% | 50.0% | met |" in table
    assert grid_report._targets({}) == []


def test_the_real_lip_readers_are_set_against_random_grammar_guesses(tmp_path):
    from avsrctl.metrics import chance_level

    chance = chance_level(["a b"], ["a b", "a c", "x y z"])  # 0, 1 or 3 errors, each a third
    results = {
        "real-grid/video": {"wer": 0.5, "errors": 1, "ref_words": 2},
        "real-grid/both-model-video-only": {"wer": 0.0, "errors": 0, "ref_words": 2},
    }
    grid_report.write_json(tmp_path / "results.json", results, {}, chance)
    figures = json.loads((tmp_path / "results.json").read_text())
    assert figures["real-grid/grammar-chance"] == {"wer": 0.6667, "errors": 1.33, "words": 2}
    assert figures["p-chance/real-grid/video"] == 0.6667
    assert figures["p-chance/real-grid/both-model-video-only"] == 0.3333
    rows = grid_report._against_chance(results, chance)
    assert rows == [
        "| real-grid/video | 50.0% (1/2) | 0.667 |",
        "| real-grid/both-model-video-only | 0.0% (0/2) | 0.333 |",
    ]
    table = "\n".join(grid_report._targets(results, chance))
    assert "| real GRID, video | <= 60% | 50.0% (random grammar guesses: 66.7%) | met |" in table


def test_reports_read_back_carry_their_bootstrap_interval_and_utterance_errors(tmp_path):
    from avsrctl.metrics import wer_interval

    rows = [{"id": "a", "errors": 0, "ref_words": 6}, {"id": "b", "errors": 3, "ref_words": 6}]
    old = _eval_folder(tmp_path / "old", rows, wer=0.25, errors=3, ref_words=12)  # written before wer_ci95
    report = grid_report.read_report(old)
    assert report["wer_ci95"] == [round(v, 4) for v in wer_interval([0, 3], [6, 6])]
    assert report["utterance_errors"] == {"a": 0, "b": 3}
    new = _eval_folder(tmp_path / "new", rows, wer=0.25, errors=3, ref_words=12, wer_ci95=[0.1, 0.4])
    assert grid_report.read_report(new)["wer_ci95"] == [0.1, 0.4]  # what eval wrote is kept

    results = {"heldout/audio": report}
    grid_report.write_json(tmp_path / "results.json", results, {})
    figures = json.loads((tmp_path / "results.json").read_text())
    assert figures["heldout/audio"] == {"wer": 0.25, "errors": 3, "words": 12, "ci95": report["wer_ci95"]}


def test_the_both_vs_audio_targets_say_how_often_both_wins_on_resampled_utterances():
    from avsrctl.metrics import paired_comparison

    audio, both = [2, 3, 1, 4], [0, 1, 1, 2]
    better, _ = paired_comparison(both, audio)
    table = "\n".join(
        grid_report._targets(
            {"real-grid-babble-5/audio": _scored(audio, 24), "real-grid-babble-5/both": _scored(both, 24)}
        )
    )
    assert f"(60% lower; fewer errors in {100 * better:.0f}% of resamples) | met |" in table


# ------------------------------------------------------------------ recipes/grid_real.py (real lips)

import grid_real  # noqa: E402
import real_report  # noqa: E402


def test_the_unseen_speakers_never_include_s1s_test_clip(tmp_path, monkeypatch):
    """bbaf2n is speaker s1 and in s1's test split: it must not count as an unseen speaker."""
    media = tmp_path / "media"
    (media / "video").mkdir(parents=True)
    header = "file\tkind\tduration_s\tstreams\tsource_repo\tcommit\tpath_in_repo\trepo_license\treference_transcript\n"
    rows = [
        f"video/grid_{stem}.mpg\tvideo\t3.000\tv\tr\tc\tp\tl\tbin blue at f two now\n" for stem in ("bbaf2n", "lbax4n")
    ]
    (media / "MANIFEST.tsv").write_text(header + "".join(rows))
    monkeypatch.setattr(grid_real, "MEDIA", media)
    import avsrctl.data.media

    monkeypatch.setattr(avsrctl.data.media, "probe", lambda path: type("Info", (), {"duration": 3.0})())
    tsv = grid_real.unseen_manifest(tmp_path / "unseen")
    ids = [line.split("\t")[0] for line in tsv.read_text().splitlines()[1:]]
    assert ids == ["grid_lbax4n", "grid_pwij3p"]  # media's s5 clip and the package's s2 sample; no bbaf2n
    # each with its own transcript: MANIFEST.tsv's last column, the samples' transcripts.tsv
    assert tsv.with_suffix(".wrd").read_text().splitlines() == [
        "bin blue at f two now",
        "place white in j three please",
    ]


def _corpus(folder: Path, splits: dict[str, list[str]]) -> Path:
    """A corpus of empty clip files: {split: ids}, each id's transcript its own name."""
    from avsrctl.data.manifest import Utterance, write_manifest

    for split, ids in splits.items():
        utts = []
        for uid in ids:
            for kind in ("video", "audio"):
                (folder / kind).mkdir(parents=True, exist_ok=True)
                (folder / kind / f"{uid}.{'mp4' if kind == 'video' else 'wav'}").touch()
            utts.append(
                Utterance(uid, folder / "video" / f"{uid}.mp4", folder / "audio" / f"{uid}.wav", 25, 16000, uid)
            )
        write_manifest(folder / f"{split}.tsv", folder / f"{split}.wrd", folder, utts, relative_root=True)
    return folder


def test_rendered_clips_join_the_real_training_split_only(tmp_path):
    from avsrctl.data.manifest import read_manifest

    real = _corpus(tmp_path / "s1", {"train": ["r1", "r2"], "valid": ["v1"], "test": ["t1"]})
    synth = _corpus(tmp_path / "synth", {"train": ["s1", "s2", "s3", "s4"]})
    out = grid_real.mixed_corpus(real, synth, 2, tmp_path / "mixed")
    train = read_manifest(out / "train.tsv", out / "train.wrd")
    assert [(u.id, u.text) for u in train] == [
        ("r1", "r1"),
        ("r2", "r2"),
        ("s1", "s1"),
        ("s3", "s3"),
    ]  # spread over the list
    assert (
        train[2].video == (synth / "video" / "s1.mp4").resolve()
        and train[0].audio == (real / "audio" / "r1.wav").resolve()
    )
    assert [u.id for u in read_manifest(out / "valid.tsv", out / "valid.wrd")] == ["v1"]  # choices stay on real clips
    assert [u.id for u in read_manifest(out / "test.tsv", out / "test.wrd")] == ["t1"]


def test_mixing_refuses_a_shared_id_and_more_clips_than_there_are(tmp_path):
    import pytest

    from avsrctl.errors import DataError

    real = _corpus(tmp_path / "s1", {"train": ["a", "b"], "valid": ["v"], "test": ["t"]})
    synth = _corpus(tmp_path / "synth", {"train": ["c", "b"]})
    with pytest.raises(DataError, match="id 'b' is also in"):
        grid_real.mixed_corpus(real, synth, 2, tmp_path / "one")
    with pytest.raises(DataError, match="2 training utterances, 3 asked"):
        grid_real.mixed_corpus(real, synth, 3, tmp_path / "two")
    assert not (tmp_path / "one" / "train.tsv").exists()


def test_a_mixed_run_never_reuses_the_real_only_stages(tmp_path, monkeypatch):
    commands = _stub_training(monkeypatch, grid_real)
    for mixed in (0, 300):
        for stage in grid_real.STAGES:
            grid_real.train(tmp_path, tmp_path / "corpus", "grid-small", stage, {}, mixed=mixed)
    outputs = [c[c.index("--output") + 1] for c in commands]
    names = [s.name for s in grid_real.STAGES]
    assert outputs == [str(tmp_path / f"real-{n}") for n in names] + [str(tmp_path / f"real-mix300-{n}") for n in names]
    both = commands[-1]
    assert [both[i + 1] for i, a in enumerate(both) if a == "--init-from"] == [
        "grid-small",
        str(tmp_path / "real-mix300-video" / "final"),
    ]


def test_every_system_hears_the_same_babble_at_the_asked_snr(tmp_path):
    import numpy as np

    from avsrctl.data.manifest import Utterance, read_manifest, write_manifest
    from avsrctl.data.media import load_audio, save_audio
    from avsrctl.data.noise import snr_db

    rng = np.random.default_rng(0)
    utts = []
    for i in range(4):
        wav = tmp_path / f"u{i}.wav"
        save_audio(wav, (0.1 * rng.standard_normal(640 * 25)).astype(np.float32))
        utts.append(Utterance(f"u{i}", None, wav, 25, 640 * 25, "a b"))
    write_manifest(tmp_path / "test.tsv", tmp_path / "test.wrd", tmp_path, utts)
    first = grid_real.noisy_copies(tmp_path / "test.tsv", tmp_path / "a", (-5, 5))
    again = grid_real.noisy_copies(tmp_path / "test.tsv", tmp_path / "b", (-5,))
    for snr, tsv in first.items():
        noisy = read_manifest(tsv)
        assert [u.id for u in noisy] == [u.id for u in utts]
        clean, mixed = load_audio(utts[0].audio), load_audio(noisy[0].audio)
        assert abs(snr_db(clean, mixed) - snr) < 0.5
    a, b = (load_audio(read_manifest(m[-5])[2].audio) for m in (first, again))
    assert np.array_equal(a, b)  # written with a fixed seed: the same mixture for every system and rerun


def test_the_real_lips_targets_say_met_or_missed():
    def fig(wer, errors=None):
        return {"wer": wer, "errors": 0, "ref_words": 600, "utterance_errors": errors or {}}

    results = {
        "s1/both-model-video-only": fig(0.12),
        "s1-babble-5/audio": fig(0.80),
        "s1-babble-5/both": fig(0.30),
        "s1/audio": fig(0.10),
        "s1/both": fig(0.11),
        "s1-babble-10/both": fig(0.45),
        "unseen/both-model-video-only": fig(0.7),
        "unseen/both": fig(0.05),
        "unseen/both-model-audio-only": fig(0.05),
    }
    rows = {t: (m, ok) for t, _, m, ok in real_report.targets(results, total_minutes=100)}
    assert rows["s1 test (unseen sentences of a seen speaker), video alone"][1] is True
    assert rows["s1 test, babble -5 dB: fused vs audio model"] == ("30.0% (0/600) vs 80.0% (0/600) (62% lower)", True)
    assert rows["s1 test, clean: fused vs audio model"][1] is False
    assert rows["s1 test, babble -10 dB: fused"][1] is False
    assert rows["unseen real speakers (s2, s5, s20), video alone"][1] is False
    assert rows["unseen real speakers, clean: fused vs its audio path"][1] is True
    assert rows["unseen real speakers, babble -5 dB: fused vs its audio path"][1] is None  # not measured
    assert rows["real-lips recipe, prepare and training (evaluations not timed), 2 CPU cores"] == ("100 min", True)


def test_a_comparison_says_lower_higher_or_the_same():
    results = {
        name: _scored(errors, 18)
        for name, errors in (("none", [0, 0, 0]), ("none-too", [0, 0, 0]), ("some", [2, 1, 0]), ("more", [2, 1, 3]))
    }
    assert real_report._lower(results, "none", "none-too") == ("0.0% (0/18) vs 0.0% (0/18) (the same WER)", True, 0.0)
    text, lower, cut = real_report._lower(results, "some", "more")
    assert text.startswith("16.7% (3/18) vs 33.3% (6/18) (50% lower; fewer errors in ") and (lower, cut) == (True, 0.5)
    text, lower, cut = real_report._lower(results, "more", "some")
    assert text.startswith("33.3% (6/18) vs 16.7% (3/18) (100% higher; fewer errors in 0% of resamples")
    assert (lower, cut) == (False, -1.0)
    text, lower, _ = real_report._lower(results, "some", "none")
    assert text.startswith("16.7% (3/18) vs 0.0% (0/18) (higher; ") and lower is False


def test_the_adapt_targets_compare_the_lips_before_and_after():
    def fig(wer, errors):
        return {"wer": wer, "errors": errors, "ref_words": 600}

    results = {
        "s1/start-model-video-only": fig(0.70, 420),
        "s1/adapted-model-video-only": fig(0.20, 120),
        "s1/both-model-video-only": fig(0.08, 48),
        "s1-babble-5/adapted": fig(0.30, 180),
        "s1-babble-5/audio": fig(0.60, 360),
        "unseen/adapted": fig(0.05, 1),
        "unseen/start": fig(0.0, 0),
    }
    pseudo = {"clips": 750, "kept": 700}
    rows = {t: (m, ok) for t, _, m, ok in real_report.adapt_targets(results, pseudo, minutes=31.0)}
    assert rows["s1 test, video alone: after vs before adaptation"] == (
        "20.0% (120/600) vs 70.0% (420/600) (3.5x fewer)",
        True,
    )
    assert rows["s1 test, video alone after adaptation"][1] is False  # 12 points behind the supervised model
    assert rows["s1 test, babble -5 dB: adapted fused vs audio model"][1] is True
    assert rows["unseen real speakers, clean: adapted vs before"][1] is False
    assert rows["time to adapt on 750 clips, 2 CPU cores"] == ("31.0 min", False)


def test_the_pseudo_labels_words_are_scored_taught_or_unsure():
    from avsrctl.metrics import score

    truths = ["bin blue at f two now", "set red by g nine soon"]
    trained = [
        "bin blue ~at ~p two now",  # 'f' misheard as 'p' and unsure; 'at' right but unsure
        "set green by g soon",  # 'nine' dropped (a deletion: no word of the pseudo-transcript to blame)
    ]
    plain = [" ".join(w.lstrip("~") for w in t.split()) for t in trained]  # what labels.jsonl holds
    got = grid_real.taught_and_unsure(trained, score(truths, plain).utterances)
    assert got == {"taught": 9, "taught_wrong": 1, "unsure": 2, "unsure_wrong": 1}
    assert grid_real.taught_and_unsure(["bin blue at p two now"], score(truths[:1], plain[:1]).utterances) == {
        "taught": 6,
        "taught_wrong": 1,
        "unsure": 0,
        "unsure_wrong": 0,
    }
    line = real_report._unsure_sentence(
        {"min_word_prob": 0.7, "taught": 9, "taught_wrong": 1, "unsure": 2, "unsure_wrong": 1}
    )
    assert "2 of 11 fell under --min-word-prob 0.7" in line and "1 of those were wrong (50%)" in line
    assert real_report._unsure_sentence({"unsure": 0}) == ""


def test_the_adaptation_report_says_at_which_speed_the_audio_path_heard_the_clips():
    assert real_report._speed_words({"speed": 1.0, "speed_asked": 1.0}) == ""
    assert real_report._speed_words({}) == ""
    assert real_report._speed_words({"speed": 0.8, "speed_asked": "auto"}) == (
        " heard at 0.8 times their speed (chosen by `--speed auto`)"
    )
    assert (
        real_report._speed_words({"speed": 0.9, "speed_asked": 0.9})
        == " heard at 0.9 times their speed (`--speed 0.9`)"
    )
