"""Training epochs with a warm feature cache vs live frozen encoders, in one `run_training` call.

    .venv/bin/python benchmarks/bench_feature_cache.py [--config tiny|offline-small] [--modality audio]
                                                      [--utterances N] [--pairs 2] [--threads 1]

What runs is the product: `avsrctl.training.run.run_training` with `--cache-features`, on N
utterances of the synthetic benchmark corpus (GRID grammar, ~3.3 s each), no validation.
A trainer hook switches the cache per epoch, so the two ways alternate inside one run:

    epoch 1       cold           empty cache: encoders run and their outputs are written
    then R times  live           no cache: media decoded, frozen encoders run (a plain run)
                  warm           cache hit: media decoded, encoder outputs read from disk
                  warm, no media cache hit, media taken from memory (what the product would
                                 do if it skipped decoding on a hit; see below)

Each epoch's utterances per second is N / its wall time (data loading, forward, backward and
optimiser included); the figure is median warm utt/s over median live utt/s, target >= 5x.
The breakdown per epoch shows where the time goes: media decoding (ffmpeg, in
`AVDataset.__getitem__`), the frozen encoders, cache reads/writes, and the rest (connectors,
LLM forward/backward, AdamW).

--config tiny (default): configs/tiny.yaml with the real Whisper tiny.en encoder
(`model.audio_encoder.source=ct2 name=offline:tiny.en`) and the tiny random LLM, so the frozen
encoder is most of the model compute. --config offline-small: Whisper tiny.en + SmolLM2-135M
with LoRA, where the LLM's forward/backward dominates and no cache can give 5x (reported, gated
only with --gate). Exits 1 when a gated ratio misses the target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common

TARGET = 5.0
KINDS = ("live", "warm", "warm, no media")
TINY_REAL_WHISPER = ["model.audio_encoder.source=ct2", "model.audio_encoder.name=offline:tiny.en"]


class TimedDataset:
    """Wraps the trainer's AVDataset: times media decoding, and serves memorised samples on request."""

    def __init__(self, inner):
        self.inner = inner
        self.memo: dict[int, object] = {}
        self.from_memory = False
        self.decode_s = 0.0

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int):
        if self.from_memory and index in self.memo:
            return self.memo[index]
        start = time.perf_counter()
        sample = self.inner[index]
        self.decode_s += time.perf_counter() - start
        if sample is not None and (sample.audio is not None or sample.video is not None):
            self.memo[index] = sample  # decoded media, served from memory in 'warm, no media' epochs
        return sample

    def __getattr__(self, name: str):  # lengths, collate, set_epoch, skipped ...
        return getattr(self.inner, name)


class EpochProbe:
    """Trainer hook: chooses the cache per epoch, times epochs and their parts."""

    def __init__(self, kinds: list[str], n_utts: int):
        self.kinds, self.n_utts = kinds, n_utts
        self.rows: list[dict] = []
        self.encoder_s = 0.0
        self.cache_s = 0.0

    def __call__(self, trainer) -> None:
        cache = trainer.cache
        data = TimedDataset(trainer.train_set)
        trainer.train_set = data
        for stream in ("audio", "video"):
            enc = getattr(trainer.model, f"{stream}_encoder", None)
            if enc is not None:
                enc.forward = self._timed(enc.forward, "encoder_s")
        cache.fill = self._timed(cache.fill, "cache_s")
        lookup = data.inner.features  # the dataset reads cached features instead of decoding media
        run_epoch = trainer._run_epoch

        def epoch() -> None:
            kind = self.kinds[trainer.epoch]
            trainer.cache = None if kind == "live" else cache
            data.inner.features = None if kind == "live" else lookup
            data.from_memory = kind == "warm, no media"
            data.decode_s = self.encoder_s = self.cache_s = 0.0
            wall, cpu, _ = common.timed(run_epoch)
            row = {
                "kind": kind,
                "wall": wall,
                "cpu": cpu,
                "decode": data.decode_s,
                "encoder": self.encoder_s,
                "cache": self.cache_s,
            }
            # cache.fill runs the encoder on a miss: count that time once, as encoder time
            row["cache_only"] = max(0.0, self.cache_s - (self.encoder_s if kind == "cold" else 0.0))
            row["rest"] = wall - data.decode_s - self.encoder_s - row["cache_only"]
            self.rows.append(row)
            print(
                f"  epoch {len(self.rows)} {kind:<15} {wall:6.2f} s wall, {cpu:6.2f} s CPU, "
                f"{self.n_utts / wall:6.2f} utt/s",
                flush=True,
            )

        trainer._run_epoch = epoch

    def _timed(self, fn, counter: str):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                setattr(self, counter, getattr(self, counter) + time.perf_counter() - start)

        return wrapper


def subset_corpus(corpus: Path, n: int, out: Path) -> int:
    """train.tsv/.wrd in `out` holding the first n training utterances of the corpus (media stay put)."""
    from avsrctl.data.manifest import read_manifest, write_manifest

    train = read_manifest(corpus / "train.tsv", corpus / "train.wrd")
    chosen = train.utterances[:n]
    write_manifest(out / "train.tsv", out / "train.wrd", corpus, chosen)
    return len(chosen)


def run(config: str, modality: str, n_utts: int, pairs: int, threads: int) -> dict:
    import torch

    from avsrctl.config import load_config
    from avsrctl.training.run import run_training

    corpus = common.bench_corpus()
    torch.set_num_threads(threads)
    kinds = ["cold"] + [k for _ in range(pairs) for k in KINDS]
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        tmp = Path(tmp)
        n = subset_corpus(corpus, n_utts, tmp)
        overrides = (TINY_REAL_WHISPER if config == "tiny" else []) + [
            f"model.modality={modality}",
            f"data.root={tmp}",
            f"train.output={tmp / 'run'}",
            f"train.cache_features={tmp / 'cache'}",
            f"train.max_epochs={len(kinds)}",
            "train.save_every=0",
            "train.log_every=1000",
            "data.num_workers=0",
        ]
        cfg = load_config(config, overrides)
        probe = EpochProbe(kinds, n)
        start = time.perf_counter()
        result = run_training(cfg, modality=modality, trainer_hook=probe)
        total = time.perf_counter() - start
    return {"rows": probe.rows, "n": n, "total": total, "cache": result.cache, "cfg": cfg}


def report(out: dict, config: str, modality: str, gate: bool) -> bool:
    rows, n = out["rows"], out["n"]
    print(
        f"\n{'epoch':<15} {'wall s':>7} {'utt/s':>7} {'CPU s':>7} | {'media':>6} {'encoder':>8} {'cache':>6} "
        f"{'rest':>6}  (seconds per epoch)"
    )
    for r in rows:
        print(
            f"{r['kind']:<15} {r['wall']:>7.2f} {n / r['wall']:>7.2f} {r['cpu']:>7.2f} | {r['decode']:>6.2f} "
            f"{r['encoder']:>8.2f} {r['cache_only']:>6.2f} {r['rest']:>6.2f}"
        )
    med = {k: statistics.median(r["wall"] for r in rows if r["kind"] == k) for k in KINDS}
    cpu = {k: statistics.median(r["cpu"] for r in rows if r["kind"] == k) for k in KINDS}
    ratio = med["live"] / med["warm"]
    ideal = med["live"] / med["warm, no media"]
    print(f"\n{n} utterances x {len(rows)} epochs in {out['total']:.0f} s (model build included); cache {out['cache']}")
    print(
        f"median utt/s: live {n / med['live']:.2f}, warm {n / med['warm']:.2f}, "
        f"warm without media decoding {n / med['warm, no media']:.2f}"
    )
    print(
        f"warm/live: {ratio:.2f}x wall, {cpu['live'] / cpu['warm']:.2f}x CPU; "
        f"without media decoding {ideal:.2f}x wall, {cpu['live'] / cpu['warm, no media']:.2f}x CPU"
    )
    name = f"feature cache, {config}{' + tiny.en' if config == 'tiny' else ''} {modality}: warm/live utt/s"
    passed = ratio >= TARGET if gate else None
    target = f">= {TARGET:.0f}x" + ("" if gate else ", not gated: the LLM dominates")
    common.record(
        name,
        ratio,
        target,
        passed,
        unit="x",
        detail=f"live {n / med['live']:.2f} utt/s, warm {n / med['warm']:.2f} utt/s",
    )
    common.record(
        f"feature cache, {config} {modality}: warm without media decoding / live",
        ideal,
        "info: if a cache hit skipped media decoding",
        None,
        unit="x",
    )
    return passed is not False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("tiny", "offline-small"), default="tiny")
    parser.add_argument("--modality", choices=("audio", "video", "both"), default="audio")
    parser.add_argument("--utterances", type=int, default=None, help="default 48 (tiny), 16 (offline-small)")
    parser.add_argument(
        "--pairs", type=int, default=None, help="live/warm epoch pairs (default 2 tiny, 1 offline-small)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: stable on a shared machine; see docs/BENCHMARKS.md)"
    )
    parser.add_argument(
        "--gate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="exit 1 below the target (default: on for tiny, off for offline-small)",
    )
    args = parser.parse_args()
    if not common.have_tiny_en() or (args.config == "offline-small" and not common.have_smollm2()):
        print("skipped: offline weights not installed (make weights)")
        return 0
    small = args.config == "offline-small"
    n_utts = args.utterances or (16 if small else 48)
    pairs = args.pairs or (1 if small else 2)
    gate = (not small) if args.gate is None else args.gate
    common.print_machine(f"; {args.threads} threads")
    print(f"config {args.config}, modality {args.modality}, {n_utts} utterances, {pairs} live/warm pair(s)")
    out = run(args.config, args.modality, n_utts, pairs, args.threads)
    return 0 if report(out, args.config, args.modality, gate) else 1


if __name__ == "__main__":
    sys.exit(main())
