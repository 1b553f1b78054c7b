from __future__ import annotations

import re

import pytest
from conftest import requires_whisper_weights

from avsrctl import demo


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_refuses_a_non_empty_work_folder_it_did_not_make(tmp_path, capsys):
    work = tmp_path / "mine"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    ran = []
    assert demo.main(["--work", str(work)], steps=(demo.Step("a", ran.append),)) == 2
    assert ran == []
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt"]
    [line] = _error_lines(capsys.readouterr().err)
    assert "not made by the demo" in line and str(work) in line


def test_reuses_its_own_work_folder_and_replaces_only_its_outputs(tmp_path):
    work = tmp_path / "demo"
    assert demo.main(["--work", str(work)], steps=()) == 0
    (work / "train").mkdir()
    (work / "train" / "old.txt").write_text("from the last run")
    (work / "notes.txt").write_text("the user's")
    seen = []
    assert demo.main(["--work", str(work)], steps=(demo.Step("a", lambda ctx: seen.append(ctx.workdir)),)) == 0
    assert seen == [work.resolve()]
    assert not (work / "train").exists() and (work / "notes.txt").is_file() and (work / demo.MARKER).is_file()


def test_temporary_folder_is_removed_at_the_end(capsys):
    seen = []
    assert demo.main([], steps=(demo.Step("a", lambda ctx: seen.append(ctx.workdir)),)) == 0
    [workdir] = seen
    assert workdir.name.startswith("avsrctl-demo-") and not workdir.exists()


def test_failing_step_stops_the_demo_with_one_line_naming_step_and_command(tmp_path, capsys):
    seen = []
    steps = (
        demo.Step("score", lambda ctx: demo.avsrctl(ctx, "eval")),  # no --tsv: a usage error, exit 2
        demo.Step("after", seen.append),
    )
    assert demo.main(["--work", str(tmp_path / "demo")], steps=steps) != 0
    assert seen == []
    err = capsys.readouterr().err
    assert "$ avsrctl eval" in err  # the command is shown before it runs
    [line] = _error_lines(err)
    assert line == "error: step 'score' failed (exit 2): avsrctl eval"


@pytest.mark.slow  # a real demo-data, train, eval x2 and transcribe x2 on tiny models (~75 s on two busy cores)
@requires_whisper_weights  # the baseline step runs faster-whisper tiny.en
def test_full_demo_with_tiny_models(tmp_path, media_dir, monkeypatch, capsys):
    monkeypatch.setenv("AVSRCTL_MEDIA", str(media_dir))
    work = tmp_path / "demo"
    assert demo.main(["--config", "tiny", "--utterances", "24", "--epochs", "1", "--work", str(work)]) == 0
    out = capsys.readouterr().out
    for modality in ("audio", "video", "both"):
        assert re.search(rf"│ eval +│ tiny +│ {modality} +│ WER \d+\.\d% \(\d+/\d+ words\)", out), modality
    assert re.search(r"│ baseline +│ faster-whisper[^│]*│ audio +│ WER \d+\.\d%", out)
    assert out.count("│ transcribe") == 2 and "grid_" in out
    assert (work / "train" / "final" / "model.safetensors").is_file()
    assert (work / "eval" / "both" / "wer.json").is_file()
