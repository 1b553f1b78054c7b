from __future__ import annotations

import pytest
import torch

from avsrctl.errors import ModelError
from avsrctl.models.fusion import FusionOutput, WeightedFusion


def _streams(B=3, T=12, D=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, D, generator=g), torch.randn(B, T, D, generator=g)


def test_fixed_weight_is_a_weighted_average():
    a, v = _streams()
    fused = WeightedFusion(6, weight=0.3, weighting="static").eval()(a, v).fused
    torch.testing.assert_close(fused, 0.3 * a + 0.7 * v)


def test_fusion_is_frame_aligned():
    a, v = _streams()
    fusion = WeightedFusion(6, weight=0.5, learned=True, weighting="static").eval()
    before = fusion(a, v).fused
    a2 = a.clone()
    a2[1, 5] += 10.0  # change one audio frame of one utterance
    after = fusion(a2, v).fused
    changed = (after - before).abs().sum(-1) > 0  # (B, T)
    expected = torch.zeros_like(changed)
    expected[1, 5] = True
    assert torch.equal(changed, expected)


def test_mismatched_lengths_are_refused_never_padded():
    a, _ = _streams(T=12)
    _, v = _streams(T=10)
    with pytest.raises(ModelError, match="frame-aligned"):
        WeightedFusion(6)(a, v)


def test_learned_weight_starts_at_the_config_value_stays_in_0_1_and_trains():
    fusion = WeightedFusion(6, weight=0.8, learned=True, weighting="static")
    torch.testing.assert_close(fusion.audio_weight(), torch.full((6,), 0.8))
    a, v = _streams()
    fusion(a, v).fused.sum().backward()
    assert fusion.logit.grad is not None and fusion.logit.grad.abs().sum() > 0
    for far in (50.0, -50.0, 1e4):  # a float32 sigmoid alone gives exactly 1.0 (or 0.0) here
        with torch.no_grad():
            fusion.logit.fill_(far)
        w = fusion.audio_weight()
        assert bool(((w > 0) & (w < 1)).all()), far
    edge = WeightedFusion(6, weight=1.0, learned=True, weighting="static")
    assert edge.audio_weight().max() < 1.0  # finite logit at the edge


def test_fixed_weight_has_no_parameters():
    assert list(WeightedFusion(6, weight=0.5, learned=False, weighting="static").parameters()) == []


def test_dropping_a_stream_uses_the_other_alone():
    a, v = _streams()
    fusion = WeightedFusion(6, weight=0.3, weighting="static").eval()
    drop_audio = torch.tensor([True, False, False])
    drop_video = torch.tensor([False, True, False])
    fused = fusion(a, v, drop_audio=drop_audio, drop_video=drop_video).fused
    torch.testing.assert_close(fused[0], v[0])  # renormalised: video weight 1, not 0.7
    torch.testing.assert_close(fused[1], a[1])
    torch.testing.assert_close(fused[2], 0.3 * a[2] + 0.7 * v[2])
    with pytest.raises(ModelError, match="both streams"):
        fusion(a, v, drop_audio=torch.tensor([True, False, False]), drop_video=torch.tensor([True, False, False]))


def test_modality_dropout_only_in_training_and_per_utterance():
    torch.manual_seed(0)
    B = 4000
    a = torch.zeros(B, 2, 1)
    v = torch.ones(B, 2, 1)
    fusion = WeightedFusion(1, weight=0.5, modality_dropout=0.4, weighting="static")
    fused = fusion.train()(a, v).fused[:, :, 0]  # (B, T): 0.5 kept both, 0 audio only, 1 video only
    assert torch.equal(fused[:, 0], fused[:, 1])  # one decision per utterance, not per frame
    only_audio = (fused[:, 0] == 0).float().mean().item()
    only_video = (fused[:, 0] == 1).float().mean().item()
    assert abs(only_audio - 0.2) < 0.03 and abs(only_video - 0.2) < 0.03
    assert torch.equal(fusion.eval()(a, v).fused, torch.full((B, 2, 1), 0.5))


def test_invalid_settings_are_rejected():
    with pytest.raises(ModelError, match="weight"):
        WeightedFusion(4, weight=1.5)
    with pytest.raises(ModelError, match="modality_dropout"):
        WeightedFusion(4, modality_dropout=1.0)


# ---------------------------------------------------------------------------- dynamic weighting


def test_dynamic_weight_starts_at_the_config_value_for_every_frame():
    a, v = _streams()
    fusion = WeightedFusion(6, weight=0.3, weighting="dynamic").eval()
    out = fusion(a, v)
    torch.testing.assert_close(out.fused, 0.3 * a + 0.7 * v)
    torch.testing.assert_close(out.video_weight, torch.full((3,), 0.7))


def test_dynamic_weight_stays_strictly_inside_0_1():
    a, v = _streams()
    fusion = WeightedFusion(6, weight=0.5, weighting="dynamic")
    for far in (60.0, -60.0):
        with torch.no_grad():
            fusion.gate[2].bias.fill_(far)
        w = fusion.audio_weight(a, v)
        assert bool(((w > 0) & (w < 1)).all()), far


def test_dynamic_weight_is_local_in_time():
    """A change at frame 5 moves the weights of frames 3..7 only (5-frame smoothing), never the far frames."""
    a, v = _streams(T=20)
    fusion = WeightedFusion(6, weight=0.5, weighting="dynamic").eval()
    torch.nn.init.normal_(fusion.gate[2].weight)  # a gate that reads its input
    before = fusion.audio_weight(a, v)[..., 0]
    a2 = a.clone()
    a2[1, 5] += 10.0
    changed = (fusion.audio_weight(a2, v)[..., 0] - before).abs() > 1e-7  # (B, T)
    assert changed[1, 3:8].all()
    assert not changed[1, :3].any() and not changed[1, 8:].any() and not changed[[0, 2]].any()


def test_dynamic_gate_learns_to_trust_the_clean_stream():
    """Half the utterances have clean audio and garbage video, half drowned audio and clean video:
    after training, the gate gives the audio most of the weight on the first half and little on the second."""
    g = torch.Generator().manual_seed(0)
    B, T, D = 64, 10, 8
    target = torch.randn(B, T, D, generator=g)
    bad_video = torch.arange(B) < B // 2
    noise = lambda: 3.0 * torch.randn(B, T, D, generator=g)  # noqa: E731
    audio = torch.where(bad_video[:, None, None], target, target + noise())
    video = torch.where(bad_video[:, None, None], 2.0 * torch.rand(B, T, D, generator=g) + 3.0, target)
    torch.manual_seed(0)
    fusion = WeightedFusion(D, weight=0.5, weighting="dynamic")
    opt = torch.optim.Adam(fusion.parameters(), lr=3e-2)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.mse_loss(fusion(audio, video).fused, target).backward()
        opt.step()
    fusion.eval()
    video_weight = fusion(audio, video).video_weight
    assert video_weight[bad_video].mean() < 0.15
    assert video_weight[~bad_video].mean() > 0.85


def test_mean_video_weight_counts_real_frames_only():
    a, v = _streams(B=2, T=10)
    fusion = WeightedFusion(6, weight=0.5, weighting="dynamic").eval()
    out = fusion(a, v, drop_audio=torch.tensor([True, False]), lengths=torch.tensor([4, 10]))
    torch.testing.assert_close(out.video_weight, torch.tensor([1.0, 0.5]))


def test_unknown_weighting_is_refused():
    with pytest.raises(ModelError, match="weighting"):
        WeightedFusion(6, weighting="adaptive")


def test_forward_returns_what_it_decided_and_keeps_nothing():
    """The fused stream and the per-utterance decisions come back in a frozen FusionOutput; the module
    holds no state from the call, so two calls cannot read each other's decisions."""
    a, v = _streams()
    fusion = WeightedFusion(6, weight=0.3, weighting="dynamic").eval()
    before = dict(vars(fusion))
    out = fusion(a, v)
    assert isinstance(out, FusionOutput) and out.fused.shape == a.shape and out.video_weight.shape == (3,)
    assert out.lip_sync is None and out.set_aside is None  # no sync classifier: nothing judged
    assert vars(fusion).keys() == before.keys()
    with pytest.raises(AttributeError):
        out.video_weight = None  # frozen
