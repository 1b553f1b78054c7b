"""The fusion's audio-visual agreement (models/sync.py): its loss, what it learns, and how it gates the lips."""

from __future__ import annotations

import math

import pytest
import torch
from test_avsr import media_batch

from avsrctl.config import load_config
from avsrctl.errors import ModelError
from avsrctl.models.builder import build_model
from avsrctl.models.fusion import WeightedFusion
from avsrctl.models.sync import LipSync, SyncScorer, windowed_mean


def test_windowed_mean_counts_only_real_frames():
    x = torch.tensor([[1.0, 1.0, 1.0, 5.0, 5.0], [2.0, 4.0, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out = windowed_mean(x, mask, window=3)
    torch.testing.assert_close(out[0], torch.tensor([1.0, 1.0, 7 / 3, 11 / 3, 5.0]))
    torch.testing.assert_close(out[1, :2], torch.tensor([3.0, 3.0]))  # the 9s past the length never count


def _pairs(B=12, T=60, D=16, seed=0):
    """Audio and video streams where each video frame is a fixed function of its audio frame."""
    mix = torch.randn(D, D, generator=torch.Generator().manual_seed(12345))  # the same "lips" for every batch
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(B, T, D, generator=g)
    video = audio @ mix + 0.3 * torch.randn(B, T, D, generator=g)
    return audio, video, torch.full((B,), T)


def test_it_learns_to_tell_in_sync_from_swapped_shifted_and_corrupted_video():
    torch.manual_seed(0)
    sync = SyncScorer(16, proj=16)
    audio, video, lengths = _pairs()
    r0 = sync(audio, video, lengths)
    assert r0.shape == (12, 60, 1) and float(r0.detach().mean()) < 0.1  # untrained: the lips have to earn a weight
    opt = torch.optim.Adam(sync.parameters(), lr=1e-2)
    first = None
    for step in range(150):
        a, v, n = _pairs(seed=step + 1)
        corrupted = torch.zeros(12, dtype=torch.bool)
        corrupted[:3] = True
        v[:3] = torch.randn_like(v[:3])  # corrupted clips show nothing of their audio
        loss = sync.loss(a, v, n, corrupted)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
    a, v, n = _pairs(seed=999)
    with torch.no_grad():
        own = sync(a, v, n).mean()
        other = sync(a, v.roll(1, 0), n).mean()
        shifted = sync(a, v.roll(15, 1), n).mean()
    assert own > 0.8 and other < 0.2 and shifted < 0.2


def test_the_loss_labels_corrupted_clips_out_of_sync():
    torch.manual_seed(0)
    sync = SyncScorer(16, proj=16)
    a, v, n = _pairs(B=4)
    clean = sync.loss(a, v, n)
    flagged = sync.loss(a, v, n, torch.tensor([True, True, True, True]))
    assert math.isfinite(clean.item()) and math.isfinite(flagged.item())
    # an untrained scorer says "out of sync" everywhere, so calling every clip corrupted costs less
    assert flagged < clean
    one = sync.loss(a[:1], v[:1], n[:1])  # a batch of one still has its shifted pair
    assert math.isfinite(one.item())


def test_fusion_drops_lips_that_disagree_and_reports_it():
    fusion = WeightedFusion(8, weight=0.5, weighting="dynamic", sync=True)
    audio, video = torch.randn(2, 30, 8), torch.randn(2, 30, 8)
    lengths = torch.tensor([30, 20])
    with torch.no_grad():
        fusion.sync.threshold.fill_(10.0)  # certain the lips are out of sync
        out = fusion(audio, video, lengths=lengths)
        torch.testing.assert_close(out.fused, audio)
        assert out.video_weight.max() < 1e-6 and out.lip_sync.max() < 1e-6
        fusion.sync.threshold.fill_(-10.0)  # certain they are in sync: the gate alone decides
        out = fusion(audio, video, lengths=lengths)
        torch.testing.assert_close(out.fused, 0.5 * audio + 0.5 * video)
        torch.testing.assert_close(out.lip_sync, torch.ones(2))
    assert WeightedFusion(8, weighting="dynamic").sync is None
    with pytest.raises(ModelError, match="dynamic"):
        WeightedFusion(8, weighting="static", sync=True)


class _FixedSync(torch.nn.Module):
    """Stands in for the classifier: every frame of utterance b gets in-sync probability p[b]."""

    def __init__(self, p):
        super().__init__()
        self.p = torch.tensor(p)

    def forward(self, audio, video, lengths):
        return self.p[:, None, None].expand(audio.shape[0], audio.shape[1], 1)


def test_outside_training_an_utterance_below_min_lip_sync_reads_its_audio_alone():
    fusion = WeightedFusion(8, weight=0.5, weighting="dynamic", sync=True, min_lip_sync=0.5)
    fusion.sync = _FixedSync([0.8, 0.3])  # the first utterance's lips agree with its voice, the second's do not
    audio, video = torch.randn(2, 30, 8), torch.randn(2, 30, 8)
    soft = [0.5 * audio[b] + 0.5 * (0.8, 0.3)[b] * video[b] + 0.5 * (1 - (0.8, 0.3)[b]) * audio[b] for b in (0, 1)]
    with torch.no_grad():
        out = fusion.eval()(audio, video)
        torch.testing.assert_close(out.fused[0], soft[0])  # above the threshold: the soft weights, as trained
        torch.testing.assert_close(out.fused[1], audio[1])  # below: the audio alone, exactly
        torch.testing.assert_close(out.video_weight, torch.tensor([0.4, 0.0]))
        torch.testing.assert_close(out.lip_sync, torch.tensor([0.8, 0.3]))  # still reported
        assert out.set_aside.tolist() == [False, True]
        out = fusion.train()(audio, video, drop_audio=torch.zeros(2, dtype=torch.bool))
        torch.testing.assert_close(out.fused[1], soft[1])  # training keeps every utterance's lips in the average
        assert out.set_aside is None
        off = fusion.eval()(audio, video, min_lip_sync=0.0)  # the call's threshold: every utterance's lips stay in
        torch.testing.assert_close(off.fused[1], soft[1])
        assert off.set_aside is None and fusion.min_lip_sync == 0.5  # the module keeps its own
        higher = fusion(audio, video, min_lip_sync=0.9)  # both below: both read from the audio alone
        assert higher.set_aside.tolist() == [True, True]
        torch.testing.assert_close(higher.fused, audio)
        with pytest.raises(ModelError, match="min_lip_sync"):
            fusion(audio, video, min_lip_sync=1.0)
    with pytest.raises(ModelError, match="min_lip_sync"):
        WeightedFusion(8, weighting="dynamic", sync=True, min_lip_sync=1.0)


@pytest.fixture(scope="module")
def sync_cfg():
    return load_config("tiny", ["model.modality=both", "model.fusion.sync_weight=0.5"])


def test_a_fused_model_trains_the_scorer_with_its_weight_and_checkpoints_it(sync_cfg):
    m = build_model(sync_cfg, {"audio", "video", "both"}).train()
    assert {n for n in m.trainable_state_dict() if n.startswith("fusion.sync.")} >= {
        "fusion.sync.audio.weight",
        "fusion.sync.video.weight",
        "fusion.sync.threshold",
    }
    out = m(media_batch(), "both")
    assert out.sync is not None and out.sync.item() > 0
    torch.testing.assert_close(out.objective, out.loss + 0.5 * out.sync)
    m.zero_grad()
    out.sync.backward()
    assert m.fusion.sync.video.weight.grad.abs().sum() > 0
    assert m(media_batch(), "audio").sync is None  # one stream: nothing to agree with
    m.eval()
    with torch.no_grad():
        assert m(media_batch(), "both").sync is None
    assert build_model(load_config("tiny", ["model.modality=both"]), {"both"}).fusion.sync is None


def test_an_utterance_whose_lips_are_set_aside_reads_exactly_as_in_audio_mode(sync_cfg):
    torch.manual_seed(0)
    cfg = sync_cfg.model_copy(deep=True)
    cfg.model.fusion.compression, cfg.model.audio_connector.compression = 2, 3  # the audio mode's own K
    model = build_model(cfg, {"audio", "video", "both"}).eval()
    batch = media_batch()
    with torch.no_grad():
        audio = model.build_inputs(batch, "audio", with_targets=False)
        model.fusion.sync.threshold.fill_(10.0)  # no agreement anywhere: every utterance's lips are set aside
        aside = model.llm_inputs(batch, "both", with_targets=False)
        assert bool(aside.fusion.set_aside.all())
        for x, y in zip((aside.embeds, aside.attention_mask, aside.labels), audio):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
        # a threshold of 0 for this call: nothing set aside, the fused tokens between both streams' markers
        kept = model.llm_inputs(batch, "both", with_targets=False, min_lip_sync=0.0)
        assert kept.fusion.set_aside is None and kept.embeds.shape != audio[0].shape
        assert model.fusion.min_lip_sync == 0.5  # the call's threshold did not change the model's
        model.fusion.sync.threshold.fill_(-10.0)  # full agreement: nothing set aside either
        assert not bool(model.llm_inputs(batch, "both", with_targets=False).fusion.set_aside.any())
        model.train()
        model.fusion.sync.threshold.fill_(10.0)
        assert model.llm_inputs(batch, "both").fusion.set_aside is None  # training never sets lips aside
        assert model(batch, "both").fusion.set_aside is None  # the output record carries it too


def test_min_lip_sync_reaches_the_fusion_only_with_the_classifier(sync_cfg):
    assert build_model(sync_cfg, {"both"}).fusion.min_lip_sync == 0.5
    off = load_config("tiny", ["model.modality=both", "model.fusion.sync_weight=0.5", "model.fusion.min_lip_sync=0"])
    assert build_model(off, {"both"}).fusion.min_lip_sync == 0.0
    assert build_model(load_config("tiny", ["model.modality=both"]), {"both"}).fusion.min_lip_sync == 0.0
    with pytest.raises(Exception, match="min_lip_sync"):
        load_config("tiny", ["model.fusion.min_lip_sync=1"])


def test_decoding_can_override_min_lip_sync_and_says_which_it_used(sync_cfg):
    from avsrctl.decoding import DecodingOptions, check_options_fit, lip_sync_setting
    from avsrctl.errors import UsageError

    model = build_model(sync_cfg, {"audio", "video", "both"})
    assert lip_sync_setting(model, "both") == {"min_lip_sync": 0.5} and lip_sync_setting(model, "audio") == {}
    options = DecodingOptions(min_lip_sync=0.2)
    check_options_fit(model, options)
    assert lip_sync_setting(model, "both", options) == {"min_lip_sync": 0.2}
    assert model.fusion.min_lip_sync == 0.5  # the decode's threshold lives in its options, not the model
    with pytest.raises(UsageError, match=r"--min-lip-sync must be in \[0, 1\)"):
        DecodingOptions(min_lip_sync=1.5)
    plain = build_model(load_config("tiny", ["model.modality=both"]), {"both"})
    with pytest.raises(UsageError, match="sync classifier"):
        check_options_fit(plain, options)
    check_options_fit(plain, DecodingOptions())  # no threshold asked for: any model
    assert lip_sync_setting(plain, "both") == {} and lip_sync_setting(plain, "both", options) == {}


def test_the_setting_is_checked():
    with pytest.raises(Exception, match="sync_weight"):
        load_config("tiny", ["model.fusion.sync_weight=-1"])
    with pytest.raises(Exception, match="losses.sync needs model.fusion.weighting=dynamic"):
        load_config("tiny", ["model.fusion.weighting=static", "model.fusion.sync_weight=1"])


# ---------------------------------------------------------------- a video model's lips against the voice


def test_a_video_model_built_for_training_trains_its_lips_against_a_frozen_audio_partner():
    cfg = load_config("tiny", ["model.modality=video", "model.lip_sync_weight=0.5"])
    m = build_model(cfg, training=True).train()
    assert m.modalities == ("video",) and m.audio_encoder is None  # the partner is no audio stream
    assert {n for n in m.trainable_state_dict() if n.startswith("lip_sync.")} == {
        "lip_sync.scorer.audio.weight",
        "lip_sync.scorer.video.weight",
        "lip_sync.scorer.threshold",
    }
    assert not m.lip_sync.partner.training  # frozen: eval mode inside a training model
    out = m(media_batch(), "video")
    assert out.sync is not None and out.sync.item() > 0
    torch.testing.assert_close(out.objective, out.loss + 0.5 * out.sync)
    m.zero_grad()
    out.sync.backward()
    assert m.video_connector.mlp[0].weight.grad.abs().sum() > 0  # the loss reaches the lip front-end
    assert all(p.grad is None for p in m.lip_sync.partner.parameters())
    m.eval()
    with torch.no_grad():
        assert m(media_batch(), "video").sync is None
    assert build_model(cfg).lip_sync is None  # decoding builds no partner
    from avsrctl.models.inspect import param_report

    rows = {r.name: r for r in param_report(m, "video").rows}
    head = rows["lip-sync head"]
    assert head.built and head.trainable == sum(p.numel() for p in m.lip_sync.scorer.parameters())
    assert head.total == head.trainable + sum(p.numel() for p in m.lip_sync.partner.parameters())
    assert "lip-sync head" not in {r.name for r in param_report(build_model(cfg), "video").rows}
    fused = load_config("tiny", ["model.modality=both", "model.lip_sync_weight=0.5"])
    assert build_model(fused, training=True).lip_sync is None  # a fused model has the fusion's own


def test_the_partner_features_are_averaged_in_pairs_to_the_video_rate():
    features = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)  # (B, 2T=6, D_a)
    head = LipSync(_Partner(features), video_dim=4)
    out = head.audio_stream(torch.zeros(2, 3 * 640), torch.tensor([3, 2]), frames=4)
    assert out.shape == (2, 4, 3)
    torch.testing.assert_close(out[:, :3], (features[:, 0::2] + features[:, 1::2]) / 2)
    assert out[:, 3].abs().sum() == 0  # a video frame past the audio is padding
    with pytest.raises(ModelError, match="losses.lip_sync needs each training batch's audio"):
        head.audio_stream(None, torch.tensor([3, 2]), frames=3)


class _Partner(torch.nn.Module):
    """An audio encoder that gives fixed 50 Hz features."""

    output_dim = 3

    def __init__(self, features: torch.Tensor):
        super().__init__()
        self.features = features
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.features
