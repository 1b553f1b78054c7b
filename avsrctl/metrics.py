"""Word and character error rates through jiwer, after a named text normaliser.

WER here is corpus level, as speech papers report it: total edits over all utterances divided
by the total number of reference words (not the mean of per-utterance rates). Text is
normalised first, because "Two." and "2" should not count as an error when comparing
systems: `basic` (lower case, punctuation dropped except apostrophes), `whisper` (Whisper's
English normaliser from transformers: numbers to digits, spellings standardised) or `none`.

This module imports jiwer at module level but never torch; transformers is imported only
when the `whisper` normaliser is first used.
"""

from __future__ import annotations

import importlib.util
import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import jiwer
from rich.markup import escape

from avsrctl.atomic import write_files
from avsrctl.config import NORMALIZERS
from avsrctl.errors import DataError, UsageError

# --------------------------------------------------------------------------- normalisers

_APOSTROPHES = re.compile(r"[\u2018\u2019\u02bc`\u00b4]")  # typographic apostrophes -> "'"
_DASHES = re.compile(r"[-\u2010-\u2015\u2212]")  # hyphens and dashes separate words
_NOT_WORD = re.compile(r"[^\w\s']|_")  # punctuation and symbols; \w keeps letters and digits
_QUOTED = re.compile(r"(?<![\w'])'([\w']*\w)'(?![\w'])")  # 'word' in single quotes -> word


def basic_normalize(text: str) -> str:
    """Lower case, hyphens to spaces, punctuation removed except apostrophes, spaces collapsed.

    This is the LRS3/AV-HuBERT convention. Single quotes around a word are removed, other
    apostrophes stay ("don't", "dogs'"); tokens left as bare apostrophes vanish.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = _APOSTROPHES.sub("'", text)
    text = _DASHES.sub(" ", text)
    text = _NOT_WORD.sub("", text)
    text = _QUOTED.sub(r"\1", text)
    return " ".join(w for w in text.split() if w.strip("'"))


def _spelling_mapping_file() -> Path | None:
    """Whisper's British->American spelling table, where an installed package ships it.

    transformers reads it from a model repository's `normalizer.json`; offline we look in the
    packages known to carry a copy (openai-whisper, whisper-normalizer) without importing them.
    """
    for package, name in (("whisper", "normalizers/english.json"), ("whisper_normalizer", "normalizers/english.json")):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(folder) / name
            if candidate.is_file():
                return candidate
    return None


@lru_cache(maxsize=1)
def spelling_mapping() -> tuple[dict[str, str], str]:
    """(mapping, where it came from); an empty mapping when no installed package ships one."""
    path = _spelling_mapping_file()
    if path is None:
        return {}, "none installed (spelling standardisation disabled)"
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read Whisper's spelling mapping ({e})") from None
    return mapping, str(path)


@lru_cache(maxsize=1)
def _whisper_normalizer() -> Callable[[str], str]:
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer(spelling_mapping()[0])


def whisper_normalize(text: str) -> str:
    """Whisper's English normaliser: numbers to digits, contractions expanded, spellings standardised."""
    return " ".join(_whisper_normalizer()(text).split())


def no_normalize(text: str) -> str:
    """Raw text with whitespace collapsed (jiwer splits on whitespace anyway)."""
    return " ".join(text.split())


_NORMALIZER_FUNCS: dict[str, Callable[[str], str]] = {
    "basic": basic_normalize,
    "whisper": whisper_normalize,
    "none": no_normalize,
}


def get_normalizer(name: str) -> Callable[[str], str]:
    try:
        return _NORMALIZER_FUNCS[name]
    except KeyError:
        raise UsageError(f"unknown normaliser {name!r}; choose one of {', '.join(NORMALIZERS)}") from None


def normalize(texts: Sequence[str], name: str) -> list[str]:
    fn = get_normalizer(name)
    return [fn(t) for t in texts]


# ------------------------------------------------------------------------------ scoring


@dataclass(frozen=True)
class UtteranceErrors:
    """Errors of one utterance, on normalised text."""

    id: str
    reference: str  # normalised
    hypothesis: str  # normalised
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    alignment: tuple = field(default=(), repr=False, compare=False)  # jiwer AlignmentChunks

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def ref_words(self) -> int:
        return self.substitutions + self.deletions + self.hits

    @property
    def wer(self) -> float | None:
        """This utterance's WER; None for an empty reference (any output is then pure insertion)."""
        return self.errors / self.ref_words if self.ref_words else None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "ref_norm": self.reference,
            "hyp_norm": self.hypothesis,
            "wer": self.wer,
            "errors": self.errors,
            "ref_words": self.ref_words,
            "substitutions": self.substitutions,
            "deletions": self.deletions,
            "insertions": self.insertions,
            "hits": self.hits,
        }


@dataclass(frozen=True)
class ErrorReport:
    """Corpus-level error rates after one normaliser (edits summed over every utterance)."""

    normalizer: str
    wer: float  # (S + D + I) / reference words
    cer: float  # character edits / reference characters (spaces count as characters)
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    ref_words: int
    hyp_words: int
    char_errors: int
    ref_chars: int
    n_utterances: int
    utterances: tuple[UtteranceErrors, ...] = field(default=(), repr=False, compare=False)

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def to_dict(self) -> dict:
        """Summary numbers (no per-utterance detail), JSON-ready, with `wer_ci95` when the report has
        its utterances."""
        d = asdict(self)
        d.pop("utterances")
        d["errors"] = self.errors
        if self.wer_ci95 is not None:
            d["wer_ci95"] = [round(v, 4) for v in self.wer_ci95]
        return d

    @cached_property
    def wer_ci95(self) -> tuple[float, float] | None:
        """The WER's 95% bootstrap interval over this report's utterances (None without them),
        computed once however often the report is written or shown."""
        if not self.utterances:
            return None
        return wer_interval([u.errors for u in self.utterances], [u.ref_words for u in self.utterances])


def _check_lengths(refs: Sequence[str], hyps: Sequence[str], ref_name: str, hyp_name: str) -> None:
    if len(refs) != len(hyps):
        raise DataError(
            f"{hyp_name} has {len(hyps)} hypotheses but {ref_name} has {len(refs)} references",
            hint="hypotheses need exactly one line per reference, in the same order (empty lines for empty output)",
        )


def score(
    references: Sequence[str],
    hypotheses: Sequence[str],
    normalizer: str = "basic",
    *,
    ids: Sequence[str] | None = None,
    ref_name: str = "references",
    hyp_name: str = "hypotheses",
) -> ErrorReport:
    """Normalise both sides and compute corpus-level WER/CER plus per-utterance errors.

    `ref_name`/`hyp_name` (usually the file names) appear in the error raised when the two
    lists differ in length: nothing is ever truncated to make them match.
    """
    _check_lengths(references, hypotheses, ref_name, hyp_name)
    if ids is not None and len(ids) != len(references):
        raise DataError(f"{len(ids)} ids for {len(references)} references in {ref_name}")
    if not references:
        raise DataError(f"{ref_name}: no references to score")
    fn = get_normalizer(normalizer)
    refs = [fn(t) for t in references]
    hyps = [fn(t) for t in hypotheses]
    if not any(refs):
        raise DataError(
            f"{ref_name}: all {len(refs)} references are empty after '{normalizer}' normalisation, so WER is undefined",
            hint="check that the reference file holds transcripts",
        )
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    ids = list(ids) if ids is not None else [str(i) for i in range(len(refs))]
    utts = []
    for uid, ref, hyp, chunks in zip(ids, refs, hyps, words.alignments):
        counts = {"substitute": 0, "delete": 0, "insert": 0, "equal": 0}
        for c in chunks:  # a chunk spans equal-length runs for 'substitute' and 'equal'
            counts[c.type] += max(c.ref_end_idx - c.ref_start_idx, c.hyp_end_idx - c.hyp_start_idx)
        utts.append(
            UtteranceErrors(
                uid, ref, hyp, counts["substitute"], counts["delete"], counts["insert"], counts["equal"], tuple(chunks)
            )
        )
    ref_words = words.hits + words.substitutions + words.deletions
    ref_chars = chars.hits + chars.substitutions + chars.deletions
    char_errors = chars.substitutions + chars.deletions + chars.insertions
    report = ErrorReport(
        normalizer=normalizer,
        wer=(words.substitutions + words.deletions + words.insertions) / ref_words,
        cer=char_errors / ref_chars,
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
        hits=words.hits,
        ref_words=ref_words,
        hyp_words=sum(len(h.split()) for h in hyps),
        char_errors=char_errors,
        ref_chars=ref_chars,
        n_utterances=len(refs),
        utterances=tuple(utts),
    )
    assert sum(u.errors for u in utts) == report.errors, "per-utterance errors must add up to the corpus total"
    return report


@dataclass(frozen=True)
class ChanceLevel:
    """What guessing scores: each reference scored against a sentence drawn at random from `guesses`.

    `pmf[k]` is the probability that the guesses make k word errors in total (independent draws per
    reference); a system with `errors` errors reads something beyond the guesses' prior when
    `p_at_most(errors)` is small.
    """

    ref_words: int
    pmf: tuple[float, ...]

    @property
    def mean_errors(self) -> float:
        return sum(k * p for k, p in enumerate(self.pmf))

    @property
    def wer(self) -> float:
        return self.mean_errors / self.ref_words

    def p_at_most(self, errors: int) -> float:
        """P(a guess makes at most `errors` word errors)."""
        return min(1.0, sum(self.pmf[: max(0, errors + 1)]))


def chance_level(references: Sequence[str], guesses: Sequence[str], normalizer: str = "basic") -> ChanceLevel:
    """The error distribution of guessing each reference with a sentence drawn uniformly from `guesses`
    (e.g. the training transcripts: a reader that knows the grammar and sees nothing)."""
    fn = get_normalizer(normalizer)
    refs = [fn(t) for t in references]
    pool = [fn(t) for t in guesses]
    if not refs or not any(refs) or not pool:
        raise DataError("chance level needs references with words and at least one guess")
    import numpy as np

    total = np.ones(1)  # pmf of the summed errors so far
    for ref in refs:
        errors = []
        for guess in pool:
            m = jiwer.process_words(ref, guess) if ref else None
            errors.append((m.substitutions + m.deletions + m.insertions) if m else len(guess.split()))
        total = np.convolve(total, np.bincount(errors) / len(pool))  # independent draws: the pmfs convolve
    return ChanceLevel(ref_words=sum(len(r.split()) for r in refs), pmf=tuple(float(p) for p in total))


# ------------------------------------------------------------------ bootstrap intervals
#
# A test set of a few hundred words gives a WER that moves by points between two equally good
# systems. Resampling whole utterances with replacement (Bisani and Ney, ICASSP 2004) keeps each
# utterance's errors together, as they occur; the seed is fixed, so a report is reproducible.

RESAMPLES = 2000
_CHUNK_CELLS = 4_000_000  # resamples x utterances drawn at once (32 MB of int64)


def _resampled_sums(columns, resamples: int, seed: int):
    """Yield, chunk by chunk, each column's sum over `resamples` resamples of its rows (same rows for all)."""
    import numpy as np

    n = len(columns[0])
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, resamples, step):
        idx = rng.integers(0, n, size=(min(step, resamples - start), n))  # (chunk, n)
        yield [c[idx].sum(1) for c in columns]


def wer_interval(
    errors: Sequence[int], words: Sequence[int], level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float] | None:
    """The central `level` interval of the corpus WER (sum of errors / sum of reference words) over
    bootstrap resamples of the utterances; None when there are no reference words."""
    import numpy as np

    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    e, w = np.asarray(errors, np.int64), np.asarray(words, np.int64)
    if len(e) != len(w):
        raise ValueError(f"{len(e)} error counts for {len(w)} word counts")
    if w.sum() == 0:
        return None
    ratios = []
    for es, ws in _resampled_sums([e, w], resamples, seed):
        keep = ws > 0  # a resample of only empty references has no WER
        ratios.append(es[keep] / ws[keep])
    r = np.concatenate(ratios)
    lo, hi = np.quantile(r, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def paired_comparison(
    errors_a: Sequence[int], errors_b: Sequence[int], resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """(better, tied): the share of bootstrap resamples of the utterances in which system A makes fewer
    errors than system B, and as many. Both systems must be scored on the same utterances, in the
    same order; `better` near 1 means A's lead does not depend on which utterances were drawn."""
    import numpy as np

    a, b = np.asarray(errors_a, np.int64), np.asarray(errors_b, np.int64)
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"a paired comparison needs the same utterances on both sides ({len(a)} vs {len(b)})")
    better = tied = 0
    for (d,) in _resampled_sums([a - b], resamples, seed):
        better += int((d < 0).sum())
        tied += int((d == 0).sum())
    return better / resamples, tied / resamples


# ------------------------------------------------------------------------ presentation


def render_diff(utt: UtteranceErrors) -> str:
    """Rich markup of one alignment: substitutions `ref→hyp` in yellow, deletions `-ref` in red,
    insertions `+hyp` in green, matching words plain (the marks survive output without colour)."""
    ref, hyp = utt.reference.split(), utt.hypothesis.split()
    parts: list[str] = []
    for c in utt.alignment:
        r, h = ref[c.ref_start_idx : c.ref_end_idx], hyp[c.hyp_start_idx : c.hyp_end_idx]
        if c.type == "equal":
            parts.extend(escape(w) for w in r)
        elif c.type == "substitute":
            parts.extend(f"[yellow]{escape(a)}→{escape(b)}[/]" for a, b in zip(r, h))
        elif c.type == "delete":
            parts.extend(f"[red]-{escape(w)}[/]" for w in r)
        else:  # insert
            parts.extend(f"[green]+{escape(w)}[/]" for w in h)
    return " ".join(parts)


def read_hypotheses(path: str | Path) -> list[str]:
    """One hypothesis per line (an empty line is an empty hypothesis), UTF-8."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 (byte offset {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    return [line.strip() for line in text.removeprefix("\ufeff").splitlines()]


def result_paths(output_dir: str | Path) -> dict[str, Path]:
    """The files `write_results` writes into `output_dir`, by kind."""
    out = Path(output_dir)
    return {"wer": out / "wer.json", "hyp": out / "hyp.wrd", "results": out / "results.jsonl"}


def write_results(
    output_dir: str | Path,
    report: ErrorReport,
    raw_references: Sequence[str],
    raw_hypotheses: Sequence[str],
    *,
    summary: dict | None = None,
    extra: Sequence[dict] | None = None,
) -> dict[str, Path]:
    """Write `wer.json` (summary), `hyp.wrd` (raw hypotheses, one per line) and `results.jsonl`
    (one object per utterance: raw and normalised text and its errors, plus that row of `extra`,
    e.g. the fused model's video weight), all three or none."""
    paths = result_paths(output_dir)
    rows = []
    extra = extra if extra is not None else [{}] * len(report.utterances)
    for utt, ref, hyp, more in zip(report.utterances, raw_references, raw_hypotheses, extra):
        rows.append(
            json.dumps({"id": utt.id, "reference": ref, "hypothesis": hyp, **utt.to_dict(), **more}, ensure_ascii=False)
        )
    write_files(
        {
            paths["hyp"]: "".join(" ".join(h.split()) + "\n" for h in raw_hypotheses),
            paths["results"]: "".join(r + "\n" for r in rows),
            paths["wer"]: json.dumps(summary if summary is not None else report.to_dict(), indent=2) + "\n",
        }
    )
    return paths
