"""Wall time of `avsrctl --help` in a fresh process: median of 5 runs, target < 0.5 s.

The CLI imports torch, transformers and friends only inside commands, so help must stay
instant. Exits 1 when the median misses the target.

    python benchmarks/bench_cli_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 0.5


def command() -> list[str]:
    """The installed `avsrctl` script beside this interpreter, else `python -m avsrctl`."""
    script = Path(sys.executable).with_name("avsrctl")
    return [str(script), "--help"] if script.is_file() else [sys.executable, "-m", "avsrctl", "--help"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cmd = command()
    subprocess.run(cmd, capture_output=True, check=True)  # warm the bytecode and page caches
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))}: median {median:.3f} s "
          f"over {args.runs} runs ({', '.join(f'{t:.3f}' for t in times)}); target < {TARGET_S} s")
    return 0 if median < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
