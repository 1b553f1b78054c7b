"""avsrctl/lips.py: one utterance's lip use, the summaries over a run and a clip, the JSON fields and
the CLI's wording. No model: these are the figures decode, eval, transcribe and the recipes report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from avsrctl.lips import (
    LipUse,
    clip_summary,
    count_below,
    lip_use_line,
    read_results,
    run_fields,
    summarize,
    utterance_note,
)
from avsrctl.subtitles import Segment


def test_lip_use_gives_each_row_its_fields_and_the_means_skip_rows_not_decoded():
    from avsrctl.evaluate import DecodeOutput

    out = DecodeOutput("both", ["a", "", "c"], lips=[LipUse(0.5, 0.8), None, LipUse(0.1234567, None)])
    means, rows = run_fields(out)
    assert rows == [{"video_weight": 0.5, "lip_sync": 0.8}, {}, {"video_weight": 0.1235}]
    assert means == {"mean_video_weight": round((0.5 + 0.1234567) / 2, 4), "mean_lip_sync": 0.8}
    assert out.video_weights == [0.5, None, 0.1234567] and out.lip_syncs == [0.8, None, None]
    no_sync = DecodeOutput("both", ["a"], lips=[LipUse(0.3)])
    assert no_sync.lip_syncs is None and run_fields(no_sync) == ({"mean_video_weight": 0.3}, [{"video_weight": 0.3}])
    assert run_fields(DecodeOutput("audio", ["a"])) == ({}, None)


def test_a_results_row_reads_back_as_the_use_it_records():
    assert LipUse.from_fields({"id": "a", "video_weight": 0.25, "lip_sync": 0.5}) == LipUse(0.25, 0.5)
    assert LipUse.from_fields({"id": "a", "lip_sync": 0.5}) == LipUse(None, 0.5)
    assert LipUse.from_fields({"id": "a", "text": "x"}) is None
    use = LipUse(0.123456, 0.654321)
    assert LipUse.from_fields(use.fields()) == LipUse(0.1235, 0.6543)


def test_fused_lips_below_the_threshold_are_set_aside_and_lips_read_alone_are_below_it():
    fused = [LipUse(0.4, 0.8), LipUse(0.0, 0.3), LipUse(0.5, 0.9)]
    summary = summarize(fused, 0.5)
    assert summary == {
        "mean_video_weight": 0.3,
        "mean_lip_sync": (0.8 + 0.3 + 0.9) / 3,
        "min_lip_sync": 0.5,
        "set_aside": 1,
    }
    alone = [LipUse(None, 0.8), LipUse(None, 0.3)]
    assert summarize(alone, 0.5) == {"mean_lip_sync": 0.55, "min_lip_sync": 0.5, "below": 1}
    assert summarize([LipUse(0.2), LipUse(0.4)], None) == {"mean_video_weight": pytest.approx(0.3)}
    assert summarize(alone, None) is None and summarize([], 0.5) is None  # nothing to judge it by, or nothing read
    assert count_below(fused + [None, LipUse(0.2)], 0.5) == (1, 3)  # only uses with an in-sync probability count


def test_a_clip_summary_weights_its_pieces_by_their_length_and_rounds_the_means():
    pieces = [
        Segment(0.0, 3.0, "a", video_weight=0.6, lip_sync=0.9),
        Segment(3.0, 4.0, "b", video_weight=0.0, lip_sync=0.2),
    ]
    assert clip_summary(pieces, 0.5) == {
        "mean_video_weight": 0.45,
        "mean_lip_sync": 0.725,
        "min_lip_sync": 0.5,
        "set_aside": 1,
    }
    assert clip_summary([Segment(0.0, 1.0, "a")], 0.5) is None  # audio mode: no lips


def test_the_lip_line_names_a_mean_as_a_mean_when_only_some_utterances_fall_below():
    """2 of 12 below 0.50 with a mean of 0.69: the line must not read as if 0.69 were below 0.50."""
    fused = {"mean_video_weight": 0.44, "mean_lip_sync": 0.69, "min_lip_sync": 0.5, "set_aside": 2}
    line = lip_use_line(fused, 12, "utterance")
    assert "0.69, below" not in line and "in 2 of 12 utterances (in sync below 0.50; mean 0.69)" in line
    alone = lip_use_line({"mean_lip_sync": 0.69, "min_lip_sync": 0.5, "below": 2}, 12, "utterance")
    assert "(below" not in alone and "on average; below 0.50 in 2 of 12 utterances" in alone
    every = lip_use_line({**fused, "mean_lip_sync": 0.2, "set_aside": 12}, 12, "utterance")
    assert every.startswith("lips set aside in 12 of 12 utterances (in sync 0.20, below 0.50)")
    assert lip_use_line({"mean_video_weight": 0.44}, 3, "piece") == "lips: video weight 0.44"


def test_one_utterance_note_says_whether_its_lips_were_set_aside_or_below():
    assert utterance_note(None, 0.5) == "" and utterance_note(LipUse(None), 0.5) == ""
    assert utterance_note(LipUse(0.41, 0.8), 0.5) == "  video weight 0.41, lips in sync 0.80"
    assert utterance_note(LipUse(0.0, 0.3), 0.5).endswith("lips in sync 0.30 (set aside: read from the audio alone)")
    assert utterance_note(LipUse(None, 0.3), 0.5) == "  lips in sync 0.30 (below the threshold)"


def test_a_decode_folder_reads_back_its_summary_and_rows(tmp_path):
    assert read_results(tmp_path) is None
    (tmp_path / "wer.json").write_text(json.dumps({"mean_video_weight": 0.2, "settings": {"min_lip_sync": 0.5}}))
    assert read_results(tmp_path) == ({"mean_video_weight": 0.2, "settings": {"min_lip_sync": 0.5}}, None)
    rows = [{"id": "a", "video_weight": 0.2, "lip_sync": 0.7}, {"id": "b", "text": ""}]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_results(tmp_path)[1] == [LipUse(0.2, 0.7), None]


def test_the_lips_module_imports_no_torch():
    """eval --hyp and the recipes read lip figures without loading torch."""
    code = "import sys, avsrctl.lips; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
