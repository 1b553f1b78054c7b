"""The bad-input half of the reliability matrix (docs/RELIABILITY.md), at the command line.

Every failing case goes through `avsrctl.cli.main.run` and must give: the documented exit
code, exactly one `error:` line naming the file/line/key, a `hint:` line, no traceback, and
no change to a good output that was already there (see `cli_error`). Cases the module tests
already pin at the library level (tests/test_manifest.py, test_media.py, test_checkpoint.py,
test_config.py) are repeated here only as far as the CLI contract needs.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import requires_whisper_weights
from reliability_support import (  # noqa: F401  (cli_error is a fixture)
    Bait,
    av_clip,
    cli_error,
    fake_corpus,
    ffmpeg_make,
    files_under,
    long_speech,
    set_yaml,
    shell_risks,
    speak,
    tiny_checkpoint,
)

from avsrctl.cli.main import run as run_cli

REPO = Path(__file__).resolve().parents[1]
GOOD = b"a good output from an earlier run\n"


# ------------------------------------------------------------------------ fixtures


def run(argv: list) -> int:
    return run_cli([str(a) for a in argv])


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """An output folder holding a good config.yaml from an earlier run (a failed command must keep it)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_bytes(GOOD)
    return out


def train_args(data: Path, out: Path, *extra) -> list:
    return ["train", "--config", "tiny", "--data", data, "--output", out, *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small decodable corpus (test split of generated clips) and an untrained tiny 'both' checkpoint."""
    from avsrctl.data.manifest import Utterance, write_manifest
    from avsrctl.data.media import save_audio

    root = tmp_path_factory.mktemp("reliability")
    corpus = root / "corpus"
    utts = []
    for i, text in enumerate(
        ["bin blue at f two now", "set red by g nine soon", "lay green in a one again", "place white with b six please"]
    ):
        frames = 20 + 5 * i
        video = av_clip(corpus / "video" / f"u{i}.mp4", frames=frames)
        audio = corpus / "audio" / f"u{i}.wav"
        save_audio(audio, (0.2 * np.sin(np.arange(640 * frames) / (3 + i))).astype(np.float32))
        utts.append(Utterance(f"u{i}", video, audio, frames, 640 * frames, text))
    write_manifest(corpus / "test.tsv", corpus / "test.wrd", corpus, utts)
    return corpus, tiny_checkpoint(root / "run", "both")


# -------------------------------------------------------------------------- config


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "extra, fragments, hint",
    [
        (["--set", "train.lrr=1"], ["--set: unknown key 'train.lrr'"], "did you mean 'train.lr'?"),
        (["--set", "model.llm.lora.rnk=3"], ["unknown key 'model.llm.lora.rnk'"], "model.llm.lora.rank"),
        (["--set", "train.lr=fast"], ["--set: train.lr:", "'fast'"], None),
        (["--set", "train.max_steps=2.5"], ["train.max_steps", "2.5"], None),
        (
            ["--modality", "lips"],
            ["--modality must be one of audio, video, both", "got 'lips'"],
            "avsrctl train --help",
        ),
        (["--set", "model.modality=lips"], ["--set: model.modality", "'lips'"], None),
        (["--max-epochs", "0"], ["command line: train.max_epochs", "greater than 0"], None),
        (["--max-steps", "-1"], ["command line: train.max_steps", "(got -1)"], None),
        (["--set", "data.max_batch_size=0"], ["--set: data.max_batch_size"], None),
        (["--set", "model.llm.lora.rank=-2"], ["--set: model.llm.lora.rank"], None),
        (["--save-steps", "0"], ["train.save_steps", "greater than 0"], None),
        (["--save-steps", "-5"], ["train.save_steps", "(got -5)"], None),
        (["--save-steps", "abc"], ["--save-steps", "valid integer"], "avsrctl train --help"),
        (
            ["--max-steps", "3", "--save-steps", "10"],
            ["train.save_steps (10) is larger than train.max_steps (3)"],
            None,
        ),
        (["--no-such-flag"], ["No such option: --no-such-flag"], "avsrctl train --help"),
    ],
)
def test_bad_config_values_and_flags(cli_error, tmp_path, run_dir, extra, fragments, hint):
    data = fake_corpus(tmp_path / "data")
    cli_error(train_args(data, run_dir, *extra), 2, *fragments, unchanged=[run_dir / "config.yaml"], hint=hint)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"]


@pytest.mark.parametrize(
    "text, fragments, hint",
    [
        ("train:\n  lr: 0.1\n  lrr: 1\n", ["c.yaml:3: unknown key 'train.lrr'"], "train.lr"),
        ("train:\n  max_epochs: many\n", ["c.yaml:2: train.max_epochs", "'many'"], None),
        ("data:\n  roi: none\nmodel:\n  modality: lips\n", ["c.yaml:4: model.modality"], None),
        (
            "model:\n  audio_encoder: {source: random, d_model: 64, heads: 5}\n",
            ["c.yaml:2: model.audio_encoder: d_model (64) must be divisible by heads (5)"],
            None,
        ),
        ("train: [1, 2\n", ["c.yaml:", "invalid YAML"], None),
        ("- just\n- a list\n", ["expected a mapping of sections"], None),
    ],
)
def test_bad_config_files_name_file_line_and_key(cli_error, tmp_path, run_dir, text, fragments, hint):
    data = fake_corpus(tmp_path / "data")
    args = ["train", "--config", _yaml(tmp_path, text), "--data", data, "--output", run_dir]
    cli_error(args, 2, *fragments, unchanged=[run_dir / "config.yaml"], hint=hint)


@pytest.mark.parametrize("extra", [["--modality", "video"], []])  # [] : the tiny preset's 'both'
def test_video_asked_of_a_manifest_without_video(cli_error, tmp_path, run_dir, extra):
    data = fake_corpus(tmp_path / "data", streams="a")
    cli_error(
        train_args(data, run_dir, *extra),
        2,
        f"{data / 'train.tsv'}:2:",
        "needs video",
        "2 of 2 utterances have no video path",
        unchanged=[run_dir / "config.yaml"],
        hint="--modality audio",
    )


# ------------------------------------------------------------------------ manifests


def _edit(path: Path, fn) -> None:
    path.write_bytes(fn(path.read_bytes()))


LAYOUT = "root line, then id, video, audio, n_video, n_audio"  # DataError's default hint
MANIFEST_CASES = {  # case: (spoil the corpus, fragments of the error line, fragment of the hint)
    "tsv/wrd line mismatch": (
        lambda d: _edit(d / "train.wrd", lambda b: b.split(b"\n")[0] + b"\n"),
        ["train.wrd: 1 transcripts for 2 utterances in", "train.tsv"],
        "one line per .tsv row",
    ),
    "missing media": (
        lambda d: (d / "b.wav").unlink(),
        ["train.tsv:3: media file not found:", "b.wav"],
        "relative to the root folder",
    ),
    "empty root line": (
        lambda d: _edit(d / "train.tsv", lambda b: b"\n" + b.split(b"\n", 1)[1]),
        ["train.tsv:1: the first line must be the root folder"],
        "root directory",
    ),
    "no root line": (
        lambda d: _edit(d / "train.tsv", lambda b: b.split(b"\n", 1)[1]),
        ["train.tsv:1: the first line must be the root folder, found tab-separated fields"],
        "add the root folder",
    ),
    "wrong field count": (
        lambda d: _edit(d / "train.tsv", lambda b: b.replace(b"\t32000\n", b"\n", 1)),
        ["train.tsv:2: expected 5 tab-separated fields", "got 4"],
        LAYOUT,
    ),
    "count not a number": (
        lambda d: _edit(d / "train.tsv", lambda b: b.replace(b"\t50\t", b"\tfifty\t", 1)),
        ["train.tsv:2: n_video_frames must be a whole number, got 'fifty'"],
        LAYOUT,
    ),
    "non-UTF-8 transcript": (
        lambda d: _edit(d / "train.wrd", lambda b: b.replace(b"set red", b"set r\xe9d")),
        ["train.wrd:2: not valid UTF-8 (byte 0xe9)"],
        "UTF-8",
    ),
    "non-UTF-8 manifest": (
        lambda d: _edit(d / "train.tsv", lambda b: b.replace(b"\nb\t", b"\n\xff\t")),
        ["train.tsv:3: not valid UTF-8"],
        "UTF-8",
    ),
    "empty transcript": (
        lambda d: _edit(d / "train.wrd", lambda b: b.replace(b"set red by g nine soon", b"  ")),
        ["train.wrd:2: empty transcript for 'b'"],
        "write the words spoken in 'b' on line 2",
    ),
    "duplicate id": (
        lambda d: _edit(d / "train.tsv", lambda b: b.replace(b"\nb\t", b"\na\t")),
        ["train.tsv:3: duplicate id 'a' (first on line 2)"],
        "ids must be unique: rename or drop one of lines 2 and 3",
    ),
    "path climbing out of the root": (  # the file exists out there: it used to be decoded
        lambda d: (
            shutil.copy(d / "b.wav", d.parent / "b.wav"),
            _edit(d / "train.tsv", lambda b: b.replace(b"\tb.wav\t", b"\t../b.wav\t")),
        ),
        ["train.tsv:3: audio path '../b.wav' climbs out of the root folder"],
        "absolute path",
    ),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_bad_manifests_name_file_and_line(cli_error, tmp_path, run_dir, case):
    data = fake_corpus(tmp_path / "data")
    spoil, fragments, hint = MANIFEST_CASES[case]
    spoil(data)
    cli_error(
        train_args(data, run_dir, "--modality", "both"), 1, *fragments, unchanged=[run_dir / "config.yaml"], hint=hint
    )


@pytest.mark.parametrize("case", ["missing media", "path climbing out of the root"])
def test_bad_manifest_to_decode_keeps_the_previous_results(cli_error, trained, tmp_path, case):
    corpus, ckpt = trained
    data = fake_corpus(tmp_path / "data")
    spoil, fragments, _ = MANIFEST_CASES[case]
    spoil(data)
    out = tmp_path / "decoded"
    out.mkdir()
    for name in ("hyp.wrd", "results.jsonl", "wer.json"):
        (out / name).write_bytes(GOOD)
    cli_error(
        ["decode", "--checkpoint", ckpt, "--tsv", data / "train.tsv", "--output-dir", out],
        1,
        *fragments,
        unchanged=list(out.iterdir()),
    )


# -------------------------------------------------------------------------- media


@pytest.fixture(scope="module")
def bad_media(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Broken clips, each with the words its error must contain."""
    d = tmp_path_factory.mktemp("bad_media")
    good = av_clip(d / "good.mp4", frames=50)
    data = good.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (d / "corrupt.mp4").write_bytes(bytes(range(256)) * 64)
    (d / "empty.wav").write_bytes(b"")
    ffmpeg_make(
        d / "video_only.mp4",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=32x32:rate=25",
        "-t",
        "0.4",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
    )
    ffmpeg_make(d / "no_samples.wav", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "0")
    return {
        "truncated": (d / "truncated.mp4", "truncated.mp4"),
        "corrupt": (d / "corrupt.mp4", "corrupt.mp4"),
        "zero-byte file": (d / "empty.wav", "zero-length file"),
        "no audio stream": (d / "video_only.mp4", "no audio stream"),
        "zero-length stream": (d / "no_samples.wav", "zero-length audio stream"),
    }


@requires_whisper_weights
@pytest.mark.parametrize("case", ["truncated", "corrupt", "zero-byte file", "no audio stream", "zero-length stream"])
def test_broken_media_to_transcribe(cli_error, bad_media, tmp_path, case):
    clip, fragment = bad_media[case]
    out = tmp_path / "clip.txt"
    out.write_bytes(GOOD)
    cli_error(["transcribe", clip, "-o", out], 1, str(clip.parent), fragment, unchanged=[out], hint="ffprobe")


@pytest.mark.parametrize(
    "case, hint", [("truncated", "ffprobe"), ("corrupt", "ffprobe"), ("no audio stream", "use --modality video")]
)
def test_broken_media_to_decode_single_file(cli_error, trained, bad_media, case, hint):
    clip, fragment = bad_media[case]
    cli_error(
        ["decode", "--checkpoint", trained[1], "--single-file", clip, "--modality", "both"], 1, fragment, hint=hint
    )


def _with_a_broken_clip(corpus: Path, broken_clip: Path, folder: Path):
    """folder/t.tsv: the corpus's test manifest with the video of its 2nd utterance swapped for `broken_clip`."""
    from avsrctl.data.manifest import read_manifest

    manifest = read_manifest(corpus / "test.tsv")
    rows = [str(corpus)] + [f"{u.id}\t{u.video}\t{u.audio}\t{u.n_video_frames}\t{u.n_audio_samples}" for u in manifest]
    rows[2] = rows[2].replace(str(manifest[1].video), str(broken_clip))
    (folder / "t.tsv").write_text("\n".join(rows) + "\n")
    shutil.copy(corpus / "test.wrd", folder / "t.wrd")
    return manifest, manifest[1]


def test_broken_clip_in_a_manifest_is_an_empty_hypothesis_not_a_substitute(trained, bad_media, tmp_path, capsys):
    """A decode over a manifest keeps going: the broken clip scores as deletions and is listed
    (1 of 4 failed: within --max-failed 0.25)."""
    corpus, ckpt = trained
    manifest, broken = _with_a_broken_clip(corpus, bad_media["truncated"][0], tmp_path)
    out = tmp_path / "out"
    assert (
        run(
            [
                "decode",
                "--checkpoint",
                ckpt,
                "--tsv",
                tmp_path / "t.tsv",
                "--output-dir",
                out,
                "--modality",
                "both",
                "--format",
                "json",
                "--max-failed",
                "0.25",
            ]
        )
        == 0
    )
    assert "could not be decoded and count as empty hypotheses" in " ".join(capsys.readouterr().err.split())
    wer = json.loads((out / "wer.json").read_text())
    assert list(wer["failed"]) == [broken.id] and "truncated.mp4" in wer["failed"][broken.id]
    assert wer["n_utterances"] == len(manifest)
    hyps = (out / "hyp.wrd").read_text().split("\n")
    assert hyps[1] == "" and len(hyps) == len(manifest) + 1


def test_decode_and_eval_fail_when_more_than_max_failed_utterances_fail(cli_error, trained, bad_media, tmp_path):
    """1 of 4 clips broken is more than the default --max-failed 0.1: the results are written, the
    exit code is 1 (it was 0, so a script went on with a WER over three quarters of the set)."""
    corpus, ckpt = trained
    _with_a_broken_clip(corpus, bad_media["truncated"][0], tmp_path)
    out = tmp_path / "out"
    args = ["--checkpoint", ckpt, "--tsv", tmp_path / "t.tsv", "--modality", "both"]
    fragments = ["1 of 4 utterances could not be decoded (25%)", "more than --max-failed 0.1"]
    cli_error(["decode", *args, "--output-dir", out], 1, *fragments, hint="--max-failed")
    assert list(json.loads((out / "wer.json").read_text())["failed"]) == ["u1"]  # still written, for a look
    cli_error(["eval", *args], 1, *fragments, hint="--max-failed")
    cli_error(["eval", *args, "--max-failed", "1.5"], 2, "--max-failed", "less than or equal to 1")


@requires_whisper_weights
def test_other_sample_rates_and_channels_are_resampled_not_rejected(tmp_path):
    from avsrctl.data.media import load_audio
    from avsrctl.transcribe import embedded_default, transcribe

    speech = speak("please bring the green folder tomorrow", tmp_path / "speech.wav")  # espeak: 22.05 kHz mono
    recognizer = embedded_default(beam_size=1)
    texts = {}
    for name, rate, channels in (("s44k_stereo.wav", 44100, 2), ("s8k.flac", 8000, 1), ("s48k_5ch.mp4", 48000, 5)):
        clip = ffmpeg_make(tmp_path / name, "-i", str(tmp_path / "speech.wav"), "-ar", str(rate), "-ac", str(channels))
        assert load_audio(clip).shape[0] == pytest.approx(speech.shape[0], abs=16_000 // 100)  # 16 kHz, mono
        texts[name] = transcribe(clip, recognizer).text.lower()
    assert all("green folder" in t for t in texts.values()), texts


def test_one_frame_videos_decode(trained, tmp_path, capsys):
    from avsrctl.checkpoint import load_checkpoint
    from avsrctl.data.dataset import load_clip
    from avsrctl.decoding import DecodingOptions

    one = ffmpeg_make(
        tmp_path / "one.mp4",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=32x32:rate=25",
        "-frames:v",
        "1",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
    )
    assert (
        run(["decode", "--checkpoint", trained[1], "--single-file", one, "--modality", "video", "--format", "json"])
        == 0
    ), capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["modality"] == "video"
    model, cfg, _ = load_checkpoint(trained[1])
    both = av_clip(tmp_path / "one_av.mp4", frames=1)
    for modality in ("both", "audio"):
        batch = load_clip(both, modality, roi=cfg.data.roi, roi_size=cfg.data.roi_size)
        assert batch.lengths.tolist() == [1 if modality == "both" else 2]  # audio-only: ceil(S / 640)
        (result,) = model.generate(batch, modality, DecodingOptions(max_new_tokens=3))
        assert result.id == batch.ids[0] and isinstance(result.text, str)


@pytest.mark.slow  # ten minutes of speech and silence through faster-whisper (~10-30 s)
@requires_whisper_weights
def test_ten_minute_clip_with_the_embedded_default(tmp_path):
    import subprocess
    import sys

    from avsrctl.metrics import score

    clip = tmp_path / "ten_minutes.wav"
    sentences, starts = long_speech(clip, minutes=10)
    out = tmp_path / "ten.json"
    # A fresh parent process measures the transcription alone: RUSAGE_CHILDREN of this test
    # process would also count every earlier subprocess of the session (training runs).
    measure = (
        "import resource, subprocess, sys; "
        "p = subprocess.run([sys.executable, '-m', 'avsrctl', 'transcribe', sys.argv[1], '-o', sys.argv[2]]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", measure, str(clip), str(out)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux
    assert peak_mb < 1500, f"peak memory {peak_mb:.0f} MB for a 10-minute clip"  # measured ~460 MB
    result = json.loads(out.read_text())
    assert result["duration"] == pytest.approx(600.0)
    segments = result["segments"]
    assert all(0 <= s["start"] <= s["end"] <= 600.0 for s in segments)
    assert all(a["start"] <= b["start"] for a, b in zip(segments, segments[1:]))
    assert segments[-1]["start"] >= starts[-1] - 2  # reached the last sentence
    report = score([" ".join(sentences)], [result["text"]], "whisper")
    assert report.hits / report.ref_words > 0.6, report.to_dict()  # measured 0.74 (tiny.en, repeated silences)


def test_two_minute_clip_with_a_checkpoint_is_cut_at_pauses(trained, tmp_path, capsys):
    clip = tmp_path / "two_minutes.wav"
    _, starts = long_speech(clip, minutes=2)
    assert (
        run(
            [
                "transcribe",
                clip,
                "--checkpoint",
                trained[1],
                "-m",
                "audio",
                "--max-segment",
                "10",
                "-f",
                "json",
                "--device",
                "cpu",
            ]
        )
        == 0
    ), capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    segments = result["segments"]
    assert result["meta"]["pieces"] == len(segments) == len(starts)  # one piece per sentence, silence dropped
    for seg, start in zip(segments, starts):
        assert start - 0.5 <= seg["start"] <= start + 0.5 and seg["end"] - seg["start"] <= 10.0 + 0.04


# ---------------------------------------------------------------------- checkpoints


def _copy(ckpt: Path, dest: Path) -> Path:
    shutil.copytree(ckpt, dest)
    return dest


def test_pickle_bait_runs_code_when_unpickled(tmp_path):
    """The bait used below is live: plain unpickling creates its file."""
    pickle.loads(pickle.dumps(Bait(tmp_path / "ran")))
    assert (tmp_path / "ran").exists()


@pytest.mark.parametrize("where", ["model.safetensors", "pytorch_model.bin"])
def test_planted_pickle_is_refused_and_never_unpickled(cli_error, trained, tmp_path, where):
    import torch

    ckpt = _copy(trained[1], tmp_path / "ckpt")
    (ckpt / "model.safetensors").unlink()
    sentinel = tmp_path / "code-ran"
    torch.save({"weights": Bait(sentinel)}, ckpt / where)
    clip = av_clip(tmp_path / "clip.mp4")
    cli_error(
        ["decode", "--checkpoint", ckpt, "--single-file", clip], 1, "pickle", str(ckpt / where), hint="safetensors"
    )
    assert not sentinel.exists()


def test_planted_pickle_in_the_optimizer_state_is_refused_on_resume(cli_error, trained, tmp_path):
    import torch

    data = fake_corpus(tmp_path / "data")  # the refusal comes before any media is decoded
    out = tmp_path / "run"
    ckpt = _copy(trained[1], out / "step-000001")
    (ckpt / "trainer_state.json").write_text("{}")
    sentinel = tmp_path / "code-ran"
    torch.save({"state": Bait(sentinel)}, ckpt / "optimizer.safetensors")
    cli_error(
        ["train", "--config", ckpt / "config.yaml", "--data", data, "--output", out, "--resume", ckpt],
        1,
        "optimizer.safetensors: a pickle file; refusing to load it",
        hint="safetensors",
    )
    assert not sentinel.exists()


def test_yaml_tags_in_a_checkpoint_config_never_run(cli_error, trained, tmp_path):
    ckpt = _copy(trained[1], tmp_path / "ckpt")
    sentinel = tmp_path / "code-ran"
    (ckpt / "config.yaml").write_text(f"!!python/object/apply:builtins.open ['{sentinel}', 'w']\n")
    cli_error(
        ["decode", "--checkpoint", ckpt, "--single-file", av_clip(tmp_path / "c.mp4")],
        1,
        f"{ckpt / 'config.yaml'}:1: unreadable (could not determine a constructor",
    )
    assert not sentinel.exists()


@pytest.mark.parametrize(
    "spoil, code, fragments",
    [
        (
            lambda c: set_yaml(c / "config.yaml", "model.video_connector.hidden", 32),
            1,
            ["weights do not fit this model", "shape mismatches", "video_connector"],
        ),
        (lambda c: set_yaml(c / "config.yaml", "model.llm.lora.rank", 8), 1, ["weights do not fit this model", "lora"]),
        (lambda c: (c / "model.safetensors").unlink(), 1, ["incomplete checkpoint, missing model.safetensors"]),
        (lambda c: (c / "config.yaml").unlink(), 1, ["incomplete checkpoint, missing config.yaml"]),
        (lambda c: (c / "meta.json").unlink(), 1, ["incomplete checkpoint, missing meta.json"]),
        (lambda c: (c / "meta.json").write_text("{not json"), 1, ["meta.json: not valid JSON"]),
        (
            lambda c: (c / "model.safetensors").write_bytes(b"\x00" * 100),
            1,
            ["model.safetensors: not a safetensors file; refusing to load it"],
        ),
        (lambda c: shutil.rmtree(c), 1, ["checkpoint not found"]),
    ],
)
def test_unusable_checkpoints_are_named(cli_error, trained, tmp_path, spoil, code, fragments):
    ckpt = _copy(trained[1], tmp_path / "ckpt")
    spoil(ckpt)
    clip = av_clip(tmp_path / "clip.mp4")
    line = cli_error(["decode", "--checkpoint", ckpt, "--single-file", clip], code, *fragments)
    assert str(ckpt) in line


def test_a_run_folder_instead_of_a_checkpoint_points_at_its_checkpoints(cli_error, trained, tmp_path):
    run_folder = trained[1].parent
    cli_error(
        ["decode", "--checkpoint", run_folder, "--single-file", av_clip(tmp_path / "c.mp4")],
        1,
        f"{run_folder}: incomplete checkpoint, missing config.yaml, model.safetensors, meta.json",
        hint=f"{run_folder} is a run folder: pass one of its checkpoints, e.g. {trained[1]}",
    )


def test_resume_with_another_modality_is_refused(cli_error, trained, tmp_path):
    out = tmp_path / "run"
    ckpt = _copy(trained[1], out / "step-000001")
    (ckpt / "trainer_state.json").write_text("{}")
    (ckpt / "optimizer.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes())
    cli_error(
        [
            "train",
            "--config",
            ckpt / "config.yaml",
            "--data",
            fake_corpus(tmp_path / "data"),
            "--output",
            out,
            "--resume",
            "auto",
            "--modality",
            "video",
        ],
        2,
        "the model config differs from the checkpoint's (model.modality: checkpoint 'both', now 'video')",
        hint=f"--config {ckpt / 'config.yaml'}",
    )


def test_checkpoint_of_another_modality_set(cli_error, tmp_path):
    audio_only = tiny_checkpoint(tmp_path / "audio-run", modality="audio")
    clip = av_clip(tmp_path / "clip.mp4")
    cli_error(
        ["decode", "--checkpoint", audio_only, "--single-file", clip, "--modality", "video"],
        2,
        "modality 'video' is not available in this model (it serves: audio)",
    )
    cli_error(
        ["transcribe", clip, "--checkpoint", audio_only, "--modality", "both"],
        2,
        "this checkpoint serves audio, not --modality both",
    )
    meta = json.loads((audio_only / "meta.json").read_text())  # claims streams its weights lack
    meta["modalities"] = ["audio", "both", "video"]
    (audio_only / "meta.json").write_text(json.dumps(meta))
    cli_error(
        ["decode", "--checkpoint", audio_only, "--single-file", clip],
        1,
        "weights do not fit this model",
        "weights missing",
        "video_connector",
        "checkpoint modalities: audio,both,video",
        hint="--modality the checkpoint was trained with",
    )


def test_remote_code_is_never_trusted_unless_the_config_says_so(monkeypatch):
    import transformers

    from avsrctl.config import load_config
    from avsrctl.errors import ModelError
    from avsrctl.models.llm import build_llm
    from avsrctl.models.vision import build_video_encoder

    calls = []

    def recorder(kind):
        def from_pretrained(name, *args, **kwargs):
            calls.append((kind, kwargs.get("trust_remote_code", "missing")))
            if kind == "AutoTokenizer":
                return object()  # so the model class is asked next
            raise OSError(f"{name}: offline (recorded)")

        return classmethod(lambda cls, name, *a, **k: from_pretrained(name, *a, **k))

    for cls in ("AutoTokenizer", "AutoModelForCausalLM", "AutoModel", "AutoImageProcessor"):
        monkeypatch.setattr(getattr(transformers, cls), "from_pretrained", recorder(cls))
    hf = [
        "model.llm.source=hf",
        "model.llm.name=some/remote-llm",
        "model.video_encoder.source=hf",
        "model.video_encoder.name=some/remote-vision",
    ]
    cfg = load_config("tiny", hf)
    for build in (lambda: build_llm(cfg.model.llm), lambda: build_video_encoder(cfg.model.video_encoder)):
        with pytest.raises(ModelError):
            build()
    assert calls == [("AutoTokenizer", False), ("AutoModelForCausalLM", False), ("AutoModel", False)]
    calls.clear()
    with pytest.raises(ModelError):
        build_llm(load_config("tiny", hf + ["model.llm.trust_remote_code=true"]).model.llm)
    assert calls == [("AutoTokenizer", True), ("AutoModelForCausalLM", True)]  # only when the user asks


# ------------------------------------------------------------------------- security


def test_manifest_paths_cannot_make_decode_write_outside_its_folder(trained, tmp_path):
    from avsrctl.data.manifest import read_manifest

    corpus, ckpt = trained
    manifest = read_manifest(corpus / "test.tsv")
    hostile = ["../../../escaped", "/tmp/absolute-escape", "..", "sub/../../x"]
    rows = [str(corpus)] + [
        f"{hostile[i % len(hostile)]}{'' if i < len(hostile) else i}\t{u.video}\t{u.audio}\t"
        f"{u.n_video_frames}\t{u.n_audio_samples}"
        for i, u in enumerate(manifest)
    ]
    work = tmp_path / "work"
    work.mkdir()
    (work / "h.tsv").write_text("\n".join(rows) + "\n")
    shutil.copy(corpus / "test.wrd", work / "h.wrd")
    out = work / "deep" / "out"
    targets = [Path("/tmp/absolute-escape"), out.parent.parent.parent / "escaped", out.parent / "x"]
    assert not any(t.exists() for t in targets)
    before, ckpt_files = files_under(tmp_path), files_under(ckpt)
    assert run(["decode", "--checkpoint", ckpt, "--tsv", work / "h.tsv", "--output-dir", out]) == 0
    new = set(files_under(tmp_path)) - set(before)
    assert new and all(p.is_relative_to(out) for p in new), sorted(new)
    assert files_under(ckpt) == ckpt_files and not any(t.exists() for t in targets)
    ids = [json.loads(line)["id"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert ids[: len(hostile)] == hostile  # kept as data, never used as a path


def test_prepare_refuses_an_output_subfolder_that_leads_outside(cli_error, tmp_path):
    src, out, elsewhere = tmp_path / "src", tmp_path / "out", tmp_path / "elsewhere"
    av_clip(src / "clip.mp4", frames=5)
    (src / "clip.txt").write_text("hello world\n")
    out.mkdir()
    elsewhere.mkdir()
    (out / "audio").symlink_to(elsewhere, target_is_directory=True)
    (out / "train.tsv").write_bytes(GOOD)
    cli_error(
        ["prepare", src, out, "--valid-fraction", "0", "--test-fraction", "0", "--roi", "none"],
        1,
        "refusing to write outside the output folder",
        unchanged=[out / "train.tsv"],
    )
    assert list(elsewhere.iterdir()) == []


def test_no_shell_strings_anywhere_in_the_package(tmp_path):
    files = sorted((REPO / "avsrctl").rglob("*.py"))
    assert len(files) > 20
    assert [r for f in files for r in shell_risks(f)] == []
    probe = tmp_path / "probe.py"  # the checker itself catches each form, and not the safe one
    probe.write_text(
        "import os, subprocess\nsubprocess.run('ls', shell=True)\nos.system('ls')\n"
        "subprocess.check_output(f'ffmpeg -i {x}')\nsubprocess.run(['ls'], shell=False)\n"
    )
    assert [r.split(": ", 1)[0] for r in shell_risks(probe)] == ["probe.py:2", "probe.py:2", "probe.py:3", "probe.py:4"]
