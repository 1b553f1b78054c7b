"""The auxiliary articulation loss: the video stream predicts the rendered mouth's parameters."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from test_avsr import media_batch

from avsrctl.config import load_config
from avsrctl.models.articulation import ArticulationHead
from avsrctl.models.builder import build_model
from avsrctl.models.inspect import param_report

P = 7


def _targets(lengths=(75, 40), seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(len(lengths), max(lengths), P, generator=g)
    for b, n in enumerate(lengths):
        y[b, n:] = float("nan")
    return y


def test_the_loss_is_one_for_the_mean_zero_for_a_perfect_head_and_skips_unknown_frames():
    head = ArticulationHead(4)
    y = _targets((6, 3))
    lengths = torch.tensor([6, 3])
    known = ~torch.isnan(y).any(-1)
    mean = y[known].mean(0)
    with torch.no_grad():  # a head that always answers the batch mean: bias = mean, weight = 0
        head.weight.zero_()
        head.bias.copy_(mean)
    x = torch.randn(2, 6, 4)
    torch.testing.assert_close(head.loss(x, y, lengths), torch.tensor(1.0))
    # a perfect head: features that hold the targets, identity weights
    perfect = ArticulationHead(P)
    with torch.no_grad():
        perfect.weight.copy_(torch.eye(P))
        perfect.bias.zero_()
    assert perfect.loss(torch.nan_to_num(y), y, lengths).item() == pytest.approx(0.0, abs=1e-6)
    # frames past a row's length count for nothing, even when the target there is a number
    padded = torch.nan_to_num(y, nan=5.0)
    torch.testing.assert_close(perfect.loss(torch.nan_to_num(y), padded, lengths), torch.tensor(0.0))
    assert head.loss(x, torch.full_like(y, float("nan")), lengths) is None


@pytest.fixture(scope="module")
def lips_cfg():
    return load_config(
        "tiny",
        [
            "model.modality=video",
            "model.ctc_weight=0.5",
            "model.articulation_weight=2",
            "model.video_encoder.source=resnet",
            "model.video_encoder.width=32",
            "model.video_encoder.layers=1",
            "model.video_encoder.frozen=false",
        ],
    )


def test_the_head_is_built_only_when_weighted_and_is_inspected(lips_cfg):
    m = build_model(lips_cfg, {"video"})
    assert {n for n in m.trainable_state_dict() if n.startswith("articulation_head.")} == {
        "articulation_head.weight",
        "articulation_head.bias",
    }
    rows = {r.name: r for r in param_report(m, "video").rows}
    assert (
        rows["articulation head"].total == (m.video_connector.output_dim + 1) * P and rows["articulation head"].active
    )
    assert build_model(load_config("tiny"), {"video"}).articulation_head is None


@pytest.mark.parametrize("objective", ["ctc", "llm"])
def test_it_adds_to_either_objective_while_training_and_trains_the_lips(lips_cfg, objective):
    m = build_model(lips_cfg, {"video"}).train()
    batch = replace(media_batch(), articulation=_targets())
    out = m(batch, "video", objective)
    assert out.articulation is not None and math.isfinite(out.articulation.item()) and out.articulation.item() > 0
    base = out.ctc if objective == "ctc" else out.loss + 0.5 * out.ctc
    torch.testing.assert_close(out.objective, base + 2 * out.articulation)
    m.zero_grad()
    out.articulation.backward()
    assert m.video_encoder.stem.weight.grad.abs().sum() > 0 and m.articulation_head.weight.grad.abs().sum() > 0
    # no targets in the batch (recorded video), or evaluation: no articulation term
    assert m(media_batch(), "video", objective).articulation is None
    m.eval()
    with torch.no_grad():
        assert m(batch, "video", objective).articulation is None


def test_the_weight_is_checked(lips_cfg):
    with pytest.raises(Exception, match="articulation_weight"):
        load_config("tiny", ["model.articulation_weight=-1"])
    with pytest.raises(Exception, match="losses.articulation needs a video stream"):
        load_config("tiny", ["model.modality=audio", "model.articulation_weight=1"])
