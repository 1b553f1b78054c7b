"""docs/RESULTS.md, docs/results.json and docs/wer_vs_snr.png from the real-lips recipe's evaluations.

RESULTS.md leads with the targets and the picture; every figure with its 95% interval, how the fused
model used the lips, the settings and the stages' time and memory follow.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from grid import _pct, figure_rows
from grid_real import SNRS, STAGES

from avsrctl.metrics import paired_comparison

# (test set, system) of the targets; "audio" is START's audio path, the model the lips must beat
VIDEO_ALONE = "both-model-video-only"  # grid-small -m video: the shipped model's lips alone
PICTURE = {  # label -> system key in results (the video line is flat: no audio to drown)
    "audio model": "audio",
    "video model (lips alone)": VIDEO_ALONE,
    "fused model": "both",
    "faster-whisper tiny.en": "baseline",
}
CONDITIONS = ("s1", *(f"s1-babble{snr}" for snr in SNRS))


def _wer(results: dict, key: str) -> float | None:
    return results[key]["wer"] if key in results else None


def _lower(results: dict, better: str, than: str) -> tuple[str, bool | None, float | None]:
    """'a vs b (x% lower; fewer errors in y% of resamples)' (or 'x% higher', or 'the same WER'), whether
    it is lower at all, the reduction."""
    a, b = _wer(results, better), _wer(results, than)
    if a is None or b is None:
        return "-", None, None
    figures = f"{_pct(results[better])} vs {_pct(results[than])}"
    if a == b:
        return f"{figures} (the same WER)", True, 0.0
    cut = 1 - a / b if b > 0 else -1.0  # from no errors to some: 'higher' (the ratio is undefined)
    share = ""
    ea, eb = results[better].get("utterance_errors"), results[than].get("utterance_errors")
    if ea and eb and ea.keys() == eb.keys():
        ids = sorted(ea)
        fewer, _ = paired_comparison([ea[i] for i in ids], [eb[i] for i in ids])
        share = f"; fewer errors in {100 * fewer:.0f}% of resamples"
    change = f"{100 * cut:.0f}% lower" if a < b else (f"{-100 * cut:.0f}% higher" if b > 0 else "higher")
    return f"{figures} ({change}{share})", a <= b, cut


def lower_by(label: str, results: dict, better: str, than: str, share: float) -> tuple[str, str, str, bool | None]:
    """The target row 'better is at least `share` lower than `than`'."""
    text, _, cut = _lower(results, better, than)
    return label, f">= {100 * share:.0f}% lower", text, None if cut is None else cut >= share


def targets(results: dict, total_minutes: float) -> list[tuple[str, str, str, bool | None]]:
    """(target, wanted, measured, met) rows."""
    rows = []

    def at_most(label: str, key: str, limit: float) -> None:
        w = _wer(results, key)
        measured = _pct(results.get(key))
        other = key.replace(VIDEO_ALONE, "video")  # the lips-only video model beside the shipped model's lips
        if other != key and other in results:
            measured += f" (video model: {_pct(results[other])})"
        rows.append((label, f"<= {100 * limit:.0f}%", measured, None if w is None else w <= limit))

    at_most("s1 test (unseen sentences of a seen speaker), video alone", f"s1/{VIDEO_ALONE}", 0.15)
    rows.append(
        lower_by("s1 test, babble -5 dB: fused vs audio model", results, "s1-babble-5/both", "s1-babble-5/audio", 0.5)
    )
    text, ok, _ = _lower(results, "s1/both", "s1/audio")
    rows.append(("s1 test, clean: fused vs audio model", "fused <= audio", text, ok))
    w = _wer(results, "s1-babble-10/both")
    rows.append(
        (
            "s1 test, babble -10 dB: fused",
            "< 40%",
            _pct(results.get("s1-babble-10/both")),
            None if w is None else w < 0.4,
        )
    )
    at_most("unseen real speakers (s2, s5, s20), video alone", f"unseen/{VIDEO_ALONE}", 0.60)
    for test, label in (("unseen", "clean"), ("unseen-babble-5", "babble -5 dB")):
        text, ok, _ = _lower(results, f"{test}/both", f"{test}/both-model-audio-only")
        rows.append((f"unseen real speakers, {label}: fused vs its audio path", "never worse", text, ok))
    if "heldout/both" in results:
        at_most("synthetic held-out voices, video alone (was <= 35%)", f"heldout/{VIDEO_ALONE}", 0.35)
        label = "synthetic held-out voices, babble -5 dB: fused vs audio (was >= 30% lower)"
        rows.append(lower_by(label, results, "heldout-babble-5/both", "heldout-babble-5/audio", 0.3))
    rows.append(
        (
            "real-lips recipe, prepare and training (evaluations not timed), 2 CPU cores",
            "<= 2.5 h",
            f"{total_minutes:.0f} min",
            total_minutes <= 150,
        )
    )
    return rows


def adapt_targets(results: dict, pseudo: dict, minutes: float | None) -> list[tuple[str, str, str, bool | None]]:
    """(target, wanted, measured, met) rows of `avsrctl adapt` (START's lips before, the adapted model after)."""
    rows = []
    before, after = results.get("s1/start-model-video-only"), results.get("s1/adapted-model-video-only")
    if before and after:
        ratio = before["errors"] / max(after["errors"], 1)
        rows.append(
            (
                "s1 test, video alone: after vs before adaptation",
                ">= 3x fewer errors",
                f"{_pct(after)} vs {_pct(before)} ({ratio:.1f}x fewer)",
                ratio >= 3,
            )
        )
        supervised = _wer(results, f"s1/{VIDEO_ALONE}")
        gap = "" if supervised is None else f"; supervised real-lips model {100 * supervised:.1f}%"
        ok = after["wer"] <= 0.25 and (supervised is None or after["wer"] <= supervised + 0.10)
        rows.append(
            (
                "s1 test, video alone after adaptation",
                "<= 25%, within 10 points of supervised",
                f"{_pct(after)}{gap}",
                ok,
            )
        )
    label = "s1 test, babble -5 dB: adapted fused vs audio model"
    rows.append(lower_by(label, results, "s1-babble-5/adapted", "s1-babble-5/audio", 0.4))
    for test, label in (("unseen", "clean"), ("unseen-babble-5", "babble -5 dB")):
        text, ok, _ = _lower(results, f"{test}/adapted", f"{test}/start")
        rows.append((f"unseen real speakers, {label}: adapted vs before", "not worse", text, ok))
    if minutes is not None:
        rows.append(
            (f"time to adapt on {pseudo['clips']} clips, 2 CPU cores", "<= 30 min", f"{minutes:.1f} min", minutes <= 30)
        )
    return rows


def picture(results: dict, path: Path) -> bool:
    """WER against babble SNR on s1 test, one line per system, as the field's papers draw it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from avsrctl.atomic import write_atomic

    labels = ["clean", *(f"{snr}" for snr in SNRS)]
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=150)
    styles = {"audio": "o-", VIDEO_ALONE: "s--", "both": "D-", "baseline": "^:"}
    for label, system in PICTURE.items():
        if system == VIDEO_ALONE:
            w = _wer(results, f"s1/{system}")
            ys = [w] * len(CONDITIONS) if w is not None else []
        else:
            ys = [_wer(results, f"{c}/{system}") for c in CONDITIONS]
        if not ys or any(y is None for y in ys):
            continue
        shown = [min(100 * y, 100.0) for y in ys]  # hallucinated insertions can pass 100%: capped, value written
        (line,) = ax.plot(range(len(labels)), shown, styles[system], label=label, linewidth=1.8, markersize=5)
        for x, y in enumerate(ys):
            if y > 1.0:
                ax.annotate(
                    f"{100 * y:.0f}%",
                    (x, 100),
                    textcoords="offset points",
                    xytext=(0, -12),
                    ha="center",
                    fontsize=7,
                    color=line.get_color(),
                )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("babble SNR (dB)")
    ax.set_ylabel("WER (%)")
    ax.set_ylim(0, 102)
    ax.set_title("GRID speaker s1, 100 unseen test sentences (real video)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, 0.9))
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp))
    plt.close(fig)
    return True


def figures_of(results: dict, lip_use: dict, pseudo: dict | None = None) -> dict:
    """results.json's entries for these WER reports, lip-use summaries and pseudo-label counts."""
    figures = {
        key: {"wer": round(r["wer"], 4), "errors": r["errors"], "words": r["ref_words"], "ci95": r.get("wer_ci95")}
        for key, r in results.items()
    }
    for k, used in lip_use.items():
        figures[f"lip-sync/{k}"] = None if used.get("lip_sync") is None else round(used["lip_sync"], 4)
        if used.get("video_weight") is not None:
            figures[f"video-weight/{k}"] = round(used["video_weight"], 4)
        if "set_aside" in used:
            figures[f"lips-set-aside/{k}"] = used["set_aside"]
    if pseudo is not None:
        figures["adapt/pseudo-labels"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in pseudo.items()}
    return figures


def write_json(path: Path, results: dict, lip_use: dict, chance, pseudo: dict | None = None) -> None:
    figures = figures_of(results, {})
    figures["s1/grammar-chance"] = {
        "wer": round(chance.wer, 4),
        "errors": round(chance.mean_errors, 2),
        "words": chance.ref_words,
    }
    figures.update(figures_of({}, lip_use, pseudo))  # the order results.json has always had
    path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


def write_all(
    args, results: dict, timings: dict, lip_use: dict, chance, *, start: str, pseudo: dict | None = None
) -> None:
    import torch
    import transformers

    docs = args.results.parent
    drew = picture(results, docs / "wer_vs_snr.png")
    write_json(docs / "results.json", results, lip_use, chance, pseudo)
    total = sum(t["seconds"] for k, t in timings.items() if k != "adapt") / 60  # adapt is its own target
    rows = targets(results, total)
    mark = {True: "met", False: "**missed**", None: "-"}
    lines = [
        "# Results: lips that read real mouths",
        "",
        f"`make grid-recipe` on {time.strftime('%Y-%m-%d')}: `python recipes/grid_real.py --start {start}"
        f" --mix-synthetic {args.mix_synthetic}`, "  # always: 0 is not the default
        f"{platform.machine()} with {os.cpu_count()} CPU cores, torch {torch.__version__}, transformers "
        f"{transformers.__version__}. Real video: GRID speaker s1 (../shared/grid-s1, CC BY 4.0, Cooke et al. 2006), "
        "750 clips to train, 50 to validate, 100 to test (its own split). WER is corpus-level with the `basic` "
        "normaliser; every figure is in docs/results.json with its 95% bootstrap interval.",
        "",
        "| target | wanted | measured | |",
        "|---|---|---|---|",
        *(f"| {t} | {w} | {m} | {mark[ok]} |" for t, w, m, ok in rows),
        "",
    ]
    if drew:
        lines += ["![WER against babble SNR on s1 test](wer_vs_snr.png)", ""]
    lines += [
        "The audio model is the starting model's audio path (the fused model of the synthetic recipe read "
        "from its audio alone); the video line is the new fused model reading the lips alone (`-m video`); "
        "faster-whisper tiny.en is the tool's embedded default. Every system hears the same noisy wavs: "
        "babble is 3-6 other s1 test utterances (the same speaker's voice, the hardest babble), mixed once "
        "with `decode --snr`'s noise and seed.",
        "",
        "## All figures",
        "",
        "| test set | system | WER | 95% interval |",
        "|---|---|---|---|",
    ]
    lines += figure_rows(results)
    lines += [
        "",
        f"A reader that sees nothing but knows GRID's grammar (each s1 test clip read as a random s1 training "
        f"transcript) makes {100 * chance.wer:.1f}% on s1 test (metrics.chance_level).",
        "",
        "How the fused model used the lips: mean video weight, mean probability that the lips are in sync "
        "with the voice (the sync classifier), and the utterances it read from the audio alone (in sync below "
        "model.fusion.min_lip_sync 0.5):",
        "",
        "| test set | video weight | in sync | lips set aside |",
        "|---|---|---|---|",
    ]
    for k, used in lip_use.items():
        vw = "-" if used.get("video_weight") is None else f"{used['video_weight']:.3f}"
        lines.append(f"| {k} | {vw} | {used['lip_sync']:.3f} | {used.get('set_aside', '-')} |")
    if pseudo is not None:
        lines += adapt_section(results, timings, pseudo, start)
    lines += [
        "",
        "## How it was trained",
        "",
        "Three stages on the real s1 clips (recipes/grid_real.py, `STAGES`), each `--init-from` the one before, "
        "the first from the synthetic recipe's fused model (recipes/grid.py; docs/RESULTS-synthetic.md): "
        "48 px landmark mouth crops with the synthetic recipe's appearance augmentation, no mouth-parameter "
        "regression (real clips have none)."
        + (
            f" Each stage also trains on {args.mix_synthetic} clips of the synthetic recipe's training "
            "corpus (rendered faces and voices); validation stays on s1's valid split."
            if args.mix_synthetic
            else ""
        ),
        "",
        "| stage | modality | epochs | settings |",
        "|---|---|---|---|",
        *(
            f"| real-{s.name} | {s.modality} | {s.epochs} | "
            f"{' '.join(a for a in s.settings if a != '--set' and 'image_size' not in a and 'roi_size' not in a)} |"
            for s in STAGES
        ),
        "",
        "| step | wall time | peak memory (RSS) |",
        "|---|---|---|",
        *(
            f"| {k} | {t['seconds'] / 60:.1f} min | {t.get('peak_rss_mib', '-')} MiB |"
            if "peak_rss_mib" in t
            else f"| {k} | {t['seconds'] / 60:.1f} min | - |"
            for k, t in timings.items()
        ),
        "",
        "## Earlier runs",
        "",
        "Before real video, every lip reader of this project was trained on rendered faces only: on real GRID "
        "clips it read at 70.8% (random grammar guesses: 80.7%) and the fused model's sync classifier set real "
        "lips aside, so the fused model equalled its audio path. Those runs' figures are in "
        "docs/RESULTS-synthetic.md; their history is in git and CHANGELOG.md.",
    ]
    args.results.write_text("\n".join(lines) + "\n", encoding="utf-8")


ADAPT_HEADING = "## Teach the lips a new face: `avsrctl adapt`"


def adapt_section(results: dict, timings: dict, pseudo: dict, start: str, when: str = "") -> list[str]:
    """The adaptation's lines of RESULTS.md: the command, how good its pseudo-labels were, its targets."""
    mark = {True: "met", False: "**missed**", None: "-"}
    minutes = timings["adapt"]["seconds"] / 60 if "adapt" in timings else None
    rss = timings.get("adapt", {}).get("peak_rss_mib")
    cpu = timings.get("adapt", {}).get("cpu_seconds")
    wer = "-" if pseudo["wer"] is None else f"{100 * pseudo['wer']:.1f}% ({pseudo['errors']}/{pseudo['words']})"
    return [
        "",
        ADAPT_HEADING,
        "",
        *([when, ""] if when else []),
        f"`avsrctl adapt --checkpoint {start} --data <s1 train clips, no transcripts> --output adapt`: the "
        "starting model (whose lips never saw s1) transcribes s1's 750 training clips from their audio"
        f"{_speed_words(pseudo)}, keeps the confident ones ({pseudo['kept']} of {pseudo['clips']}), trains its "
        "lips on those pseudo-transcripts (CTC, then video) and then the fusion alone (the lips and the audio path "
        "frozen). Measured after the fact against the "
        f"withheld transcripts, the kept pseudo-transcripts have a WER of {wer}; {pseudo['wrong']} of "
        f"{pseudo['kept']} have at least one wrong word."
        + _unsure_sentence(pseudo)
        + ("" if rss is None else f" Peak memory (RSS) of the adaptation: {rss} MiB.")
        + (
            ""
            if cpu is None
            else f" It used {cpu / 60:.1f} CPU-minutes ({cpu / 120:.1f} min on two fully used cores; the wall time "
            "below includes any other load on the machine)."
        ),
        "",
        "| target | wanted | measured | |",
        "|---|---|---|---|",
        *(f"| {t} | {w} | {m} | {mark[ok]} |" for t, w, m, ok in adapt_targets(results, pseudo, minutes)),
    ]


def _speed_words(pseudo: dict) -> str:
    """At which speed the audio path heard the clips (--speed), when not at their own."""
    speed, asked = pseudo.get("speed", 1.0), pseudo.get("speed_asked", 1.0)
    if speed == 1.0 and asked != "auto":
        return ""
    how = "chosen by `--speed auto`" if asked == "auto" else f"`--speed {asked}`"
    return f" heard at {speed:g} times their speed ({how})"


def _unsure_sentence(pseudo: dict) -> str:
    """How the words the audio path was unsure of (--min-word-prob: read, not taught) compare with the
    taught ones, scored after the fact."""
    if not pseudo.get("unsure"):
        return ""
    taught, unsure = pseudo["taught"], pseudo["unsure"]
    return (
        f" Of their words, {unsure} of {taught + unsure} fell under --min-word-prob {pseudo['min_word_prob']:g} and "
        f"were read but not taught: {pseudo['unsure_wrong']} of those were wrong "
        f"({100 * pseudo['unsure_wrong'] / unsure:.0f}%), against {pseudo['taught_wrong']} of the {taught} taught "
        f"words ({100 * pseudo['taught_wrong'] / max(taught, 1):.1f}%)."
    )


def update_adapt(args, results: dict, timings: dict, lip_use: dict, pseudo: dict, *, start: str) -> None:
    """`--adapt-only`: merge the adaptation's figures into docs/results.json (the figures of the
    real-lips run that wrote it stay) and put its section in RESULTS.md in place of the old one."""
    docs = args.results.parent
    path = docs / "results.json"
    figures = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    before = {  # the supervised real-lips figures the adaptation targets compare with
        k: {"wer": v["wer"], "errors": v["errors"], "ref_words": v["words"], "wer_ci95": v.get("ci95")}
        for k, v in figures.items()
        if isinstance(v, dict) and "wer" in v and "/" in k and k not in results
    }
    merged = {**before, **results}
    figures.update(figures_of(results, lip_use, pseudo))
    figures["adapt/seconds"] = round(timings["adapt"]["seconds"], 1)
    figures["adapt/cpu-seconds"] = timings["adapt"].get("cpu_seconds")
    path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")

    when = (
        f"Run on {time.strftime('%Y-%m-%d')} with `python recipes/grid_real.py --adapt-only --start {start}` "
        f"({platform.machine()}, {os.cpu_count()} CPU cores): the adaptation stage and its evaluations alone; the "
        "supervised figures it is compared with are the real-lips run's above."
    )
    section = adapt_section(merged, timings, pseudo, start, when)
    text = args.results.read_text(encoding="utf-8") if args.results.is_file() else "# Results\n"
    lines = text.rstrip("\n").split("\n")
    if ADAPT_HEADING in lines:  # replace the old section, up to the next heading of the same level
        i = lines.index(ADAPT_HEADING) - 1
        j = next((k for k in range(i + 2, len(lines)) if lines[k].startswith("## ")), len(lines))
        lines[i:j] = section + [""]
    elif "## How it was trained" in lines:
        i = lines.index("## How it was trained")
        lines[i:i] = section[1:] + [""]
    else:
        lines += section
    args.results.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")
