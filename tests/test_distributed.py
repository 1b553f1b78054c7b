from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

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
    model(torch.ones(1, 2)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    D.all_reduce_grads(ctx, list(model.parameters()))
    D.broadcast_params(ctx, list(model.parameters()))
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
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


def _run_bounded(cmd: list[str], env: dict, timeout: float) -> tuple[int | None, str]:
    """(exit code, stderr); (None, stderr) when it ran past `timeout`, after killing the launcher
    and its workers (their own process group: a hung worker must not outlive the test)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        return None, err


@pytest.mark.slow
def test_a_rank_whose_batch_fails_to_decode_neither_hangs_nor_changes_the_loss(tmp_path):
    """Rank 1's first batch is one clip that cannot be decoded: it has no forward or backward for
    that step, yet must take part in the step's collectives (with DDP's backward hooks it hung).
    The two steps must equal a single process trained on the surviving clips."""
    corpus = make_corpus(tmp_path / "corpus", n=12)
    for name in ("valid.tsv", "valid.wrd"):
        (corpus / name).unlink()  # no validation: only the planned training steps run
    lines = (corpus / "train.tsv").read_text().splitlines()
    root = Path(lines[0])
    video = root / lines[1 + 2].split("\t")[1]  # manifest index 2: the broken clip
    video.write_bytes(b"not a video at all")
    plan = {
        "2": [[[0, 1], [3]], [[2], [4]]],  # rank 0, rank 1: step 1 has data on rank 0 only
        "1": [[[0, 1], [3, 4]]],  # one process, the same steps without the broken clip
    }
    support = Path(__file__).with_name("ddp_support.py")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    args = [str(corpus), str(tmp_path / "ddp"), json.dumps(plan)]
    code, err = _run_bounded([*launch, str(support), *args], env, timeout=180)
    assert code is not None, "the 2-process run hung on a rank whose batch failed to decode"
    assert code == 0, err[-3000:]
    args[1] = str(tmp_path / "single")
    code, err = _run_bounded([sys.executable, str(support), *args], env, timeout=180)
    assert code == 0, err[-3000:]

    ddp, single = read_metrics(tmp_path / "ddp", "train"), read_metrics(tmp_path / "single", "train")
    assert [r["step"] for r in ddp] == [r["step"] for r in single] == [1, 2]
    for a, b in zip(ddp, single):
        assert a["tokens"] == b["tokens"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)
    summary = read_metrics(tmp_path / "ddp", "summary")[0]
    assert summary["skipped_media"] == 1  # the job's count, though the broken clip was on rank 1
