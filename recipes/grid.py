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
     `model.losses.lip_sync`, with a frozen Whisper encoder as partner); then the fused model
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
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

# the report's helpers, also imported from here by recipes/grid_real.py and recipes/real_report.py
from grid_report import _pct, figure_rows, read_report, write_json, write_results  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("AVSRCTL_MEDIA", REPO.parent / "shared" / "media"))
AVSRCTL = [sys.executable, "-m", "avsrctl"]


def _set(*settings: str) -> list[str]:
    """`--set KEY=VALUE` for each setting."""
    return [a for setting in settings for a in ("--set", setting)]


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
UTTERANCES = 1200  # the synthetic training corpus's size
# Every lip stage trains on randomised appearance (zoom, rotation, colour, gamma, blur, sensor noise;
# data.video_augment): the front-end must read faces the renderer never drew, real ones included.
# The fused model scales the lips' weight by the probability that they move with the voice
# (models/sync.py): lips it cannot match to the audio, a real mouth unlike the rendered ones
# included, fall out of the average instead of costing words.
SYNC = 1.0
# `--lip-sync-weight W` (default 0: off) also trains both lip stages against the voice with the same
# SyncNet-style loss (model.losses.lip_sync): a frozen Whisper encoder reads each training clip's
# audio, and the lips learn to tell their own voice from shifted and swapped ones. At W=1 it read
# rendered faces better and the real clips worse (docs/RESULTS-synthetic.md), so the default leaves it off.
# offline-small's front-end subtracts each clip's mean feature (model.video_encoder.utterance_norm):
# what a face looks like stays constant over a clip and leaves with the mean; how its mouth moves stays.
# It then divides by the clip's root mean square (utterance_scale): rendered mouths open wider than
# most real speakers', and the size of a movement says less than its shape.
LIP_SETTINGS = (
    "data.video_augment=true",
    f"model.video_encoder.image_size={SIZE}",
    f"data.roi_size={SIZE}",
    "data.frame_memory_mb=2048",
)
LIP_FRONT_END = _set(*LIP_SETTINGS)


@dataclass(frozen=True)
class Stage:
    """One `avsrctl train` run of the recipe, in WORK/train-<name>; the last stage of a modality gives its model."""

    name: str
    modality: str
    epochs: str  # the option (argparse dest) that sets its epochs
    settings: list[str]  # on top of configs/offline-small.yaml
    init: tuple[str, ...] = ()  # earlier stages whose `final` it starts from (--init-from, in this order)


STAGES = (
    # clean audio, encoder features cached in WORK/features
    Stage("audio", "audio", "epochs", _set("train.lr=1e-3")),
    # the lip front-end alone with character CTC (no LLM)
    Stage(
        "video-ctc",
        "video",
        "video_ctc_epochs",
        _set("train.objective=ctc", "model.losses.ctc=0.5", f"model.losses.articulation={ARTICULATION}")
        + _set("train.lr=2e-3", "train.warmup_steps=30", *LIP_SETTINGS),
    ),
    # the LLM run from the CTC stage, CTC kept as an auxiliary loss
    Stage(
        "video",
        "video",
        "video_epochs",
        _set("train.lr=1e-3", "model.losses.ctc=0.5", f"model.losses.articulation={ARTICULATION}", *LIP_SETTINGS),
        init=("video-ctc",),
    ),
    # from both unimodal models, with babble noise and corrupted video on some clips
    Stage(
        "both",
        "both",
        "both_epochs",
        _set("train.lr=5e-4", "train.warmup_steps=10", *LIP_SETTINGS)
        + _set("data.noise_kind=babble", "data.noise_snr_db=0", "data.noise_snr_spread_db=5", "data.noise_prob=0.5")
        + _set("data.video_corruption=0.3", "model.fusion.modality_dropout=0.2", f"model.losses.sync={SYNC}"),
        init=("video", "audio"),
    ),
)
TRAIN_SETTINGS = {stage.name: stage.settings for stage in STAGES}  # what recipes/token_rate.py reads


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
    from avsrctl.synth.corpus import write_mp4

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
    from avsrctl.data.mouth_params import mouth_path

    return any(not mouth_path(v).is_file() for v in (corpus / "video").glob("*.mp4"))


def lips(folder: Path) -> dict | None:
    """How a decode's or eval's fused model used the lips: mean video weight, mean in-sync probability
    and how many utterances it set aside (in-sync probability below its min_lip_sync), from the
    folder's wer.json and results.jsonl (`avsrctl.lips.read_results`); None when the folder has no
    wer.json. For lips read alone, "set_aside" counts the utterances below the threshold (avsrctl's
    `below`), so the report's figures keep one name."""
    from avsrctl.lips import count_below, read_results

    found = read_results(folder)
    if found is None:
        return None
    summary, uses = found
    out = {"video_weight": summary.get("mean_video_weight"), "lip_sync": summary.get("mean_lip_sync")}
    threshold = summary.get("settings", {}).get("min_lip_sync")
    if threshold is not None and uses is not None:
        below, judged = count_below(uses, threshold)
        out["set_aside"] = f"{below}/{judged}"
    return out


def grammar_chance(tsv: Path, train_wrd: Path):
    """What a lip reader that sees nothing scores on the real clips: each clip read as a training
    transcript drawn at random (it knows GRID's grammar and word frequencies, nothing else)."""
    from avsrctl.metrics import chance_level

    refs = tsv.with_suffix(".wrd").read_text().splitlines()
    return chance_level(refs, train_wrd.read_text().splitlines())


def mbrola_available() -> bool:
    from avsrctl.synth.speech import MBROLA_VOICES, installed_mbrola

    return len(installed_mbrola()) == len(MBROLA_VOICES)


SPEAKERS = ["--speakers", 16, "--test-speakers", 3]  # demo-data's speakers: 13 to train on, 3 held out


def training_corpus(corpus: Path, utterances: int, faces: int, mbrola: bool, timings: dict) -> Path:
    """Step 1: the `demo-data` training corpus (seed 0), made when absent; also rerun on a finished
    corpus that lacks the mouth parameters (written before they were stored): it renders nothing
    again and adds them from the same seeds."""
    if not (corpus / "test.tsv").is_file() or missing_mouths(corpus):
        command = ["demo-data", corpus, "--utterances", utterances, *SPEAKERS, "--seed", 0, "--size", SIZE]
        _, s, _ = run(AVSRCTL + command + ["--faces-per-speaker", faces, *(["--mbrola"] if mbrola else [])])
        timings["corpus"] = {"seconds": s}
    return corpus


def make_corpora(args, work: Path, timings: dict) -> tuple[Path, Path]:
    """Steps 1-2: WORK/corpus (training corpus and its held-out speakers) and WORK/heldout (another seed,
    other voices); MBROLA voices for every second speaker when installed."""
    voices = ["--mbrola"] if args.mbrola else []
    corpus, heldout = work / "corpus", work / "heldout"
    training_corpus(corpus, args.utterances, args.faces_per_speaker, args.mbrola, timings)
    if not (heldout / "test.tsv").is_file():
        command = ["demo-data", heldout, "--test-only", "--utterances", args.heldout_utterances, *SPEAKERS]
        run(AVSRCTL + command + ["--seed", 1, "--size", SIZE, *voices])
    return corpus, heldout


def train_stages(args, work: Path, corpus: Path, modalities: list[str], timings: dict) -> dict[str, Path]:
    """Step 4: the stages of `modalities`, in that order, each skipped when its `final` exists; returns each
    modality's model (the `final` of its last stage)."""
    checkpoints = {}
    for stage in [s for m in modalities for s in STAGES if s.modality == m]:
        out, epochs = work / f"train-{stage.name}", getattr(args, stage.epochs)
        if not (out / "final").is_dir():
            extra = [a for i in stage.init for a in ("--init-from", work / f"train-{i}" / "final")]
            if stage.name == "audio":
                extra += ["--cache-features", work / "features"]
            if stage.modality == "both":
                # The fused model decoded from the audio alone (the control) reads it through the audio
                # connector: keep the K the audio model was trained with, whatever the preset says now.
                from avsrctl.checkpoint import read_checkpoint_config

                k = read_checkpoint_config(checkpoints["audio"]).model.audio_connector.compression
                extra += ["--set", f"model.audio_connector.compression={k}"]
            if stage.modality == "video" and args.lip_sync_weight > 0:
                extra += ["--set", f"model.losses.lip_sync={args.lip_sync_weight}"]
            _, s, rss = run(train_command(corpus, stage.modality, out, epochs, *extra, *stage.settings))
            timings[f"train-{stage.name}"] = {"seconds": s, "peak_rss_mib": rss, "epochs": epochs}
            (out / "recipe_timing.json").write_text(json.dumps(timings[f"train-{stage.name}"]))
        elif (out / "recipe_timing.json").is_file():
            timings[f"train-{stage.name}"] = json.loads((out / "recipe_timing.json").read_text())
        checkpoints[stage.modality] = out / "final"  # a later stage of the same modality replaces it
    return checkpoints


def evaluate_models(
    work: Path, tests: dict[str, Path], heldout: Path, grid_tsv: Path | None, checkpoints: dict[str, Path]
) -> tuple[dict[str, dict], dict[str, dict]]:
    """Step 5: every model on every test set, clean and in babble, with the controls; returns the figures
    (`test-set/modality` -> report) and how the fused model used the lips per test condition (`lips`)."""
    results: dict[str, dict] = {}
    lip_use: dict[str, dict] = {}  # how the fused model used the lips, per test condition (`lips`)
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
    return results, lip_use


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "grid", help="working folder")
    parser.add_argument("--utterances", type=int, default=UTTERANCES, help="synthetic corpus size")
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
        help="model.losses.lip_sync of both lip stages: train the lips against the voice too (0: off)",
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
    corpus, heldout = make_corpora(args, work, timings)
    grid_tsv = real_grid_manifest(work / "real")
    checkpoints = train_stages(args, work, corpus, modalities, timings)
    tests = {
        name: tsv
        for name, tsv in (("synthetic-test", corpus / "test.tsv"), ("heldout", heldout / "test.tsv"))
        if name in args.tests.split(",")
    }
    results, lip_use = evaluate_models(work, tests, heldout, grid_tsv, checkpoints)
    chance = grammar_chance(grid_tsv, corpus / "train.wrd") if grid_tsv is not None else None
    write_results(args.results, results, timings, args, lip_use, chance)
    figures = args.results.with_name(args.results.stem.lower() + ".json")
    write_json(figures, results, lip_use, chance)
    log(f"wrote {args.results} and {figures}")


if __name__ == "__main__":
    main()
