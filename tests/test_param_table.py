from __future__ import annotations

import io

import pytest
import torch
from rich.console import Console
from training_support import FakeAVSR, fake_batch

from avsrctl.training.param_table import OTHER, ParamUpdateTracker, component_of, render_table
from avsrctl.training.schedule import build_optimizer


@pytest.mark.parametrize(
    "name, component",
    [
        ("audio_connector.proj.0.weight", "audio connector"),
        ("module.video_connector.mlp.2.bias", "video connector"),
        ("fusion.weight", "fusion"),
        ("llm.base_model.model.layers.0.self_attn.q_proj.lora_A.default.weight", "LoRA adapters"),
        ("llm.model.embed_tokens.weight", "LLM base"),
        ("ctc_heads.video.weight", "video CTC head"),
        ("marker_embeddings", "marker embeddings"),
        ("audio_encoder.encoder.conv1.weight", "audio encoder"),
        ("video_encoder.tower.proj", "video encoder"),
        ("something_new.weight", OTHER),
    ],
)
def test_component_of(name, component):
    assert component_of(name) == component


def _one_step(model, tracker, lr=1e-2):
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = build_optimizer(trainable, lr=lr, weight_decay=0.0)
    model(fake_batch(), "both").loss.backward()
    tracker.before_step()
    opt.step()
    return tracker.after_step(lr)


def test_updates_only_in_trainable_components():
    torch.manual_seed(0)
    model = FakeAVSR(dropout=0.0)
    stats = {s.component: s for s in _one_step(model, ParamUpdateTracker(model))}
    assert set(stats) == {
        "LoRA adapters",
        "audio connector",
        "video connector",
        "fusion",
        "audio encoder",
        "video encoder",
        "LLM base",
    }
    for comp in ("LoRA adapters", "audio connector", "video connector", "fusion"):
        s = stats[comp]
        assert s.trainable and s.grad_norm > 0 and 0 < s.update_ratio < 0.5 and s.lr == pytest.approx(1e-2)
    for comp in ("audio encoder", "video encoder", "LLM base"):
        s = stats[comp]
        assert not s.trainable and s.update_ratio == 0 and s.grad_norm == 0 and s.param_norm > 0


def test_a_frozen_part_that_moves_is_flagged():
    torch.manual_seed(0)
    model = FakeAVSR(dropout=0.0)
    tracker = ParamUpdateTracker(model)
    tracker.before_step()
    with torch.no_grad():
        model.audio_encoder.proj.weight.mul_(2.0)  # something updated a frozen weight by mistake
    stats = {s.component: s for s in tracker.after_step(1e-3)}
    assert stats["audio encoder"].update_ratio > 0.5
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(render_table(list(stats.values()), 7))
    text = out.getvalue()
    assert "step 7" in text and "audio encoder" in text and "frozen" in text


def test_update_ratio_is_the_relative_change_of_that_step():
    torch.manual_seed(0)
    model = FakeAVSR(dropout=0.0)
    before = model.fusion.weight.detach().clone()
    tracker = ParamUpdateTracker(model)
    stats = {s.component: s for s in _one_step(model, tracker)}
    expected = float((model.fusion.weight.detach() - before).norm() / before.norm())
    assert stats["fusion"].update_ratio == pytest.approx(expected, rel=1e-5)
    rec = stats["fusion"].to_record(3)
    assert rec["type"] == "params" and rec["step"] == 3 and rec["component"] == "fusion"
