"""`avsrctl transcribe CLIP` against calling faster-whisper directly on the same file.

Both run as fresh processes (interpreter start, imports, model load, decode, transcription,
writing the text), with the same model, device, compute type, beam and language, alternating
so that load from other processes hits both alike. Prints the median wall times and their
ratio; exits 1 when the CLI costs more than 1.2x the direct call.

    python benchmarks/bench_transcribe.py [CLIP] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.2

DIRECT = r"""
import sys
from pathlib import Path
from faster_whisper import WhisperModel
from avsrctl.baseline import default_model_path
model = WhisperModel(str(default_model_path()), device="cpu", compute_type="int8")
segments, _ = model.transcribe(sys.argv[1], language="en", beam_size=5)
Path(sys.argv[2]).write_text(" ".join(s.text.strip() for s in segments) + "\n")
"""


def default_clip(workdir: Path) -> Path:
    media = Path(os.environ.get("AVSRCTL_MEDIA", REPO.parent / "shared" / "media"))
    if (media / "audio" / "jfk.flac").is_file():
        return media / "audio" / "jfk.flac"
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        sys.exit("no clip given, no ../shared/media/audio/jfk.flac and no espeak-ng to make one")
    wav = workdir / "sentence.wav"
    text = "and so my fellow citizens ask not what your country can do for you ask what you can do for your country"
    subprocess.run([espeak, "-v", "en-us", "-s", "120", "-w", str(wav), text], check=True)
    return wav


def timed(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children such as ffmpeg)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-transcribe-") as tmp:
        tmp = Path(tmp)
        clip = args.clip or default_clip(tmp)
        cli = [
            sys.executable,
            "-m",
            "avsrctl",
            "transcribe",
            str(clip),
            "--device",
            "cpu",
            "--beam-size",
            "5",
            "--language",
            "en",
            "-o",
            str(tmp / "cli.txt"),
        ]
        direct = [sys.executable, "-c", DIRECT, str(clip), str(tmp / "direct.txt")]
        timed(cli), timed(direct)  # warm the page cache and the import caches for both
        cli_runs, direct_runs = [], []
        for _ in range(args.runs):
            cli_runs.append(timed(cli))
            direct_runs.append(timed(direct))
        same = (tmp / "cli.txt").read_text().split() == (tmp / "direct.txt").read_text().split()
    cli_s, direct_s = (statistics.median(w for w, _ in runs) for runs in (cli_runs, direct_runs))
    cli_cpu, direct_cpu = (statistics.median(c for _, c in runs) for runs in (cli_runs, direct_runs))
    ratio = cli_s / direct_s
    print(f"clip: {clip}")
    for name, wall, cpu, runs in (
        ("avsrctl transcribe", cli_s, cli_cpu, cli_runs),
        ("faster-whisper", direct_s, direct_cpu, direct_runs),
    ):
        print(f"{name:<19} median wall {wall:.2f} s, CPU {cpu:.2f} s  (wall {', '.join(f'{w:.2f}' for w, _ in runs)})")
    # CPU time is far less sensitive than wall time to other processes on a shared machine.
    print(f"wall ratio {ratio:.2f} (target <= {TARGET}); CPU ratio {cli_cpu / direct_cpu:.2f}; same text: {same}")
    common.record(
        "avsrctl transcribe / direct faster-whisper, wall",
        ratio,
        f"<= {TARGET}x",
        ratio <= TARGET and same,
        unit="x",
        detail=f"{cli_s:.2f} s vs {direct_s:.2f} s; CPU ratio {cli_cpu / direct_cpu:.2f}; same text: {same}",
    )
    return 0 if ratio <= TARGET and same else 1


if __name__ == "__main__":
    sys.exit(main())
