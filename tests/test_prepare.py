"""`avsrctl prepare` end to end on generated clips: splits, re-runs, safe paths, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from avsrctl.cli.main import run
from avsrctl.data.manifest import read_manifest
from avsrctl.data.media import load_video, save_audio, save_video
from avsrctl.data.prepare import PrepareOptions, prepare_corpus, read_transcript_file, safe_name, split_names
from avsrctl.errors import DataError, UsageError

N_CLIPS = 5


def make_clip(folder: Path, stem: str, frames: int = 8, text: str | None = "hello world") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    video = np.full((frames, 48, 64, 3), 90, np.uint8)
    tone = (0.2 * np.sin(np.arange(640 * frames) / 5)).astype(np.float32)
    path = folder / f"{stem}.mp4"
    save_video(path, video, audio=tone)
    if text is not None:
        (folder / f"{stem}.txt").write_text(text + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "corpus"
    return out, prepare_corpus(source, out, options())


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for i in range(N_CLIPS - 1):
        make_clip(src, f"clip{i}", frames=6 + i, text=f"words of clip {i}")
    save_audio(src / "speech" / "only audio.wav", (0.1 * np.sin(np.arange(7000) / 3)).astype(np.float32))
    (src / "speech" / "only audio.txt").write_text("Text:  AUDIO ONLY CLIP\nConf: 3\n", encoding="utf-8")
    return src


def subset(source: Path, dest: Path, *stems: str) -> Path:
    dest.mkdir()
    for stem in stems:
        for ext in (".mp4", ".txt"):
            shutil.copy(source / f"{stem}{ext}", dest)
    return dest


def options(**kw) -> PrepareOptions:
    return PrepareOptions(**{"valid_fraction": 0.2, "test_fraction": 0.2, **kw})


def test_end_to_end_and_rerun(source, prepared):
    out, result = prepared
    assert result.splits == {"train": 3, "valid": 1, "test": 1}
    assert (result.prepared, result.reused, result.failed) == (N_CLIPS, 0, {})
    utts = {u.id: u for s in ("train", "valid", "test") for u in read_manifest(out / f"{s}.tsv")}
    assert len(utts) == N_CLIPS
    c2 = utts["clip2"]
    assert (c2.n_video_frames, c2.n_audio_samples, c2.text) == (8, 8 * 640, "words of clip 2")
    assert c2.video == out.resolve() / "video" / "clip2.mp4" and c2.audio == out.resolve() / "audio" / "clip2.wav"
    assert load_video(c2.video).shape == (8, 96, 96, 3)  # 64x48 is small: 'auto' only resizes
    spoken = utts["speech_only_audio"]
    assert spoken.video is None and spoken.n_audio_samples == 7000 and spoken.text == "AUDIO ONLY CLIP"
    assert json.loads((out / "prepare.json").read_text())["splits"]["train"] == 3
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.*") if p.parent.name in ("audio", "video")}

    again = prepare_corpus(source, out, options())
    assert (again.prepared, again.reused, again.splits) == (0, N_CLIPS, result.splits)
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing rewritten


def test_rerun_redoes_empty_leftovers(source, prepared, tmp_path):
    out = tmp_path / "corpus"
    shutil.copytree(prepared[0], out)
    (out / "audio" / "clip1.wav").write_bytes(b"")  # a run killed before the rename never leaves this,
    (out / "video" / "clip3.mp4").unlink()  # but a user might; both are redone
    (out / "video" / ".clip4.partial.mp4").write_bytes(b"junk")
    result = prepare_corpus(source, out, options())
    assert (result.prepared, result.reused) == (2, N_CLIPS - 2)
    assert (out / "audio" / "clip1.wav").stat().st_size > 0 and (out / "video" / "clip3.mp4").is_file()


def test_split_is_seeded():
    names = [f"u{i}" for i in range(20)]
    a = split_names(names, 0.1, 0.2, seed=0)
    assert a == split_names(names, 0.1, 0.2, seed=0) and a != split_names(names, 0.1, 0.2, seed=1)
    assert [len(a[s]) for s in ("train", "valid", "test")] == [14, 2, 4]
    assert sorted(a["train"] + a["valid"] + a["test"]) == sorted(names)
    with pytest.raises(UsageError, match="training would get none"):
        split_names(["a", "b"], 0.1, 0.1, seed=0)


def test_roi_none_references_the_source(source, tmp_path):
    out, src = tmp_path / "corpus", subset(source, tmp_path / "src", "clip0", "clip1")
    prepare_corpus(src, out, options(roi="none", valid_fraction=0.0, test_fraction=0.0))
    utts = {u.id: u for u in read_manifest(out / "train.tsv")}
    assert utts["clip0"].video == (src / "clip0.mp4").resolve() and utts["clip0"].n_video_frames == 6
    assert not (out / "video").exists() and not (out / "valid.tsv").exists()


@pytest.mark.parametrize("key, name", [("../../etc/passwd", "etc_passwd"), ("/abs/clip", "abs_clip"),
                                       ("..", "clip"), ("spk 1/a:b?c", "spk_1_a_b_c"), (".hidden", "hidden"),
                                       ("-rf", "rf"), ("x\\..\\y", "x_y")])
def test_safe_name(key, name):
    assert safe_name(key) == name


def test_outputs_stay_inside_out(tmp_path):
    src = tmp_path / "src"
    make_clip(src / "nested dir", "x..y", frames=5)
    make_clip(src, "-dash:colon", frames=5)
    out = tmp_path / "out"
    result = prepare_corpus(src, out, options(valid_fraction=0.0, test_fraction=0.0))
    assert result.splits == {"train": 2} and not result.failed
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(src)]
    assert written and all(p.resolve().is_relative_to(out.resolve()) for p in written)
    assert {p.name for p in (out / "audio").iterdir()} == {"nested_dir_x..y.wav", "dash_colon.wav"}


def test_transcripts_file(tmp_path):
    src = tmp_path / "src"
    for i in range(3):
        make_clip(src, f"c{i}", frames=5, text=None)
    listing = tmp_path / "list.txt"
    listing.write_text("c0 first clip\nc1\tsecond\tclip\n\nc2   third   one\n", encoding="utf-8")
    assert read_transcript_file(listing) == {"c0": "first clip", "c1": "second clip", "c2": "third one"}
    result = prepare_corpus(src, tmp_path / "out", options(transcripts=listing, valid_fraction=0.0, test_fraction=0.0))
    assert [u.text for u in read_manifest(tmp_path / "out" / "train.tsv")] == ["first clip", "second clip", "third one"]
    assert result.splits == {"train": 3}
    listing.write_text("c0 first\nc0 again\n")
    with pytest.raises(DataError, match=r"list\.txt:2: clip 'c0' listed twice"):
        read_transcript_file(listing)
    listing.write_text("c0\n")
    with pytest.raises(DataError, match=r"list\.txt:1: no transcript after the clip name 'c0'"):
        read_transcript_file(listing)


def test_clear_errors(tmp_path):
    with pytest.raises(UsageError, match="source folder not found"):
        prepare_corpus(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="no media clips found"):
        prepare_corpus(tmp_path / "empty", tmp_path / "out")
    src = tmp_path / "src"
    make_clip(src, "has_text", frames=4)
    make_clip(src, "no_text", frames=4, text=None)
    with pytest.raises(DataError, match=r"1 of 2 clips have no transcript .*: no_text"):
        prepare_corpus(src, tmp_path / "out")
    with pytest.raises(UsageError, match="must leave something for training"):
        PrepareOptions(valid_fraction=0.5, test_fraction=0.5)


def test_undecodable_clips_are_reported_not_fatal(source, tmp_path):
    src = subset(source, tmp_path / "src", "clip0", "clip3")
    data = (src / "clip3.mp4").read_bytes()
    (src / "clip3.mp4").write_bytes(data[: len(data) // 2])
    result = prepare_corpus(src, tmp_path / "out", options(valid_fraction=0.0, test_fraction=0.0))
    assert list(result.failed) == ["clip3"] and "clip3.mp4" in result.failed["clip3"]
    assert result.splits == {"train": 1}
    assert not list((tmp_path / "out").rglob("clip3*"))  # nothing half-written is left behind


def test_cli(source, prepared, tmp_path, capsys):
    out = tmp_path / "corpus"
    shutil.copytree(prepared[0], out)
    assert run(["prepare", str(source), str(out), "--valid-fraction", "0.4", "--test-fraction", "0.2",
                "--seed", "3", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"] == {"train": 2, "valid": 2, "test": 1} and summary["reused"] == N_CLIPS
    assert len(read_manifest(out / "valid.tsv")) == 2
    assert run(["prepare", str(source), str(out), "--valid-fraction", "0.4", "--test-fraction", "0.2"]) == 0
    assert "train 2, valid 2, test 1 utterances" in capsys.readouterr().out
    assert run(["prepare", str(tmp_path / "missing"), str(out)]) == 2
    assert "source folder not found" in capsys.readouterr().err
    assert run(["prepare", str(source), str(out), "--roi", "mouth"]) == 2


def test_grid_clip_gets_a_mouth_crop(media_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(media_dir / "video" / "grid_bbaf2n.mpg", src)
    (src / "grid_bbaf2n.txt").write_text("bin blue at f two now\n")
    prepare_corpus(src, tmp_path / "out", PrepareOptions(valid_fraction=0.0, test_fraction=0.0, roi="auto"))
    utt = read_manifest(tmp_path / "out" / "train.tsv")[0]
    assert (utt.n_video_frames, utt.n_audio_samples) == (75, 47648)
    assert load_video(utt.video).shape == (75, 96, 96, 3)
