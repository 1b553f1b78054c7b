"""An LRS3-sized manifest: load + validate + the first epoch's batches, and DDP balance at 8 / 64 ranks.

    .venv/bin/python benchmarks/bench_manifest_scale.py [--rows 150000] [--max-frames 6000] [--max-batch 32]

The manifest is synthetic: ROWS rows whose paths point at a handful of real files (the GRID
clips in ../shared/media when present, else a few small files written here), with lengths drawn
from a log-normal around LRS3's mean (433 h / 150k clips = 10.4 s = 260 frames at 25 Hz), clipped
to [1 s, 60 s]. Counts come from the .tsv; nothing is probed or decoded.

What runs is the product, in a fresh child process (so its peak RSS is its own):
`read_manifest(tsv)` (every row parsed and validated, every media path checked to exist),
`manifest.require("both")`, `AVDataset(manifest, "both").lengths` and every batch of epoch 0
from `FrameBucketSampler` with the `default` preset's budget (6000 frames, 32 utterances).
Figures: wall seconds, microseconds per row, peak RSS, and peak RSS above the process's RSS
after its imports (torch alone is ~300 MB of that floor on this machine).

Then the sampler is sharded at 8 and 64 ranks: every rank must get the same number of batches,
and the per-rank totals of padded frames (count x longest: the compute) must lie within 5% of
each other (max/min - 1). Exits 1 when a gated figure misses its target.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

TARGET_S, TARGET_MB, TARGET_SPREAD = 3.0, 300.0, 0.05
MEAN_FRAMES = 260  # 433 h * 3600 s * 25 Hz / 150,000 clips

CHILD = r"""
import json, sys, time
tsv, max_frames, max_batch, training = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
if training:  # what `avsrctl train` imports: torch, the dataset, the decoders
    from avsrctl.data.dataset import AVDataset, FrameBucketSampler
else:  # the data path alone: manifest + sampler, numpy only
    from avsrctl.data.sampler import FrameBucketSampler
from avsrctl.data.manifest import read_manifest

def status_mb(field):  # VmRSS now, VmHWM peak; ru_maxrss would carry the parent's peak over exec
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024

floor = status_mb("VmRSS")
c0, t0 = time.process_time(), time.perf_counter()
manifest = read_manifest(tsv)
t1 = time.perf_counter()
manifest.require("both")
if training:
    lengths = AVDataset(manifest, "both", roi="none").lengths
else:
    lengths = [max(1, u.n_frames) for u in manifest]  # = AVDataset.lengths
t2 = time.perf_counter()
sampler = FrameBucketSampler(lengths, max_frames, max_batch, shuffle=True, seed=0)
batches = list(sampler)
t3, c3 = time.perf_counter(), time.process_time()
peak = status_mb("VmHWM")
print(json.dumps({"rows": len(manifest), "read_s": t1 - t0, "dataset_s": t2 - t1, "batches_s": t3 - t2,
                  "total_s": t3 - t0, "cpu_s": c3 - c0, "batches": len(batches), "floor_mb": floor, "peak_mb": peak}))
"""


def media_files(tmp: Path) -> tuple[list[str], list[str]]:
    """A handful of real files: (videos, audios)."""
    media = common.REPO.parent / "shared" / "media"
    videos, audios = sorted((media / "video").glob("*.mpg")), sorted((media / "audio").glob("*.wav"))
    if videos and audios:
        return [str(p) for p in videos], [str(p) for p in audios]
    stand_ins = []
    for i in range(4):
        p = tmp / f"stand-in{i}.bin"
        p.write_bytes(b"x")
        stand_ins.append(str(p))
    return stand_ins, stand_ins


def write_manifest(tmp: Path, rows: int, seed: int = 0) -> tuple[Path, list[int]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    frames = np.clip(rng.lognormal(np.log(MEAN_FRAMES) - 0.18, 0.6, rows), 25, 1500).astype(int)
    videos, audios = media_files(tmp)
    tsv = tmp / "train.tsv"
    with open(tsv, "w", encoding="utf-8") as f:
        f.write("/\n")
        for i, n in enumerate(frames.tolist()):
            f.write(f"spk{i // 50:05d}/{i:06d}\t{videos[i % len(videos)]}\t{audios[i % len(audios)]}\t{n}\t{n * 640}\n")
    with open(tsv.with_suffix(".wrd"), "w", encoding="utf-8") as f:
        for i in range(rows):
            f.write("the quick brown fox jumps over the lazy dog\n")
    return tsv, frames.tolist()


def balance(lengths: list[int], max_frames: int, max_batch: int, replicas: int) -> dict:
    from avsrctl.data.sampler import FrameBucketSampler

    counts, padded, real = [], [], []
    for rank in range(replicas):
        s = FrameBucketSampler(lengths, max_frames, max_batch, seed=0, num_replicas=replicas, rank=rank)
        mine = list(s)
        counts.append(len(mine))
        padded.append(sum(len(b) * max(lengths[i] for i in b) for b in mine))
        real.append(sum(lengths[i] for b in mine for i in b))
    return {
        "counts": sorted(set(counts)),
        "padded_spread": max(padded) / min(padded) - 1,
        "real_spread": max(real) / min(real) - 1,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=150_000)
    ap.add_argument("--max-frames", type=int, default=6000)
    ap.add_argument("--max-batch", type=int, default=32)
    args = ap.parse_args()
    common.print_machine()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tsv, lengths = write_manifest(Path(tmp), args.rows)
        env = {**os.environ, "PYTHONPATH": str(common.REPO)}
        hours = sum(lengths) / 25 / 3600
        for training in (False, True):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(tsv), str(args.max_frames), str(args.max_batch), str(int(training))],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode:
                print(out.stderr, file=sys.stderr)
                return 1
            r = json.loads(out.stdout.strip().splitlines()[-1])
            what = "with torch + AVDataset" if training else "manifest + sampler"
            print(
                f"{what}: {r['rows']} rows ({hours:.0f} h), {r['batches']} batches: read+validate "
                f"{r['read_s']:.2f} s, lengths {r['dataset_s']:.2f} s, sampler epoch 0 {r['batches_s']:.2f} s; "
                f"RSS after imports {r['floor_mb']:.0f} MB, peak {r['peak_mb']:.0f} MB"
            )
            us_per_row = r["total_s"] / r["rows"] * 1e6
            added = r["peak_mb"] - r["floor_mb"]
            if training:  # torch alone is far above 300 MB: what counts is what the data adds
                common.record(
                    "manifest 150k in a training process: RSS added",
                    added,
                    "info",
                    None,
                    unit=" MB",
                    detail=f"{r['total_s']:.2f} s; import floor {r['floor_mb']:.0f} MB, peak {r['peak_mb']:.0f} MB",
                )
                continue
            common.record(
                "manifest 150k: load+validate+batches",
                r["total_s"],
                f"<= {TARGET_S:.0f} s",
                r["total_s"] <= TARGET_S,
                unit=" s",
                detail=f"{us_per_row:.1f} us/row; CPU {r['cpu_s']:.2f} s (load {os.getloadavg()[0]:.1f})",
            )
            common.record(
                "manifest 150k: peak RSS",
                r["peak_mb"],
                f"<= {TARGET_MB:.0f} MB",
                r["peak_mb"] <= TARGET_MB,
                unit=" MB",
                detail=f"{added:.0f} MB above the import floor, {added * 2**20 / r['rows']:.0f} B/row",
            )
            ok &= r["total_s"] <= TARGET_S and r["peak_mb"] <= TARGET_MB
        for replicas in (8, 64):
            start = time.perf_counter()
            b = balance(lengths, args.max_frames, args.max_batch, replicas)
            equal = len(b["counts"]) == 1
            seconds = time.perf_counter() - start
            common.record(
                f"sampler {replicas} ranks: padded-frame spread",
                b["padded_spread"] * 100,
                f"<= {TARGET_SPREAD:.0%}, equal counts",
                equal and b["padded_spread"] <= TARGET_SPREAD,
                unit=" %",
                detail=f"batches per rank {b['counts']}, real-frame spread "
                f"{b['real_spread']:.2%}, {seconds:.1f} s for all ranks",
            )
            ok &= equal and b["padded_spread"] <= TARGET_SPREAD
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
