"""GRID recipe: train on the synthetic GRID-grammar corpus, test on held-out voices and real GRID clips.

    python recipes/grid.py --work runs/grid            # everything, writes docs/RESULTS-synthetic.md
    python recipes/grid.py --work runs/grid --modalities audio --utterances 600

Steps (each skipped when its output already exists, so a rerun resumes):
  1. `avsrctl demo-data` training corpus (train/valid speakers + held-out test speakers), with
     MBROLA voices for every second speaker when they are installed (`make voices`);
  2. a second held-out test set from another seed and other voices (`--test-only`);
  3. a manifest of the real GRID recordings in ../shared/media/video (when present);
  4. `avsrctl train` with configs/offline-small.yaml (Whisper tiny.en, SmolLM2-135M + LoRA,
     the lip-reading front-end trained from scratch): audio; then video in two stages, the
     front-end alone with character CTC (`train.objective=ctc`, no LLM, fast) and then the
     LLM run that starts from it (`--lip-sync-weight` also trains both against the voice,
     `model.lip_sync_weight`, with a frozen Whisper encoder as partner); then the fused model
     (dynamic stream weights scaled by an audio-visual sync classifier), which starts from
     the two unimodal models (`--init-from`) and trains with babble noise on the audio and
     corrupted video (frozen, blank, blurred, occluded, shifted, another face) on some clips;
  5. `avsrctl eval` of every model on both test sets, babble noise at -5 dB for audio vs both,
     the fused model with its video replaced by a still frame, the real clips clean and with
     babble at 0 and -5 dB, and the faster-whisper baseline on the real clips;
  6. docs/RESULTS-synthetic.md with the tables, the targets, training times and peak memory, and
     every figure in docs/results-synthetic.json (keys `test-set/modality`, as in the tables).

Its fused model (WORK/train-both/final) is where recipes/grid_real.py starts: the real-lips stages
on GRID speaker s1's video, which write docs/RESULTS.md and export the built-in model grid-small.

Nothing is tuned on the real clips: they are only ever decoded by step 5.
Every step runs the installed `avsrctl` command, so the recipe is exactly what a user can type.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("AVSRCTL_MEDIA", REPO.parent / "shared" / "media"))
AVSRCTL = [sys.executable, "-m", "avsrctl"]

# Per-stage training settings on top of configs/offline-small.yaml, whose video encoder is the
# lip-reading front-end (3-D conv stem + ResNet + temporal convs, `source: resnet`), here at
# 48x48 since the corpus is rendered at 48 px. It first trains alone with
# character CTC, which runs at encoder speed (no LLM) and keeps decoded frames in memory; the LLM
# run then starts from it and keeps the CTC as an auxiliary loss. The audio model trains on clean
# audio with cached encoder features. The fused model starts from both unimodal models and trains
# with babble noise on half its utterances plus modality dropout, so it learns to lean on the lips
# when the audio is noisy.
SIZE = 48
# Both lip stages also regress the renderer's mouth parameters of every frame (models/articulation.py):
# with character CTC alone the front-end learnt the grammar's letter statistics and no lips.
ARTICULATION = 1.0
# Thirteen training faces taught the lip reader those faces: a new face read worse than a seen one.
# The corpus draws each utterance with one of FACES faces of its speaker (voices unchanged).
FACES = 32
# Every lip stage trains on randomised appearance (zoom, rotation, colour, gamma, blur, sensor noise;
# data.video_augment): the front-end must read faces the renderer never drew, real ones included.
# The fused model scales the lips' weight by the probability that they move with the voice
# (models/sync.py): lips it cannot match to the audio, a real mouth unlike the rendered ones
# included, fall out of the average instead of costing words.
SYNC = 1.0
# `--lip-sync-weight W` (default 0: off) also trains both lip stages against the voice with the same
# SyncNet-style loss (model.lip_sync_weight): a frozen Whisper encoder reads each training clip's
# audio, and the lips learn to tell their own voice from shifted and swapped ones. At W=1 it read
# rendered faces better and the real clips worse (docs/RESULTS-synthetic.md), so the default leaves it off.
# offline-small's front-end subtracts each clip's mean feature (model.video_encoder.utterance_norm):
# what a face looks like stays constant over a clip and leaves with the mean; how its mouth moves stays.
# It then divides by the clip's root mean square (utterance_scale): rendered mouths open wider than
# most real speakers', and the size of a movement says less than its shape.
LIP_FRONT_END = [
    "--set",
    "data.video_augment=true",
    "--set",
    f"model.video_encoder.image_size={SIZE}",
    "--set",
    f"data.roi_size={SIZE}",
    "--set",
    "data.frame_memory_mb=2048",
]
TRAIN_SETTINGS = {
    "audio": ["--set", "train.lr=1e-3"],
    "video-ctc": [
        "--set",
        "train.objective=ctc",
        "--set",
        "model.ctc_weight=0.5",
        "--set",
        f"model.articulation_weight={ARTICULATION}",
        "--set",
        "train.lr=2e-3",
        "--set",
        "train.warmup_steps=30",
        *LIP_FRONT_END,
    ],
    "video": [
        "--set",
        "train.lr=1e-3",
        "--set",
        "model.ctc_weight=0.5",
        "--set",
        f"model.articulation_weight={ARTICULATION}",
        *LIP_FRONT_END,
    ],
    "both": [
        "--set",
        "train.lr=5e-4",
        "--set",
        "train.warmup_steps=10",
        *LIP_FRONT_END,
        "--set",
        "data.noise_kind=babble",
        "--set",
        "data.noise_snr_db=0",
        "--set",
        "data.noise_snr_spread_db=5",
        "--set",
        "data.noise_prob=0.5",
        "--set",
        "data.video_corruption=0.3",
        "--set",
        "model.fusion.modality_dropout=0.2",
        "--set",
        f"model.fusion.sync_weight={SYNC}",
    ],
}


def log(msg: str) -> None:
    print(f"[grid-recipe] {msg}", file=sys.stderr, flush=True)


def run(args: list[str], *, capture: bool = False) -> tuple[str, float, int]:
    """Run a command; return (stdout, wall seconds, peak RSS of that command in MiB)."""
    log(" ".join(str(a) for a in args))
    start = time.perf_counter()
    proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE if capture else None, text=True)
    out = proc.stdout.read() if capture else ""
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the largest of all so far
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"[grid-recipe] step failed with exit code {proc.returncode}: {' '.join(map(str, args))}")
    return out, seconds, usage.ru_maxrss // 1024


def train_command(corpus: Path, modality: str, out: Path, epochs: int, *extra) -> list:
    """`avsrctl train` with offline-small on the recipe's corpus (validation on 32 utterances)."""
    return AVSRCTL + [
        "train",
        "--config",
        "offline-small",
        "--data",
        corpus,
        "--modality",
        modality,
        "--output",
        out,
        "--max-epochs",
        epochs,
        *extra,
        "--set",
        "train.valid_max_utts=32",
    ]


def real_grid_manifest(out: Path) -> Path | None:
    """grid.tsv/.wrd for the real GRID clips listed in ../shared/media/MANIFEST.tsv (video + its audio)."""
    listing = MEDIA / "MANIFEST.tsv"
    if not listing.is_file():
        log(f"no real media at {MEDIA}: skipping the real GRID test set")
        return None
    with listing.open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if Path(r["file"]).name.startswith("grid_")]
    out.mkdir(parents=True, exist_ok=True)
    lines = [str(MEDIA)]
    for r in rows:
        frames = round(float(r["duration_s"]) * 25)
        lines.append("\t".join([Path(r["file"]).stem, r["file"], r["file"], str(frames), str(frames * 640)]))
    (out / "grid.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "grid.wrd").write_text("".join(r["reference_transcript"] + "\n" for r in rows), encoding="utf-8")
    return out / "grid.tsv"


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


def evaluate(tsv: Path, out: Path, *extra: str) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "wer.json").is_file():
        run(AVSRCTL + ["eval", "--tsv", tsv, "--output-dir", out, "--format", "json", *extra], capture=True)
    return read_report(out)


def babble(tsv: Path, out: Path, *extra: str, snrs: tuple[int, ...] = (-5,)) -> dict[int, dict]:
    """WER of `avsrctl decode` with babble noise at each SNR in dB (run once; its reports read back)."""
    reports = {snr: out / f"snr_{snr}" / "wer.json" for snr in snrs}
    if not all(r.is_file() for r in reports.values()):
        levels = [a for snr in snrs for a in ("--snr", str(snr))]
        run(
            AVSRCTL
            + ["decode", *extra, "--tsv", tsv, "--output-dir", out, *levels, "--noise", "babble", "--format", "json"],
            capture=True,
        )
    return {snr: read_report(r.parent) for snr, r in reports.items()}


def still_manifest(tsv: Path, out: Path) -> Path:
    """A copy of a test set whose videos show their first frame for the whole clip (the audio is kept)."""
    from avsrctl.data.manifest import read_manifest, write_manifest
    from avsrctl.data.media import load_video
    from avsrctl.data.synth import write_mp4

    target = out / "test.tsv"
    if target.is_file():
        return target
    (out / "video").mkdir(parents=True, exist_ok=True)
    rows = []
    for u in read_manifest(tsv):
        frames = load_video(u.video)
        still = out / "video" / f"{u.id}.mp4"
        write_mp4(still, frames[:1].repeat(len(frames), axis=0))
        rows.append(replace(u, video=still))
    write_manifest(target, out / "test.wrd", out.resolve(), rows)
    return target


def missing_mouths(corpus: Path) -> bool:
    """Whether some rendered clip of a demo-data corpus has no stored mouth parameters."""
    from avsrctl.data.synth_mouth import mouth_path

    return any(not mouth_path(v).is_file() for v in (corpus / "video").glob("*.mp4"))


def lips(folder: Path) -> dict | None:
    """How a decode's or eval's fused model used the lips: mean video weight, mean in-sync probability
    and how many utterances it set aside (in-sync probability below its min_lip_sync), from the
    folder's wer.json and results.jsonl; None when the folder has no wer.json."""
    path = folder / "wer.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    out = {"video_weight": summary.get("mean_video_weight"), "lip_sync": summary.get("mean_lip_sync")}
    threshold = summary.get("settings", {}).get("min_lip_sync")
    if threshold is not None and (folder / "results.jsonl").is_file():
        rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line]
        syncs = [r["lip_sync"] for r in rows if "lip_sync" in r]
        out["set_aside"] = f"{sum(r < threshold for r in syncs)}/{len(syncs)}"
    return out


def grammar_chance(tsv: Path, train_wrd: Path):
    """What a lip reader that sees nothing scores on the real clips: each clip read as a training
    transcript drawn at random (it knows GRID's grammar and word frequencies, nothing else)."""
    from avsrctl.metrics import chance_level

    refs = tsv.with_suffix(".wrd").read_text().splitlines()
    return chance_level(refs, train_wrd.read_text().splitlines())


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


def mbrola_available() -> bool:
    from avsrctl.data.synth_speech import MBROLA_VOICES, installed_mbrola

    return len(installed_mbrola()) == len(MBROLA_VOICES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "grid", help="working folder")
    parser.add_argument("--utterances", type=int, default=1200, help="synthetic corpus size")
    parser.add_argument("--heldout-utterances", type=int, default=150, help="second held-out test set size")
    parser.add_argument(
        "--faces-per-speaker",
        type=int,
        default=FACES,
        help="faces each training-corpus speaker is rendered with (the held-out set keeps one per speaker)",
    )
    parser.add_argument("--epochs", type=int, default=4, help="audio model epochs")
    parser.add_argument(
        "--video-ctc-epochs",
        type=int,
        default=16,
        help="epochs of the lip front-end alone with CTC (before the video LLM run)",
    )
    parser.add_argument("--video-epochs", type=int, default=6, help="video model epochs (after the CTC stage)")
    parser.add_argument("--both-epochs", type=int, default=4, help="fused model epochs (starts from audio + video)")
    parser.add_argument(
        "--lip-sync-weight",
        type=float,
        default=0.0,
        help="model.lip_sync_weight of both lip stages: train the lips against the voice too (0: off)",
    )
    parser.add_argument("--modalities", default="audio,video,both")
    parser.add_argument(
        "--tests",
        default="synthetic-test,heldout",
        help="synthetic test sets to evaluate on (the real GRID clips are always used when present)",
    )
    parser.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS-synthetic.md")
    args = parser.parse_args()
    work: Path = args.work
    modalities = [m for m in args.modalities.split(",") if m]
    if "both" in modalities and not {"audio", "video"} <= set(modalities):
        raise SystemExit(
            "[grid-recipe] the fused model starts from the audio and video models: "
            "--modalities must include audio and video with both"
        )
    timings: dict[str, dict] = {}
    args.mbrola = mbrola_available()
    if not args.mbrola:
        log("MBROLA voices not installed (`make voices`): espeak-ng voices only; real-speech WER will be worse")
    voices = ["--mbrola"] if args.mbrola else []

    corpus, heldout = work / "corpus", work / "heldout"
    # also rerun on a finished corpus that lacks the mouth parameters (written before they were
    # stored): it renders nothing again and adds them from the same seeds
    if not (corpus / "test.tsv").is_file() or missing_mouths(corpus):
        _, s, _ = run(
            AVSRCTL
            + [
                "demo-data",
                corpus,
                "--utterances",
                args.utterances,
                "--speakers",
                16,
                "--test-speakers",
                3,
                "--seed",
                0,
                "--size",
                SIZE,
                "--faces-per-speaker",
                args.faces_per_speaker,
                *voices,
            ]
        )
        timings["corpus"] = {"seconds": s}
    if not (heldout / "test.tsv").is_file():
        run(
            AVSRCTL
            + [
                "demo-data",
                heldout,
                "--test-only",
                "--utterances",
                args.heldout_utterances,
                "--speakers",
                16,
                "--test-speakers",
                3,
                "--seed",
                1,
                "--size",
                SIZE,
                *voices,
            ]
        )
    grid_tsv = real_grid_manifest(work / "real")

    epochs = {
        "audio": args.epochs,
        "video-ctc": args.video_ctc_epochs,
        "video": args.video_epochs,
        "both": args.both_epochs,
    }
    checkpoints = {}
    stages = [s for m in modalities for s in (("video-ctc", "video") if m == "video" else (m,))]
    for stage in stages:
        m = stage.split("-")[0]
        out = work / f"train-{stage}"
        if not (out / "final").is_dir():
            extra = {
                "audio": ["--cache-features", work / "features"],
                "video": ["--init-from", work / "train-video-ctc" / "final"],
                "both": ["--init-from", checkpoints.get("video"), "--init-from", checkpoints.get("audio")],
            }.get(stage, [])
            if stage == "both":
                # The fused model decoded from the audio alone (the control) reads it through the audio
                # connector: keep the K the audio model was trained with, whatever the preset says now.
                from avsrctl.checkpoint import read_checkpoint_config

                k = read_checkpoint_config(checkpoints["audio"]).model.audio_connector.compression
                extra += ["--set", f"model.audio_connector.compression={k}"]
            if m == "video" and args.lip_sync_weight > 0:
                extra += ["--set", f"model.lip_sync_weight={args.lip_sync_weight}"]
            _, s, rss = run(train_command(corpus, m, out, epochs[stage], *extra, *TRAIN_SETTINGS[stage]))
            timings[f"train-{stage}"] = {"seconds": s, "peak_rss_mib": rss, "epochs": epochs[stage]}
            (out / "recipe_timing.json").write_text(json.dumps(timings[f"train-{stage}"]))
        elif (out / "recipe_timing.json").is_file():
            timings[f"train-{stage}"] = json.loads((out / "recipe_timing.json").read_text())
        if stage != "video-ctc":
            checkpoints[m] = out / "final"

    results: dict[str, dict] = {}
    lip_use: dict[str, dict] = {}  # how the fused model used the lips, per test condition (`lips`)
    tests = {
        name: tsv
        for name, tsv in (("synthetic-test", corpus / "test.tsv"), ("heldout", heldout / "test.tsv"))
        if name in args.tests.split(",")
    }
    for m, ckpt in checkpoints.items():
        common = ["--checkpoint", ckpt, "--modality", m]
        for name, tsv in tests.items():
            results[f"{name}/{m}"] = evaluate(tsv, work / "eval" / f"{name}-{m}", *common)
        if m in ("audio", "both"):
            for name, tsv in tests.items():
                folder = work / "eval" / f"{name}-{m}-babble-5"
                results[f"{name}-babble-5/{m}"] = babble(tsv, folder, *common)[-5]
                if m == "both":
                    lip_use[f"{name}"] = lips(folder)
                    lip_use[f"{name}-babble-5"] = lips(folder / "snr_-5")
        if grid_tsv is not None:
            results[f"real-grid/{m}"] = evaluate(grid_tsv, work / "eval" / f"grid-{m}", *common, "--normalizer", "all")
            folder = work / "eval" / f"grid-{m}-babble"
            for snr, report in babble(grid_tsv, folder, *common, snrs=(0, -5)).items():
                results[f"real-grid-babble{snr}/{m}"] = report
                if m == "both":
                    lip_use[f"real-grid-babble{snr}"] = lips(folder / f"snr_{snr}")
            if m == "both":
                lip_use["real-grid"] = lips(folder)
    if "both" in checkpoints:
        # Control: the fused model trained with noise, given the audio alone. Its gap to `both`
        # is what the lips add; its gap to `audio` is what noisy training adds.
        control = ["--checkpoint", checkpoints["both"], "--modality", "audio"]
        for name, tsv in tests.items():
            results[f"{name}-babble-5/both-model-audio-only"] = babble(
                tsv, work / "eval" / f"{name}-both-audio-only-babble-5", *control
            )[-5]
        results["heldout/both-model-audio-only"] = evaluate(
            heldout / "test.tsv", work / "eval" / "heldout-both-audio-only", *control
        )
        # The lips frozen on one frame: the fused model must fall back to its audio path.
        still = still_manifest(heldout / "test.tsv", work / "heldout-still")
        folder = work / "eval" / "heldout-still-both"
        results["heldout-still-video/both"] = evaluate(
            still, folder, "--checkpoint", checkpoints["both"], "--modality", "both"
        )
        lip_use["heldout-still-video"] = lips(folder)
        if grid_tsv is not None:
            for snr, report in babble(
                grid_tsv, work / "eval" / "grid-both-audio-only-babble", *control, snrs=(0, -5)
            ).items():
                results[f"real-grid-babble{snr}/both-model-audio-only"] = report
            results["real-grid/both-model-audio-only"] = read_report(work / "eval" / "grid-both-audio-only-babble")
        # The other control: the fused model's lips alone (its video path, with what the fused stage
        # taught the lip front-end), beside the video model's.
        lips_only = ["--checkpoint", checkpoints["both"], "--modality", "video"]
        results["heldout/both-model-video-only"] = evaluate(
            heldout / "test.tsv", work / "eval" / "heldout-both-video-only", *lips_only
        )
        if grid_tsv is not None:
            results["real-grid/both-model-video-only"] = evaluate(
                grid_tsv, work / "eval" / "grid-both-video-only", *lips_only
            )
    if grid_tsv is not None:
        results["real-grid/baseline"] = evaluate(grid_tsv, work / "eval" / "grid-baseline", "--normalizer", "all")

    chance = grammar_chance(grid_tsv, corpus / "train.wrd") if grid_tsv is not None else None
    write_results(args.results, results, timings, args, lip_use, chance)
    figures = args.results.with_name(args.results.stem.lower() + ".json")
    write_json(figures, results, lip_use, chance)
    log(f"wrote {args.results} and {figures}")


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


if __name__ == "__main__":
    main()
