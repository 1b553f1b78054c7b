"""Everyday use and the remaining reliability cases of issue 16: `transcribe` on many inputs,
long clips in bounded memory, the same answer twice, outputs checked before work, error
lines that never wrap, a prepared corpus that can move, and the small wording fixes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import requires_whisper_weights
from reliability_support import av_clip, cli_error, ffmpeg_make, tiny_checkpoint  # noqa: F401  (cli_error is a fixture)

import avsrctl.transcribe as transcribe_module
from avsrctl.cli.main import run
from avsrctl.subtitles import Segment, Transcript

REPO = Path(__file__).resolve().parents[1]
PACKAGE_ROOT = Path(transcribe_module.__file__).resolve().parents[1]  # the avsrctl under test, for subprocesses
SAMPLE = REPO / "avsrctl" / "samples" / "grid_bbaf2n.mpg"  # 3 s talking head with speech


class FakeRecognizer:
    """Stands in for a loaded model: counts loads, 'recognises' a file as its name, fails on 'bad'."""

    loads = 0

    def __init__(self, modalities=("audio",)):
        type(self).loads += 1
        self.name, self.modalities = "fake", modalities

    def transcribe_file(self, path: Path, progress=None) -> Transcript:
        from avsrctl.data.media import probe

        info = probe(path)  # a broken file fails here, as with a real model
        if progress is not None:
            progress(info.duration or 0.0, info.duration or 0.0)
        return Transcript(path.stem, (Segment(0.0, 1.0, path.stem),), "fake", str(path), info.duration)


@pytest.fixture
def fake(monkeypatch):
    FakeRecognizer.loads = 0
    monkeypatch.setattr(transcribe_module, "embedded_default", lambda *a, **k: FakeRecognizer())
    return FakeRecognizer


@pytest.fixture
def clips(tmp_path) -> Path:
    """a.wav, b.mp4 (both streams), folder/sub/c.wav, folder/notes.txt (not media)."""
    ffmpeg_make(tmp_path / "in" / "a.wav", "-f", "lavfi", "-i", "sine=frequency=300:duration=1")
    av_clip(tmp_path / "in" / "b.mp4")
    ffmpeg_make(tmp_path / "in" / "folder" / "sub" / "c.wav", "-f", "lavfi", "-i", "sine=frequency=500:duration=1")
    (tmp_path / "in" / "folder" / "notes.txt").write_text("not media\n")
    return tmp_path / "in"


# ------------------------------------------------------------------- many inputs


def test_many_files_folders_and_stdin_with_one_model_load(fake, clips, tmp_path, monkeypatch, capsys):
    stdin = io.TextIOWrapper(io.BytesIO((clips / "a.wav").read_bytes()))
    monkeypatch.setattr(sys, "stdin", stdin)
    out = tmp_path / "out"
    assert (
        run(["transcribe", str(clips / "a.wav"), str(clips / "b.mp4"), str(clips / "folder"), "-", "-d", str(out)]) == 0
    )
    assert fake.loads == 1
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a.txt", "b.txt", "stdin.txt", "sub/c.txt"]
    assert (out / "sub" / "c.txt").read_text() == "c\n"
    err = capsys.readouterr().err
    assert "(txt, 1 segment)" in err and "1 segments" not in err
    assert "3 of 4 files" not in err and "4 of 4 files transcribed" in err


def test_a_failed_input_is_named_the_others_are_kept_and_the_exit_code_is_1(fake, clips, tmp_path, capsys):
    bad = clips / "folder" / "bad.mp4"
    bad.write_bytes(b"not a video")
    out = tmp_path / "out"
    (out / "b.txt").parent.mkdir()
    assert run(["transcribe", str(clips / "b.mp4"), str(clips / "folder"), "-d", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"warning: {bad}" in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        next(line for line in err.splitlines() if line.startswith("error: 1 of 3 inputs could not be transcribed"))
    ]
    assert (out / "b.txt").read_text() == "b\n" and (out / "sub" / "c.txt").read_text() == "c\n"
    assert not (out / "bad.txt").exists()


@pytest.mark.parametrize(
    "args, code, fragments",
    [
        (["{clips}/a.wav", "-o", "{tmp}/x.docx"], 2, ["-o {tmp}/x.docx: unknown suffix '.docx'", ".txt, .srt, .vtt"]),
        (["{clips}/a.wav", "{clips}/b.mp4"], 2, ["2 input files need --output-dir"]),
        (["{clips}/folder"], 2, ["1 input file need"]),
        (["{clips}/a.wav", "{clips}/b.mp4", "-o", "{tmp}/x.txt"], 2, ["takes one input"]),
        (["{tmp}"], 2, ["no audio or video files in this folder"]),
        (["{clips}/a.wav", "{clips}/nope.wav", "-d", "{tmp}/o"], 2, ["{clips}/nope.wav: no such file"]),
    ],
)
def test_transcribe_usage_is_checked_before_any_work(fake, cli_error, clips, tmp_path, args, code, fragments):
    empty = tmp_path / "empty"
    empty.mkdir()
    fill = {"clips": clips, "tmp": empty if args == ["{tmp}"] else tmp_path}
    cli_error(["transcribe", *(a.format(**fill) for a in args)], code, *(f.format(**fill) for f in fragments))
    assert fake.loads == 0
    assert not (tmp_path / "x.docx").exists() and not (tmp_path / "o").exists()


def test_quiet_leaves_stderr_empty_and_video_only_is_not_called_audio(monkeypatch, clips, tmp_path, capsys):
    monkeypatch.setattr(transcribe_module, "embedded_default", lambda *a, **k: FakeRecognizer())
    assert run(["transcribe", str(clips / "b.mp4"), "-q", "-o", str(tmp_path / "b.srt")]) == 0
    assert capsys.readouterr().err == ""
    import avsrctl.cli.transcribe as cli_transcribe

    monkeypatch.setattr(cli_transcribe, "_recognizer", lambda *a, **kw: FakeRecognizer(modalities=("video",)))
    assert run(["transcribe", str(clips / "b.mp4"), "-o", str(tmp_path / "b.txt")]) == 0
    err = capsys.readouterr().err
    assert "s of video in" in err and "of audio" not in err


def test_threads_limit_torch_and_openmp(fake, clips, tmp_path, monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        assert run(["transcribe", str(clips / "a.wav"), "--threads", "1", "-o", str(tmp_path / "a.txt")]) == 0
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------- item 3: long clips, bounded memory


def test_a_long_clip_is_read_block_by_block_never_whole(tmp_path, monkeypatch):
    from avsrctl.data import dataset, media
    from avsrctl.transcribe import BLOCK_FRAMES, VIDEO_CHUNK_FRAMES, checkpoint_recognizer

    clip = ffmpeg_make(
        tmp_path / "long.mp4", "-stream_loop", "27", "-i", str(SAMPLE), "-t", "84", "-c:v", "libx264", "-preset",
        "ultrafast", "-c:a", "aac",
    )  # fmt: skip
    recognizer = checkpoint_recognizer(tiny_checkpoint(tmp_path / "run", "both"), device="cpu")

    def whole(*a, **k):
        raise AssertionError("the whole clip was decoded at once")

    monkeypatch.setattr(dataset, "load_clip", whole)
    reads = {"audio": [], "video": []}
    for name, cls in (("audio", media.AudioStream), ("video", media.VideoStream)):
        original = cls.read
        monkeypatch.setattr(
            cls, "read", lambda self, a, b, _o=original, _n=name: reads[_n].append(b - a) or _o(self, a, b)
        )
    result = recognizer.transcribe_file(clip)
    assert max(reads["audio"]) <= BLOCK_FRAMES * 640 and max(reads["video"]) <= VIDEO_CHUNK_FRAMES
    # one piece per repetition of the 3 s sentence, in order, none lost at the 60 s block boundary
    starts = [s.start for s in result.segments]
    assert 26 <= len(starts) <= 29 and starts == sorted(starts)
    assert all(b - a < 4.0 for a, b in zip(starts, starts[1:]))
    assert result.duration == pytest.approx(84.0, abs=1.0)


# ------------------------------------------------------------------- item 4: the same answer twice


def test_the_embedded_default_decodes_at_temperature_zero_unless_asked(tmp_path, monkeypatch):
    import faster_whisper

    from avsrctl.transcribe import embedded_default

    calls = []

    class Model:
        def __init__(self, *a, **k):
            pass

        def transcribe(self, audio, **kwargs):
            calls.append(kwargs.get("temperature"))
            return iter(()), None

    monkeypatch.setattr(faster_whisper, "WhisperModel", Model)
    embedded_default(str(tmp_path)).transcribe_audio(np.zeros(16_000, np.float32))
    embedded_default(str(tmp_path), temperature_fallback=True).transcribe_audio(np.zeros(16_000, np.float32))
    assert calls[0] == 0.0  # no fallback: faster-whisper's default would sample at 0.2 ... 1.0
    assert isinstance(calls[1], list) and calls[1][0] == 0.0 and max(calls[1]) == 1.0


@requires_whisper_weights
def test_the_embedded_default_gives_the_same_text_twice_on_hard_audio(tmp_path):
    from avsrctl.data.media import load_audio
    from avsrctl.transcribe import embedded_default

    audio = load_audio(SAMPLE)
    noisy = audio + np.random.default_rng(0).normal(0, 0.3, audio.shape).astype(np.float32)  # 0 dB-ish
    recognizer = embedded_default()
    texts = {recognizer.transcribe_text(noisy) for _ in range(3)}
    assert len(texts) == 1


# ------------------------------------------------------------------- item 5: outputs checked first


def test_eval_refuses_an_unwritable_output_dir_before_scoring(cli_error, tmp_path, capsys):
    from avsrctl.data.manifest import Utterance, write_manifest

    ffmpeg_make(tmp_path / "a.wav", "-f", "lavfi", "-i", "sine=duration=1")
    write_manifest(
        tmp_path / "t.tsv", tmp_path / "t.wrd", tmp_path, [Utterance("a", None, tmp_path / "a.wav", 0, 16000, "hello")]
    )
    (tmp_path / "hyp.txt").write_text("hello\n")
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "out"
    args = ["eval", "--tsv", tmp_path / "t.tsv", "--hyp", tmp_path / "hyp.txt", "--output-dir", target]
    cli_error(args, 2, f"--output-dir {target}: cannot write there")
    assert capsys.readouterr().out == ""  # no score printed: nothing was done


def test_decode_refuses_an_unwritable_default_output_folder_before_loading(cli_error, tmp_path, monkeypatch):
    import avsrctl.checkpoint as checkpoint

    ckpt = tiny_checkpoint(tmp_path / "run", "audio")
    (ckpt / "decode").write_text("a file where the default output folder goes")
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda *a, **k: pytest.fail("loaded before the check"))
    (tmp_path / "t.tsv").write_text(f"{tmp_path}\n")
    cli_error(
        ["decode", "--checkpoint", ckpt, "--tsv", tmp_path / "t.tsv"], 2, f"{ckpt / 'decode'}", hint="--output-dir"
    )


# ------------------------------------------------------------------- item 7: one line, whatever the width


def test_error_lines_never_wrap_when_stderr_is_not_a_terminal(tmp_path):
    missing = tmp_path / ("a-rather-long-folder-name-" * 4) / "and-a-long-clip-name-that-goes-on.mp4"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(PACKAGE_ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "avsrctl", "transcribe", str(missing)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"error: {missing}: no such file"), proc.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: ")


# ------------------------------------------------------------------- item 8: a prepared corpus can move


def test_a_prepared_corpus_reads_after_it_is_moved(tmp_path):
    import shutil

    from avsrctl.data.manifest import read_manifest
    from avsrctl.data.prepare import PrepareOptions, prepare_corpus

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        shutil.copy(SAMPLE, src / f"clip{i}.mpg")
        (src / f"clip{i}.txt").write_text(f"words of clip {i}\n")
    prepare_corpus(src, tmp_path / "corpus", PrepareOptions(roi="none", valid_fraction=0.0, test_fraction=0.0))
    assert not (tmp_path / "corpus" / "train.tsv").read_text().splitlines()[0].startswith("/")
    shutil.move(tmp_path / "corpus", tmp_path / "elsewhere")
    utts = read_manifest(tmp_path / "elsewhere" / "train.tsv").utterances
    assert len(utts) == 3 and all(
        u.audio.is_file() and str(u.audio).startswith(str(tmp_path / "elsewhere")) for u in utts
    )


# ------------------------------------------------------------------- wording and hints


@pytest.mark.parametrize(
    "tsv_rows, wrd, fragment, hint",
    [
        (["a\t-\ta.wav\t-\t16000", "a\t-\ta.wav\t-\t16000"], "x\ny\n", "duplicate id 'a'", "ids must be unique"),
        (["a\t-\ta.wav\t-\t16000", "b\t-\ta.wav\t-\t16000"], "x\n\n", "empty transcript for 'b'", "write the words"),
    ],
)
def test_manifest_errors_with_a_specific_hint(cli_error, tmp_path, tsv_rows, wrd, fragment, hint):
    (tmp_path / "a.wav").write_bytes(b"x")
    (tmp_path / "t.tsv").write_text("\n".join([str(tmp_path), *tsv_rows]) + "\n")
    (tmp_path / "t.wrd").write_text(wrd)
    (tmp_path / "hyp").write_text("x\ny\n")
    cli_error(["eval", "--tsv", tmp_path / "t.tsv", "--hyp", tmp_path / "hyp"], 1, fragment, hint=hint)


def test_config_hints_name_no_path_inside_the_package(cli_error, tmp_path):
    line = cli_error(["train", "--config", "tiny", "--set", "train.lrr=1"], 2, "unknown key")
    import avsrctl.errors

    assert "configs/" not in (avsrctl.errors.ConfigError.hint or "") and line


def test_help_stays_instant_with_shell_completion(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT))
    code = "import sys, avsrctl.cli.main as m; sys.exit(m.run(['--help'])); "
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "--install-completion" in proc.stdout
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert not {"torch", "transformers"} & imported
