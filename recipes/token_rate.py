"""Token rate sweep: WER and speed of the GRID recipe's models at other token compressions K.

    python recipes/token_rate.py --work runs/grid          # after recipes/grid.py on that folder

The LLM reads one token per K frames of 25 Hz: fused K=2 is 12.5 tokens/s, audio K=6 4.2 tokens/s.
Compression is a masked mean over K frames (models/connector.py), with no weights of its own,
so every K starts from the same checkpoints. This trains, on the recipe's corpus with its
settings and epochs:

  - the fused model at each --fusion-k (from the recipe's audio and video models, as the recipe's
    fused stage does; the recipe's own train-both is reused for the K it was trained with);
  - the audio model at each --audio-k (from scratch, as the recipe's audio stage; its train-audio
    is reused for its own K);

then decodes the held-out voices (another seed, other speakers) clean and with babble at -5 dB,
and writes a table of WER, training utterances/s (median over the run's logged steps) and
decoding utterances/s to --output (markdown) and the figures to --output with .json.
Runs one after another on the same machine, so the speeds are comparable as ratios; the
machine's load average is recorded beside each run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from grid import REPO, TRAIN_SETTINGS, babble, log, run, train_command


def train_speed(folder: Path) -> float:
    """Median training utterances/s over a run's logged steps (metrics.jsonl)."""
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return statistics.median(r["utt_per_s"] for r in rows if r.get("type") == "train")


def train(work: Path, out: Path, modality: str, epochs: int, extra: list) -> dict:
    if not (out / "final").is_dir():
        load = os.getloadavg()[0]
        _, seconds, rss = run(train_command(work / "corpus", modality, out, epochs, *extra))
        (out / "sweep_timing.json").write_text(json.dumps({"seconds": seconds, "peak_rss_mib": rss, "load": load}))
    timing = json.loads((out / "sweep_timing.json").read_text()) if (out / "sweep_timing.json").is_file() else {}
    return {**timing, "train_utt_per_s": train_speed(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "grid", help="the recipe's working folder")
    ap.add_argument("--fusion-k", default="2,4,6")
    ap.add_argument("--audio-k", default="3,6")
    ap.add_argument("--epochs", type=int, default=4, help="audio model epochs (as the recipe)")
    ap.add_argument("--both-epochs", type=int, default=4, help="fused model epochs (as the recipe)")
    ap.add_argument("--output", type=Path, default=REPO / "docs" / "token_rate.md")
    args = ap.parse_args()
    work = args.work
    base = {m: work / f"train-{m}" / "final" for m in ("audio", "video", "both")}
    missing = [str(p) for p in base.values() if not p.is_dir()]
    if missing:
        raise SystemExit(f"[token-rate] run recipes/grid.py on {work} first: missing {', '.join(missing)}")
    tsv = work / "heldout" / "test.tsv"
    sweep = work / "token-rate"
    rows = []
    from avsrctl.checkpoint import read_checkpoint_config

    recipe_k = {  # the K the recipe's own models were trained with: those runs are reused, not repeated
        "both": read_checkpoint_config(base["both"]).model.fusion.compression,
        "audio": read_checkpoint_config(base["audio"]).model.audio_connector.compression,
    }
    for modality, ks, key in (
        ("both", args.fusion_k, "model.fusion.compression"),
        ("audio", args.audio_k, "model.audio_connector.compression"),
    ):
        for k in [int(x) for x in ks.split(",") if x]:
            if k == recipe_k[modality]:
                out = work / f"train-{modality}"
                timing = (
                    json.loads((out / "recipe_timing.json").read_text())
                    if (out / "recipe_timing.json").is_file()
                    else {}
                )
                timing["train_utt_per_s"] = train_speed(out)
            else:
                out = sweep / f"{modality}-k{k}"
                extra = ["--set", f"{key}={k}", *TRAIN_SETTINGS[modality]]
                if modality == "both":
                    extra = ["--init-from", base["video"], "--init-from", base["audio"], *extra]
                    epochs = args.both_epochs
                else:
                    extra = ["--cache-features", work / "features", *extra]
                    epochs = args.epochs
                timing = train(work, out, modality, epochs, extra)
            folder = sweep / "eval" / f"{modality}-k{k}"
            noisy = babble(tsv, folder, "--checkpoint", out / "final", "--modality", modality)[-5]
            clean = json.loads((folder / "wer.json").read_text())
            rows.append(
                {
                    "modality": modality,
                    "k": k,
                    "tokens_per_s": 25 / k,
                    "wer": clean["wer"],
                    "wer_babble_-5": noisy["wer"],
                    "decode_utt_per_s": clean["utterances_per_second"],
                    **timing,
                }
            )
            log(f"{modality} K={k}: WER {clean['wer']:.2%}, -5 dB {noisy['wer']:.2%}, {rows[-1]}")
    write(rows, args.output, sys.argv)


def write(rows: list[dict], output: Path, argv: list[str]) -> None:
    lines = [
        "| modality | K | LLM tokens/s | WER held-out | WER babble -5 dB | train utt/s | decode utt/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['modality']} | {r['k']} | {r['tokens_per_s']:.1f} | {r['wer']:.1%} | {r['wer_babble_-5']:.1%} "
            f"| {r['train_utt_per_s']:.2f} | {r['decode_utt_per_s']:.2f} |"
        )
    lines += ["", f"Command: `python {' '.join(argv)}`"]
    output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
