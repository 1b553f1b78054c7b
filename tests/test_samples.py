"""The real GRID clips shipped in avsrctl/samples/ (avsrctl/data/samples.py) and their packaging."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from avsrctl.data.manifest import read_manifest
from avsrctl.data.samples import SAMPLES_DIR, sample_clips, write_sample_manifest
from avsrctl.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def test_the_shipped_clips_and_their_transcripts():
    clips = sample_clips()
    assert [(c.id, c.text) for c in clips] == [
        ("grid_bbaf2n", "bin blue at f two now"),
        ("grid_pwij3p", "place white in j three please"),
    ]
    readme = (SAMPLES_DIR / "README.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in readme
    for c in clips:
        assert c.path.is_file() and f"| {c.path.name} |" in readme


def test_manifest_names_one_file_for_both_streams_with_lengths_from_the_file(tmp_path):
    tsv = write_sample_manifest(tmp_path / "real")
    manifest = read_manifest(tsv)  # the .wrd beside it
    assert [(u.id, u.text) for u in manifest.utterances] == [(c.id, c.text) for c in sample_clips()]
    for u in manifest.utterances:
        assert u.video == u.audio == SAMPLES_DIR / f"{u.id}.mpg"
        assert (u.n_video_frames, u.n_audio_samples) == (75, 48000)  # 3 s at 25 fps and 16 kHz


def test_a_broken_transcript_list_is_named(tmp_path):
    (tmp_path / "transcripts.tsv").write_text("file\ttranscript\nclip.mpg\n")
    with pytest.raises(DataError, match=r"transcripts.tsv:2: expected 'file<TAB>transcript'"):
        sample_clips(tmp_path)


def test_package_data_ships_the_clips_and_the_builtin_models():
    tomllib = pytest.importorskip("tomllib")  # the standard library from Python 3.11
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["avsrctl"]
    for path in (*SAMPLES_DIR.iterdir(), REPO / "avsrctl" / "builtin" / "grid-small" / "model.safetensors"):
        rel = path.relative_to(REPO / "avsrctl").as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), rel
