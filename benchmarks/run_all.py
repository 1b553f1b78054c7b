"""Run every benchmark and print one summary table (name, figure, target, pass/fail). `make bench`.

    .venv/bin/python benchmarks/run_all.py [--only NAME ...] [--markdown]

Each benchmark runs as its own process (so one's imports and caches do not favour another),
prints its full table as it goes, and appends its figures to a results file that this script
reads back. Figures marked `info` have no target and never fail the run. Exits 1 when any
gated figure misses its target or a benchmark fails to run.
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

HERE = Path(__file__).resolve().parent
# (label, script and arguments, time limit in seconds): cheapest first
BENCHMARKS = [
    ("cli-startup", ["bench_cli_startup.py"], 120),
    ("whisper-length", ["bench_whisper_length.py"], 300),
    ("transcribe", ["bench_transcribe.py"], 300),
    ("cache-tiny-audio", ["bench_feature_cache.py", "--config", "tiny", "--modality", "audio"], 300),
    ("cache-tiny-both", ["bench_feature_cache.py", "--config", "tiny", "--modality", "both"], 300),
    ("cache-offline-small", ["bench_feature_cache.py", "--config", "offline-small", "--modality", "audio"], 300),
    ("decoding", ["bench_decoding.py"], 400),
    ("memory", ["bench_memory.py"], 400),
    ("gpu-estimate", ["estimate_gpu_memory.py"], 120),
]


def run_one(label: str, args: list[str], limit: int, results: Path) -> tuple[list[dict], float, str | None]:
    """(recorded figures, seconds, problem or None) of one benchmark process."""
    before = results.read_text(encoding="utf-8").splitlines() if results.exists() else []
    print(f"\n=== {label}: python benchmarks/{' '.join(args)}", flush=True)
    env = {**os.environ, common.RESULTS_ENV: str(results), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    try:
        code = subprocess.run(
            [sys.executable, str(HERE / args[0]), *args[1:]], env=env, cwd=common.REPO, timeout=limit
        ).returncode
        problem = None
    except subprocess.TimeoutExpired:
        code, problem = None, f"no result within {limit} s"
    seconds = time.perf_counter() - start
    lines = results.read_text(encoding="utf-8").splitlines() if results.exists() else []
    rows = [json.loads(line) for line in lines[len(before) :]]
    if problem is None and code != 0 and not any(r["passed"] is False for r in rows):
        problem = f"exit code {code} without a failed figure (see its output above)"
    return rows, seconds, problem


def table(rows: list[tuple[str, dict]], markdown: bool) -> str:
    head = ("benchmark", "figure", "target", "result")
    body = []
    for label, r in rows:
        verdict = "info" if r["passed"] is None else ("PASS" if r["passed"] else "FAIL")
        figure = f"{common.fmt(r['figure'])}{r['unit']}" if r["figure"] is not None else "-"
        body.append((r["name"] if r["name"] else label, figure, r["target"], verdict))
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(out)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join([line.format(*head), line.format(*("-" * w for w in widths))] + [line.format(*b) for b in body])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help=f"labels to run: {', '.join(b[0] for b in BENCHMARKS)}")
    parser.add_argument("--markdown", action="store_true", help="print the summary as a Markdown table")
    args = parser.parse_args()
    chosen = [b for b in BENCHMARKS if not args.only or b[0] in args.only]
    unknown = set(args.only or ()) - {b[0] for b in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}")
    common.print_machine()
    summary: list[tuple[str, dict]] = []
    timings = []
    with tempfile.TemporaryDirectory(prefix="avsrctl-bench-") as tmp:
        results = Path(tmp) / "results.jsonl"
        for label, script, limit in chosen:
            rows, seconds, problem = run_one(label, script, limit, results)
            timings.append(f"{label} {seconds:.0f} s")
            summary += [(label, r) for r in rows]
            if problem:
                summary.append((label, {"name": label, "figure": None, "unit": "", "target": problem, "passed": False}))
    print("\n" + table(summary, args.markdown))
    print(f"\ntime per benchmark: {', '.join(timings)}")
    failed = [r["name"] for _, r in summary if r["passed"] is False]
    if failed:
        print(f"{len(failed)} figure(s) missed the target: {'; '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
