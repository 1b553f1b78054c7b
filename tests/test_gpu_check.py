"""benchmarks/gpu_check.py at tiny sizes on the CPU: the path the GPU check runs, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_gpu_check_runs_the_training_decode_and_ddp_path_at_tiny_sizes():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--json", "--steps", "6", "--utterances", "12"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout)
    assert figures["device"] == "cpu" and figures["steps"] == 6
    assert figures["steps_per_s"] > 0 and figures["decode_utt_per_s"] > 0
    # on the CPU the tiny preset's float32 request is what train builds and decode loads
    assert figures["dtypes_train"]["LLM base"] == figures["dtypes_decode"]["LLM base"] == "float32"
    assert figures["dtypes_train"]["LoRA adapters"] == "float32"
    assert figures["ddp"]["ok"] and figures["ddp"]["backend"] == "gloo" and figures["ddp"]["steps"] == 4
