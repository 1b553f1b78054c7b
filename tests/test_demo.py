from __future__ import annotations

import math
import re

import pytest
from conftest import requires_whisper_weights
from pretrained_support import standin_checkpoint

from avsrctl import demo, pretrained
from avsrctl.cli import console


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


def test_without_the_builtin_model_its_steps_say_so_in_one_line_and_the_demo_completes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "BUILTIN_ROOT", tmp_path / "empty")
    monkeypatch.setattr(console.stderr(), "width", 10_000)
    after = []
    steps = (demo.Step("synthetic", demo.synthetic), demo.Step("after", after.append))
    assert demo.main(["--work", str(tmp_path / "demo")], steps=steps) == 0
    assert len(after) == 1
    err = capsys.readouterr().err
    assert "$ avsrctl" not in err  # nothing ran for the missing model
    [line] = [line for line in err.splitlines() if "not installed" in line]
    assert line == (
        "skipped the built-in model on the synthetic test split: "
        "built-in model grid-small is not installed in this build; run `make grid-recipe`"
    )


@pytest.mark.parametrize(
    ("model", "fragment"),
    [("no/such/final", "--model no/such/final: no such checkpoint folder"), ("grid-smal", "(built-in: grid-small)")],
)
def test_a_model_that_is_neither_builtin_nor_a_folder_is_a_usage_error(tmp_path, capsys, model, fragment):
    ran = []
    assert demo.main(["--work", str(tmp_path / "demo"), "--model", model], steps=(demo.Step("a", ran.append),)) == 2
    assert ran == []
    [line] = _error_lines(capsys.readouterr().err)
    assert fragment in line


def test_the_parameter_table_is_due_once_in_the_run():
    for n_train in range(1, 120):
        for epochs in (1, 2, 3):
            steps = math.ceil(n_train / 4) * epochs  # the fewest steps the run can take
            every = demo.table_every(n_train, 4, epochs)
            assert every <= steps < 2 * every or steps == every == 1, (n_train, epochs)


def test_comparisons_set_only_this_runs_figures_side_by_side():
    ctx = demo.DemoContext(demo.Path("."), "tiny", 24, 1)
    assert demo.comparisons(ctx) == []
    ctx.wer[("grid-small", "synthetic test", "audio", "babble -5 dB")] = 0.5
    ctx.wer[("grid-small", "synthetic test", "both", "babble -5 dB")] = 0.2
    assert demo.comparisons(ctx) == [
        "synthetic test, babble -5 dB: both 20.0% vs audio 50.0% (60% lower with the lips)"
    ]
    ctx.wer[("grid-small", "synthetic test", "both", "babble -5 dB")] = 0.5
    assert demo.comparisons(ctx)[0].endswith("(the lips do not lower it here)")


@pytest.mark.slow  # demo-data, train, 3 decodes, 2 evals and 2 transcribes on tiny models (~2 min on two busy cores)
@requires_whisper_weights  # the baseline runs faster-whisper tiny.en
def test_full_demo_with_tiny_models_and_a_standin_builtin(tmp_path, capfd, monkeypatch):
    model = standin_checkpoint(tmp_path / "standin")
    monkeypatch.setattr(console.stdout(), "width", 250)
    work = tmp_path / "demo"
    argv = ["--config", "tiny", "--utterances", "24", "--epochs", "1", "--work", str(work), "--model", str(model)]
    assert demo.main(argv) == 0
    out, err = capfd.readouterr()
    assert "$ avsrctl train --config tiny" in err and "--log-param-updates" in err
    assert err.count("parameter updates at step") == 1
    assert re.search(r"│ 1 train +│ tiny, from scratch +│ synthetic train \(\d+\) +│ both +│ - +│ train loss \d", out)
    wer = r"WER \d+\.\d% \(\d+/\d+ words\)"
    for modality, condition in (("audio", "clean"), ("audio", "babble -5 dB"), ("video", "clean"), ("both", "clean")):
        assert re.search(rf"│ standin/final +│ synthetic test \(\d+\) +│ {modality} +│ {condition} +│ {wer}", out)
    for modality in ("audio", "video", "both"):
        assert re.search(rf"│ 3 real +│ standin/final +│ real GRID \(2\) +│ {modality} +│ clean +│ {wer}", out)
    assert re.search(rf"│ 3 real +│ faster-whisper tiny.en +│ real GRID \(2\) +│ audio +│ clean +│ {wer}", out)
    assert len(re.findall(r"│ 3 transcribe +│ (standin/final|faster-whisper tiny.en) +│ grid_bbaf2n.mpg", out)) == 2
    assert "synthetic test, babble -5 dB: both" in out and "real GRID, clean: both" in out
    assert re.search(r"train: \d+ s", err) and re.search(r"transcribe: \d+ s", err)
    assert (work / "train" / "final" / "model.safetensors").is_file()
    assert (work / "real" / "model" / "both" / "wer.json").is_file()
