"""`avsrctl prepare` end to end on generated clips: splits, re-runs, safe paths, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import avsrctl.data.prepare as P
from avsrctl.cli.main import run
from avsrctl.data.manifest import read_manifest
from avsrctl.data.media import load_video, save_audio, save_video
from avsrctl.data.prepare import PrepareOptions, merge_parts, prepare_corpus
from avsrctl.data.sources import read_transcript_file, safe_name
from avsrctl.data.splits import Shard, split_names
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


def test_rerun_refuses_to_mix_crops_of_another_kind(source, prepared, tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    shutil.copytree(prepared[0], out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with pytest.raises(UsageError, match=r"prepare\.json: its clips were cut with roi=auto roi_size=96 .* roi_size=64"):
        prepare_corpus(source, out, options(roi_size=64))
    with pytest.raises(UsageError, match="roi=auto roi_size=96 .* roi=none roi_size=96"):
        prepare_corpus(source, out, options(roi="none"))
    # A record from before the crop was kept: 'auto' cut by the face box then. With landmarks
    # installed, 'auto' now cuts by landmarks, so the old clips must not be mixed with new ones.
    record = json.loads((out / "prepare.json").read_text())
    del record["options"]["crop"]
    (out / "prepare.json").write_text(json.dumps(record))
    monkeypatch.setattr(P, "crop_method", lambda mode: "landmarks" if mode == "auto" else mode)
    with pytest.raises(
        UsageError, match=r"\(haar crops\); this run asks for roi=auto roi_size=96 \(landmarks crops\)"
    ) as e:
        prepare_corpus(source, out, options())
    assert str(out / "video") in e.value.hint
    assert {p: p.stat().st_mtime_ns for p in before if p.name != "prepare.json"} == {
        p: t for p, t in before.items() if p.name != "prepare.json"
    }
    monkeypatch.setattr(P, "crop_method", lambda mode: "haar" if mode == "auto" else mode)
    assert prepare_corpus(source, out, options()).reused == N_CLIPS  # the same crops: reused


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


@pytest.mark.parametrize(
    "key, name",
    [
        ("../../etc/passwd", "etc_passwd"),
        ("/abs/clip", "abs_clip"),
        ("..", "clip"),
        ("spk 1/a:b?c", "spk_1_a_b_c"),
        (".hidden", "hidden"),
        ("-rf", "rf"),
        ("x\\..\\y", "x_y"),
    ],
)
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
    assert (
        run(
            [
                "prepare",
                str(source),
                str(out),
                "--valid-fraction",
                "0.4",
                "--test-fraction",
                "0.2",
                "--seed",
                "3",
                "--format",
                "json",
            ]
        )
        == 0
    )
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


# ------------------------------------------------------------ shards, workers, merge, --split

N_MANY = 8


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """8 good clips and one that cannot be decoded."""
    src = tmp_path_factory.mktemp("many")
    for i in range(N_MANY):
        make_clip(src / f"spk{i % 3}", f"utt{i}", frames=5 + i % 4, text=f"clip number {i}")
    broken = make_clip(src / "spk0", "broken", frames=6)
    broken.write_bytes(broken.read_bytes()[:200])
    return src


@pytest.fixture(scope="module")
def single(many, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("single") / "corpus"
    return out, prepare_corpus(many, out, options())


def corpus_files(out: Path) -> dict[str, str]:
    names = [f"{s}.{e}" for s in ("train", "valid", "test") for e in ("tsv", "wrd")] + ["failures.tsv"]
    files = {n: (out / n).read_text() for n in names if (out / n).is_file()}
    return {n: text.split("\n", 1)[1] if n.endswith(".tsv") else text for n, text in files.items()}  # no root line


def test_failures_are_recorded_with_their_reason_and_the_run_goes_on(single):
    out, result = single
    assert list(result.failed) == ["spk0/broken"] and sum(result.splits.values()) == N_MANY
    rows = (out / "failures.tsv").read_text().splitlines()
    assert rows[0] == "clip\treason" and rows[1].startswith("spk0/broken\t") and "broken.mp4" in rows[1]
    assert len(rows) == 2


def test_shards_merge_to_the_single_run_whatever_the_workers(many, single, tmp_path):
    """Three shards (one with two worker processes) joined by --merge give the single run's corpus."""
    out = tmp_path / "corpus"
    results = [prepare_corpus(many, out, options(), shard=Shard(i, 3), workers=2 if i == 0 else 1) for i in range(3)]
    assert sum(sum(r.splits.values()) for r in results) == N_MANY
    assert not (out / "train.tsv").exists()  # a shard writes only its part
    assert [r.shard for r in results] == ["0/3", "1/3", "2/3"]
    merged = merge_parts(out)
    assert corpus_files(out) == corpus_files(single[0])
    assert merged.splits == single[1].splits and merged.failed == single[1].failed
    assert json.loads((out / "prepare.json").read_text())["merged_parts"] == 3


def test_split_depends_on_names_and_seed_only():
    names = [f"u{i}" for i in range(40)]
    whole = split_names(names, 0.1, 0.2, seed=5)
    assert split_names(list(reversed(names)), 0.1, 0.2, seed=5) == whole  # order of discovery is irrelevant
    assert [len(whole[s]) for s in ("train", "valid", "test")] == [28, 4, 8]
    assert split_names(names, 0.0, 0.0, seed=0, only="test") == {"train": [], "valid": [], "test": sorted(names)}


def test_merge_refuses_missing_unfinished_duplicate_and_mixed_parts(many, tmp_path):
    out = tmp_path / "corpus"
    with pytest.raises(UsageError, match="nothing to merge"):
        merge_parts(out)
    for i in (0, 2):
        prepare_corpus(many, out, options(), shard=Shard(i, 3))
    with pytest.raises(DataError, match=r"missing part 1/3: .*shard-00001-of-00003 not found"):
        merge_parts(out)
    prepare_corpus(many, out, options(), shard=Shard(1, 3))
    done = out / "parts" / "shard-00001-of-00003" / "done.json"
    done.rename(done.with_name("saved.json"))
    with pytest.raises(DataError, match=r"part 1/3 is not finished: .*done\.json not found"):
        merge_parts(out)
    done.with_name("saved.json").rename(done)

    part0, part2 = (out / "parts" / f"shard-0000{i}-of-00003" for i in (0, 2))
    split = next(s for s in ("train", "valid", "test") if (part0 / f"{s}.tsv").is_file())
    stolen = (part0 / f"{split}.tsv").read_text().splitlines()[1]
    other = next(s for s in ("train", "valid", "test") if (part2 / f"{s}.tsv").is_file())
    saved = {p: p.read_text() for p in (part2 / f"{other}.tsv", part2 / f"{other}.wrd")}
    (part2 / f"{other}.tsv").write_text(saved[part2 / f"{other}.tsv"] + stolen + "\n")
    (part2 / f"{other}.wrd").write_text(saved[part2 / f"{other}.wrd"] + "stolen words\n")
    with pytest.raises(DataError, match=rf"duplicate id '{stolen.split()[0]}' in part 2/3 \({other}\) and part 0/3"):
        merge_parts(out)
    assert not (out / "train.tsv").exists()  # nothing written before every check passed
    for p, text in saved.items():
        p.write_text(text)

    prepare_corpus(many, out, options(), shard=Shard(0, 2))
    with pytest.raises(DataError, match=r"parts of different shard counts: 2 \(1 part\(s\)\), 3 \(3 part\(s\)\)"):
        merge_parts(out)
    shutil.rmtree(out / "parts" / "shard-00000-of-00002")
    prepare_corpus(many, out, options(seed=7), shard=Shard(1, 3))
    with pytest.raises(DataError, match=r"part 1/3 was prepared with other options than part 0/3"):
        merge_parts(out)


@pytest.mark.parametrize(
    "text, message", [("3/3", r"0 <= I < N, got 3/3"), ("1-4", r"must be I/N"), ("0/0", r"got 0/0")]
)
def test_shard_argument(text, message):
    with pytest.raises(UsageError, match=message):
        Shard.parse(text)


def test_split_test_turns_own_clips_into_an_evaluation_set(many, single, tmp_path, capsys):
    """--split test: all 8 clips become test.tsv/.wrd (the fractions used to refuse this)."""
    out = tmp_path / "eval"
    shutil.copytree(single[0] / "audio", out / "audio")  # the media are reused, not redone
    shutil.copytree(single[0] / "video", out / "video")
    assert run(["prepare", str(many), str(out), "--split", "test", "--workers", "1", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"] == {"test": N_MANY} and summary["reused"] == N_MANY
    assert sorted(p.name for p in out.glob("*.tsv")) == ["failures.tsv", "test.tsv"]
    test = read_manifest(out / "test.tsv", out / "test.wrd")
    assert sorted(u.text for u in test) == sorted(f"clip number {i}" for i in range(N_MANY))
    assert run(["prepare", str(many), str(out), "--split", "test", "--test-fraction", "0.5"]) == 2
    assert "drop --valid-fraction/--test-fraction" in " ".join(capsys.readouterr().err.split())  # rich wraps
    assert run(["prepare", str(many), str(out), "--split", "dev"]) == 2
    assert "--split must be one of train, valid, test" in " ".join(capsys.readouterr().err.split())


def test_cli_shard_and_merge(many, single, tmp_path, capsys):
    out = tmp_path / "corpus"
    for i in range(2):
        assert (
            run(
                [
                    "prepare",
                    str(many),
                    str(out),
                    "--valid-fraction",
                    "0.2",
                    "--test-fraction",
                    "0.2",
                    "--shard",
                    f"{i}/2",
                ]
            )
            == 0
        )
        assert f"part {i}/2" in capsys.readouterr().out
    assert run(["prepare", "--merge", str(out)]) == 0
    assert corpus_files(out) == corpus_files(single[0])
    assert "failed 1" in capsys.readouterr().out
    assert run(["prepare", "--merge", str(out), str(out)]) == 2
    assert "--merge takes one folder" in " ".join(capsys.readouterr().err.split())
    assert run(["prepare", str(many), str(out), "--shard", "2/2"]) == 2
    assert "0 <= I < N" in " ".join(capsys.readouterr().err.split())


def test_progress_counts_failures(many, single, tmp_path):
    seen = []
    shutil.copytree(single[0], tmp_path / "corpus")
    prepare_corpus(many, tmp_path / "corpus", options(), progress=lambda *a: seen.append(a))
    assert [s[0] for s in seen] == list(range(1, N_MANY + 2)) and {s[1] for s in seen} == {N_MANY + 1}
    assert seen[-1][3] == 1 and [s[2] for s in seen if s[3] == 1][0] == "spk0/broken"  # counted when it failed


# ------------------------------------------------------------ --split-list: a corpus's own split


def test_split_lists_honour_the_corpus_split_and_leave_unlisted_clips_out(source, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("clip0\n# a comment\n\nclip1\n", encoding="utf-8")
    (lists / "test.txt").write_text("clip3\n", encoding="utf-8")
    out = tmp_path / "corpus"
    result = prepare_corpus(
        source, out, PrepareOptions(split_lists=(("train", lists / "train.txt"), ("test", lists / "test.txt")))
    )
    assert result.splits == {"train": 2, "test": 1}
    assert [u.id for u in read_manifest(out / "train.tsv")] == ["clip0", "clip1"]
    assert [u.id for u in read_manifest(out / "test.tsv")] == ["clip3"]
    assert not (out / "video" / "clip2.mp4").exists()  # listed nowhere: not prepared at all
    record = json.loads((out / "prepare.json").read_text())
    assert record["options"]["split_lists"] == [["train", str(lists / "train.txt")], ["test", str(lists / "test.txt")]]


def test_split_lists_refuse_unknown_ids_and_ids_in_two_splits(source, tmp_path):
    (tmp_path / "train.txt").write_text("clip0\nclip9\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.txt:2: no clip 'clip9' in the source folder"):
        prepare_corpus(source, tmp_path / "a", PrepareOptions(split_lists=(("train", tmp_path / "train.txt"),)))
    (tmp_path / "valid.txt").write_text("clip1\n", encoding="utf-8")
    (tmp_path / "test.txt").write_text("clip2\nclip1\n", encoding="utf-8")
    both = (("valid", tmp_path / "valid.txt"), ("test", tmp_path / "test.txt"))
    with pytest.raises(DataError, match=r"test\.txt:2: clip 'clip1' is also listed for valid \(.*valid\.txt:1\)"):
        prepare_corpus(source, tmp_path / "b", PrepareOptions(split_lists=both))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before writing anything


def test_split_list_option_is_checked_on_the_command_line(source, tmp_path, capsys):
    assert run(["prepare", str(source), str(tmp_path / "c"), "--split-list", "dev=x.txt"]) == 2
    assert "--split-list takes SPLIT=FILE" in capsys.readouterr().err
    assert run(["prepare", str(source), str(tmp_path / "c"), "--split-list", "test=missing.txt"]) == 2
    assert "--split-list test: file not found: missing.txt" in capsys.readouterr().err
