"""An output is never one of the inputs (avsrctl/paths.py), in every command that writes.

The same file under another name counts: `./clip.wav`, a symlink to it, a hard link to it
(same device and inode). The checks run before any model loads, so the input stays as it was.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from reliability_support import cli_error, fake_corpus, tiny_checkpoint  # noqa: F401  (cli_error is a fixture)

from avsrctl.errors import UsageError
from avsrctl.paths import refuse_overwrite


@pytest.fixture
def clip(tmp_path) -> Path:
    """A real (short, quiet) wav: without the check a transcriber would read it and replace it."""
    from avsrctl.data.media import save_audio

    path = tmp_path / "clip.wav"
    save_audio(path, (0.01 * np.sin(np.arange(16000) / 5)).astype(np.float32))
    return path


def _aliases(path: Path, how: str) -> Path:
    """Another name for `path`: itself, `./name` (run from its folder), a symlink, a hard link."""
    if how == "same":
        return path
    if how == "dot":
        os.chdir(path.parent)
        return Path(".") / path.name
    if how == "symlink":
        link = path.parent / "link" / "clip.txt"
        link.parent.mkdir()
        link.symlink_to(path)
        return link
    link = path.parent / "hard.txt"
    os.link(path, link)
    return link


# ------------------------------------------------------------------------ the helper


@pytest.mark.parametrize("how", ["same", "dot", "symlink", "hard link"])
def test_refuse_overwrite_sees_the_same_file_under_another_name(tmp_path, monkeypatch, how):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data.tsv"
    data.write_text("x\n")
    other = _aliases(data, how)
    with pytest.raises(UsageError, match=r"-o .* is the input .*data\.tsv"):
        refuse_overwrite([other], [data], "-o")
    refuse_overwrite([tmp_path / "new.txt"], [data], "-o")  # a new file: fine
    refuse_overwrite([None], [data, None], "-o")  # unset options are skipped


def test_refuse_overwrite_inside_a_folder_only_when_asked(tmp_path):
    data = tmp_path / "corpus"
    data.mkdir()
    refuse_overwrite([data / "runs" / "x"], [data], "--output")  # by default only the same path is refused
    with pytest.raises(UsageError, match=r"--output .*runs/x is inside the input folder .*corpus"):
        refuse_overwrite([data / "runs" / "x"], [data], "--output", inside=True)
    with pytest.raises(UsageError, match="is the input"):
        refuse_overwrite([data], [data], "--output", inside=True)
    refuse_overwrite([tmp_path / "corpus-runs"], [data], "--output", inside=True)  # a name prefix is not inside


# ------------------------------------------------------------------------- transcribe


@pytest.mark.parametrize("how", ["same", "dot", "symlink", "hard link"])
@pytest.mark.parametrize("checkpoint", [False, True], ids=["embedded default", "checkpoint"])
def test_transcribe_refuses_to_write_over_its_input(cli_error, clip, tmp_path, monkeypatch, how, checkpoint):
    monkeypatch.chdir(tmp_path)
    target = _aliases(clip, how)
    extra = ["--checkpoint", tmp_path / "ckpt"] if checkpoint else []  # refused before it would load
    cli_error(
        ["transcribe", "--format", "txt", "-o", target, clip, *extra], 2, "is the input", "clip.wav", unchanged=[clip]
    )


def test_transcribe_output_dir_refuses_a_hard_link_to_an_input(cli_error, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "talk.txt").write_bytes(b"RIFF")  # a clip named .txt would be replaced by its own transcript
    os.link(src / "talk.txt", src / "talk.mp4")
    cli_error(["transcribe", src / "talk.mp4", "--output-dir", src], 2, "is the input", unchanged=[src / "talk.txt"])


# ------------------------------------------------------------------------- decode, eval


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("run"), "audio")


def test_decode_refuses_an_output_dir_that_would_replace_its_transcripts(cli_error, ckpt, tmp_path):
    data = fake_corpus(tmp_path / "data")
    (data / "train.wrd").rename(data / "hyp.wrd")  # decode writes DIR/hyp.wrd
    cli_error(
        ["decode", "--checkpoint", ckpt, "--tsv", data / "train.tsv", "--wrd", data / "hyp.wrd", "-o", data],
        2,
        "--output-dir",
        "is the input",
        "hyp.wrd",
        unchanged=[data / "hyp.wrd", data / "train.tsv"],
    )


def test_decode_refuses_an_output_dir_that_would_replace_a_clip(cli_error, ckpt, tmp_path):
    data = fake_corpus(tmp_path / "data", streams="a")
    out = tmp_path / "out"
    out.mkdir()
    os.link(data / "b.wav", out / "results.jsonl")  # a hard link: another name for a media file
    cli_error(
        ["decode", "--checkpoint", ckpt, "--tsv", data / "train.tsv", "-o", out],
        2,
        "is the input",
        "b.wav",
        unchanged=[data / "b.wav"],
    )


def test_eval_refuses_to_write_over_the_hypotheses_it_scores(cli_error, tmp_path):
    data = fake_corpus(tmp_path / "data")
    out = tmp_path / "decoded"
    out.mkdir()
    (out / "hyp.wrd").write_text("bin  blue at f two now\nset red\n")  # rescoring a decode in place
    cli_error(
        ["eval", "--tsv", data / "train.tsv", "--hyp", out / "hyp.wrd", "-o", out],
        2,
        "--output-dir",
        "is the input",
        "hyp.wrd",
        unchanged=[out / "hyp.wrd"],
    )


# ------------------------------------------------------------ a file for a folder, a folder for a file


def test_decode_checkpoint_that_is_a_file_is_named_as_such(cli_error, ckpt, tmp_path):
    data = fake_corpus(tmp_path / "data", streams="a")
    line = cli_error(
        ["decode", "--checkpoint", ckpt / "model.safetensors", "--tsv", data / "train.tsv"],
        2,
        "model.safetensors is a file, not a checkpoint folder",
        hint=str(ckpt),  # the folder that holds it is a checkpoint: say which
    )
    assert "Not a directory" not in line  # was: .../model.safetensors/decode/train-audio: Not a directory


def test_decode_single_file_that_is_a_folder_is_named_as_such(cli_error, ckpt, tmp_path):
    line = cli_error(["decode", "--checkpoint", ckpt, "--single-file", tmp_path], 2, "is a folder, not a clip")
    assert "file not found" not in line


def test_train_refuses_an_output_inside_its_data(cli_error, tmp_path):
    data = fake_corpus(tmp_path / "data")
    cli_error(
        ["train", "--config", "tiny", "--data", data, "--modality", "audio", "--output", data / "runs"],
        2,
        "--output",
        "is inside the input folder",
        unchanged=[data / "train.tsv", data / "train.wrd"],
    )
    assert not (data / "runs").exists()  # refused before anything was written
