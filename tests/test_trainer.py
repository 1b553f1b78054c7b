"""Training end to end: the tiny model on a small synthetic corpus (video is the quickest stream)."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import shutil
import signal

import pytest
import torch
from rich.console import Console
from training_support import make_corpus, memoize_decoding, read_metrics, tiny_config, train_losses

from avsrctl import checkpoint as ckpt
from avsrctl.cli.main import run
from avsrctl.data.dataset import AVDataset
from avsrctl.errors import TrainingError, UsageError
from avsrctl.training import run_folder
from avsrctl.training.progress import Reporter
from avsrctl.training.run import run_training
from avsrctl.training.trainer import Trainer

# LoRA dropout draws from the RNG every step, so resume must restore RNG states to match.
COMMON = ["model.llm.lora.dropout=0.1"]
# a small lip-reading front-end trained from scratch
LIP_FRONT_END = [
    "model.video_encoder.source=resnet",
    "model.video_encoder.width=32",
    "model.video_encoder.layers=1",
    "model.video_encoder.frozen=false",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), n=16)


@pytest.fixture(scope="module")
def baseline(corpus, tmp_path_factory):
    """An uninterrupted video run: 2 epochs of 3 steps, checkpoint every epoch and every 2 steps."""
    out = tmp_path_factory.mktemp("baseline") / "run"
    with pytest.MonkeyPatch.context() as mp:
        memoize_decoding(mp)
        result = run_training(
            tiny_config(corpus, out, *COMMON, train__max_epochs=2, train__save_steps=2), modality="video"
        )
    return out, result


def _cli(corpus, out, *extra):
    return [
        "train",
        "--config",
        "tiny",
        "--modality",
        "video",
        "--data",
        str(corpus),
        "--output",
        str(out),
        "--max-epochs",
        "2",
        "--set",
        COMMON[0],
        "--set",
        "decode.max_new_tokens=6",
        "--set",
        "data.max_frames_per_batch=300",
        *extra,
    ]


@pytest.mark.slow
def test_video_run_learns_and_writes_everything(baseline, corpus):
    out, result = baseline
    losses = train_losses(out)
    steps = sorted(losses)
    assert steps == list(range(1, result.steps + 1)) and result.steps == 2 * _steps_per_epoch(corpus)
    assert losses[steps[-1]] < losses[steps[0]] - 0.05
    names = ["epoch-0001", "epoch-0002", "best", "final"] + [run_folder.step_name(s) for s in steps if s % 2 == 0]
    assert sorted(p.name for p in ckpt.list_checkpoints(out)) == sorted(names)
    for name in names:
        assert ckpt.is_complete(out / name, resumable=True), name
    assert ckpt.read_latest_name(out) == "final"
    assert (out / "config.yaml").is_file() and (out / "loss.png").stat().st_size > 1000
    valid = read_metrics(out, "valid")
    assert len(valid) == 2 and all(math.isfinite(v["loss"]) and v["wer"] is not None for v in valid)
    best = json.loads((out / "best" / "meta.json").read_text())
    assert best["valid_loss"] == pytest.approx(min(v["loss"] for v in valid))
    train = read_metrics(out, "train")[0]
    assert {"step", "epoch", "loss", "lr", "grad_norm", "utt_per_s"} <= set(train)


@pytest.mark.slow
def test_final_checkpoint_loads_the_trained_weights(baseline):
    out, _ = baseline
    model, cfg, meta = ckpt.load_checkpoint(out / "final")
    assert meta["modality"] == "video" and cfg.model.modality == "video"
    saved = ckpt.read_tensors(out / "final" / "model.safetensors")
    assert saved and all(torch.equal(model.trainable_state_dict()[k], v) for k, v in saved.items())
    assert not any(k.startswith(("video_encoder.", "audio_encoder.")) for k in saved)


@pytest.mark.slow
def test_interrupted_run_resumes_with_identical_losses(baseline, corpus, tmp_path, monkeypatch):
    memoize_decoding(monkeypatch)
    out = tmp_path / "run"
    log_step = Trainer._log_step

    def interrupt_at_4(self, *args):
        log_step(self, *args)
        if self.step == 4:  # mid-epoch 2: resume must skip the micro-batches already used
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Trainer, "_log_step", interrupt_at_4)
    assert run(_cli(corpus, out)) == 130
    assert ckpt.read_latest_name(out) == "step-000004" and not (out / "final").exists()
    assert json.loads((out / "step-000004" / "trainer_state.json").read_text())["batch_in_epoch"] > 0
    first = train_losses(out)
    assert sorted(first) == [1, 2, 3, 4]  # same seed, same losses as the baseline so far:
    assert [first[s] for s in first] == [train_losses(baseline[0])[s] for s in first]

    assert run(_cli(corpus, out)) == 2  # checkpoints present and no --resume: refused
    monkeypatch.setattr(Trainer, "_log_step", log_step)
    assert run(_cli(corpus, out, "--resume", "auto")) == 0
    expected, got = train_losses(baseline[0]), train_losses(out)
    assert sorted(got) == sorted(expected)
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-7), step
    valid_a = [v["loss"] for v in read_metrics(baseline[0], "valid")]
    valid_b = [v["loss"] for v in read_metrics(out, "valid")]
    assert valid_b == pytest.approx(valid_a, rel=1e-6)


def test_param_update_table_moves_only_trainable_parts(corpus, tmp_path, monkeypatch):
    memoize_decoding(monkeypatch)
    out = tmp_path / "run"
    buf = io.StringIO()
    cfg = tiny_config(corpus, out, train__max_steps=2, train__log_param_updates=1, train__save_every=0)
    run_training(cfg, modality="video", console=Console(file=buf, width=140), live=False)
    records = read_metrics(out, "params")
    assert {r["step"] for r in records} == {1, 2}
    by_comp = {r["component"]: r for r in records if r["step"] == 2}
    assert by_comp["video encoder"]["trainable"] is False and by_comp["video encoder"]["update_ratio"] == 0
    assert by_comp["LLM base"]["update_ratio"] == 0 and by_comp["LLM base"]["grad_norm"] == 0
    for comp in ("video connector", "LoRA adapters"):
        assert by_comp[comp]["trainable"] and by_comp[comp]["update_ratio"] > 0 and by_comp[comp]["grad_norm"] > 0
    text = buf.getvalue()
    assert "parameter updates at step 2" in text and "frozen" in text
    assert "step 1/2 loss" in text  # not a terminal: plain log lines instead of a live bar


def _steps_per_epoch(corpus) -> int:
    from avsrctl.data.dataset import FrameBucketSampler
    from avsrctl.data.manifest import read_manifest

    cfg = tiny_config(corpus, corpus / "unused")
    lengths = [u.n_frames for u in read_manifest(corpus / "train.tsv")]
    return len(FrameBucketSampler(lengths, cfg.data.max_frames_per_batch, cfg.data.max_batch_size))


def _nan_forward(monkeypatch, bad_calls):
    from avsrctl.models.avsr import AVSRModel

    forward = AVSRModel.forward
    calls = {"n": 0}

    def patched(self, batch, modality, objective="llm"):
        out = forward(self, batch, modality, objective)
        if self.training:
            calls["n"] += 1
            if bad_calls is None or calls["n"] in bad_calls:
                return dataclasses.replace(out, loss=out.loss * float("nan"))
        return out

    monkeypatch.setattr(AVSRModel, "forward", patched)


@pytest.mark.slow
def test_nonfinite_loss_skips_the_step_and_names_the_batch(corpus, tmp_path, monkeypatch):
    memoize_decoding(monkeypatch)
    _nan_forward(monkeypatch, bad_calls={2})
    out = tmp_path / "run"
    result = run_training(tiny_config(corpus, out, train__max_steps=3, train__save_every=0), modality="video")
    events = [r for r in read_metrics(out, "event") if r["event"] == "nonfinite"]
    assert len(events) == 1 and events[0]["ids"] and events[0]["step"] == 1
    assert result.nonfinite_steps == 1 and result.steps == 3
    assert sorted(train_losses(out)) == [1, 2, 3]  # the skipped step did not count
    assert all(math.isfinite(r["loss"]) for r in read_metrics(out, "train"))
    summary = read_metrics(out, "summary")[0]
    assert summary["nonfinite_steps"] == 1
    weights = ckpt.read_tensors(out / "final" / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_repeated_nonfinite_steps_stop_training_without_a_checkpoint(corpus, tmp_path, monkeypatch):
    memoize_decoding(monkeypatch)
    _nan_forward(monkeypatch, bad_calls=None)
    out = tmp_path / "run"
    cfg = tiny_config(corpus, out, train__max_steps=3, train__max_bad_steps=2)
    with pytest.raises(TrainingError, match="2 optimiser steps in a row") as err:
        run_training(cfg, modality="video")
    assert "lower train.lr" in err.value.hint and "fp32" in err.value.hint
    assert ckpt.list_checkpoints(out) == []


@pytest.mark.slow
def test_out_of_memory_splits_the_micro_batch(baseline, corpus, tmp_path, monkeypatch):
    memoize_decoding(monkeypatch)
    prepare, injected = Trainer._prepare, []

    def out_of_memory_once(self, mb, streams):  # the first training micro-batch of step 1 runs out of memory
        if not injected and self.step == 0 and streams == self.train_streams and len(mb) > 1:
            injected.append(mb.ids)
            raise torch.OutOfMemoryError("injected by the test")
        return prepare(self, mb, streams)

    monkeypatch.setattr(Trainer, "_prepare", out_of_memory_once)
    out = tmp_path / "run"
    result = run_training(tiny_config(corpus, out, *COMMON, train__max_steps=2, train__save_every=0), modality="video")
    assert result.oom_splits == 1 and len(injected) == 1
    event = [r for r in read_metrics(out, "event") if r["event"] == "oom_split"][0]
    assert event["step"] == 0 and event["batch_size"] >= 2
    # the two halves give the token-weighted loss of the whole micro-batch
    assert train_losses(out)[1] == pytest.approx(train_losses(baseline[0])[1], rel=1e-4)


@pytest.mark.slow
def test_skipped_media_are_counted_and_reported(corpus, tmp_path, monkeypatch):
    memoize_decoding(monkeypatch)
    data = tmp_path / "data"
    shutil.copytree(corpus, data)
    tsv = (data / "train.tsv").read_text().splitlines()
    tsv[0] = str(data)
    (data / "train.tsv").write_text("\n".join(tsv) + "\n")
    broken_id, video = tsv[1].split("\t")[:2]
    (data / video).write_bytes(b"not a video at all")
    out = tmp_path / "run"
    result = run_training(tiny_config(data, out, train__max_epochs=1, train__save_every=0), modality="video")
    assert result.skipped_media == 1
    skipped = [r for r in read_metrics(out, "event") if r["event"] == "skipped_media"]
    assert broken_id in skipped[0]["ids"] and skipped[0]["reasons"][0]
    assert read_metrics(out, "summary")[0]["skipped_media"] == result.skipped_media


def _err(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())  # rich wraps long lines


def test_missing_data_is_a_usage_error_with_a_way_out(tmp_path, capsys):
    assert run(["train", "--config", "tiny", "--output", str(tmp_path / "run")]) == 2
    err = _err(capsys)
    assert "--data DIR" in err and "data.root" in err and "avsrctl demo-data" in err


def test_manifest_without_the_stream_is_refused(corpus, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(corpus, data)
    rows = (data / "train.tsv").read_text().splitlines()
    rows = [str(data)] + ["\t".join([f[0], "-", *f[2:]]) for f in (r.split("\t") for r in rows[1:])]
    (data / "train.tsv").write_text("\n".join(rows) + "\n")
    assert run(_cli(data, tmp_path / "run")) == 2
    assert "needs video" in _err(capsys)


def test_unwritable_output_is_refused_before_training(corpus, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert run(_cli(corpus, blocker / "run")) == 2
    assert "not writable" in _err(capsys)


@pytest.mark.slow
def test_resume_with_another_model_config_is_refused(baseline, corpus, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(baseline[0] / "epoch-0001", out / "epoch-0001")
    assert run(_cli(corpus, out, "--resume", "auto", "--set", "model.video_connector.hidden=64")) == 2
    assert "model.video_connector.hidden" in _err(capsys)


@pytest.mark.slow
def test_a_lip_encoder_run_with_ctc_logs_it_and_checkpoints_the_encoder_and_head(corpus, tmp_path, monkeypatch):
    memoize_decoding(monkeypatch)
    out = tmp_path / "run"
    lips = [
        "model.ctc_weight=0.5",
        "model.video_encoder.source=resnet",
        "model.video_encoder.width=32",
        "model.video_encoder.layers=1",
        "model.video_encoder.frozen=false",
    ]
    result = run_training(tiny_config(corpus, out, *lips, train__max_epochs=1), modality="video")
    train = read_metrics(out, "train")
    assert len(train) == result.steps and all(math.isfinite(r["ctc"]) and r["ctc"] > 0 for r in train)
    saved = ckpt.read_tensors(out / "final" / "model.safetensors")
    assert {"ctc_heads.video.weight", "ctc_heads.video.bias", "video_encoder.stem.weight"} <= set(saved)
    model, _, _ = ckpt.load_checkpoint(out / "final")
    assert torch.equal(model.video_encoder.stem.weight, saved["video_encoder.stem.weight"])


def test_a_lip_run_regresses_the_rendered_mouth_and_hands_its_encoder_on(corpus, tmp_path, monkeypatch):
    memoize_decoding(monkeypatch)
    lips = ["model.ctc_weight=1", *LIP_FRONT_END]
    pre = tmp_path / "ctc"
    result = run_training(
        tiny_config(corpus, pre, *lips, "train.objective=ctc", "model.articulation_weight=1", train__max_epochs=1),
        modality="video",
    )
    train = read_metrics(pre, "train")
    assert len(train) == result.steps and all(math.isfinite(r["articulation"]) and r["articulation"] > 0 for r in train)
    saved = ckpt.read_tensors(pre / "final" / "model.safetensors")
    assert {"articulation_head.weight", "articulation_head.bias"} <= set(saved)
    # a run without the head (recorded video) starts from that encoder; the head is left behind
    llm = tmp_path / "llm"
    run_training(
        tiny_config(corpus, llm, *lips, train__max_steps=1, train__init_from=[str(pre / "final")], train__lr=1e-9),
        modality="video",
    )
    after = ckpt.read_tensors(llm / "final" / "model.safetensors")
    assert not any(k.startswith("articulation_head.") for k in after)
    torch.testing.assert_close(
        after["video_encoder.stem.weight"], saved["video_encoder.stem.weight"], atol=1e-6, rtol=0
    )


@pytest.mark.slow
def test_a_ctc_objective_run_pretrains_the_encoder_for_an_llm_run(corpus, tmp_path, monkeypatch):
    memoize_decoding(monkeypatch)
    lips = ["model.ctc_weight=1", *LIP_FRONT_END]
    pre = tmp_path / "ctc"
    result = run_training(
        tiny_config(corpus, pre, *lips, "train.objective=ctc", train__max_epochs=2, train__lr=1e-2), modality="video"
    )
    losses = train_losses(pre)
    assert losses[max(losses)] < losses[min(losses)]  # the CTC per character goes down
    assert all("ctc" not in r for r in read_metrics(pre, "train"))  # the loss is the CTC itself
    valid = read_metrics(pre, "valid")
    assert valid and all(math.isfinite(v["loss"]) and v["wer"] is not None for v in valid)
    saved = ckpt.read_tensors(pre / "final" / "model.safetensors")
    # the LLM's LoRA weights never moved (PEFT starts lora_B at zero): a CTC-only run does not run the LLM
    lora = [k for k in saved if "lora_B" in k]
    assert result.steps > 1 and lora and all(torch.count_nonzero(saved[k]) == 0 for k in lora)
    llm = tmp_path / "llm"
    run_training(
        tiny_config(
            corpus,
            llm,
            *lips,
            "model.ctc_weight=0.5",
            train__max_steps=1,
            train__init_from=[str(pre / "final")],
            train__lr=1e-9,
        ),
        modality="video",
    )
    after = ckpt.read_tensors(llm / "final" / "model.safetensors")
    torch.testing.assert_close(
        after["video_encoder.stem.weight"], saved["video_encoder.stem.weight"], atol=1e-6, rtol=0
    )


def test_reporter_writes_log_lines_without_a_terminal(tmp_path):
    buf = io.StringIO()
    rep = Reporter(tmp_path, Console(file=buf, width=120), log_every=1)
    assert not rep.live
    rep.start(total_steps=4, start_step=0)
    rep.update(step=1, epoch=0, loss=2.5, lr=1e-3, utt_per_s=3.0, log_line=True)
    rep.record({"type": "train", "step": 1, "loss": 2.5})
    rep.record({"type": "train", "step": 2, "loss": 2.0})
    rep.truncate_after(1)
    rep.stop()
    rep.update(step=2, epoch=0, loss=2.25, lr=1e-3, utt_per_s=3.0, log_line=True, ctc=4.125)
    assert "epoch 1 step 1/4 loss 2.5000 lr" in buf.getvalue()
    assert "epoch 1 step 2/4 loss 2.2500 ctc 4.125 lr" in buf.getvalue()
    assert [r["step"] for r in read_metrics(tmp_path, "train")] == [1]
    silent = Reporter(tmp_path / "other", Console(file=io.StringIO()), enabled=False)
    silent.record({"type": "train", "step": 1})
    assert not (tmp_path / "other").exists()


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["audio", "both"])
def test_audio_and_fused_runs_learn_and_checkpoint(modality, corpus, tmp_path, monkeypatch):
    memoize_decoding(monkeypatch)
    out = tmp_path / "run"
    cfg = tiny_config(corpus, out, train__max_epochs=2, train__save_every=2, train__save_steps=4)
    result = run_training(cfg, modality=modality)
    losses = train_losses(out)
    assert losses[result.steps] < losses[1]
    expected = {"epoch-0002", "step-000004", "best", "final"}
    assert {p.name for p in ckpt.list_checkpoints(out)} == expected
    model, _, meta = ckpt.load_checkpoint(out / "final")
    assert meta["modality"] == modality and modality in model.modalities


def test_a_fused_run_with_sync_records_it_and_its_checkpoint_keeps_the_classifier(corpus, tmp_path, monkeypatch):
    memoize_decoding(monkeypatch)
    out = tmp_path / "run"
    cfg = tiny_config(
        corpus, out, "model.fusion.sync_weight=0.5", "data.video_corruption=0.5", train__max_steps=2, train__log_every=1
    )
    run_training(cfg, modality="both")
    train = read_metrics(out, "train")
    assert len(train) == 2 and all(math.isfinite(r["sync"]) and r["sync"] > 0 for r in train)
    model, _, _ = ckpt.load_checkpoint(out / "final")
    assert model.fusion.sync is not None and model.loss_weights == {"sync": 0.5}
    saved = ckpt.read_tensors(out / "final" / "model.safetensors")
    # the classifier trained (its threshold left the initial 0.3) and the checkpoint kept what it learnt
    assert "fusion.sync.threshold" in saved and float(saved["fusion.sync.threshold"]) != pytest.approx(0.3, abs=1e-6)
    assert float(model.fusion.sync.threshold) == float(saved["fusion.sync.threshold"])


def test_a_video_run_with_lip_sync_trains_the_lips_against_the_audio_and_decodes_without_it(
    corpus, tmp_path, monkeypatch
):
    memoize_decoding(monkeypatch)
    out = tmp_path / "run"
    cfg = tiny_config(corpus, out, "model.lip_sync_weight=0.5", train__max_steps=2, train__log_every=1)
    seen = {}
    hook = lambda t: seen.update(before=t.model.video_connector.mlp[0].weight.detach().clone())  # noqa: E731
    run_training(cfg, modality="video", trainer_hook=hook)
    train = read_metrics(out, "train")
    assert len(train) == 2 and all(math.isfinite(r["sync"]) and r["sync"] > 0 for r in train)
    saved = ckpt.read_tensors(out / "final" / "model.safetensors")
    # the scorer is stored (it trained), the frozen audio partner is not (the config rebuilds it)
    assert {"lip_sync.scorer.audio.weight", "lip_sync.scorer.video.weight", "lip_sync.scorer.threshold"} <= set(saved)
    assert float(saved["lip_sync.scorer.threshold"]) != pytest.approx(0.3, abs=1e-6)
    assert not any(k.startswith("lip_sync.partner.") for k in saved)
    # decoding builds the video model alone: no audio encoder, no lip-sync head, weights still load
    model, _, meta = ckpt.load_checkpoint(out / "final")
    assert meta["modality"] == "video" and model.modalities == ("video",)
    assert model.lip_sync is None and model.audio_encoder is None
    assert not torch.equal(model.video_connector.mlp[0].weight, seen["before"])


def test_lip_sync_is_refused_outside_a_video_run(corpus, tmp_path):
    cfg = tiny_config(corpus, tmp_path / "run", "model.lip_sync_weight=0.5", train__max_steps=1)
    with pytest.raises(UsageError, match="losses.lip_sync trains a video model's lips; this run trains 'both'"):
        run_training(cfg, modality="both")
    assert not (tmp_path / "run").exists()


def test_a_video_run_with_lip_sync_needs_audio_in_its_manifest(corpus, tmp_path):
    silent = tmp_path / "silent"
    shutil.copytree(corpus, silent)
    tsv = silent / "train.tsv"
    lines = tsv.read_text().splitlines()
    fields = lines[2].split("\t")
    lines[2] = "\t".join([fields[0], fields[1], "", *fields[3:]])  # the second utterance loses its audio path
    tsv.write_text("\n".join(lines) + "\n")
    cfg = tiny_config(silent, tmp_path / "run", "model.lip_sync_weight=0.5", train__max_steps=1)
    with pytest.raises(UsageError, match=r"train\.tsv:3: model\.losses\.lip_sync trains the lips"):
        run_training(cfg, modality="video")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_fused_run_starts_from_the_unimodal_checkpoints(baseline, corpus, tmp_path, monkeypatch):
    """--init-from: the video run's tower and connector, then an audio run's weights (it wins on LoRA)."""
    memoize_decoding(monkeypatch)
    video = ckpt.read_tensors(baseline[0] / "final" / "model.safetensors")
    audio_out = tmp_path / "audio"
    run_training(tiny_config(corpus, audio_out, train__max_steps=2, train__seed=7), modality="audio")
    audio = ckpt.read_tensors(audio_out / "final" / "model.safetensors")
    out = tmp_path / "both"
    cfg = tiny_config(
        corpus, out, train__max_steps=1, train__init_from=[str(baseline[0] / "final"), str(audio_out / "final")]
    )
    seen = {}
    hook = lambda t: seen.update({k: v.clone() for k, v in t.model.trainable_state_dict().items()})  # noqa: E731
    log = io.StringIO()
    run_training(cfg, modality="both", trainer_hook=hook, console=Console(file=log, width=200))
    fused = seen  # the weights before the first step
    lora = [k for k in audio if "lora_" in k]
    assert lora and all(torch.equal(fused[k], audio[k]) for k in lora)
    tower = [k for k in video if k.startswith("video_connector.")]
    assert tower and all(torch.equal(fused[k], video[k]) for k in tower)
    assert any(k.startswith("fusion.") for k in fused) and not any(k.startswith("fusion.") for k in audio)
    assert f"from {audio_out / 'final'} (audio connector" in log.getvalue()


def init_from_logs(corpus, tmp_path, setting, values, *common, source_modality, modality):
    """Logs of one-step `modality` runs with `setting` at each of `values`, each starting (--init-from)
    from one `source_modality` run made with `setting` at values[0]; keyed by value, whitespace collapsed."""
    source = tmp_path / "source"
    first = f"{setting}={values[0]}"
    run_training(tiny_config(corpus, source, *common, first, train__max_steps=1), modality=source_modality)
    logs = {}
    for value in values:
        log = io.StringIO()
        cfg = tiny_config(
            corpus,
            tmp_path / f"run-{value}",
            *common,
            f"{setting}={value}",
            train__max_steps=1,
            train__init_from=[str(source / "final")],
        )
        run_training(cfg, modality=modality, console=Console(file=log, width=300))
        logs[value] = " ".join(log.getvalue().split())
    return logs


def test_init_from_warns_when_a_connector_compresses_at_another_rate(corpus, tmp_path, monkeypatch):
    """K has no weights, so nothing else would notice that the audio-only path changed its token rate."""
    memoize_decoding(monkeypatch)
    logs = init_from_logs(
        corpus, tmp_path, "model.audio_connector.compression", (2, 3), source_modality="audio", modality="both"
    )
    assert "trained the audio connector at K=2" not in logs[2]
    assert "trained the audio connector at K=2 frames per token; this run uses K=3" in logs[3]
    assert "model.audio_connector.compression=2" in logs[3]


@pytest.mark.parametrize("setting", ["utterance_norm", "utterance_scale"])
def test_init_from_warns_when_the_lip_encoder_changes_its_normalisation(setting, corpus, tmp_path, monkeypatch):
    """utterance_norm and utterance_scale have no weights either: a loaded lip encoder would compute
    other features."""
    memoize_decoding(monkeypatch)
    lips = ("model.video_encoder.source=resnet", "model.video_encoder.layers=1", "model.video_encoder.frozen=false")
    if setting == "utterance_scale":
        lips += ("model.video_encoder.utterance_norm=true",)
    logs = init_from_logs(
        corpus,
        tmp_path,
        f"model.video_encoder.{setting}",
        ("false", "true"),
        *lips,
        source_modality="video",
        modality="video",
    )
    assert "utterance_" not in logs["false"]
    assert f"trained the video encoder with {setting}=false; this run uses true" in logs["true"]
    assert f"model.video_encoder.{setting}=false" in logs["true"]


@pytest.mark.slow
def test_init_from_a_checkpoint_of_another_shape_is_refused(baseline, corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        run(_cli(corpus, out, "--init-from", str(baseline[0] / "final"), "--set", "model.video_connector.hidden=64"))
        != 0
    )
    err = _err(capsys)
    assert "--init-from" in err and "video_connector" in err and "shape" in err


class _Built(Exception):
    """Raised by a build_model spy once it has seen its arguments."""


def test_training_builds_the_model_on_its_device(corpus, tmp_path, monkeypatch):
    """`train` must build for the device it trains on, so model.llm.dtype=bfloat16 applies on a GPU
    (building on the CPU resolves it to float32, and moving the model afterwards keeps float32)."""
    from avsrctl.models import builder

    seen = {}

    def spy(cfg, modalities=None, device="cpu", training=False):
        seen["device"] = str(device)
        raise _Built

    monkeypatch.setattr(builder, "build_model", spy)
    with pytest.raises(_Built):
        run_training(tiny_config(corpus, tmp_path / "run"), modality="video", device="cuda:0")
    assert seen["device"] == "cuda:0"


def test_init_from_loads_a_trained_encoder_that_the_new_config_freezes(tmp_path):
    """A lip front-end trained in one run (unfrozen) must reach the next run that freezes it, be
    logged, and stay in that run's checkpoints: a rebuild from config.yaml alone gives random weights."""
    from avsrctl.config import load_config
    from avsrctl.models.builder import build_model
    from avsrctl.training.run import _init_from

    first_cfg = load_config("tiny", ["model.modality=video", "model.video_encoder.frozen=false"])
    first = build_model(first_cfg)
    with torch.no_grad():
        for name, p in first.named_parameters():
            if name.startswith("video_encoder."):
                p.add_(torch.randn_like(p))  # "trained": away from any initialisation
    src = ckpt.save_checkpoint(tmp_path, "first", model=first, cfg=first_cfg, meta={"modality": "video", "step": 5})

    cfg = load_config("tiny", ["model.modality=video"])  # the encoder is frozen again
    model = build_model(cfg)
    log = io.StringIO()
    _init_from(model, [src], Reporter(tmp_path / "out", Console(file=log, width=300), live=False))
    trained = dict(first.named_parameters())
    encoder = {n: p for n, p in model.named_parameters() if n.startswith("video_encoder.")}
    assert encoder and not any(p.requires_grad for p in encoder.values())
    assert all(torch.equal(p, trained[n]) for n, p in encoder.items())
    text = " ".join(log.getvalue().split())
    assert f"{len(encoder)} frozen" in text and "video encoder" in text

    # the next checkpoint keeps them, and what decode loads has them
    path = ckpt.save_checkpoint(tmp_path, "second", model=model, cfg=cfg, meta={"modality": "video", "step": 1})
    loaded, _, _ = ckpt.load_checkpoint(path)
    again = dict(loaded.named_parameters())
    assert all(torch.equal(again[n], trained[n]) for n in encoder)


class CountingDataset(AVDataset):
    """The run's AVDataset in the test below: logs every clip read from disk to a file
    (DataLoader workers are other processes)."""

    def _decode(self, index):
        if index not in self._frames:
            with open(self.decode_log, "a") as f:
                f.write(f"{index}\n")
        return super()._decode(index)


@pytest.mark.slow
def test_worker_processes_and_their_frame_memory_last_across_epochs(corpus, tmp_path):
    """data.frame_memory_mb with num_workers > 0: the workers (and the frames they keep) must live
    across epochs, so each clip is decoded once in a two-epoch run, not once per epoch."""
    log = tmp_path / "decoded.txt"

    def hook(trainer):
        trainer.train_set.__class__ = CountingDataset
        trainer.train_set.decode_log = str(log)

    cfg = tiny_config(
        corpus,
        tmp_path / "run",
        train__max_epochs=2,
        train__save_every=0,
        data__num_workers=1,
        data__frame_memory_mb=64,
    )
    run_training(cfg, modality="video", trainer_hook=hook)
    decoded = log.read_text().split()
    assert decoded and len(decoded) == len(set(decoded))  # every clip once, over both epochs


# ------------------------------------------------------------------ divergence (the run stops, nothing diverged is saved)


def _all_finite(out) -> bool:
    return all(
        bool(torch.isfinite(v).all())
        for path in ckpt.list_checkpoints(out)
        for v in ckpt.read_tensors(path / ckpt.WEIGHTS).values()
    )


def test_an_lr_far_too_high_stops_the_run_and_saves_nothing(corpus, tmp_path, monkeypatch, capsys):
    """train.lr=1e20 is finite, so the config takes it; the first update blows the weights up to
    ~1e19 (finite), and every loss after is NaN. The run used to exit 0 with `final` and
    `epoch-*` holding those weights, saying only '1 step skipped for a non-finite loss'."""
    memoize_decoding(monkeypatch)
    out = tmp_path / "run"
    assert run(_cli(corpus, out, "--set", "train.lr=1e20", "--max-steps", "3")) == 1
    err = _err(capsys)
    assert "training diverged: validation at step 1 gave a non-finite loss on every batch" in err
    assert "no checkpoint was written" in err and "train.lr" in err
    assert ckpt.list_checkpoints(out) == [] and not (out / "final").exists() and not (out / "best").exists()


def test_weights_that_turn_non_finite_later_name_the_step_and_the_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    """Whatever makes a weight NaN (here injected after step 3's update: an fp16 overflow would
    do the same), the run stops there; the checkpoints it wrote before are good."""
    memoize_decoding(monkeypatch)
    out = tmp_path / "run"

    def poison_step_3(trainer):
        step = trainer.optimizer.step

        def poisoned(*a, **k):
            done = step(*a, **k)
            if trainer.step == 2:  # the update of optimiser step 3
                with torch.no_grad():
                    trainer.params[0].view(-1)[0] = float("nan")
            return done

        trainer.optimizer.step = poisoned

    cfg = tiny_config(corpus, out, train__max_steps=5, train__save_steps=2, train__save_every=0)
    with pytest.raises(TrainingError) as err:
        run_training(cfg, modality="video", trainer_hook=poison_step_3)
    message = str(err.value)
    assert "optimiser step 3 left non-finite weights" in message
    assert f"the last good checkpoint is {out / 'step-000002'}" in message
    assert [p.name for p in ckpt.list_checkpoints(out) if p.name != "best"] == ["step-000002"]
    assert not (out / "final").exists() and _all_finite(out)
    assert any(r["event"] == "diverged" and r["step"] == 3 for r in read_metrics(out, "event"))


@pytest.mark.slow
def test_freeze_keeps_the_named_components_as_init_from_set_them(baseline, corpus, tmp_path, monkeypatch, capsys):
    """train.freeze: the named components keep the weights --init-from gave them, bit for bit, and
    the run's checkpoints store them; the rest trains. Resuming with another freeze is refused."""
    from avsrctl.models.inspect import component_of

    memoize_decoding(monkeypatch)
    source, out = baseline[0] / "final", tmp_path / "run"
    frozen = ["video connector", "LoRA adapters"]
    cfg = tiny_config(corpus, out, *COMMON, train__max_epochs=1, train__init_from=[str(source)], train__freeze=frozen)
    run_training(cfg, modality="video", console=Console(file=(log := io.StringIO()), width=300))
    assert "train.freeze: video connector, LoRA adapters kept as they are" in log.getvalue()
    before = ckpt.read_tensors(source / "model.safetensors")
    after = ckpt.read_tensors(out / "final" / "model.safetensors")
    kept = [k for k in after if component_of(k) in frozen]
    assert {component_of(k) for k in kept} == set(frozen)
    assert all(torch.equal(before[k], after[k]) for k in kept)
    assert not torch.equal(before["marker_embeddings"], after["marker_embeddings"])  # not named: it trained

    args = _cli(corpus, out, "--resume", str(out / "final"), "--set", COMMON[0])
    assert run([*args, "--set", "train.freeze=[video connector]"]) == 2
    assert "the checkpoint was trained with train.freeze" in _err(capsys)


def test_freeze_names_components_as_inspect_params_does(corpus, tmp_path):
    from avsrctl.config import ConfigError, load_config
    from avsrctl.config.sections import COMPONENTS
    from avsrctl.models.builder import build_model
    from avsrctl.models.inspect import LABELS, OTHER
    from avsrctl.training.run import freeze_components

    assert set(COMPONENTS) == set(LABELS) - {OTHER}
    with pytest.raises(ConfigError, match="train.freeze"):
        load_config("tiny", ["train.freeze=[lips]"])
    model = build_model(tiny_config(corpus, tmp_path / "run", "model.modality=video"))
    with pytest.raises(UsageError, match="train.freeze: this model has no 'fusion'"):
        freeze_components(model, ["fusion"])
    assert freeze_components(model, ["LoRA adapters"]) > 0
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
    assert model.marker_embeddings.requires_grad
