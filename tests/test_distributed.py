from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from training_support import make_corpus, memoize_decoding, read_metrics, tiny_config

from avsrctl.errors import UsageError
from avsrctl.training import distributed as D
from avsrctl.training.run import run_training


def test_single_process_context_makes_every_helper_a_no_op(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx = D.init_distributed("cpu")
    assert ctx == D.DistContext() and ctx.is_main and not ctx.enabled
    assert D.all_reduce(ctx, [1.5, 2.0], "max") == [1.5, 2.0]
    assert D.gather_objects(ctx, {"a": 1}) == [{"a": 1}]
    assert D.broadcast_object(ctx, "x") == "x"
    model = torch.nn.Linear(2, 2)
    assert D.wrap_model(model, ctx, find_unused=False) is model and D.unwrap(model) is model
    D.barrier(ctx)


def test_bad_environment_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(UsageError, match="WORLD_SIZE='two'"):
        D.init_distributed("cpu")


@pytest.mark.slow
def test_two_process_gloo_run_matches_accumulation_and_only_rank0_writes(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "corpus", n=16)
    out = tmp_path / "ddp"
    common = [
        "--config",
        "tiny",
        "--modality",
        "video",
        "--data",
        str(corpus),
        "--max-epochs",
        "1",
        "--set",
        "data.max_frames_per_batch=300",
        "--set",
        "decode.max_new_tokens=6",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "avsrctl",
            "train",
            *common,
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == [str(out / "final")]  # rank 1 printed nothing
    err = " ".join(proc.stderr.split())  # rich wraps long lines
    assert "2 processes" in err and err.count("training video on") == 1  # rank 1 logged nothing
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["type"] == "train"]
    assert steps == sorted(set(steps)) and len(steps) >= 1  # one writer: no duplicated records
    assert sum(r["type"] == "summary" for r in records) == 1
    assert {p.name for p in out.iterdir() if p.is_dir()} == {"best", "epoch-0001", "final"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]

    # Two ranks with one micro-batch each = one process accumulating the same two micro-batches.
    memoize_decoding(monkeypatch)
    single = tmp_path / "single"
    cfg = tiny_config(corpus, single, train__max_epochs=1, train__grad_accum=2)
    run_training(cfg, modality="video")
    ddp_first = [r for r in records if r["type"] == "train"][0]
    one_first = read_metrics(single, "train")[0]
    assert ddp_first["tokens"] == one_first["tokens"]
    assert ddp_first["loss"] == pytest.approx(one_first["loss"], rel=1e-5)
    assert ddp_first["grad_norm"] == pytest.approx(one_first["grad_norm"], rel=1e-4)
