"""`avsrctl adapt` on a tiny fused model: pseudo-labels from the audio path only, transcripts beside
the clips never read, three training stages (lips-ctc, lips-video, fused), an ordinary checkpoint that
says it was adapted, one-line errors."""

from __future__ import annotations

import builtins
import dataclasses
import io
import json
import math
import os
import shutil
import types
from pathlib import Path

import pytest
from reliability_support import av_clip, cli_error, tiny_checkpoint  # noqa: F401  (cli_error is a fixture)

from avsrctl.cli.main import run
from avsrctl.training.pseudo import PseudoLabelRule

SENTINEL = "zebra quartz sentinel"  # written into every transcript beside the clips: must never travel
CLIP_FRAMES = {"a": 25, "b": 30, "c": 35, "d": 40}
TEXTS = {"a": "bin blue at f two now", "b": "set red by g nine soon", "c": "lay green in m one again", "d": "place"}
SCORES = {"a": -0.2, "b": -0.4, "c": -0.3, "d": -3.0}  # 'd' is garbled: below the default --min-score
# each word's probability in the audio decode (the others: 0.95); under the default --min-word-prob 0.7: unsure
WORD_PROBS = {("a", "f"): 0.3, ("b", "g"): 0.71, ("b", "nine"): 0.69}
TRAINED = {"a": "bin blue at ~f two now", "b": "set red by g ~nine soon", "c": "lay green in m one again"}


def _sync_checkpoint(folder: Path) -> Path:
    """An untrained tiny fused model with the sync classifier (so lip_sync is recorded)."""
    return tiny_checkpoint(folder, "both", "final", "model.fusion.sync_weight=1.0")


def _clips(folder: Path) -> Path:
    """Four short clips (picture and tone), each with a transcript beside it that nobody may read."""
    for name, frames in CLIP_FRAMES.items():
        av_clip(folder / f"{name}.mp4", frames=frames)
        txt = folder / f"{name}.txt"
        txt.write_text(SENTINEL + "\n", encoding="utf-8")
        txt.chmod(0)  # unreadable (root reads anyway: the open spy below is what proves it)
    return folder


class _Spies:
    """The audio decode (real generation, then the pseudo-transcripts of TEXTS/SCORES) and every
    file opened under the clips folder."""

    def __init__(self, monkeypatch, clips: Path):
        import avsrctl.decoding as decoding

        self.calls: list[tuple[str, list[str], bool]] = []  # (modality, ids, batch had video)
        self.returned: dict[str, str] = {}
        self.opened: list[str] = []
        real = decoding.generate

        def generate(model, batch, modality, options=None):
            results = real(model, batch, modality, options)
            self.calls.append((modality, list(batch.ids), batch.video is not None))
            if modality != "audio":  # validation during fine-tuning reads 'both': left as it is
                return results
            out = [
                dataclasses.replace(
                    r, text=TEXTS[r.id], score=SCORES[r.id], stopped_at_eos=True, **_tokens(model, r.id)
                )
                for r in results
            ]
            self.returned.update({r.id: r.text for r in out})
            return out

        monkeypatch.setattr(decoding, "generate", generate)
        inside = str(clips.resolve())

        def guard(opener):
            def guarded(file, *args, **kwargs):
                if isinstance(file, (str, os.PathLike)):
                    path = os.path.abspath(os.fspath(file))
                    if path.startswith(inside) and path.endswith((".txt", ".wrd")):
                        self.opened.append(path)
                        raise PermissionError(13, "a transcript was opened", path)
                return opener(file, *args, **kwargs)

            return guarded

        for module, name in ((builtins, "open"), (io, "open"), (os, "open")):
            monkeypatch.setattr(module, name, guard(getattr(module, name)))


def _tokens(model, uid: str) -> dict:
    """token_ids and token_logprobs of TEXTS[uid] as the decode would give them, every token of a word
    at the word's probability (WORD_PROBS, else 0.95)."""
    words = TEXTS[uid].split()
    ids, word_of = model.token_words(words)
    probs = [WORD_PROBS.get((uid, words[n]), 0.95) if n >= 0 else 0.95 for n in word_of]
    return {"token_ids": tuple(ids), "token_logprobs": tuple(math.log(p) for p in probs)}


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """One `avsrctl adapt` run on a folder of four clips, watched by the spies."""
    root = tmp_path_factory.mktemp("adapt")
    source = _sync_checkpoint(root / "source")
    clips = _clips(root / "clips")
    out = root / "run"
    with pytest.MonkeyPatch.context() as mp:
        spies = _Spies(mp, clips)
        code = run(
            [
                "adapt",
                "--checkpoint",
                str(source),
                "--data",
                str(clips),
                "--output",
                str(out),
                "--ctc-epochs",
                "1",
                "--video-epochs",
                "1",
                "--epochs",
                "1",
                "--set",
                "decode.max_new_tokens=4",
                "--quiet",
            ]
        )
    assert code == 0
    return types.SimpleNamespace(source=source, clips=clips, out=out, spies=spies)


def _labels(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "pseudo" / "labels.jsonl").read_text().splitlines()]
    return {r["id"]: r for r in rows}


def test_pseudo_labels_come_from_the_audio_path(adapted):
    spies = adapted.spies
    audio = [c for c in spies.calls if c[0] == "audio"]
    first_other = next((n for n, c in enumerate(spies.calls) if c[0] != "audio"), len(spies.calls))
    assert all(c[0] == "audio" for c in spies.calls[:first_other]) and first_other == len(audio)
    # --speed auto (the default) first hears the clips without their lips at 5 speeds and the best
    # one's 2 neighbours; then each clip is labelled once, its lips loaded for lip_sync only
    search = [c for c in audio if not c[2]]
    labelling = audio[len(search) :]
    assert audio[: len(search)] == search and all(had_video for _, _, had_video in labelling)
    assert sorted(i for _, ids, _ in search for i in ids) == sorted(list(CLIP_FRAMES) * 7)
    assert sorted(i for _, ids, _ in labelling for i in ids) == sorted(CLIP_FRAMES)

    labels = _labels(adapted.out)
    assert {k: r["text"] for k, r in labels.items()} == spies.returned == TEXTS
    assert {k for k, r in labels.items() if r["kept"]} == {"a", "b", "c"}
    assert labels["d"]["why"].startswith("score -3.000 below --min-score -1")
    assert all(isinstance(r["lip_sync"], float) and 0 <= r["lip_sync"] <= 1 for r in labels.values())

    pseudo = adapted.out / "pseudo"
    trained = (pseudo / "train.wrd").read_text().splitlines() + (pseudo / "valid.wrd").read_text().splitlines()
    assert sorted(trained) == sorted(TRAINED.values())  # the words under --min-word-prob 0.7 marked unsure
    assert labels["b"]["word_probs"] == pytest.approx([0.95, 0.95, 0.95, 0.71, 0.69, 0.95], abs=1e-3)
    summary = json.loads((pseudo / "summary.json").read_text())
    assert (summary["words"], summary["unsure_words"]) == (18, 2)
    # the fake audio path is as confident at every speed: the tie goes to the clips' own
    assert summary["speed"]["asked"] == "auto" and summary["speed"]["chosen"] == 1.0
    assert sorted(map(float, summary["speed"]["tried"])) == [0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2]
    assert len((pseudo / "valid.wrd").read_text().splitlines()) == 1  # 5% of 3, at least one


def test_no_transcript_beside_the_clips_is_read(adapted):
    assert adapted.spies.opened == []
    for path in adapted.out.rglob("*"):
        if path.is_file():
            assert SENTINEL.encode() not in path.read_bytes(), path


def test_manifest_input_never_opens_its_wrd(tmp_path, monkeypatch):
    from avsrctl.data.manifest import write_manifest
    from avsrctl.data.media import probe
    from avsrctl.training.pseudo import clips_from_manifest

    clip = av_clip(tmp_path / "a.mp4")
    from avsrctl.data.manifest import Utterance

    info = probe(clip)
    assert info.has_audio and info.has_video
    write_manifest(
        tmp_path / "test.tsv", tmp_path / "test.wrd", tmp_path, [Utterance("a", clip, clip, 25, 16000, SENTINEL)]
    )
    (tmp_path / "test.wrd").chmod(0)
    spies = _Spies(monkeypatch, tmp_path)
    root, usable, failed = clips_from_manifest(tmp_path / "test.tsv")
    assert spies.opened == [] and failed == {}
    assert [(u.id, u.text) for u in usable] == [("a", "")]


def test_the_result_is_a_checkpoint_that_says_it_was_adapted(adapted):
    import torch

    from avsrctl.checkpoint import load_checkpoint

    model, cfg, meta = load_checkpoint(adapted.out / "final")
    assert "both" in model.modalities
    got = meta["adapted"]
    assert got["from"] == str(adapted.source) and got["clips"] == 4 and got["kept"] == 3
    assert (got["train"], got["valid"]) == (2, 1)
    assert got["rule"]["min_score"] == PseudoLabelRule().min_score and got["rule"]["min_lip_sync"] == 0.0
    assert got["rule"]["min_word_prob"] == 0.7 and (got["words"], got["unsure_words"]) == (18, 2)
    assert got["decode"]["modality"] == "audio"
    assert cfg.model.audio_connector.frozen and cfg.model.audio_encoder.frozen
    assert (cfg.model.losses.sync, cfg.model.losses.ctc, cfg.train.lr) == (1.0, 0.0, 5e-4)
    assert (cfg.data.noise_kind, cfg.data.noise_prob, cfg.data.noise_snr_db) == ("babble", 0.6, -2.0)

    # the audio path is the teacher: its weights are the source's, bit for bit; the lips moved
    before, _, _ = load_checkpoint(adapted.source)
    old, new = before.state_dict(), model.state_dict()
    audio = [k for k in new if k.startswith(("audio_connector.", "audio_encoder."))]
    assert audio and all(torch.equal(old[k], new[k]) for k in audio)
    assert any(not torch.equal(old[k], new[k]) for k in new if k.startswith("video_connector."))


def test_three_stages_train_the_lips_and_never_the_audio_path(adapted):
    import torch
    import yaml

    from avsrctl.checkpoint import is_complete, load_checkpoint, read_meta

    out = adapted.out
    for folder in (out / "lips-ctc", out / "lips-video", out):
        assert is_complete(folder / "final"), folder
    configs = {
        name: yaml.safe_load((out / name / "config.yaml").read_text()) for name in ("lips-ctc", "lips-video", ".")
    }
    ctc, video, fused = configs["lips-ctc"], configs["lips-video"], configs["."]
    assert (ctc["model"]["modality"], ctc["train"]["objective"], ctc["model"]["losses"]["ctc"]) == ("video", "ctc", 0.5)
    assert (ctc["train"]["lr"], ctc["train"]["warmup_steps"]) == (2e-3, 30)
    assert (video["model"]["modality"], video["train"]["objective"], video["train"]["lr"]) == ("video", "llm", 1e-3)
    assert (fused["model"]["modality"], fused["train"]["objective"]) == ("both", "llm")
    for cfg in configs.values():
        assert cfg["model"]["losses"]["articulation"] == 0 and cfg["data"]["video_augment"] is True
        assert cfg["model"]["audio_encoder"]["frozen"] and cfg["model"]["audio_connector"]["frozen"]
    source = str(adapted.source)
    assert ctc["train"]["init_from"] == [source]
    assert video["train"]["init_from"] == [source, str(out / "lips-ctc" / "final")]
    assert fused["train"]["init_from"] == [source, str(out / "lips-video" / "final")]

    stages = read_meta(out / "final")["adapted"]["stages"]
    assert [(s["name"], s["modality"], s["objective"], s["epochs"]) for s in stages] == [
        ("lips-ctc", "video", "ctc", 1),
        ("lips-video", "video", "llm", 1),
        ("fused", "both", "llm", 1),
    ]
    assert read_meta(out / "lips-ctc" / "final")["adapted"]["stages"] == stages

    before, _, _ = load_checkpoint(adapted.source)
    after, _, _ = load_checkpoint(out / "final")
    old, new = before.state_dict(), after.state_dict()
    audio = [k for k in new if k.startswith(("audio_connector.", "audio_encoder."))]
    assert audio and all(torch.equal(old[k], new[k]) for k in audio)


def test_the_fused_stage_leaves_the_lips_as_the_lip_stages_did(adapted):
    """The fused stage trains the fusion alone (train.freeze): everything the lips alone read
    through (lip front-end, video connector, LoRA, markers) is lips-video's final, bit for bit, so
    the adapted model reads the lips alone exactly as the lip stages left them."""
    import torch
    import yaml

    from avsrctl.checkpoint import load_checkpoint
    from avsrctl.models.inspect import component_of
    from avsrctl.training.adapt import LIPS_PATH

    fused = yaml.safe_load((adapted.out / "config.yaml").read_text())
    assert fused["train"]["freeze"] == LIPS_PATH
    lips, _, _ = load_checkpoint(adapted.out / "lips-video" / "final")
    after, _, _ = load_checkpoint(adapted.out / "final")
    old, new = lips.state_dict(), after.state_dict()
    path = [k for k in new if component_of(k) in LIPS_PATH]
    assert {component_of(k) for k in path} == set(LIPS_PATH)
    changed = [k for k in path if not torch.equal(old[k], new[k])]
    assert changed == []
    source, _, _ = load_checkpoint(adapted.source)
    fusion = [k for k in new if k.startswith("fusion.")]
    assert any(not torch.equal(source.state_dict()[k], new[k]) for k in fusion)  # what the stage trains


def test_resume_skips_finished_stages(tmp_path, monkeypatch):
    """--resume auto after the lip stages finished trains only what is left."""
    import avsrctl.decoding as decoding
    import avsrctl.training.run as run_module
    from avsrctl.checkpoint import list_checkpoints
    from avsrctl.training.adapt import run_adaptation

    real = decoding.generate

    def confident(model, batch, modality, options=None):
        results = real(model, batch, modality, options)
        if modality != "audio":
            return results
        return [dataclasses.replace(r, text=TEXTS[r.id], score=-0.1, stopped_at_eos=True) for r in results]

    monkeypatch.setattr(decoding, "generate", confident)
    source = _sync_checkpoint(tmp_path / "source")
    clips = tmp_path / "clips"
    for name in "abc":
        av_clip(clips / f"{name}.mp4", frames=CLIP_FRAMES[name])
    out = tmp_path / "run"
    kw = dict(ctc_epochs=1, video_epochs=1, epochs=1, overrides=["decode.max_new_tokens=4"])
    run_adaptation(source, clips, out, **kw)
    for ckpt in list_checkpoints(out):  # the fused stage left unfinished, with no checkpoint yet
        shutil.rmtree(ckpt)
    assert list_checkpoints(out) == [] and list_checkpoints(out / "lips-video")
    trained: list[str] = []
    real_training = run_module.run_training

    def spy(cfg, **kwargs):
        trained.append(str(cfg.train.output))
        return real_training(cfg, **kwargs)

    monkeypatch.setattr(run_module, "run_training", spy)
    result = run_adaptation(source, clips, out, resume="auto", **kw)
    assert trained == [str(out)]
    assert result.train.final_checkpoint is not None


def test_adapting_into_a_finished_run_is_refused_like_train(adapted, cli_error):
    argv = ["adapt", "--checkpoint", adapted.source, "--data", adapted.clips, "--output", adapted.out]
    cli_error(argv, 2, "already holds checkpoints", unchanged=[adapted.out / "pseudo" / "labels.jsonl"])


@pytest.mark.parametrize(
    "case, code, fragment",
    [
        ("audio-only checkpoint", 2, "needs a model with an audio path and lips"),
        ("missing data", 2, "data not found"),
        ("empty manifest", 1, "no utterances"),
        ("folder without clips", 2, "no media clips found"),
        ("audio path unfrozen", 2, "never trains the audio path"),
        ("positive min-score", 2, "--min-score"),
        ("min-word-prob above 1", 2, "--min-word-prob is a probability"),
        ("speed 3", 2, "--speed must be 'auto' or a factor from 0.5 to 2 (got '3')"),
        ("speed fast", 2, "--speed must be 'auto' or a factor from 0.5 to 2 (got 'fast')"),
    ],
)
def test_bad_input_is_one_line(tmp_path, cli_error, case, code, fragment):
    source = tiny_checkpoint(tmp_path / "ckpt", "audio" if case == "audio-only checkpoint" else "both")
    data = tmp_path / "clips"
    data.mkdir()
    av_clip(data / "a.mp4")
    extra = []
    if case == "missing data":
        data = tmp_path / "nowhere"
    elif case == "empty manifest":
        data = tmp_path / "empty.tsv"
        data.write_text(f"{tmp_path}\n", encoding="utf-8")
    elif case == "folder without clips":
        data = tmp_path / "notes"
        data.mkdir()
        (data / "a.txt").write_text("hello\n")
    elif case == "audio path unfrozen":
        extra = ["--set", "model.audio_connector.frozen=false"]
    elif case == "positive min-score":
        extra = ["--min-score", "0.5"]
    elif case == "min-word-prob above 1":
        extra = ["--min-word-prob", "1.5"]
    elif case.startswith("speed"):
        extra = ["--speed", case.split()[1]]
    out = tmp_path / "run"
    cli_error(["adapt", "--checkpoint", source, "--data", data, "--output", out, *extra], code, fragment)
    assert not out.exists()  # refused before anything was written


def test_too_few_confident_clips_say_where_the_scores_are(tmp_path, monkeypatch, cli_error):
    import avsrctl.decoding as decoding

    real = decoding.generate

    def garbled(model, batch, modality, options=None):
        return [
            dataclasses.replace(r, text="x", score=-5.0, stopped_at_eos=True)
            for r in real(model, batch, modality, options)
        ]

    monkeypatch.setattr(decoding, "generate", garbled)
    clips = tmp_path / "clips"
    for name in "abc":
        av_clip(clips / f"{name}.mp4")
    argv = ["adapt", "--checkpoint", _sync_checkpoint(tmp_path / "ckpt"), "--data", clips, "--output", tmp_path / "run"]
    line = cli_error(argv, 1, "only 0 of 3 clips passed the pseudo-label rule", hint="labels.jsonl")
    assert "score >= -1" in line
    assert all(not r["kept"] for r in _labels(tmp_path / "run").values())


def test_the_rule_says_why():
    rule = PseudoLabelRule(min_score=-1.0, min_lip_sync=0.3)
    assert rule.rejects("bin blue", -0.5, True, 0.9) is None
    assert rule.rejects("", -0.1, True, 0.9) == "empty transcript"
    assert rule.rejects("bin blue", -0.1, False, 0.9).startswith("no end of sentence")
    assert rule.rejects("bin blue", -1.5, True, 0.9) == "score -1.500 below --min-score -1"
    assert rule.rejects("bin blue", -0.5, True, 0.1) == "lip_sync 0.100 below --min-lip-sync 0.3"
    assert PseudoLabelRule().rejects("bin blue", -0.5, True, 0.0) is None  # lip_sync not required by default
    assert PseudoLabelRule(min_word_prob=0.5).unsure((0.49, 0.5, 0.9)) == [True, False, False]
    assert PseudoLabelRule(min_word_prob=0.0).unsure((0.0, 0.2)) == [False, False]  # 0: every word taught
    assert PseudoLabelRule().unsure(None) is None


def test_the_speed_option_reads_auto_or_a_factor():
    from avsrctl.cli.adapt import _speed

    assert _speed("auto") is None and _speed(" AUTO ") is None
    assert _speed("0.9") == 0.9 and _speed("1") == 1.0


def test_a_batch_at_another_speed():
    import torch

    from avsrctl.data.batch import Batch
    from avsrctl.training.pseudo import at_speed

    tone = torch.sin(2 * torch.pi * 400 * torch.arange(6400) / 16000)  # 10 frames, 160 cycles
    batch = Batch(["a"], [""], torch.tensor([10]), audio=tone[None], video=torch.zeros(1, 10, 3, 4, 4))
    assert at_speed(batch, 1.0) is batch
    slow = at_speed(batch, 0.5)
    assert slow.lengths.tolist() == [20] and slow.audio.shape == (1, 12800) and slow.video is None
    crossings = lambda x: int((torch.sign(x[1:]) != torch.sign(x[:-1])).sum())  # noqa: E731
    assert abs(crossings(slow.audio[0]) - crossings(tone)) <= 2  # the same cycles over twice the time: 200 Hz
    assert at_speed(batch, 0.9).lengths.tolist() == [12]  # ceil(10 / 0.9) frames, the audio padded to them
    assert at_speed(batch, 0.9).audio.shape == (1, 12 * 640)


def test_the_audio_speed_is_where_the_audio_path_is_most_confident(tmp_path, monkeypatch):
    # a fake audio path most confident at 0.85 of the clips' speed: the coarse search finds 0.9, its
    # neighbours 0.85; the labelling then hears every clip at 0.85
    import avsrctl.decoding as decoding
    from avsrctl.checkpoint import load_checkpoint
    from avsrctl.data.manifest import Manifest, Utterance
    from avsrctl.training.pseudo import choose_speed, pseudo_label

    model, cfg, _ = load_checkpoint(tiny_checkpoint(tmp_path / "ckpt", "both"))
    utts = [Utterance(n, c, c, 100, 64000) for n in ("a", "b") for c in [av_clip(tmp_path / f"{n}.mp4", frames=100)]]
    manifest = Manifest(tmp_path, tmp_path / "clips.tsv", None, utts)
    heard = []

    def generate(model, batch, modality, options=None):
        heard.append(batch.lengths.tolist())
        speeds = [100 / n for n in batch.lengths.tolist()]
        return [
            decoding.DecodingResult(i, "bin", (), -abs(v - 0.85), modality, 1, True) for i, v in zip(batch.ids, speeds)
        ]

    monkeypatch.setattr(decoding, "generate", generate)
    options = decoding.DecodingOptions()
    speed, tried = choose_speed(model, manifest, cfg, options)
    assert speed == 0.85
    assert sorted(tried) == [0.8, 0.85, 0.9, 0.95, 1.0, 1.1, 1.2] and max(tried, key=tried.get) == 0.85
    heard.clear()
    labels, failed = pseudo_label(model, manifest, cfg, PseudoLabelRule(), options, speed=speed)
    assert failed == {} and sorted(labels) == ["a", "b"]
    assert heard == [[118, 118]]  # ceil(100 / 0.85) frames each


def test_word_probabilities_follow_the_models_tokens():
    from avsrctl.training.pseudo import word_probs

    class Model:  # one token per character, spaces included; -1: a token of no word
        def token_words(self, words):
            ids, word_of = [], []
            for n, w in enumerate(words):
                ids += [ord(" ")] + [ord(c) for c in w]
                word_of += [-1] + [n] * len(w)
            return ids, word_of

    text = "at f"
    ids = tuple(Model().token_words(text.split())[0])  # ' ', a, t, ' ', f
    lps = (-5.0, -0.1, -0.7, -5.0, -0.2)
    probs = word_probs(Model(), text, ids, lps)
    assert probs == pytest.approx((math.exp(-0.7), math.exp(-0.2)))  # the least likely token; spaces ignored
    assert word_probs(Model(), "at g", ids, lps) is None  # the decode's tokens are another text's
    assert word_probs(Model(), text, ids, lps[:-1]) is None
    assert word_probs(Model(), "", (), ()) is None


def test_resuming_with_other_pseudo_label_options_is_refused(tmp_path):
    from avsrctl.errors import UsageError
    from avsrctl.training.pseudo import SUMMARY, reusable_summary

    data = tmp_path / "clips"
    data.mkdir()
    rule = PseudoLabelRule()
    summary = {"data": str(data.resolve()), "rule": rule.to_dict(), "valid_fraction": 0.05}
    (tmp_path / SUMMARY).write_text(json.dumps({**summary, "speed": {"asked": "auto", "chosen": 0.85, "tried": {}}}))
    assert reusable_summary(tmp_path, data, rule, 0.05, speed=None)["speed"]["chosen"] == 0.85  # auto again
    with pytest.raises(UsageError, match="were made with speed 'auto', now 0.9"):
        reusable_summary(tmp_path, data, rule, 0.05, speed=0.9)
    with pytest.raises(UsageError, match="were made with speed 'auto', now 1.0"):
        reusable_summary(tmp_path, data, rule, 0.05, speed=1.0)
    assert reusable_summary(tmp_path, data, rule, 0.05) is not None  # the default is auto
    with pytest.raises(UsageError, match="were made with valid_fraction 0.05, now 0.1"):
        reusable_summary(tmp_path, data, rule, 0.1, speed=None)
    (tmp_path / SUMMARY).write_text(json.dumps(summary))  # labelled before --speed: at the clips' own speed
    assert reusable_summary(tmp_path, data, rule, 0.05, speed=1.0) is not None
    with pytest.raises(UsageError, match="were made with speed 1.0, now 'auto'") as refused:
        reusable_summary(tmp_path, data, rule, 0.05)
    assert refused.value.hint.startswith("resume with --speed 1.0")
