from __future__ import annotations

import json

import jiwer
import pytest

from avsrctl.errors import DataError, UsageError
from avsrctl.metrics import (
    basic_normalize,
    chance_level,
    get_normalizer,
    no_normalize,
    read_hypotheses,
    render_diff,
    score,
    spelling_mapping,
    whisper_normalize,
    write_results,
)

REFS = ["the cat sat on the mat", "hello world"]
HYPS = ["the cat sit on mat", "hello there world"]


# ----------------------------------------------------------------------------- normalisers


def test_basic_keeps_apostrophes_and_digits_drops_punctuation():
    assert basic_normalize("Hello, World! It's 42 o'clock.") == "hello world it's 42 o'clock"
    assert basic_normalize("a well-known fact \u2014 isn't it?") == "a well known fact isn't it"
    assert basic_normalize("It\u2019s the dogs' bone") == "it's the dogs' bone"  # curly apostrophe unified
    assert basic_normalize("he said 'yes' ' then") == "he said yes then"  # quotes go, bare ' vanishes
    assert basic_normalize("  many\t spaces\n") == "many spaces"


def test_none_only_collapses_whitespace():
    assert no_normalize("  Hello,   World. ") == "Hello, World."


def test_whisper_maps_numbers_and_contractions():
    assert whisper_normalize("Two dogs, Mr. Smith!") == "2 dogs mister smith"
    assert whisper_normalize("I don't know") == "i do not know"


def test_unknown_normalizer_is_usage_error():
    with pytest.raises(UsageError, match="unknown normaliser 'fancy'"):
        get_normalizer("fancy")


# --------------------------------------------------------------------------------- scoring


def test_corpus_wer_by_hand_and_against_jiwer():
    r = score(REFS, HYPS, "none", ids=["a", "b"])
    # utterance a: sat->sit (S) and a dropped 'the' (D) over 6 words; b: 'there' inserted (I) over 2.
    assert (r.substitutions, r.deletions, r.insertions, r.hits) == (1, 1, 1, 6)
    assert r.ref_words == 8 and r.hyp_words == 8 and r.n_utterances == 2
    assert r.wer == pytest.approx(3 / 8)
    assert r.wer == pytest.approx(jiwer.wer(REFS, HYPS))
    # corpus level, not the mean of per-utterance rates (which would be (2/6 + 1/2) / 2)
    assert r.wer != pytest.approx((2 / 6 + 1 / 2) / 2)
    a, b = r.utterances
    assert (a.id, a.errors, a.ref_words, a.wer) == ("a", 2, 6, pytest.approx(2 / 6))
    assert (b.id, b.insertions, b.wer) == ("b", 1, pytest.approx(1 / 2))


def test_cer_by_hand():
    r = score(["abc de"], ["abd de"], "none")
    assert r.char_errors == 1 and r.ref_chars == 6  # the space counts as a character
    assert r.cer == pytest.approx(1 / 6) == pytest.approx(jiwer.cer(["abc de"], ["abd de"]))


@pytest.mark.parametrize(
    "ref, hyp, expected",
    [
        # (reference, hypothesis, {normaliser: WER})
        ("Hello, world.", "hello world", {"none": 1.0, "basic": 0.0, "whisper": 0.0}),
        ("it's twenty-five dollars", "It is 25 dollars.", {"none": 4 / 3, "basic": 3 / 4, "whisper": 0.0}),
        ("the plan", "uh the plan", {"none": 1 / 2, "basic": 1 / 2, "whisper": 0.0}),  # fillers dropped
        (
            "place white in j three please",
            "Place white in J3, please.",
            {"none": 4 / 6, "basic": 2 / 6, "whisper": 0.0},
        ),
        ("don't stop", "do not stop", {"none": 1.0, "basic": 1.0, "whisper": 0.0}),
    ],
)
def test_wer_per_normalizer(ref, hyp, expected):
    for name, wer in expected.items():
        assert score([ref], [hyp], name).wer == pytest.approx(wer), name


def test_whisper_spellings_follow_the_available_mapping():
    mapping, origin = spelling_mapping()
    r = score(["the colour grey"], ["the color gray"], "whisper")
    if mapping:  # British spellings standardised to American ones
        assert r.wer == 0.0, origin
    else:  # no mapping installed offline: spellings are compared as they are
        assert r.errors == 2 and "none installed" in origin


def test_length_mismatch_names_both_sides_and_never_truncates():
    with pytest.raises(DataError) as e:
        score(["a", "b", "c"], ["a", "b"], ref_name="test.wrd", hyp_name="hyp.txt")
    msg = str(e.value)
    assert "hyp.txt has 2 hypotheses" in msg and "test.wrd has 3 references" in msg


def test_all_empty_references_is_a_clear_error():
    with pytest.raises(DataError, match="all 2 references are empty"):
        score(["", "  ,  "], ["x", ""], "basic", ref_name="test.wrd")
    with pytest.raises(DataError, match="no references"):
        score([], [], "basic")


def test_empty_reference_counts_insertions_and_empty_hypothesis_deletions():
    r = score(["", "one two"], ["uh huh", ""], "basic")
    first, second = r.utterances
    assert first.insertions == 2 and first.wer is None
    assert second.deletions == 2 and second.wer == 1.0
    assert r.wer == pytest.approx(4 / 2)  # insertions can push WER past 100%


def test_to_dict_is_json_ready_summary():
    d = score(REFS, HYPS, "basic").to_dict()
    assert json.loads(json.dumps(d)) == d
    assert "utterances" not in d and d["errors"] == 3 and d["normalizer"] == "basic"


def test_render_diff_marks_each_edit():
    r = score(["a b c d"], ["a x c d e"], "none")
    # b -> x substituted, e inserted
    assert render_diff(r.utterances[0]) == "a [yellow]b→x[/] c d [green]+e[/]"
    r = score(["keep [this] word"], ["keep word"], "none")
    assert render_diff(r.utterances[0]) == "keep [red]-\\[this][/] word"  # markup in text is escaped


# -------------------------------------------------------------------------------- files


def test_read_hypotheses_keeps_empty_lines(tmp_path):
    p = tmp_path / "hyp.txt"
    p.write_text("\ufefffirst line\n\n third \n", encoding="utf-8")
    assert read_hypotheses(p) == ["first line", "", "third"]
    with pytest.raises(DataError, match="file not found"):
        read_hypotheses(tmp_path / "missing.txt")


def test_write_results(tmp_path):
    r = score(REFS, HYPS, "basic", ids=["a", "b"])
    paths = write_results(tmp_path / "out", r, REFS, HYPS)
    assert json.loads(paths["wer"].read_text())["wer"] == pytest.approx(3 / 8)
    assert paths["hyp"].read_text().splitlines() == HYPS
    rows = [json.loads(line) for line in paths["results"].read_text().splitlines()]
    assert [row["id"] for row in rows] == ["a", "b"]
    assert rows[1]["reference"] == "hello world" and rows[1]["insertions"] == 1
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_whisper_spelling_table_ships_with_the_install():
    """whisper-normalizer is a dependency, so the table is always there and spellings are unified."""
    mapping, origin = spelling_mapping()
    assert mapping.get("colour") == "color", origin
    assert score(["the colour grey"], ["the color gray"], "whisper").wer == 0.0


def test_chance_level_is_the_error_distribution_of_random_guesses():
    guesses = ["A b", "a c", "x y z"]  # against "a b": 0, 1 and 3 errors (2 substitutions + 1 insertion)
    one = chance_level(["a b"], guesses)
    assert one.pmf == pytest.approx((1 / 3, 1 / 3, 0, 1 / 3))
    assert one.mean_errors == pytest.approx(4 / 3) and one.wer == pytest.approx(2 / 3)
    assert one.p_at_most(1) == pytest.approx(2 / 3) and one.p_at_most(-1) == 0 and one.p_at_most(9) == 1
    two = chance_level(["a b", "a, b."], guesses)  # independent draws: the distributions convolve
    assert two.ref_words == 4
    assert two.pmf == pytest.approx((1 / 9, 2 / 9, 1 / 9, 2 / 9, 2 / 9, 0, 1 / 9))
    assert two.mean_errors == pytest.approx(8 / 3)
    with pytest.raises(DataError):
        chance_level(["a b"], [])


# ------------------------------------------------------------------ bootstrap intervals


def test_wer_interval_takes_the_percentiles_of_utterance_resamples():
    """Two one-word utterances, one wrong: a resample of both scores 0, 0.5 or 1 with probability
    1/4, 1/2, 1/4, so the central 40% is exactly 0.5 and the central 95% spans 0 to 1."""
    from avsrctl.metrics import wer_interval

    assert wer_interval([0, 1], [1, 1], level=0.4) == (0.5, 0.5)
    assert wer_interval([0, 1], [1, 1], level=0.95) == (0.0, 1.0)
    assert wer_interval([1, 1, 1], [4, 4, 4]) == (0.25, 0.25)  # no spread between utterances: none in the WER
    assert wer_interval([0, 0], [0, 0]) is None  # no reference words: no WER to bound
    with pytest.raises(ValueError, match="level"):
        wer_interval([0, 1], [1, 1], level=1.0)


def test_wer_interval_narrows_with_more_utterances_and_is_reproducible():
    from avsrctl.metrics import wer_interval

    errors, words = [0, 2, 1, 0, 3, 0], [6] * 6
    few = wer_interval(errors, words)
    many = wer_interval(errors * 50, words * 50)
    assert few == wer_interval(errors, words)  # a fixed seed: the same report gives the same interval
    assert few[0] <= 6 / 36 <= few[1] and many[0] <= 6 / 36 <= many[1]
    assert many[1] - many[0] < (few[1] - few[0]) / 3  # ~1/sqrt(50) as wide


def test_paired_comparison_counts_resamples_won_and_tied():
    from avsrctl.metrics import paired_comparison

    better, tied = paired_comparison([0, 0, 1], [1, 2, 1])  # a never worse, and better on two of three
    assert tied == pytest.approx(1 / 27, abs=0.01) and better == pytest.approx(26 / 27, abs=0.01)
    assert paired_comparison([1, 2], [1, 2]) == (0.0, 1.0)
    better, tied = paired_comparison([0, 5], [5, 0])  # symmetric: each wins as often as it loses
    assert better == pytest.approx(0.25, abs=0.03) and tied == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError, match="same utterances"):
        paired_comparison([0, 1], [0])


def test_error_reports_carry_a_wer_interval():
    report = score(["a b c d", "a b c d", "a b", "a"], ["a b c d", "x b c d", "a", "b"])
    lo, hi = report.to_dict()["wer_ci95"]
    assert lo <= report.wer <= hi and lo < hi
