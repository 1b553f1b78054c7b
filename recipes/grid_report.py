"""The GRID recipe's report (recipes/grid.py): the eval reports it reads back (`read_report`), and
docs/RESULTS-synthetic.md and docs/results-synthetic.json from its figures, with the issue's targets
and the real lip readers set against chance."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path


def read_report(folder: Path) -> dict:
    """An eval or decode folder's wer.json, with each utterance's errors from the results.jsonl beside
    it (`utterance_errors`, id -> errors, for paired comparisons) and the WER's 95% bootstrap interval
    (`wer_ci95`: a report written before eval recorded it gets it from those rows)."""
    from avsrctl.metrics import wer_interval

    report = json.loads((folder / "wer.json").read_text())
    if (folder / "results.jsonl").is_file():
        rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line]
        report["utterance_errors"] = {r["id"]: r["errors"] for r in rows}
        interval = (
            None if "wer_ci95" in report else wer_interval([r["errors"] for r in rows], [r["ref_words"] for r in rows])
        )
        if interval is not None:
            report["wer_ci95"] = [round(v, 4) for v in interval]
    return report


LIP_READERS = ("real-grid/video", "real-grid/both-model-video-only")  # the real lip readers set against chance


def _against_chance(results: dict, chance) -> list[str]:
    """Rows: each real-clip lip reader's errors and the probability that random grammar guesses do as well."""
    rows = []
    for key in LIP_READERS:
        if key in results:
            r = results[key]
            p = chance.p_at_most(r["errors"])
            rows.append(f"| {key} | {_pct(r)} | {p:.3f} |")
    return rows


def _pct(report: dict | None, normalizer: str = "basic") -> str:
    if report is None:
        return "-"
    if normalizer != "basic" and "by_normalizer" in report:
        report = report["by_normalizer"].get(normalizer, report)
    return f"{100 * report['wer']:.1f}% ({report['errors']}/{report['ref_words']})"


def figure_rows(results: dict) -> list[str]:
    """'| test set | modality or system | WER | 95% interval |' rows, one per figure."""
    rows = []
    for key, report in results.items():
        test, modality = key.split("/")
        ci = report.get("wer_ci95")
        interval = "-" if ci is None else f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%"
        rows.append(f"| {test} | {modality} | {_pct(report)} | {interval} |")
    return rows


def _targets(results: dict, chance=None) -> list[str]:
    """The issue's targets against what this run measured (the held-out set is the other-seed one);
    `chance` (metrics.ChanceLevel of the real clips) adds what random grammar guesses score."""

    def wer(key: str) -> float | None:
        return results[key]["wer"] if key in results else None

    def paired(fused: str, audio: str) -> tuple[float, float] | None:
        """(fewer errors, as many) of `fused` against `audio` over paired resamples of the same utterances."""
        from avsrctl.metrics import paired_comparison

        a = results.get(fused, {}).get("utterance_errors")
        b = results.get(audio, {}).get("utterance_errors")
        if not a or not b or a.keys() != b.keys():
            return None
        ids = sorted(a)
        return paired_comparison([a[i] for i in ids], [b[i] for i in ids])

    rows = []
    for label, key, limit in (
        ("real GRID, audio, basic normaliser", "real-grid/audio", 0.10),
        ("held-out voices (other seed), audio", "heldout/audio", 0.05),
        ("held-out voices (other seed), video", "heldout/video", 0.35),
    ):
        w = wer(key)
        if w is not None:
            rows.append(f"| {label} | <= {limit:.0%} | {100 * w:.1f}% | {'met' if w <= limit else 'missed'} |")
    for name, test, wanted in (
        ("heldout", "heldout-babble-5", 0.30),
        ("synthetic-test", "synthetic-test-babble-5", 0.30),
        ("real GRID", "real-grid-babble-5", 0.25),
    ):
        a, b = wer(f"{test}/audio"), wer(f"{test}/both")
        if a and b is not None:
            cut = 1 - b / a
            p = paired(f"{test}/both", f"{test}/audio")
            won = "" if p is None else f"; fewer errors in {100 * p[0]:.0f}% of resamples"
            rows.append(
                f"| {name}, babble -5 dB: both vs audio | >= {wanted:.0%} lower | {100 * b:.1f}% vs "
                f"{100 * a:.1f}% ({100 * cut:.0f}% lower{won}) | {'met' if cut >= wanted else 'missed'} |"
            )
    a, b = wer("real-grid/audio"), wer("real-grid/both")
    if a is not None and b is not None:
        p = paired("real-grid/both", "real-grid/audio")
        held = "" if p is None else f" (as many errors or fewer in {100 * (p[0] + p[1]):.0f}% of resamples)"
        rows.append(
            f"| real GRID, clean: both <= audio | <= {100 * a:.1f}% | {100 * b:.1f}%{held} | "
            f"{'met' if b <= a else 'missed'} |"
        )
    v = wer("real-grid/video")
    if v is not None:
        guess = f" (random grammar guesses: {100 * chance.wer:.1f}%)" if chance is not None else ""
        rows.append(f"| real GRID, video | <= 60% | {100 * v:.1f}%{guess} | {'met' if v <= 0.60 else 'missed'} |")
    a, b = wer("heldout/both-model-audio-only"), wer("heldout-still-video/both")
    if a is not None and b is not None:
        rows.append(
            f"| heldout, video a still frame: both vs its audio path | <= +1 point | {100 * b:.1f}% vs "
            f"{100 * a:.1f}% | {'met' if b <= a + 0.01 else 'missed'} |"
        )
    if not rows:
        return []
    return ["", "## Targets", "", "| target | wanted | measured | |", "|---|---|---|---|", *rows]


def write_json(path: Path, results: dict, lip_use: dict, chance=None) -> None:
    """Every figure as {"test-set/modality": {"wer", "errors", "words"}}, plus the fused model's mean
    video weight, mean in-sync probability and utterances whose lips it set aside per test condition
    under "video-weight/<test-set>", "lip-sync/<test-set>" and "lips-set-aside/<test-set>"; with
    `chance`, random grammar guesses on the real clips ("real-grid/grammar-chance", mean errors) and,
    per real lip reader, the probability that they do as well ("p-chance/real-grid/<modality>")."""
    figures = {
        key: {
            "wer": round(r["wer"], 4),
            "errors": r["errors"],
            "words": r["ref_words"],
            **({"ci95": r["wer_ci95"]} if "wer_ci95" in r else {}),
        }
        for key, r in results.items()
    }
    if chance is not None:
        figures["real-grid/grammar-chance"] = {
            "wer": round(chance.wer, 4),
            "errors": round(chance.mean_errors, 2),
            "words": chance.ref_words,
        }
        for key in LIP_READERS:
            if key in results:
                figures[f"p-chance/{key}"] = round(chance.p_at_most(results[key]["errors"]), 4)
    for k, used in lip_use.items():
        if not used:
            continue
        if used["video_weight"] is not None:
            figures[f"video-weight/{k}"] = round(used["video_weight"], 4)
        if used.get("lip_sync") is not None:
            figures[f"lip-sync/{k}"] = round(used["lip_sync"], 4)
        if "set_aside" in used:
            figures[f"lips-set-aside/{k}"] = used["set_aside"]
    path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


_CROPS = {
    "landmarks": "placed by facial landmarks (dlib's 68-point model: upright, scaled to the lips, anchored on the nose)",
    "haar": "cut at a fixed place in the Haar face track's box (dlib is not installed)",
}


def write_results(path: Path, results: dict, timings: dict, args, lip_use: dict | None = None, chance=None) -> None:
    import torch
    import transformers

    from avsrctl.data.roi import crop_method

    voices = (
        "espeak-ng voices and, for every second speaker, MBROLA diphone voices (en1, us1, us2 in training; "
        "us3 only in test sets)"
        if args.mbrola
        else "espeak-ng voices only (MBROLA not installed)"
    )
    lines = [
        "# Results: the GRID recipe",
        "",
        f"Produced by `python recipes/grid.py --utterances {args.utterances} --epochs {args.epochs} "
        f"--video-ctc-epochs {args.video_ctc_epochs} --video-epochs {args.video_epochs} "
        f"--both-epochs {args.both_epochs} --modalities {args.modalities} --tests {args.tests}"
        f"{f' --lip-sync-weight {args.lip_sync_weight:g}' if args.lip_sync_weight else ''}` "
        f"(`make grid-recipe`) on {time.strftime('%Y-%m-%d')}; "
        f"{platform.machine()} with {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, transformers {transformers.__version__}. Model: configs/offline-small.yaml "
        "(Whisper tiny.en encoder frozen, SmolLM2-135M-Instruct with LoRA r=8; for video the lip-reading "
        "front-end (3-D conv + ResNet + temporal convs) trained from scratch, first alone with character CTC, "
        "then with the LLM and CTC as an auxiliary loss; the fused model starts from the audio and video models). "
        f"Corpus: {args.utterances} synthetic GRID-grammar utterances, 16 speakers of which 3 are held out, "
        f"{voices}. WER is corpus-level with the `basic` normaliser unless marked.",
        "",
        "Test sets: `synthetic-test` is the corpus's held-out-speaker split; `heldout` is a second set from "
        "another seed with other voices (`demo-data --test-only --seed 1`); `real-grid` is the four real GRID "
        "recordings in ../shared/media (never used for training or tuning). `-babble-5` adds babble noise "
        "at -5 dB SNR to the test audio; `both-model-audio-only` is the fused model decoded from the audio "
        "alone, a control that separates what the lips add from what training with noise adds; "
        "`both-model-video-only` is the fused model decoded from the lips alone. "
        "`real-grid-babble0` / `real-grid-babble-5` add babble at 0 / -5 dB to the real clips; "
        "`heldout-still-video` replaces every held-out video by its first frame (the audio is kept). "
        f"The real clips' mouth crops are {_CROPS[crop_method('auto')]} (`data.roi: auto`).",
        *_targets(results, chance),
        "",
        "## All figures",
        "",
        "The 95% interval is the central 95% of the WER over 2000 bootstrap resamples of the test set's "
        "utterances (metrics.wer_interval, fixed seed): how far the figure could move on another draw of "
        "utterances like these. On the 4 real clips (24 words) one word is 4.2 points. In the targets, "
        '"fewer errors in N% of resamples" pairs the two systems utterance by utterance '
        "(metrics.paired_comparison).",
        "",
        "| test set | modality | WER | 95% interval |",
        "|---|---|---|---|",
    ]
    lines += figure_rows(results)
    if "real-grid/baseline" in results:
        lines += [
            "",
            "Real GRID clips with Whisper's normaliser (numbers as digits, spellings unified):",
            "",
            "| system | basic | whisper |",
            "|---|---|---|",
        ]
        for m in ("baseline", "audio", "video", "both"):
            r = results.get(f"real-grid/{m}")
            if r:
                lines.append(f"| {m} | {_pct(r)} | {_pct(r, 'whisper')} |")
    rows = _against_chance(results, chance) if chance is not None else []
    if rows:
        lines += [
            "",
            f"Lip readers on the real clips against chance: a reader that sees nothing but knows GRID's grammar "
            f"(each clip read as a training transcript drawn at random) makes {chance.mean_errors:.1f} errors of "
            f"{chance.ref_words} on average ({100 * chance.wer:.1f}%); the last column is the probability that it "
            "makes no more errors than the lip reader:",
            "",
            "| test set / modality | WER | P(random guesses do as well) |",
            "|---|---|---|",
            *rows,
        ]
    if lip_use:
        lines += [
            "",
            "How the fused model used the lips: the mean video weight (1 - w, averaged over frames and "
            "utterances), the mean probability that the lips are in sync with the voice, and the utterances "
            "whose lips it set aside (in-sync probability below model.fusion.min_lip_sync: read as in audio mode):",
            "",
            "| test set | video weight | in sync | lips set aside |",
            "|---|---|---|---|",
        ]
        for k, used in lip_use.items():
            if used and used["video_weight"] is not None:
                sync = "-" if used.get("lip_sync") is None else f"{used['lip_sync']:.3f}"
                lines.append(f"| {k} | {used['video_weight']:.3f} | {sync} | {used.get('set_aside', '-')} |")
    lines += [
        "",
        "## Time and memory (2 CPU cores)",
        "",
        "| step | epochs | wall time | peak memory (RSS) |",
        "|---|---|---|---|",
    ]
    for step, t in timings.items():
        rss = f"{t['peak_rss_mib']} MiB" if "peak_rss_mib" in t else "-"
        lines.append(f"| {step} | {t.get('epochs', '-')} | {t['seconds'] / 60:.1f} min | {rss} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
