"""`eval_runs`: eval as a library call (EvalRequest -> run_eval -> EvalOutcome), no CLI in between."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from test_eval import BASIC_WER, HYPS, REFS, write_corpus

from avsrctl.eval_runs import EvalRequest, paired_runs, possible_folders, run_eval, run_folder, run_label
from avsrctl.evaluate import Run


@pytest.fixture
def hyp_files(tmp_path) -> tuple[Path, Path, Path]:
    tsv = write_corpus(tmp_path / "data", REFS)
    first, second = tmp_path / "a" / "hyp.txt", tmp_path / "b" / "hyp.txt"  # two systems, one file name
    for path, lines in ((first, HYPS), (second, REFS)):
        path.parent.mkdir()
        path.write_text("".join(line + "\n" for line in lines))
    return tsv, first, second


def test_the_request_is_a_frozen_record_and_names_its_source(tmp_path):
    request = EvalRequest(tmp_path / "t.tsv")
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.modality = "both"
    assert request.source == "baseline"
    assert EvalRequest(tmp_path / "t.tsv", hyp=(tmp_path / "h.txt",)).source == "hyp"
    assert EvalRequest(tmp_path / "t.tsv", checkpoint=tmp_path / "ckpt").source == "checkpoint"


def test_folder_layout_one_run_in_place_several_by_modality_or_numbered_file(tmp_path):
    out = tmp_path / "out"
    assert run_folder(out, 1, 1, "both", None) == out
    assert run_folder(out, 2, 3, "video", None) == out / "video"
    assert run_folder(out, 2, 2, None, "sys/b/hyp.txt") == out / "2-hyp"
    tsv = tmp_path / "t.tsv"
    assert possible_folders(EvalRequest(tsv)) == []  # no output_dir: nothing is written
    assert possible_folders(EvalRequest(tsv, output_dir=out)) == [out]
    every = possible_folders(EvalRequest(tsv, checkpoint=tmp_path / "c", modality="all", output_dir=out))
    assert every == [out, out / "audio", out / "video", out / "both"]
    files = EvalRequest(tsv, hyp=(Path("a/hyp.txt"), Path("b/hyp.txt")), output_dir=out)
    assert possible_folders(files) == [out / "1-hyp", out / "2-hyp"]


def _reports(errors_per_run: list[list[int]]):
    """Stand-ins for each run's [primary ErrorReport]: only the utterances' error counts are read."""
    return [[dataclasses.make_dataclass("R", ["utterances"])([_U(e) for e in errors])] for errors in errors_per_run]


@dataclasses.dataclass
class _U:
    errors: int


def test_both_is_paired_with_each_single_stream_and_files_with_the_first():
    runs = [Run("c (audio)", [], "audio"), Run("c (video)", [], "video"), Run("c (both)", [], "both")]
    assert [(i, j) for i, j, *_ in paired_runs(runs, _reports([[1, 2], [2, 2], [0, 1]]))] == [(2, 0), (2, 1)]
    files = [Run(f"hypotheses from {k}", [], settings={"hyp": str(k)}) for k in range(3)]
    assert [(i, j) for i, j, *_ in paired_runs(files, _reports([[1], [0], [2]]))] == [(1, 0), (2, 0)]
    assert paired_runs(runs[:1], _reports([[1]])) == []  # one stream alone: nothing to set it against
    assert [run_label(r) for r in runs + files[:1]] == ["audio", "video", "both", "0"]


def test_run_eval_scores_pairs_and_writes_only_on_request(hyp_files, tmp_path):
    tsv, first, second = hyp_files
    out = tmp_path / "scores"
    request = EvalRequest(tsv, hyp=(first, second), normalizers=("basic", "whisper"), output_dir=out)
    outcome = run_eval(request)
    assert [run_label(r) for r in outcome.runs] == [str(first), str(second)]
    assert [len(r) for r in outcome.reports] == [2, 2]  # one report per normaliser, the first primary
    assert outcome.reports[0][0].wer == pytest.approx(BASIC_WER) and outcome.reports[1][0].wer == 0.0
    assert [(i, j) for i, j, *_ in outcome.pairs] == [(1, 0)]
    assert set(outcome.summaries[1]["paired"]) == {str(first)} and "paired" not in outcome.summaries[0]
    assert not out.exists()  # nothing written before write()
    written = outcome.write()
    assert [p["wer"].parent for p in written] == [out / "1-hyp", out / "2-hyp"]
    assert json.loads((out / "2-hyp" / "wer.json").read_text())["wer"] == 0.0


def test_run_eval_refuses_an_output_that_is_one_of_its_inputs(hyp_files):
    from avsrctl.errors import UsageError

    tsv, first, _ = hyp_files
    hyp = first.with_name("hyp.wrd")  # the name eval gives its own hypotheses
    hyp.write_text(first.read_text())
    with pytest.raises(UsageError, match="is the input"):
        run_eval(EvalRequest(tsv, hyp=(hyp,), output_dir=hyp.parent))
    assert hyp.read_text() == first.read_text()
