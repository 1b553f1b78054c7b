from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import media_manifest, requires_whisper_weights

from avsrctl.cli.main import run

REFS = ["the cat sat on the mat", "Hello, world!", "place white in j three please"]
HYPS = ["the cat sit on mat", "hello there world", "Place white in J3, please."]
# By hand, basic normaliser: sat->sit, -the (2 errors / 6 words); +there (1 / 2);
# j->j3, -three (2 / 6). Corpus WER = 5 / 14.
BASIC_WER = 5 / 14
# whisper: 'j three' and 'J3' both become 'j 3', the rest as above: 3 / 14.
WHISPER_WER = 3 / 14
# Measured baseline WER of faster-whisper tiny.en (beam 5, int8, CPU) on the 4 GRID clips:
# basic 0.542 (13/24), whisper 0.208 (5/24). Bounds leave room for other CPUs/versions.
GRID_BOUNDS = {"basic": 0.70, "whisper": 0.35}
# ...and on the 6 short English recordings: basic 0.098 (6/61), whisper 0.082 (5/61).
AUDIO_BOUNDS = {"basic": 0.25, "whisper": 0.20}


def write_corpus(
    folder: Path, refs: list[str], files: list[str] | None = None, *, root: Path | None = None, video: bool = False
) -> Path:
    """A .tsv/.wrd pair; media paths need not exist when only --hyp files are scored."""
    folder.mkdir(parents=True, exist_ok=True)
    files = files or [f"clip{i}.wav" for i in range(len(refs))]
    rows = [str(root or folder)]
    for f in files:
        uid = Path(f).stem
        rows.append(f"{uid}\t{f}\t-\t75\t0" if video else f"{uid}\t-\t{f}\t0\t48000")
    tsv = folder / "test.tsv"
    tsv.write_text("\n".join(rows) + "\n")
    (folder / "test.wrd").write_text("".join(r + "\n" for r in refs))
    return tsv


@pytest.fixture
def corpus(tmp_path) -> tuple[Path, Path]:
    tsv = write_corpus(tmp_path / "data", REFS)
    hyp = tmp_path / "hyp.txt"
    hyp.write_text("".join(h + "\n" for h in HYPS))
    return tsv, hyp


def _err(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


def test_hyp_mode_json(corpus, capsys):
    tsv, hyp = corpus
    assert run(["eval", "--tsv", str(tsv), "--hyp", str(hyp), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["wer"] == pytest.approx(BASIC_WER)
    assert (out["substitutions"], out["deletions"], out["insertions"]) == (2, 2, 1)
    assert out["n_utterances"] == 3 and out["ref_words"] == 14 and out["normalizer"] == "basic"
    assert out["wrd"].endswith("test.wrd") and str(hyp) in out["system"]


def test_hyp_mode_table_all_normalizers_and_outputs(corpus, tmp_path, capsys):
    tsv, hyp = corpus
    out_dir = tmp_path / "scores"
    assert run(["eval", "--tsv", str(tsv), "--hyp", str(hyp), "-n", "all", "-o", str(out_dir), "-v"]) == 0
    out = capsys.readouterr().out
    assert f"{100 * BASIC_WER:.2f}%" in out and f"{100 * WHISPER_WER:.2f}%" in out
    assert "sat→sit" in out and "-the" in out and "+there" in out  # --verbose alignments
    summary = json.loads((out_dir / "wer.json").read_text())
    assert summary["by_normalizer"]["whisper"]["wer"] == pytest.approx(WHISPER_WER)
    assert summary["by_normalizer"]["none"]["wer"] > summary["wer"]
    assert (out_dir / "hyp.wrd").read_text().splitlines() == HYPS
    rows = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["clip0", "clip1", "clip2"] and rows[1]["insertions"] == 1


def test_hyp_line_count_mismatch_is_an_error(corpus, capsys):
    tsv, hyp = corpus
    hyp.write_text("only one line\n")
    assert run(["eval", "--tsv", str(tsv), "--hyp", str(hyp)]) == 1
    err = _err(capsys)
    assert str(hyp) in err and "has 1 hypotheses" in err and "test.wrd has 3 references" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--hyp", "h.txt", "--checkpoint", "ckpt"], "pass one"),
        (["--normalizer", "fancy"], "--normalizer must be one of"),
        (["--format", "csv"], "--format must be one of table, json"),
        (["--modality", "video"], "the baseline is audio only"),
        (["--hyp", "h.txt", "--baseline-model", "small.en"], "--baseline-model applies only"),
        (["--hyp", "h.txt", "--beam-size", "3"], "apply to decoding"),
        (["--checkpoint", "ckpt", "--modality", "lips"], "--modality must be one of"),
    ],
)
def test_usage_errors(corpus, capsys, extra, message):
    tsv, _ = corpus
    assert run(["eval", "--tsv", str(tsv), *extra]) == 2
    assert message in _err(capsys)


def test_tsv_is_required(capsys):
    assert run(["eval", "--hyp", "h.txt"]) == 2
    assert "--tsv is required" in _err(capsys)


def _baseline(tmp_path, tsv, capsys) -> dict:
    out_dir = tmp_path / "out"
    assert run(["eval", "--tsv", str(tsv), "-n", "all", "-f", "json", "-o", str(out_dir)]) == 0
    captured = capsys.readouterr()
    assert "scoring the baseline, faster-whisper tiny.en (audio only)" in " ".join(captured.err.split())
    result = json.loads(captured.out)
    assert result == json.loads((out_dir / "wer.json").read_text())
    return result


@pytest.mark.slow  # four GRID clips through faster-whisper (~5 s)
@requires_whisper_weights
def test_baseline_on_grid_videos(media_dir, tmp_path, capsys):
    rows = [r for r in media_manifest() if r["kind"] == "video"]
    assert len(rows) == 4
    tsv = write_corpus(
        tmp_path / "grid",
        [r["reference_transcript"] for r in rows],
        [r["file"] for r in rows],
        root=media_dir,
        video=True,
    )
    result = _baseline(tmp_path, tsv, capsys)
    wers = {k: v["wer"] for k, v in result["by_normalizer"].items()}
    print("GRID baseline WER:", wers)
    for name, bound in GRID_BOUNDS.items():
        assert wers[name] <= bound, wers
    assert wers["whisper"] < wers["basic"] < wers["none"]  # digits vs number words dominate GRID's errors
    assert result["ref_words"] == 24 and result["n_utterances"] == 4


@pytest.mark.slow  # six recordings through faster-whisper (~6 s)
@requires_whisper_weights
def test_baseline_on_audio_recordings(media_dir, tmp_path, capsys):
    rows = [r for r in media_manifest() if r["kind"] == "audio"]
    tsv = write_corpus(
        tmp_path / "audio", [r["reference_transcript"] for r in rows], [r["file"] for r in rows], root=media_dir
    )
    result = _baseline(tmp_path, tsv, capsys)
    wers = {k: v["wer"] for k, v in result["by_normalizer"].items()}
    print("audio baseline WER:", wers)
    for name, bound in AUDIO_BOUNDS.items():
        assert wers[name] <= bound, wers


@requires_whisper_weights
def test_baseline_scores_an_undecodable_clip_as_empty(media_dir, tmp_path, capsys):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all")
    tsv = write_corpus(
        tmp_path / "mixed", ["ten of clubs", "hello there"], [str(media_dir / "audio" / "cards_001.wav"), str(bad)]
    )
    assert run(["eval", "--tsv", str(tsv), "-f", "json", "--max-failed", "0.5"]) == 0  # 1 of 2 failed
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert list(result["failed"]) == ["broken"] and "broken.wav" in result["failed"]["broken"]
    assert result["deletions"] >= 2  # the failed clip's two words count against the system
    assert "broken: scored as an empty hypothesis" in " ".join(captured.err.split())


@requires_whisper_weights
def test_baseline_fails_when_no_clip_decodes(tmp_path, capsys):
    tsv = write_corpus(tmp_path / "bad", ["hello"])
    (tmp_path / "bad" / "clip0.wav").write_bytes(b"not audio at all")
    assert run(["eval", "--tsv", str(tsv)]) == 1
    err = _err(capsys)
    assert "no clip could be decoded (1 tried)" in err and "clip0.wav" in err


@pytest.mark.slow  # builds, saves and reloads a tiny random model, then decodes three modalities (~15 s)
def test_checkpoint_mode_scores_every_modality(media_dir, tmp_path, capsys):
    import torch

    from avsrctl.checkpoint import save_checkpoint
    from avsrctl.config import load_config
    from avsrctl.models.builder import build_model

    torch.manual_seed(0)
    cfg = load_config("tiny", [], {"decode.max_new_tokens": 4})
    ckpt = save_checkpoint(tmp_path / "run", "best", model=build_model(cfg), cfg=cfg, meta={"modality": "both"})
    clip = "video/grid_lbax4n.mpg"  # the audio is the .mpg's own audio stream
    tsv = tmp_path / "grid.tsv"
    tsv.write_text(f"{media_dir}\ngrid_lbax4n\t{clip}\t{clip}\t75\t48000\n")
    (tmp_path / "grid.wrd").write_text("lay blue at x four now\n")
    out_dir = tmp_path / "scores"
    assert (
        run(
            [
                "eval",
                "--tsv",
                str(tsv),
                "--checkpoint",
                str(ckpt),
                "-m",
                "all",
                "-f",
                "json",
                "-o",
                str(out_dir),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    results = json.loads(capsys.readouterr().out)
    assert [r["modality"] for r in results] == ["audio", "video", "both"]
    for r in results:  # a random model: any WER, but every number must be there and consistent
        assert r["n_utterances"] == 1 and r["ref_words"] == 6 and r["failed"] == {}
        assert r["wer"] == pytest.approx(r["errors"] / 6)
        assert r["settings"]["checkpoint"] == str(ckpt)
        saved = json.loads((out_dir / r["modality"] / "wer.json").read_text())
        assert saved == r
        assert len((out_dir / r["modality"] / "hyp.wrd").read_text().splitlines()) == 1


def test_several_hyp_files_are_scored_side_by_side_and_paired_with_the_first(corpus, tmp_path, capsys):
    """--hyp A --hyp B: one row each, B compared with A on the same utterances, outputs in a subfolder each."""
    from avsrctl.metrics import paired_comparison

    tsv, first = corpus
    second = tmp_path / "other" / "hyp.txt"  # the same file name in another folder
    second.parent.mkdir()
    second.write_text("the cat sat on the mat\nhello world\nplace white in j three please\n")  # no errors
    out_dir = tmp_path / "scores"
    args = ["eval", "--tsv", str(tsv), "--hyp", str(first), "--hyp", str(second), "-o", str(out_dir), "-f", "json"]
    assert run(args) == 0
    captured = capsys.readouterr()
    a, b = json.loads(captured.out)
    assert a["wer"] == pytest.approx(BASIC_WER) and b["wer"] == 0.0
    better, tied = paired_comparison([0, 0, 0], [2, 1, 2])  # the second has fewer errors on every utterance
    assert b["paired"] == {str(first): {"fewer_errors": round(better, 4), "as_many": round(tied, 4)}}
    assert "paired" not in a
    said = " ".join(captured.err.split())
    assert f"{second} vs {first}: fewer errors in {100 * better:.0f}% of resamples" in said
    folders = sorted(p.parent.relative_to(out_dir) for p in out_dir.rglob("wer.json"))
    assert len(folders) == 2 and len(set(folders)) == 2  # one each, though both files are named hyp.txt
    assert {json.loads((out_dir / f / "wer.json").read_text())["wer"] for f in folders} == {a["wer"], b["wer"]}

    assert run(["eval", "--tsv", str(tsv), "--hyp", str(first), "--hyp", str(second)]) == 0
    table = capsys.readouterr().out
    assert str(second.parent.name) in table and f"{100 * BASIC_WER:.2f}%" in table and "0.00%" in table


def test_a_baseline_table_needs_no_hypothesis_file(capsys):
    """The summary table of a run that came from no --hyp file (the baseline) names no file."""
    from avsrctl.cli.scores import summary_table
    from avsrctl.evaluate import Run
    from avsrctl.metrics import score

    run_ = Run("faster-whisper tiny.en", ["a b"], settings={"model": "tiny.en"})
    table = summary_table([run_], [[score(["a b"], ["a b"])]], "baseline")
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(table)
    assert "0.00%" in console.export_text()
