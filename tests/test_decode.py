"""`avsrctl decode` on a tiny trained checkpoint: files in manifest order, SNR rows, single file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avsrctl.cli.main import run
from avsrctl.data.manifest import read_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 12-utterance corpus and a tiny 'both' checkpoint trained for a few steps."""
    from avsrctl.config import load_config
    from avsrctl.synth.corpus import generate_corpus
    from avsrctl.training.run import run_training

    root = tmp_path_factory.mktemp("decode")
    corpus = root / "corpus"
    generate_corpus(
        corpus, n_utterances=12, n_speakers=2, n_test_speakers=1, size=32, seed=3, jobs=1, valid_fraction=0.2
    )
    cfg = load_config(
        "tiny",
        None,
        {"data.root": str(corpus), "train.output": str(root / "run"), "train.max_steps": 3, "decode.max_new_tokens": 8},
    )
    run_training(cfg, modality="both")
    return corpus, root / "run" / "final"


@pytest.fixture(scope="module")
def sync_ckpt(tmp_path_factory):
    """A tiny fused checkpoint with the sync classifier, its gate reading the streams and its
    in-sync probabilities near 0.5 (so they vary visibly from clip to clip)."""
    import torch

    from avsrctl.checkpoint import save_checkpoint
    from avsrctl.config import load_config
    from avsrctl.models.builder import build_model

    cfg = load_config("tiny", ["model.modality=both", "model.fusion.sync_weight=1.0"], {"decode.max_new_tokens": 4})
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        torch.nn.init.normal_(model.fusion.gate[2].weight)
        model.fusion.sync.threshold.fill_(0.0)
    return save_checkpoint(tmp_path_factory.mktemp("sync"), "best", model=model, cfg=cfg, meta={"modality": "both"})


def test_decode_writes_every_file_in_manifest_order(trained, tmp_path, capsys):
    corpus, ckpt = trained
    out = tmp_path / "out"
    code = run(
        [
            "decode",
            "--checkpoint",
            str(ckpt),
            "--tsv",
            str(corpus / "test.tsv"),
            "--modality",
            "both",
            "--output-dir",
            str(out),
            "--batch-size",
            "2",
            "--format",
            "json",
        ]
    )
    assert code == 0
    manifest = read_manifest(corpus / "test.tsv")
    hyps = (out / "hyp.wrd").read_text().splitlines()
    assert len(hyps) == len(manifest)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [u.id for u in manifest]
    assert [r["reference"] for r in rows] == [u.text for u in manifest]
    assert [r["hypothesis"] for r in rows] == hyps
    wer = json.loads((out / "wer.json").read_text())
    assert wer["n_utterances"] == len(manifest)
    assert wer["ref_words"] == sum(len(u.text.split()) for u in manifest)
    assert wer["errors"] == sum(r["errors"] for r in rows)
    assert wer["settings"]["beam_size"] == 1 and wer["settings"]["modality"] == "both"
    printed = json.loads(capsys.readouterr().out)
    assert printed[0]["condition"] == "clean" and printed[0]["wer"] == wer["wer"]


def test_decode_rerun_writes_identical_files(trained, tmp_path):
    corpus, ckpt = trained
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert (
            run(
                [
                    "decode",
                    "--checkpoint",
                    str(ckpt),
                    "--tsv",
                    str(corpus / "test.tsv"),
                    "--modality",
                    "both",
                    "--output-dir",
                    str(out),
                ]
            )
            == 0
        )
        outputs.append((out / "hyp.wrd").read_text() + (out / "results.jsonl").read_text())
    assert outputs[0] == outputs[1]


def test_snr_gives_one_row_per_level(trained, tmp_path, capsys, monkeypatch):
    from avsrctl.data.noise import snr_db
    from avsrctl.models.avsr import AVSRModel

    seen = []  # the audio each condition really decodes, (id, samples) per utterance
    generate = AVSRModel.generate

    def spy(self, batch, modality, options=None):
        for uid, n, audio in zip(batch.ids, batch.audio_lengths.tolist(), batch.audio):
            seen.append((uid, audio[:n].cpu().numpy().copy()))
        return generate(self, batch, modality, options)

    monkeypatch.setattr(AVSRModel, "generate", spy)
    corpus, ckpt = trained
    out = tmp_path / "snr"
    code = run(
        [
            "decode",
            "--checkpoint",
            str(ckpt),
            "--tsv",
            str(corpus / "test.tsv"),
            "--modality",
            "audio",
            "--output-dir",
            str(out),
            "--snr",
            "-5",
            "--snr",
            "10",
            "--noise",
            "white",
            "--format",
            "json",
        ]
    )
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["condition"] for r in rows] == ["clean", "white -5 dB", "white 10 dB"]
    by_snr = json.loads((out / "wer_by_snr.json").read_text())
    assert [r["snr_db"] for r in by_snr] == [None, -5.0, 10.0]
    for level in ("snr_-5", "snr_10"):
        wer = json.loads((out / level / "wer.json").read_text())
        assert wer["settings"]["noise"]["kind"] == "white"
        assert len((out / level / "hyp.wrd").read_text().splitlines()) == wer["n_utterances"]
    # each level decoded the clean audio plus noise at that SNR (a noiser returning clean audio fails)
    n = len(seen) // 3
    clean, levels = dict(seen[:n]), [seen[n : 2 * n], seen[2 * n :]]
    for want, rows in zip((-5.0, 10.0), levels):
        for uid, noisy in rows:
            assert snr_db(clean[uid], noisy) == pytest.approx(want, abs=1.0), uid


def test_single_file_prints_one_hypothesis(trained, capsys):
    corpus, ckpt = trained
    manifest = read_manifest(corpus / "test.tsv")
    clip = manifest[0].video
    assert (
        run(
            ["decode", "--checkpoint", str(ckpt), "--single-file", str(clip), "--modality", "video", "--format", "json"]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["file"] == str(clip) and result["modality"] == "video"
    # the hypothesis of that clip: what the library gives for it, not just some string
    from avsrctl.checkpoint import load_checkpoint
    from avsrctl.data.dataset import load_clip
    from avsrctl.decoding import DecodingOptions

    model, cfg, _ = load_checkpoint(ckpt)
    batch = load_clip(clip, "video", roi=cfg.data.roi, roi_size=cfg.data.roi_size)
    want = model.generate(batch, "video", DecodingOptions.from_config(cfg.decode))[0]
    assert result["text"] == want.text


def test_modality_the_manifest_lacks_is_refused(trained, tmp_path, capsys):
    corpus, ckpt = trained
    manifest = read_manifest(corpus / "test.tsv")
    audio_only = tmp_path / "audio.tsv"
    lines = [str(corpus)] + [f"{u.id}\t-\t{u.audio}\t0\t{u.n_audio_samples}" for u in manifest]
    audio_only.write_text("\n".join(lines) + "\n")
    (tmp_path / "audio.wrd").write_text("".join(u.text + "\n" for u in manifest))
    code = run(
        [
            "decode",
            "--checkpoint",
            str(ckpt),
            "--tsv",
            str(audio_only),
            "--modality",
            "video",
            "--output-dir",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert "needs video" in capsys.readouterr().err


def test_missing_checkpoint_is_a_usage_error(capsys):
    assert run(["decode", "--tsv", "x.tsv"]) == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_fused_decode_reports_each_utterances_video_weight(trained, tmp_path):
    """results.jsonl and wer.json carry the fusion's mean video weight for 'both'; none for one stream."""
    import json

    import torch

    from avsrctl.config import load_config
    from avsrctl.data.manifest import read_manifest
    from avsrctl.decoding import DecodingOptions
    from avsrctl.evaluate import decode_manifest, score_hypotheses, write_condition
    from avsrctl.models.builder import build_model

    corpus, _ = trained
    cfg = load_config("tiny", ["model.modality=both"])
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        torch.nn.init.normal_(model.fusion.gate[2].weight)  # a gate that reads its streams
    manifest = read_manifest(corpus / "test.tsv", corpus / "test.wrd")
    out = decode_manifest(model, manifest, "both", DecodingOptions(max_new_tokens=4), cfg)
    assert len(out.video_weights) == len(manifest) and all(0 < w < 1 for w in out.video_weights)
    assert len(set(out.video_weights)) > 1  # per utterance, not one constant
    write_condition(tmp_path / "o", manifest, out, score_hypotheses(manifest, out.hypotheses, "basic"), {})
    rows = [json.loads(line) for line in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert [r["video_weight"] for r in rows] == [round(w, 4) for w in out.video_weights]
    summary = json.loads((tmp_path / "o" / "wer.json").read_text())
    assert summary["mean_video_weight"] == round(sum(out.video_weights) / len(manifest), 4)
    # no sync classifier in this model: nothing about sync is reported
    assert out.lip_syncs is None and "mean_lip_sync" not in summary and not any("lip_sync" in r for r in rows)
    audio_only = decode_manifest(model, manifest, "audio", DecodingOptions(max_new_tokens=4), cfg)
    assert audio_only.video_weights is None and audio_only.mean_video_weight is None


def test_fused_decode_with_a_sync_classifier_reports_each_utterances_lip_sync(trained, tmp_path):
    """results.jsonl rows carry the mean P(lips in sync) beside the video weight, wer.json its mean."""
    import json

    import torch

    from avsrctl.config import load_config
    from avsrctl.data.manifest import read_manifest
    from avsrctl.decoding import DecodingOptions
    from avsrctl.evaluate import decode_manifest, score_hypotheses, write_condition
    from avsrctl.models.builder import build_model

    corpus, _ = trained
    cfg = load_config("tiny", ["model.modality=both", "model.fusion.sync_weight=1.0"])
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        torch.nn.init.normal_(model.fusion.gate[2].weight)
        model.fusion.sync.threshold.fill_(0.0)  # r near 0.5, so it varies visibly from clip to clip
    manifest = read_manifest(corpus / "test.tsv", corpus / "test.wrd")
    out = decode_manifest(model, manifest, "both", DecodingOptions(max_new_tokens=4), cfg)
    assert len(out.lip_syncs) == len(manifest) and all(0 < r < 1 for r in out.lip_syncs)
    assert len(set(out.lip_syncs)) > 1  # per utterance, not one constant
    # the video weight of each frame is the gate's share times r, so its mean never exceeds r's
    assert all(w <= r + 1e-6 for w, r in zip(out.video_weights, out.lip_syncs))
    write_condition(tmp_path / "o", manifest, out, score_hypotheses(manifest, out.hypotheses, "basic"), {})
    rows = [json.loads(line) for line in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert [r["lip_sync"] for r in rows] == [round(r, 4) for r in out.lip_syncs]
    summary = json.loads((tmp_path / "o" / "wer.json").read_text())
    assert summary["mean_lip_sync"] == round(sum(out.lip_syncs) / len(manifest), 4)


def test_eval_of_the_fused_model_reports_the_same_video_weights_as_decode(trained, tmp_path, capsys):
    """`eval --output-dir` writes the fused model's video weights as `decode` does (wer.json mean, each row)."""
    corpus, ckpt = trained
    common = ["--checkpoint", str(ckpt), "--tsv", str(corpus / "test.tsv"), "--modality", "both"]
    assert run(["decode", *common, "--output-dir", str(tmp_path / "decode")]) == 0
    assert run(["eval", *common, "--output-dir", str(tmp_path / "eval")]) == 0
    capsys.readouterr()
    rows = {
        name: [json.loads(line) for line in (tmp_path / name / "results.jsonl").read_text().splitlines()]
        for name in ("decode", "eval")
    }
    assert [r["video_weight"] for r in rows["eval"]] == [r["video_weight"] for r in rows["decode"]]
    means = [json.loads((tmp_path / name / "wer.json").read_text())["mean_video_weight"] for name in ("decode", "eval")]
    assert means[0] == means[1] and 0 < means[0] < 1


def test_decode_and_eval_say_how_the_fused_model_used_the_lips(trained, sync_ckpt, tmp_path, capsys):
    """Below the results table: the mean video weight and, with a sync classifier, how many utterances
    had their lips set aside; one stream says nothing about lips."""
    from avsrctl.data.manifest import read_manifest

    corpus, _ = trained
    ckpt = sync_ckpt
    n = len(read_manifest(corpus / "test.tsv", corpus / "test.wrd"))
    common = ["--checkpoint", str(ckpt), "--tsv", str(corpus / "test.tsv")]

    assert run(["decode", *common, "-m", "both", "--min-lip-sync", "0.99", "--output-dir", str(tmp_path / "d")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert n > 1 and f"clean: lips set aside in {n} of {n} utterances (in sync" in err
    assert "read from the audio alone; video weight 0.00" in err

    aside = [json.loads(line) for line in (tmp_path / "d" / "results.jsonl").read_text().splitlines()]
    assert run(["eval", *common, "-m", "all", "--min-lip-sync", "0", "--output-dir", str(tmp_path / "e")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    rows = [json.loads(line) for line in (tmp_path / "e" / "both" / "results.jsonl").read_text().splitlines()]
    assert [r["lip_sync"] for r in rows] == [r["lip_sync"] for r in aside]  # the same lips, kept this time
    weight = sum(r["video_weight"] for r in rows) / n
    sync = sum(r["lip_sync"] for r in rows) / n
    assert weight > 0
    assert f"both: lips: video weight {weight:.2f}, in sync {sync:.2f}" in err
    assert "audio: lips" not in err and f"video: lips in sync {sync:.2f} with the voice" in err  # same classifier

    assert run(["decode", *common, "-m", "audio", "--output-dir", str(tmp_path / "a")]) == 0
    assert "lips" not in capsys.readouterr().err


def test_decode_and_eval_give_each_wer_its_bootstrap_interval(trained, tmp_path, capsys):
    """wer.json carries wer_ci95 and stderr says it per condition; eval -m all compares 'both' with
    each single stream on the same utterances (paired bootstrap)."""
    from avsrctl.data.manifest import read_manifest
    from avsrctl.metrics import paired_comparison

    corpus, ckpt = trained
    n = len(read_manifest(corpus / "test.tsv", corpus / "test.wrd"))
    common = ["--checkpoint", str(ckpt), "--tsv", str(corpus / "test.tsv")]
    assert run(["decode", *common, "-m", "audio", "--output-dir", str(tmp_path / "d")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    summary = json.loads((tmp_path / "d" / "wer.json").read_text())
    lo, hi = summary["wer_ci95"]
    assert lo <= summary["wer"] <= hi
    assert f"clean: WER {100 * summary['wer']:.1f}%, 95% interval {100 * lo:.1f}-{100 * hi:.1f}%" in err
    assert f"(bootstrap over {n} utterances)" in err

    assert run(["eval", *common, "-m", "all", "--output-dir", str(tmp_path / "e"), "--format", "json"]) == 0
    out = capsys.readouterr()
    runs = {r["modality"]: r for r in json.loads(out.out)}
    assert all(len(r["wer_ci95"]) == 2 for r in runs.values())
    errors = {
        m: [json.loads(line)["errors"] for line in (tmp_path / "e" / m / "results.jsonl").read_text().splitlines()]
        for m in runs
    }
    better, tied = paired_comparison(errors["both"], errors["audio"])
    assert runs["both"]["paired"]["audio"] == {"fewer_errors": round(better, 4), "as_many": round(tied, 4)}
    said = " ".join(out.err.split())
    assert f"both vs audio: fewer errors in {100 * better:.0f}% of resamples, as many in {100 * tied:.0f}%" in said


def test_video_decoding_of_a_fused_model_says_whether_the_lips_follow_the_voice(trained, sync_ckpt, tmp_path, capsys):
    """-m video with a sync classifier and audio in the manifest: each row's in-sync probability (the
    same the 'both' mode computes), and a warning for rows below the threshold; the transcript does
    not read the audio."""
    from avsrctl.data.manifest import read_manifest

    corpus, _ = trained
    ckpt = sync_ckpt
    n = len(read_manifest(corpus / "test.tsv", corpus / "test.wrd"))
    common = ["--checkpoint", str(ckpt), "--tsv", str(corpus / "test.tsv"), "--min-lip-sync", "0.99"]

    def rows(folder):
        return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]

    assert run(["decode", *common, "-m", "both", "--output-dir", str(tmp_path / "b")]) == 0
    assert run(["decode", *common, "-m", "video", "--output-dir", str(tmp_path / "v")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    video, both = rows(tmp_path / "v"), rows(tmp_path / "b")
    assert [r["lip_sync"] for r in video] == [r["lip_sync"] for r in both]
    assert all("video_weight" not in r for r in video)
    assert json.loads((tmp_path / "v" / "wer.json").read_text())["mean_lip_sync"] == pytest.approx(
        sum(r["lip_sync"] for r in video) / n, abs=1e-4
    )
    assert f"clean: lips in sync {sum(r['lip_sync'] for r in video) / n:.2f} with the voice" in err
    assert f"below 0.99 in {n} of {n} utterances): this lip reading may be unreliable" in err

    assert run(["decode", "--checkpoint", str(ckpt), "--tsv", str(corpus / "test.tsv"), "-m", "audio",
                "--output-dir", str(tmp_path / "a")]) == 0  # fmt: skip
    assert all("lip_sync" not in r for r in rows(tmp_path / "a"))


def test_a_broken_audio_file_costs_a_video_decode_nothing(trained, sync_ckpt, tmp_path, capsys):
    """The audio a fused model hears to judge lips read alone is optional: a clip whose audio cannot be
    decoded is still read from its video (only the judgement is lost), never counted as failed."""
    import shutil

    from avsrctl.data.manifest import read_manifest

    corpus, _ = trained
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    manifest = read_manifest(copy / "test.tsv", copy / "test.wrd")
    Path(manifest[0].audio).write_bytes(b"RIFF but not a wav file")
    args = ["decode", "--checkpoint", str(sync_ckpt), "--tsv", str(copy / "test.tsv"), "-m", "video"]
    assert run([*args, "--output-dir", str(tmp_path / "v")]) == 0
    capsys.readouterr()
    summary = json.loads((tmp_path / "v" / "wer.json").read_text())
    assert summary["n_failed"] == 0 and summary["n_utterances"] == len(manifest)


def test_decode_request_carries_its_settings_and_leaves_the_loaded_config_as_it_was(trained, tmp_path, monkeypatch):
    """The library call behind `decode`: a frozen `DecodeRequest`; --batch-size reaches the decode
    and wer.json's settings without being written into the loaded config."""
    import dataclasses

    import avsrctl.checkpoint as checkpoint
    from avsrctl.decode_runs import ClipDecode, DecodeRequest, ManifestDecode, run_decode_request

    corpus, ckpt = trained
    loaded, real = [], checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda *a, **k: loaded.append(real(*a, **k)) or loaded[-1])
    out = tmp_path / "out"
    request = DecodeRequest(ckpt, tsv=corpus / "test.tsv", modality="both", output_dir=out, batch_size=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.batch_size = 2
    done = run_decode_request(request)
    assert isinstance(done, ManifestDecode) and done.output_dir == out and done.modality == "both"
    [(_, cfg, _)] = loaded
    assert cfg.decode.batch_size == 8  # the tiny config's, as loaded
    assert json.loads((out / "wer.json").read_text())["settings"]["batch_size"] == 1
    assert [done.label(o) for o, _ in done.results] == ["clean"]
    clip = read_manifest(corpus / "test.tsv").utterances[0].video
    single = run_decode_request(DecodeRequest(ckpt, single_file=clip, modality="video"))  # a video file
    assert isinstance(single, ClipDecode) and single.path == clip and isinstance(single.result.text, str)
