"""Peak resident memory of real runs, each in a fresh process: tiny training and offline-small decoding.

    .venv/bin/python benchmarks/bench_memory.py [--threads 1]

Each command runs as a child process; its peak RSS is `ru_maxrss` from `os.wait4` on that
child (the largest resident set it reached, the same figure `/usr/bin/time -v` prints as
"Maximum resident set size"). ffmpeg processes started by the child are reaped by it and
are far smaller, so the figure is the Python process's own peak.

    import     python -c "import torch, transformers, peft"   (the floor every command pays)
    train      avsrctl train --config tiny --data CORPUS --max-epochs 1   (48 utterances, both streams)
    decode     avsrctl decode --checkpoint CKPT --tsv CORPUS/test.tsv     (offline-small audio, 16
               utterances, one batch of 16, greedy, 32 new tokens); CKPT is an untrained
               offline-small checkpoint written first (Whisper tiny.en + SmolLM2-135M + LoRA)

The issue gives no memory targets; the budgets below are guard rails set at about 1.5x what
was measured on the reference machine (docs/BENCHMARKS.md), so a regression shows. Exits 1
when a run fails or exceeds its budget. For the GPU recipe's memory see estimate_gpu_memory.py.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

BUDGET_MB = {"import": 1300, "train": 1500, "decode": 2800}

MAKE_CHECKPOINT = r"""
import sys
import torch
from avsrctl.config import load_config
from avsrctl.models.builder import build_model
from avsrctl.checkpoint import save_checkpoint
cfg = load_config("offline-small", ["model.modality=audio"])
torch.manual_seed(cfg.train.seed)
model = build_model(cfg)
meta = {"modality": "audio", "step": 0, "epoch": 0}
print(save_checkpoint(sys.argv[1], "untrained", model=model, cfg=cfg, meta=meta))
"""


def peak_rss(args: list[str], env: dict[str, str], log: Path) -> tuple[float, float, int]:
    """(peak RSS in MB, wall seconds, exit code) of one child process."""
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=common.REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.perf_counter() - start, proc.returncode  # ru_maxrss is in KiB on Linux


def avsrctl() -> list[str]:
    script = Path(sys.executable).with_name("avsrctl")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "avsrctl"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the children (time only)")
    args = parser.parse_args()
    if not (common.have_tiny_en() and common.have_smollm2()):
        print("skipped: offline weights not installed (make weights)")
        return 0
    corpus = common.bench_corpus()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    common.print_machine(f"; children with OMP_NUM_THREADS={args.threads}")
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        tmp = Path(tmp)
        _, seconds, code = peak_rss([sys.executable, "-c", MAKE_CHECKPOINT, str(tmp / "ckpt")], env, tmp / "ckpt.log")
        if code != 0:
            print((tmp / "ckpt.log").read_text()[-2000:])
            return 1
        print(f"untrained offline-small checkpoint written in {seconds:.1f} s")
        runs = {
            "import": [sys.executable, "-c", "import torch, transformers, peft"],
            "train": avsrctl()
            + ["train", "--config", "tiny", "--data", str(corpus), "--output", str(tmp / "run"), "--max-epochs", "1"],
            "decode": avsrctl()
            + [
                "decode",
                "--checkpoint",
                str(tmp / "ckpt" / "untrained"),
                "--tsv",
                str(corpus / "test.tsv"),
                "--device",
                "cpu",
                "-o",
                str(tmp / "decoded"),
            ],
        }
        what = {
            "import": "import torch, transformers, peft",
            "train": "tiny training run (48 utts, both)",
            "decode": "offline-small decoding (16 utts, batch 16)",
        }
        print(f"\n{'run':<8} {'peak RSS MB':>12} {'budget MB':>10} {'wall s':>7}  command")
        results = {}
        for name, cmd in runs.items():
            rss, seconds, code = peak_rss(cmd, env, tmp / f"{name}.log")
            results[name] = rss
            shown = " ".join(
                Path(c).name if i == 0 else c.replace(str(tmp), "TMP").replace(str(corpus), "CORPUS")
                for i, c in enumerate(cmd)
            )
            print(f"{name:<8} {rss:>12.0f} {BUDGET_MB[name]:>10} {seconds:>7.1f}  {shown}")
            if code != 0:
                print(f"  exit code {code}:\n{(tmp / f'{name}.log').read_text()[-2000:]}")
                ok = False
        print()
        for name, rss in results.items():
            passed = rss <= BUDGET_MB[name]
            ok &= passed
            extra = f"{rss - results['import']:+.0f} MB over the imports" if name != "import" else ""
            common.record(
                f"peak RSS: {what[name]}",
                rss,
                f"<= {BUDGET_MB[name]} MB (guard rail)",
                passed,
                unit=" MB",
                detail=extra,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
