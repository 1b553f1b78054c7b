"""Manifests: round trip, audio-/video-only rows, and every validation error naming file and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from avsrctl.data.manifest import Utterance, read_manifest, split_paths, write_manifest
from avsrctl.errors import DataError, UsageError


def corpus(
    tmp_path: Path,
    rows: list[str],
    texts: list[str] | None,
    root: str | None = None,
    files: tuple[str, ...] = ("a.mp4", "a.wav", "b.mp4", "b.wav"),
) -> tuple[Path, Path]:
    for name in files:
        (tmp_path / name).write_bytes(b"x")
    tsv, wrd = split_paths(tmp_path, "train")
    tsv.write_text("\n".join([str(tmp_path) if root is None else root, *rows]) + "\n", encoding="utf-8")
    if texts is not None:
        wrd.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return tsv, wrd


ROWS = ["a\ta.mp4\ta.wav\t75\t48000", "b\tb.mp4\tb.wav\t50\t32000"]


def test_read_resolves_paths_and_lengths(tmp_path):
    tsv, wrd = corpus(tmp_path, ROWS, ["bin blue at f two now", "place  white\tin j"])
    m = read_manifest(tsv)
    assert [u.id for u in m] == ["a", "b"] and len(m) == 2
    a, b = m[0], m[1]
    assert a.video == tmp_path / "a.mp4" and a.audio == tmp_path / "a.wav"
    assert (a.n_video_frames, a.n_audio_samples, a.n_frames, a.seconds) == (75, 48000, 75, 3.0)
    assert b.text == "place white in j"  # whitespace normalised
    assert (a.line, b.line) == (2, 3) and m.wrd == wrd
    assert m.has_audio and m.has_video


def test_round_trip(tmp_path):
    for name in ("v1.mp4", "a1.wav", "a2.wav"):
        (tmp_path / name).write_bytes(b"x")
    utts = [
        Utterance("u1", tmp_path / "v1.mp4", tmp_path / "a1.wav", 75, 48000, "first one"),
        Utterance("u2", None, tmp_path / "a2.wav", 0, 20000, "audio only"),
    ]
    tsv, wrd = tmp_path / "out" / "test.tsv", tmp_path / "out" / "test.wrd"
    write_manifest(tsv, wrd, tmp_path, utts)
    assert tsv.read_text().splitlines()[1] == "u1\tv1.mp4\ta1.wav\t75\t48000"
    back = read_manifest(tsv)
    for got, want in zip(back, utts, strict=True):
        assert (got.id, got.video, got.audio, got.n_video_frames, got.n_audio_samples, got.text) == (
            want.id,
            want.video,
            want.audio,
            want.n_video_frames,
            want.n_audio_samples,
            want.text,
        )
    assert back[1].n_frames == 32  # ceil(20000 / 640)
    assert not list(tsv.parent.glob(".*tmp"))


def test_relative_root_is_relative_to_the_tsv(tmp_path):
    tsv, _ = corpus(tmp_path, ROWS, ["x", "y"], root=".")
    assert read_manifest(tsv)[0].video == (tmp_path / "a.mp4").resolve()


@pytest.mark.parametrize("missing", ["-", ""])
def test_audio_only_and_video_only(tmp_path, missing):
    rows = [f"a\t{missing}\ta.wav\t{missing}\t1000", f"b\tb.mp4\t{missing}\t50\t{missing}"]
    tsv, _ = corpus(tmp_path, rows, ["x", "y"])
    m = read_manifest(tsv)
    assert m[0].video is None and m[0].n_frames == 2  # ceil(1000 / 640)
    assert m[1].audio is None and m[1].n_frames == 50
    assert not m.has_audio and not m.has_video


def test_require_names_the_missing_stream(tmp_path):
    tsv, _ = corpus(tmp_path, ["a\t-\ta.wav\t-\t1000", "b\t-\tb.wav\t-\t1000"], ["x", "y"])
    m = read_manifest(tsv)
    m.require("audio")
    with pytest.raises(UsageError, match=r"train\.tsv:2: --modality video needs video, but 2 of 2") as e:
        m.require("video")
    assert e.value.exit_code == 2 and "--modality audio" in e.value.hint
    with pytest.raises(UsageError, match="needs video"):
        m.require("both")


def test_without_transcripts(tmp_path):
    tsv, _ = corpus(tmp_path, ROWS, None)
    with pytest.raises(DataError, match=r"train\.wrd: file not found"):
        read_manifest(tsv)
    assert [u.text for u in read_manifest(tsv, require_text=False)] == ["", ""]


# ------------------------------------------------------------------- validation


def expect(tsv: Path, pattern: str, **kw) -> DataError:
    with pytest.raises(DataError, match=pattern) as e:
        read_manifest(tsv, **kw)
    return e.value


def test_count_mismatch(tmp_path):
    tsv, _ = corpus(tmp_path, ROWS, ["only one"])
    err = expect(tsv, r"train\.wrd: 1 transcripts for 2 utterances in .*train\.tsv")
    assert "one line per .tsv row" in err.hint


def test_missing_media_file(tmp_path):
    tsv, _ = corpus(tmp_path, ROWS + ["c\tc.mp4\tc.wav\t10\t6400"], ["x", "y", "z"])
    expect(tsv, r"train\.tsv:4: media file not found: .*c\.mp4")
    assert len(read_manifest(tsv, check_files=False)) == 3


@pytest.mark.parametrize(
    "row, what",
    [("a\ta.mp4\ta.wav\tseventy\t48000", "n_video_frames"), ("a\ta.mp4\ta.wav\t75\t4.8e4", "n_audio_samples")],
)
def test_non_numeric_counts(tmp_path, row, what):
    tsv, _ = corpus(tmp_path, [row], ["x"])
    expect(tsv, rf"train\.tsv:2: {what} must be a whole number, got '")


def test_negative_count(tmp_path):
    tsv, _ = corpus(tmp_path, ["a\ta.mp4\ta.wav\t-3\t48000"], ["x"])
    expect(tsv, r"train\.tsv:2: n_video_frames must not be negative")


@pytest.mark.parametrize(
    "row, n", [("a\ta.mp4\ta.wav\t75", 4), ("a\ta.mp4\ta.wav\t75\t48000\textra", 6), ("a a.mp4 a.wav 75 48000", 1)]
)
def test_wrong_field_count(tmp_path, row, n):
    tsv, _ = corpus(tmp_path, [ROWS[1], row], ["x", "y"])
    expect(tsv, rf"train\.tsv:3: expected 5 tab-separated fields .* got {n}")


def test_unreadable_root_line(tmp_path):
    tsv, _ = corpus(tmp_path, ROWS, ["x", "y"], root="")
    expect(tsv, r"train\.tsv:1: the first line must be the root folder")
    tsv.write_text("\n".join(ROWS) + "\n")  # forgot the root line
    expect(tsv, r"train\.tsv:1: the first line must be the root folder, found tab-separated fields")
    tsv.write_text("")
    expect(tsv, r"train\.tsv:1: the first line must be the root folder")


def test_empty_transcript(tmp_path):
    tsv, _ = corpus(tmp_path, ROWS, ["fine", "   "])
    expect(tsv, r"train\.wrd:2: empty transcript for 'b'")


def test_undecodable_utf8(tmp_path):
    tsv, wrd = corpus(tmp_path, ROWS, ["x", "y"])
    wrd.write_bytes("caf\u00e9\n".encode("utf-8") + b"bad \xff byte\n")
    expect(tsv, r"train\.wrd:2: not valid UTF-8 \(byte 0xff\)")
    tsv.write_bytes(tsv.read_bytes().replace(b"b\tb.mp4", b"\xe9\tb.mp4"))
    expect(tsv, r"train\.tsv:3: not valid UTF-8")


def test_duplicate_and_empty_ids(tmp_path):
    tsv, _ = corpus(tmp_path, [ROWS[0], ROWS[0]], ["x", "y"])
    expect(tsv, r"train\.tsv:3: duplicate id 'a' \(first on line 2\)")
    tsv, _ = corpus(tmp_path, ["\ta.mp4\ta.wav\t75\t48000"], ["x"])
    expect(tsv, r"train\.tsv:2: empty utterance id")


def test_row_without_any_stream(tmp_path):
    tsv, _ = corpus(tmp_path, ["a\t-\t-\t-\t-"], ["x"])
    expect(tsv, r"train\.tsv:2: 'a' has neither a video nor an audio path")


def test_no_rows_and_missing_tsv(tmp_path):
    tsv, _ = corpus(tmp_path, [], [])
    expect(tsv, r"train\.tsv: no utterances after the root line")
    expect(tmp_path / "nope.tsv", r"nope\.tsv: file not found")


def test_utf8_bom_and_blank_lines_are_tolerated(tmp_path):
    tsv, wrd = corpus(tmp_path, [ROWS[0], "", ROWS[1]], ["x", "y"])
    tsv.write_bytes(b"\xef\xbb\xbf" + tsv.read_bytes())
    m = read_manifest(tsv)
    assert [u.line for u in m] == [2, 4]


def test_write_rejects_ids_with_tabs(tmp_path):
    with pytest.raises(DataError, match="contains a tab or newline"):
        write_manifest(tmp_path / "x.tsv", None, tmp_path, [Utterance("a\tb", None, tmp_path / "a.wav", 0, 10)])


def test_large_manifest_rows_are_slotted_and_pickle(tmp_path):
    """Utterances carry no per-instance dict (150k LRS3 rows) and still cross to DataLoader workers."""
    import pickle

    tsv, _ = corpus(tmp_path, ROWS, ["x", "y"])
    m = read_manifest(tsv)
    assert not hasattr(m[0], "__dict__")
    assert pickle.loads(pickle.dumps(m[0])) == m[0]


def test_many_files_in_one_folder_are_checked_each(tmp_path):
    """Files are checked by listing a folder once; a missing one among many is still named."""
    rows = [f"u{i}\tv{i}.mp4\ta{i}.wav\t10\t6400" for i in range(6)]
    files = tuple(f"{s}{i}.{e}" for i in range(6) for s, e in (("v", "mp4"), ("a", "wav")) if (s, i) != ("a", 4))
    tsv, _ = corpus(tmp_path, rows, [f"t{i}" for i in range(6)], files=files)
    expect(tsv, r"train\.tsv:6: media file not found: .*a4\.wav")
    (tmp_path / "a4.wav").mkdir()  # a folder of that name is not a media file
    expect(tsv, r"train\.tsv:6: media file not found: .*a4\.wav")


@pytest.mark.parametrize("path", ["../outside.wav", "sub/../../outside.wav", "./../outside.wav"])
@pytest.mark.parametrize("check_files", [True, False])
def test_a_relative_path_that_climbs_out_of_the_root_is_refused(tmp_path, path, check_files):
    """A row cannot reach `../../../etc/passwd` through the root (it was handed to ffmpeg); the file
    existing outside does not make it acceptable, and eval --hyp (no file checks) refuses it too."""
    root = tmp_path / "corpus"
    root.mkdir()
    (tmp_path / "outside.wav").write_bytes(b"x")
    tsv, _ = corpus(root, ["a\ta.mp4\ta.wav\t75\t48000", f"b\tb.mp4\t{path}\t50\t32000"], ["one", "two"])
    where = re.escape(f"train.tsv:3: audio path '{path}' climbs out of the root folder {root}")
    with pytest.raises(DataError, match=where):
        read_manifest(tsv, check_files=check_files)


def test_paths_inside_the_root_and_absolute_paths_stay_allowed(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere.wav").write_bytes(b"x")  # LRS3 manifests name absolute paths anywhere
    rows = ["a\tsub/../a.mp4\ta.wav\t75\t48000", f"b\tb.mp4\t{tmp_path / 'elsewhere.wav'}\t50\t32000"]
    tsv, _ = corpus(root, rows, ["one", "two"])
    m = read_manifest(tsv)
    assert m[1].audio == tmp_path / "elsewhere.wav" and m[0].video.resolve() == root / "a.mp4"
