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
from avsrctl.models.sync import SyncScorer, windowed_mean


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
        torch.testing.assert_close(fusion(audio, video, lengths=lengths), audio)
        assert fusion.last_video_weight.max() < 1e-6 and fusion.last_sync.max() < 1e-6
        fusion.sync.threshold.fill_(-10.0)  # certain they are in sync: the gate alone decides
        torch.testing.assert_close(fusion(audio, video, lengths=lengths), 0.5 * audio + 0.5 * video)
        torch.testing.assert_close(fusion.last_sync, torch.ones(2))
    assert WeightedFusion(8, weighting="dynamic").sync is None
    with pytest.raises(ModelError, match="dynamic"):
        WeightedFusion(8, weighting="static", sync=True)


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


def test_the_setting_is_checked():
    with pytest.raises(Exception, match="sync_weight"):
        load_config("tiny", ["model.fusion.sync_weight=-1"])
    with pytest.raises(Exception, match="sync_weight needs model.fusion.weighting=dynamic"):
        load_config("tiny", ["model.fusion.weighting=static", "model.fusion.sync_weight=1"])
