from __future__ import annotations

import math
import re

import pytest
from conftest import requires_whisper_weights
from pretrained_support import standin_checkpoint

from avsrctl import demo, pretrained
from avsrctl.cli import console
from avsrctl.cli.main import run


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.fixture
def run_demo(monkeypatch):
    """`run_demo(argv, steps=None)`: `avsrctl demo ARGV` through the CLI's error boundary, with `steps`
    in place of the demo's own (all of them when None); the exit code."""

    def go(argv: list[str], steps: tuple | None = None) -> int:
        if steps is not None:
            monkeypatch.setattr(demo, "STEPS", steps)
        return run(["demo", *argv])

    return go


def test_refuses_a_non_empty_work_folder_it_did_not_make(tmp_path, capsys, run_demo):
    work = tmp_path / "mine"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    ran = []
    assert run_demo(["--work", str(work)], steps=(demo.Step("a", ran.append),)) == 2
    assert ran == []
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt"]
    [line] = _error_lines(capsys.readouterr().err)
    assert "not made by the demo" in line and str(work) in line


def test_reuses_its_own_work_folder_and_replaces_only_its_outputs(tmp_path, run_demo):
    work = tmp_path / "demo"
    assert run_demo(["--work", str(work)], steps=()) == 0
    (work / "train").mkdir()
    (work / "train" / "old.txt").write_text("from the last run")
    (work / "notes.txt").write_text("the user's")
    seen = []
    assert run_demo(["--work", str(work)], steps=(demo.Step("a", lambda ctx: seen.append(ctx.workdir)),)) == 0
    assert seen == [work.resolve()]
    assert not (work / "train").exists() and (work / "notes.txt").is_file() and (work / demo.MARKER).is_file()


def test_temporary_folder_is_removed_at_the_end(capsys, run_demo):
    seen = []
    assert run_demo([], steps=(demo.Step("a", lambda ctx: seen.append(ctx.workdir)),)) == 0
    [workdir] = seen
    assert workdir.name.startswith("avsrctl-demo-") and not workdir.exists()


def test_failing_step_stops_the_demo_with_one_line_naming_step_and_command(tmp_path, capsys, run_demo):
    seen = []
    steps = (
        demo.Step("score", lambda ctx: demo.avsrctl(ctx, "eval")),  # no --tsv: a usage error, exit 2
        demo.Step("after", seen.append),
    )
    assert run_demo(["--work", str(tmp_path / "demo")], steps=steps) != 0
    assert seen == []
    err = capsys.readouterr().err
    assert "$ avsrctl eval" in err  # the command is shown before it runs
    [line] = _error_lines(err)
    assert line == "error: step 'score' failed (exit 2): avsrctl eval"
    assert "hint: the command's own error is printed above it" in err


def test_an_interrupted_demo_says_so_in_one_line_and_removes_its_temporary_folder(capsys, run_demo):
    seen = []

    def interrupted(ctx):
        seen.append(ctx.workdir)
        raise KeyboardInterrupt

    assert run_demo([], steps=(demo.Step("a", interrupted),)) == 130
    [workdir] = seen
    assert not workdir.exists()
    assert _error_lines(capsys.readouterr().err) == ["error: interrupted"]


def test_demo_is_a_command_of_the_cli_and_python_m_runs_the_same(capsys):
    import subprocess
    import sys

    assert run(["--help"]) == 0
    assert "demo " in capsys.readouterr().out
    proc = subprocess.run([sys.executable, "-m", "avsrctl.demo", "--epochs", "x"], capture_output=True, text=True)
    assert proc.returncode == 2  # a usage error from the same command, through the same boundary
    [line] = _error_lines(proc.stderr)
    assert "--epochs" in line
    assert "hint: run `avsrctl demo --help`" in proc.stderr


def test_without_the_builtin_model_its_steps_say_so_in_one_line_and_the_demo_completes(
    tmp_path, monkeypatch, capsys, run_demo
):
    monkeypatch.setattr(pretrained, "BUILTIN_ROOT", tmp_path / "empty")
    monkeypatch.setattr(console.stderr(), "width", 10_000)
    after = []
    steps = (
        demo.Step("synthetic", demo.synthetic),
        demo.Step("drowned", demo.drowned),
        demo.Step("after", after.append),
    )
    assert run_demo(["--work", str(tmp_path / "demo")], steps=steps) == 0
    assert len(after) == 1
    err = capsys.readouterr().err
    assert "$ avsrctl" not in err  # nothing ran for the missing model
    why = "built-in model grid-small is not installed in this build; run `make grid-recipe`"
    assert [line for line in err.splitlines() if "not installed" in line] == [
        f"skipped the built-in model on the synthetic test split: {why}",
        f"skipped the built-in model on a real recording in babble: {why}",
    ]


@pytest.mark.parametrize(
    ("model", "fragment"),
    [("no/such/final", "--model no/such/final: no such checkpoint folder"), ("grid-smal", "(built-in: grid-small)")],
)
def test_a_model_that_is_neither_builtin_nor_a_folder_is_a_usage_error(tmp_path, capsys, model, fragment, run_demo):
    ran = []
    assert run_demo(["--work", str(tmp_path / "demo"), "--model", model], steps=(demo.Step("a", ran.append),)) == 2
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
    assert demo.comparisons(ctx) == ["synthetic test, babble -5 dB: both 20.0% vs audio 50.0% (lips: 60% lower)"]
    ctx.wer[("grid-small", "synthetic test", "both", "babble -5 dB")] = 0.5
    assert demo.comparisons(ctx)[0].endswith("(lips: not lower)")


def test_the_drowned_clip_is_compared_as_the_model_read_it():
    ctx = demo.DemoContext(demo.Path("."), "tiny", 24, 1)
    clip = {"data": "grid_bbaf2n.mpg", "ref_words": 6}
    ctx.drowned["audio"] = {**clip, "hits": 2}
    assert demo.comparisons(ctx) == []  # both is missing
    ctx.drowned["both"] = {**clip, "hits": 2, "video_weight": 0.0, "lip_sync": 0.15}
    assert demo.comparisons(ctx) == ["grid_bbaf2n.mpg, babble -5 dB: both 2/6 words right, audio 2/6; lips set aside"]
    ctx.drowned["both"] = {**clip, "hits": 5, "video_weight": 0.4213}
    assert demo.comparisons(ctx) == ["grid_bbaf2n.mpg, babble -5 dB: both 5/6 words right, audio 2/6; lip weight 0.42"]


def _summary_rows() -> list[demo.Row]:
    """The rows a full run adds (see each step), with the longest names it prints."""
    wer = "WER 52.8% (38/72 words)"
    rows = [
        demo.Row("1 corpus", "-", "synthetic", "-", "-", "32 train, 4 valid, 12 test utterances", 4.0),
        demo.Row(
            "1 train",
            "offline-small",
            "synthetic train (32)",
            "both",
            "from scratch",
            "train loss 11.21 (step 2) -> 4.62 (step 16), valid loss 4.75",
            61.0,
        ),
    ]
    for modality, condition in [("audio", "clean"), ("audio", "babble -5 dB"), ("video", "clean"), ("both", "clean")]:
        rows.append(demo.Row("2 built-in", demo.MODEL, "synthetic test (12)", modality, condition, wer))
    for model, modality in [(demo.MODEL, "audio"), (demo.MODEL, "both"), (demo.BASELINE, "audio")]:
        rows.append(demo.Row("3 real", model, "real GRID (2)", modality, "clean", wer))
    heard = '"Bimblue F2 now." (1/6 words right)\n[dim]reference: bin blue at f two now[/]'  # as demo.report.heard writes it
    rows.append(demo.Row("3 transcribe", demo.BASELINE, "grid_bbaf2n.mpg", "audio", "clean", heard, 9.0))
    for modality in ("audio", "both"):
        rows.append(demo.Row("3 drowned", demo.MODEL, "grid_bbaf2n.mpg", modality, "babble -5 dB", heard))
    return rows


def test_summary_keeps_every_name_whole_at_80_columns(monkeypatch, capsys):
    ctx = demo.DemoContext(demo.Path("."), "offline-small", 48, 2, rows=_summary_rows())
    ctx.wer[(demo.MODEL, "synthetic test", "audio", "babble -5 dB")] = 0.528
    ctx.wer[(demo.MODEL, "synthetic test", "both", "babble -5 dB")] = 0.25
    ctx.wer[(demo.MODEL, "real GRID", "audio", "clean")] = 1.0
    ctx.wer[(demo.MODEL, "real GRID", "both", "clean")] = 1.0
    ctx.wer[(demo.BASELINE, "real GRID", "audio", "clean")] = 1.0
    ctx.drowned = {
        m: {"data": "grid_bbaf2n.mpg", "hits": 1, "ref_words": 6, "video_weight": 0.0} for m in ("audio", "both")
    }
    monkeypatch.setattr(console.stdout(), "width", 80)  # what a pipe gets
    demo.report(ctx, 103.0)
    lines = capsys.readouterr().out.splitlines()
    body = lines[next(i for i, line in enumerate(lines) if "result" in line) + 1 :]  # below the title and header
    names = sorted({r.model for r in ctx.rows} | {r.data for r in ctx.rows})
    assert [name for name in names if not any(name in line for line in body)] == []  # each whole on one line
    assert [line for line in lines if len(line) > 80] == []
    assert len([line for line in lines if "both 100.0%, audio 100.0%, faster-whisper tiny.en 100.0%" in line]) == 1


@pytest.mark.slow  # demo-data, train, 3 decodes, 2 evals and 2 transcribes on tiny models (~2 min on two busy cores)
@requires_whisper_weights  # the baseline runs faster-whisper tiny.en
def test_full_demo_with_tiny_models_and_a_standin_builtin(tmp_path, capfd, monkeypatch, run_demo):
    model = standin_checkpoint(tmp_path / "standin")
    monkeypatch.setattr(console.stdout(), "width", 250)
    shown, report = [], demo.report
    monkeypatch.setattr(demo, "report", lambda ctx, elapsed: (shown.extend(ctx.rows), report(ctx, elapsed)))
    work = tmp_path / "demo"
    argv = ["--config", "tiny", "--utterances", "24", "--epochs", "1", "--work", str(work), "--model", str(model)]
    assert run_demo(argv) == 0
    out, err = capfd.readouterr()
    assert "$ avsrctl train --config tiny" in err and "--log-param-updates" in err
    assert err.count("parameter updates at step") == 1
    rows = {
        step: [(r.model, r.data, r.modality, r.condition, r.result) for r in shown if r.step == step]
        for step in ("1 train", "2 built-in", "3 real", "3 transcribe", "3 drowned")
    }
    [(name, data, modality, condition, result)] = rows["1 train"]
    assert (name, modality, condition) == ("tiny", "both", "from scratch")
    assert re.fullmatch(r"synthetic train \(\d+\)", data) and result.startswith("train loss ")
    wer = r"WER \d+\.\d% \(\d+/\d+ words\)"
    babble = "babble -5 dB"
    assert [r[2:4] for r in rows["2 built-in"]] == [
        ("audio", "clean"),
        ("audio", babble),
        ("video", "clean"),
        ("both", "clean"),
        ("both", babble),
    ]
    assert all(r[0] == "standin/final" and re.fullmatch(r"synthetic test \(\d+\)", r[1]) for r in rows["2 built-in"])
    assert [r[:4] for r in rows["3 real"]] == [
        ("standin/final", "real GRID (2)", m, "clean") for m in ("audio", "video", "both")
    ] + [(demo.BASELINE, "real GRID (2)", "audio", "clean")]
    assert all(re.fullmatch(wer, r[4]) for r in rows["2 built-in"] + rows["3 real"])
    assert [r[:2] for r in rows["3 transcribe"]] == [
        ("standin/final", "grid_bbaf2n.mpg"),
        (demo.BASELINE, "grid_bbaf2n.mpg"),
    ]
    assert [r[:4] for r in rows["3 drowned"]] == [
        ("standin/final", "grid_bbaf2n.mpg", m, babble) for m in ("audio", "both")
    ]
    heard = r'".*" \([0-6]/6 words right\)\n\[dim\]reference: bin blue at f two now\[/\]'
    assert all(re.fullmatch(heard, r[4], re.DOTALL) for r in rows["3 transcribe"] + rows["3 drowned"])
    assert "3 drowned" in out and "standin/final" in out
    for line in ("synthetic test, babble -5 dB: both", "real GRID, clean: both", "grid_bbaf2n.mpg, babble -5 dB: both"):
        assert line in out
    assert re.search(r"train: \d+ s", err) and re.search(r"drowned: \d+ s", err)
    assert (work / "train" / "final" / "model.safetensors").is_file()
    assert (work / "real" / "model" / "both" / "wer.json").is_file()
    assert (work / "drowned" / "both" / "snr_-5" / "results.jsonl").is_file()
