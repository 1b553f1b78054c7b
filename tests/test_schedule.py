from __future__ import annotations

import json
import math

import pytest
import torch

from avsrctl.errors import TrainingError
from avsrctl.training.schedule import build_optimizer, build_scheduler, optimizer_param_order, warmup_cosine


def lam(step, warmup=10, total=110, floor=0.1):
    return warmup_cosine(step, warmup_steps=warmup, total_steps=total, min_lr_ratio=floor)


def test_warmup_is_linear_and_never_zero():
    assert lam(0) == pytest.approx(0.1)
    assert lam(4) == pytest.approx(0.5)
    assert lam(9) == pytest.approx(1.0)
    assert all(lam(s) < lam(s + 1) for s in range(9))


def test_cosine_decays_to_the_floor_and_stays_there():
    assert lam(10) == pytest.approx(1.0)
    assert lam(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay
    assert lam(110) == pytest.approx(0.1)
    assert lam(500) == pytest.approx(0.1)
    decay = [lam(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_no_warmup_starts_at_peak():
    assert warmup_cosine(0, warmup_steps=0, total_steps=5, min_lr_ratio=0.0) == pytest.approx(1.0)
    assert warmup_cosine(5, warmup_steps=0, total_steps=5, min_lr_ratio=0.0) == pytest.approx(0.0)


def _params():
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 4)
    frozen = torch.nn.Linear(4, 4).requires_grad_(False)
    return [("lin.weight", lin.weight), ("lin.bias", lin.bias), ("frozen.weight", frozen.weight)]


def test_optimizer_takes_trainable_params_only_and_no_decay_on_vectors():
    named = _params()
    opt = build_optimizer(named, lr=1e-3, weight_decay=0.1)
    held = [p for g in opt.param_groups for p in g["params"]]
    assert len(held) == 2 and all(p.requires_grad for p in held)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert optimizer_param_order(named) == ["lin.weight", "lin.bias"]


def test_optimizer_without_trainable_params_is_an_error():
    frozen = [("w", torch.nn.Parameter(torch.zeros(2, 2), requires_grad=False))]
    with pytest.raises(TrainingError, match="no trainable parameters"):
        build_optimizer(frozen, lr=1e-3, weight_decay=0.0)


def test_scheduler_follows_the_schedule_and_its_state_is_json():
    opt = build_optimizer(_params(), lr=2e-3, weight_decay=0.0)
    sched = build_scheduler(opt, warmup_steps=2, total_steps=6, min_lr_ratio=0.0)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(1e-3) and seen[1] == pytest.approx(2e-3)
    assert seen[-1] == pytest.approx(2e-3 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))
    state = json.loads(json.dumps(sched.state_dict()))
    assert state["last_epoch"] == 6
