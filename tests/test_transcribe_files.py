"""`transcribe_files`: transcribe's jobs (which files, where each transcript goes) and its loop, as
library calls with a stand-in recogniser (no model, no media decoding)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from avsrctl.errors import MediaError, UsageError
from avsrctl.subtitles import Segment, Transcript
from avsrctl.transcribe_files import Job, failures, plan_jobs, streams_read, transcribe_jobs


class _Recognizer:
    """'Recognises' a file as its own text; a file holding 'bad' fails as undecodable media."""

    name, modalities = "stand-in", ("audio",)

    def transcribe_file(self, path: Path, progress=None) -> Transcript:
        text = path.read_text()
        if text == "bad":
            raise MediaError(f"{path}: cannot decode")
        if progress is not None:
            progress(1.0, 2.0)
        return Transcript(text, (Segment(0.0, 2.0, text),), self.name, str(path), 2.0)


@pytest.fixture
def inputs(tmp_path) -> Path:
    """a.wav, folder/sub/c.mp4, folder/notes.txt (not media)."""
    folder = tmp_path / "in"
    (folder / "folder" / "sub").mkdir(parents=True)
    (folder / "a.wav").write_text("hello")
    (folder / "folder" / "sub" / "c.mp4").write_text("bad")
    (folder / "folder" / "notes.txt").write_text("not media")
    return folder


def test_jobs_keep_a_folders_layout_under_the_output_folder(inputs, tmp_path):
    out = tmp_path / "out"
    with ExitStack() as stack:
        jobs = plan_jobs([str(inputs / "a.wav"), str(inputs / "folder")], None, out, "srt", stack)
    assert jobs == [
        Job(inputs / "a.wav", str(inputs / "a.wav"), out / "a.srt"),
        Job(inputs / "folder" / "sub" / "c.mp4", str(inputs / "folder" / "sub" / "c.mp4"), out / "sub" / "c.srt"),
    ]
    with ExitStack() as stack:  # one input, no folder: stdout
        assert plan_jobs([str(inputs / "a.wav")], None, None, "txt", stack)[0].target is None


def test_two_inputs_for_one_output_file_are_refused_before_any_work(inputs, tmp_path):
    (inputs / "b").mkdir()
    (inputs / "b" / "a.wav").write_text("again")
    with ExitStack() as stack, pytest.raises(UsageError, match="would both be written to"):
        plan_jobs([str(inputs / "a.wav"), str(inputs / "b" / "a.wav")], None, tmp_path / "out", "txt", stack)


def test_the_loop_writes_each_transcript_and_reports_a_failing_input_of_several(inputs, tmp_path):
    out = tmp_path / "out"
    with ExitStack() as stack:
        jobs = plan_jobs([str(inputs)], None, out, "txt", stack)
    seen = []
    done = list(transcribe_jobs(jobs, _Recognizer(), "txt", lambda job, s: seen.append((job.name[-5:], s))))
    assert [d.error is None for d in done] == [True, False]
    assert (out / "a.txt").read_text() == done[0].text and "hello" in done[0].text
    assert not (out / "folder" / "sub" / "c.txt").exists()
    assert seen == [("a.wav", 0.0), ("a.wav", 1.0), ("c.mp4", 0.0)]  # 0 as each starts, then as it goes
    error = failures({done[1].job.name: str(done[1].error)}, len(jobs))
    assert "1 of 2 inputs could not be transcribed" in str(error) and error.exit_code == 1
    assert streams_read(_Recognizer()) == "audio"


def test_a_single_inputs_error_is_raised_as_it_is(inputs):
    job = Job(inputs / "folder" / "sub" / "c.mp4", "c.mp4", None)
    with pytest.raises(MediaError, match="cannot decode"):
        list(transcribe_jobs([job], _Recognizer(), "txt"))
