"""GRID recipe: train on the synthetic GRID-grammar corpus, test on held-out voices and real GRID clips.

    python recipes/grid.py --work runs/grid            # everything, writes docs/RESULTS.md
    python recipes/grid.py --work runs/grid --modalities audio --utterances 600

Steps (each skipped when its output already exists, so a rerun resumes):
  1. `avsrctl demo-data` training corpus (train/valid speakers + held-out test speakers);
  2. a second held-out test set from another seed and other voices (`--test-only`);
  3. a manifest of the real GRID recordings in ../shared/media/video (when present);
  4. `avsrctl train` with configs/offline-small.yaml (Whisper tiny.en, SmolLM2-135M + LoRA,
     a small CLIP tower trained from scratch) for each modality;
  5. `avsrctl eval` of every model on both test sets, babble noise at -5 dB for audio vs both,
     and the faster-whisper baseline on the real clips;
  6. docs/RESULTS.md with the tables, training times and peak memory.

Nothing is tuned on the real clips: they are only ever decoded by step 5.
Every step runs the installed `avsrctl` command, so the recipe is exactly what a user can type.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("AVSRCTL_MEDIA", REPO.parent / "shared" / "media"))
AVSRCTL = [sys.executable, "-m", "avsrctl"]

# Per-modality training settings on top of configs/offline-small.yaml. The fused model trains
# with babble noise on half its utterances and modality dropout, so it learns to lean on the
# lips when the audio is noisy; the audio-only model trains on clean audio with cached features.
# The vision tower trains from scratch (no CLIP weights ship offline), so it is kept small enough
# for a CPU: 48x48 input, 8x8 patches (36 per frame), width 128, 2 layers.
SMALL_VISION = ["--set", "model.video_encoder.image_size=48", "--set", "model.video_encoder.patch_size=8",
                "--set", "model.video_encoder.width=128", "--set", "model.video_encoder.layers=2",
                "--set", "model.video_encoder.heads=4"]
TRAIN_SETTINGS = {
    "audio": ["--set", "train.lr=1e-3"],
    "video": ["--set", "train.lr=1e-3", *SMALL_VISION],
    "both": ["--set", "train.lr=1e-3", *SMALL_VISION, "--set", "data.noise_kind=babble",
             "--set", "data.noise_snr_db=0", "--set", "data.noise_prob=0.5",
             "--set", "model.fusion.modality_dropout=0.3"],
}


def log(msg: str) -> None:
    print(f"[grid-recipe] {msg}", file=sys.stderr, flush=True)


def run(args: list[str], *, capture: bool = False) -> tuple[str, float, int]:
    """Run a command; return (stdout, wall seconds, peak RSS of the child in MiB)."""
    log(" ".join(str(a) for a in args))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE if capture else None, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"[grid-recipe] step failed with exit code {proc.returncode}: {' '.join(map(str, args))}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (proc.stdout or ""), seconds, max(peak, before) // 1024


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
    report = out / "wer.json"
    if not report.is_file():
        run(AVSRCTL + ["eval", "--tsv", tsv, "--output-dir", out, "--format", "json", *extra], capture=True)
    return json.loads(report.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "grid", help="working folder")
    parser.add_argument("--utterances", type=int, default=1200, help="synthetic corpus size")
    parser.add_argument("--heldout-utterances", type=int, default=150, help="second held-out test set size")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--modalities", default="audio,video,both")
    parser.add_argument("--results", type=Path, default=REPO / "docs" / "RESULTS.md")
    args = parser.parse_args()
    work: Path = args.work
    modalities = [m for m in args.modalities.split(",") if m]
    timings: dict[str, dict] = {}

    corpus, heldout = work / "corpus", work / "heldout"
    if not (corpus / "test.tsv").is_file():
        _, s, _ = run(AVSRCTL + ["demo-data", corpus, "--utterances", args.utterances, "--speakers", 16,
                                 "--test-speakers", 3, "--seed", 0, "--size", 96])
        timings["corpus"] = {"seconds": s}
    if not (heldout / "test.tsv").is_file():
        run(AVSRCTL + ["demo-data", heldout, "--test-only", "--utterances", args.heldout_utterances,
                       "--speakers", 16, "--test-speakers", 3, "--seed", 1, "--size", 96])
    grid_tsv = real_grid_manifest(work / "real")

    checkpoints = {}
    for m in modalities:
        out = work / f"train-{m}"
        if not (out / "final").is_dir():
            cache = ["--cache-features", work / "features"] if m == "audio" else []
            _, s, rss = run(AVSRCTL + ["train", "--config", "offline-small", "--data", corpus, "--modality", m,
                                       "--output", out, "--max-epochs", args.epochs, *cache, *TRAIN_SETTINGS[m],
                                       "--set", "train.valid_max_utts=32"])
            timings[f"train-{m}"] = {"seconds": s, "peak_rss_mib": rss}
            (out / "recipe_timing.json").write_text(json.dumps(timings[f"train-{m}"]))
        elif (out / "recipe_timing.json").is_file():
            timings[f"train-{m}"] = json.loads((out / "recipe_timing.json").read_text())
        checkpoints[m] = out / "final"

    results: dict[str, dict] = {}
    for m, ckpt in checkpoints.items():
        common = ["--checkpoint", ckpt, "--modality", m]
        results[f"synthetic-test/{m}"] = evaluate(corpus / "test.tsv", work / "eval" / f"test-{m}", *common)
        results[f"heldout/{m}"] = evaluate(heldout / "test.tsv", work / "eval" / f"heldout-{m}", *common)
        if m in ("audio", "both"):
            noisy = work / "eval" / f"test-{m}-babble-5"
            if not (noisy / "wer.json").is_file():
                run(AVSRCTL + ["decode", *common, "--tsv", corpus / "test.tsv", "--output-dir", noisy,
                               "--snr", "-5", "--noise", "babble", "--format", "json"], capture=True)
            results[f"synthetic-test-babble-5/{m}"] = json.loads((noisy / "snr_-5" / "wer.json").read_text())
        if grid_tsv is not None and m in ("audio", "both"):
            results[f"real-grid/{m}"] = evaluate(grid_tsv, work / "eval" / f"grid-{m}", *common, "--normalizer", "all")
    if grid_tsv is not None:
        results["real-grid/baseline"] = evaluate(grid_tsv, work / "eval" / "grid-baseline", "--normalizer", "all")

    write_results(args.results, results, timings, args)
    log(f"wrote {args.results}")


def _pct(report: dict | None, normalizer: str = "basic") -> str:
    if report is None:
        return "-"
    if normalizer != "basic" and "by_normalizer" in report:
        report = report["by_normalizer"].get(normalizer, report)
    return f"{100 * report['wer']:.1f}% ({report['errors']}/{report['ref_words']})"


def write_results(path: Path, results: dict, timings: dict, args) -> None:
    import torch
    import transformers

    lines = [
        "# Results: the GRID recipe",
        "",
        f"Produced by `python recipes/grid.py --utterances {args.utterances} --epochs {args.epochs} "
        f"--modalities {args.modalities}` (`make grid-recipe`) on {time.strftime('%Y-%m-%d')}; "
        f"{platform.machine()} with {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, transformers {transformers.__version__}. Model: configs/offline-small.yaml "
        "(Whisper tiny.en encoder frozen, SmolLM2-135M-Instruct with LoRA r=8, a small CLIP ViT trained from "
        "scratch for video). WER is corpus-level with the `basic` normaliser unless marked.",
        "",
        "| test set | modality | WER |",
        "|---|---|---|",
    ]
    for key, report in results.items():
        test, modality = key.split("/")
        lines.append(f"| {test} | {modality} | {_pct(report)} |")
    if "real-grid/baseline" in results:
        lines += ["", "Real GRID clips with Whisper's normaliser (numbers as digits, spellings unified):", "",
                  "| system | basic | whisper |", "|---|---|---|"]
        for m in ("baseline", "audio", "both"):
            r = results.get(f"real-grid/{m}")
            if r:
                lines.append(f"| {m} | {_pct(r)} | {_pct(r, 'whisper')} |")
    lines += ["", "| step | wall time | peak memory |", "|---|---|---|"]
    for step, t in timings.items():
        rss = f"{t['peak_rss_mib']} MiB" if "peak_rss_mib" in t else "-"
        lines.append(f"| {step} | {t['seconds'] / 60:.1f} min | {rss} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
