"""Peak memory of `avsrctl transcribe --checkpoint` against clip length: flat, not growing (issue 16).

    .venv/bin/python benchmarks/bench_transcribe_memory.py [--minutes 1 10 60] [--threads 1]

A talking-head clip of each length is made by looping the 3 s GRID sample shipped in
avsrctl/samples (ffmpeg `-stream_loop`, H.264 ultrafast + AAC, 360x288 at 25 fps), and an
untrained tiny checkpoint serving both streams is written first: memory flatness is about
the pipeline (decode, cut at pauses, crop, recognise window by window), not the model. Each
transcription runs in a fresh child process; its peak RSS is `ru_maxrss` from `os.wait4`.

Target: peak RSS of the longest clip / peak RSS of the shortest <= 1.3. Exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from bench_memory import avsrctl, peak_rss

TARGET_RATIO = 1.3
SAMPLE = common.REPO / "avsrctl" / "samples" / "grid_bbaf2n.mpg"  # 3.0 s, 360x288, one speaker facing the camera

MAKE_CHECKPOINT = r"""
import sys
import torch
from avsrctl.config import load_config
from avsrctl.models.builder import build_model
from avsrctl.checkpoint import save_checkpoint
cfg = load_config("tiny", [], {"model.modality": "both", "decode.max_new_tokens": 4})
torch.manual_seed(0)
print(save_checkpoint(sys.argv[1], "untrained", model=build_model(cfg), cfg=cfg, meta={"modality": "both", "step": 0}))
"""


def looped_clip(minutes: float, path: Path) -> Path:
    """`minutes` of the GRID sample played again and again, re-encoded as one mp4."""
    from avsrctl.data.media import ffmpeg_exe

    seconds = minutes * 60
    loops = math.ceil(seconds / 3.0)
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-stream_loop", str(loops)]
    args += ["-i", str(SAMPLE), "-t", f"{seconds:g}", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "30"]
    args += ["-c:a", "aac", "-b:a", "64k", str(path)]
    subprocess.run(args, check=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60], help="clip lengths to measure")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the children")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    common.print_machine(f"; children with OMP_NUM_THREADS={args.threads}")
    with tempfile.TemporaryDirectory(prefix="bench-transcribe-memory-") as tmp:
        tmp = Path(tmp)
        _, _, code = peak_rss([sys.executable, "-c", MAKE_CHECKPOINT, str(tmp / "ckpt")], env, tmp / "ckpt.log")
        if code != 0:
            print((tmp / "ckpt.log").read_text()[-2000:])
            return 1
        ckpt = tmp / "ckpt" / "untrained"
        print(f"\n{'minutes':>7} {'peak RSS MB':>12} {'wall s':>7} {'make s':>7}  command")
        results = {}
        for minutes in args.minutes:
            started = time.perf_counter()
            clip = looped_clip(minutes, tmp / f"talk-{minutes:g}min.mp4")
            made = time.perf_counter() - started
            cmd = avsrctl() + ["transcribe", str(clip), "--checkpoint", str(ckpt), "--device", "cpu"]
            cmd += ["-q", "-o", str(tmp / f"talk-{minutes:g}min.json")]
            rss, seconds, code = peak_rss(cmd, env, tmp / f"{minutes:g}.log")
            shown = " ".join(Path(c).name if i == 0 else c.replace(str(tmp), "TMP") for i, c in enumerate(cmd))
            print(f"{minutes:>7g} {rss:>12.0f} {seconds:>7.1f} {made:>7.1f}  {shown}", flush=True)
            if code != 0:
                print(f"  exit code {code}:\n{(tmp / f'{minutes:g}.log').read_text()[-2000:]}")
                return 1
            clip.unlink()
            results[minutes] = rss
    shortest, longest = min(results), max(results)
    ratio = results[longest] / results[shortest]
    ok = ratio <= TARGET_RATIO
    print(
        f"\npeak RSS {longest:g} min / {shortest:g} min = {ratio:.2f} (target <= {TARGET_RATIO}): "
        + ("ok" if ok else "FAILED")
    )
    detail = ", ".join(f"{m:g} min {rss:.0f} MB" for m, rss in results.items())
    common.record(
        "transcribe --checkpoint peak RSS, longest / shortest clip",
        ratio,
        f"<= {TARGET_RATIO}",
        ok,
        unit="x",
        detail=detail,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
