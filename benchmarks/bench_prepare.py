"""`avsrctl prepare` on real-size full-face clips: clips/s with --workers 2 vs 1, and the cost per clip.

    .venv/bin/python benchmarks/bench_prepare.py [--clips 200] [--workers 1 2] [--roi auto]

The source is CLIPS links to the four GRID clips in ../shared/media/video (360x288 full face,
25 fps, 3 s, with audio), each with a transcript: the same decoding, face/mouth cropping, mp4
and wav writing as real data of that size. Every run starts from an empty output folder and
runs the product (`prepare_corpus`, the library behind `avsrctl prepare`, with its worker
pool). Figures: clips/s per worker count, the ratio (issue 18: >= 1.7x for 2 workers on an idle
2-core machine; the load is printed, on a busy machine the ratio is lower), and the CPU seconds
per clip and per second of video (this process plus its workers and their ffmpeg children),
the input of the corpus-scale estimate in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import common

TARGET = 1.7
GRID_SECONDS = 3.0  # each GRID clip: 75 frames at 25 fps


def make_source(folder: Path, n: int) -> Path:
    clips = sorted((common.REPO.parent / "shared" / "media" / "video").glob("*.mpg"))
    if not clips:
        raise SystemExit("skipped: the GRID clips in ../shared/media/video are not here")
    for i in range(n):
        spk = folder / f"spk{i % 10:02d}"
        spk.mkdir(parents=True, exist_ok=True)
        clip = clips[i % len(clips)]
        os.symlink(clip, spk / f"clip{i:04d}.mpg")
        (spk / f"clip{i:04d}.txt").write_text("bin blue at f two now\n", encoding="utf-8")
    return folder


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--roi", default="auto")
    args = ap.parse_args()
    from avsrctl.data.prepare import PrepareOptions, prepare_corpus

    common.print_machine()
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = make_source(Path(tmp) / "src", args.clips)
        for workers in args.workers:
            out = Path(tmp) / f"out{workers}"
            load = os.getloadavg()[0]
            wall, cpu = time.perf_counter(), cpu_seconds()
            result = prepare_corpus(src, out, PrepareOptions(roi=args.roi), workers=workers)
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            n = result.prepared
            rates[workers] = n / wall
            print(
                f"--workers {workers}: {n} clips in {wall:.1f} s = {rates[workers]:.2f} clips/s; CPU {cpu / n:.2f} s "
                f"per clip = {cpu / n / GRID_SECONDS:.3f} CPU s per second of video; failed {len(result.failed)}; "
                f"load at start {load:.1f}, end {os.getloadavg()[0]:.1f}"
            )
            for kind in ("audio", "video"):
                size = sum(p.stat().st_size for p in (out / kind).iterdir())
                print(f"  {kind}/: {size / n / GRID_SECONDS / 1e3:.1f} kB per second of speech")
            common.record(
                f"prepare --workers {workers}: CPU per second of video",
                cpu / n / GRID_SECONDS,
                "info",
                None,
                unit=" s",
                detail=f"{rates[workers]:.2f} clips/s, {args.clips} GRID clips",
            )
            shutil.rmtree(out)
    ok = True
    if 1 in rates and 2 in rates:
        ratio = rates[2] / rates[1]
        ok = ratio >= TARGET
        common.record(
            "prepare --workers 2 vs 1: clips/s",
            ratio,
            f">= {TARGET}x on an idle 2-core machine",
            ok,
            unit="x",
            detail=f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
