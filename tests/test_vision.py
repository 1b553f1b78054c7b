"""Vision encoder: per-frame features, padding, chunking, normalisation, freezing, sources."""

from __future__ import annotations

import json

import pytest
import torch

from avsrctl.config import VideoEncoderConfig
from avsrctl.errors import ModelError
from avsrctl.models.vision import CLIP_MEAN, CLIP_STD, VisionEncoder, build_video_encoder

TINY = dict(source="random", image_size=32, patch_size=8, width=64, layers=2, heads=2)  # the tiny preset


def encoder(seed: int = 0, **overrides) -> VisionEncoder:
    torch.manual_seed(seed)
    return build_video_encoder(VideoEncoderConfig(**{**TINY, **overrides}))


def video(b: int = 2, t: int = 6, side: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 3, side, side), dtype=torch.uint8, generator=g)


def test_shapes_width_and_identity():
    enc = encoder()
    out = enc(video(), torch.tensor([6, 4]))
    assert out.shape == (2, 6, 64) and out.dtype == torch.float32
    assert enc.output_dim == 64
    assert enc.identity.startswith("random:clip:s32-p8-w64-l2-h2:") and enc.identity.endswith(":cls")
    assert encoder().identity == enc.identity and encoder(seed=1).identity != enc.identity


def test_padding_rows_are_zero_and_real_rows_are_not():
    enc = encoder()
    clip = video()
    out = enc(clip, torch.tensor([6, 3]))
    assert torch.all(out[1, 3:] == 0)
    assert torch.all(out[0].abs().sum(-1) > 0) and torch.all(out[1, :3].abs().sum(-1) > 0)
    # Padding frames never reach the tower: garbage there changes nothing.
    clip[1, 3:] = 255
    torch.testing.assert_close(enc(clip, torch.tensor([6, 3])), out, atol=0, rtol=0)


def test_each_frame_is_encoded_independently_of_its_batch():
    enc = encoder()
    clip = video()
    out = enc(clip, torch.tensor([6, 3]))
    alone = enc(clip[1:, :3], torch.tensor([3]))
    torch.testing.assert_close(out[1:, :3], alone, atol=1e-5, rtol=0)


def test_frame_chunking_gives_the_same_features():
    clip, lengths = video(b=3, t=5), torch.tensor([5, 2, 4])
    one_chunk = encoder(frame_batch=256)(clip, lengths)
    chunked = encoder(frame_batch=3)(clip, lengths)  # 11 real frames in chunks of 3, 3, 3, 2
    torch.testing.assert_close(chunked, one_chunk, atol=1e-5, rtol=0)


def test_cls_and_mean_features_differ():
    clip, lengths = video(), torch.tensor([6, 4])
    cls, mean = encoder(feature="cls"), encoder(feature="mean")
    a, b = cls(clip, lengths), mean(clip, lengths)
    assert a.shape == b.shape
    assert (a[0] - b[0]).abs().max() > 1e-2
    # 'mean' is the patch tokens after CLIP's final layer norm, averaged.
    with torch.no_grad():
        hidden = mean.tower(pixel_values=mean.normalise(clip[0])).last_hidden_state  # (T, 1 + P, D)
        expected = getattr(mean.tower, "vision_model", mean.tower).post_layernorm(hidden[:, 1:]).mean(dim=1)
    torch.testing.assert_close(b[0], expected, atol=1e-5, rtol=0)


def test_uint8_frames_are_resized_and_normalised():
    enc = encoder()
    white = torch.full((2, 3, 40, 40), 255, dtype=torch.uint8)
    x = enc.normalise(white)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    expected = (1.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(x[0, :, 5, 5], expected, atol=1e-5, rtol=0)
    # A half-black, half-white frame: antialiased resizing keeps values within [black, white].
    split = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    split[..., 32:] = 255
    y = enc.normalise(split)
    lo = (0.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.all(y >= lo.view(1, 3, 1, 1) - 1e-5) and torch.all(y <= expected.view(1, 3, 1, 1) + 1e-5)
    with pytest.raises(ModelError, match="uint8"):
        enc(video().float(), torch.tensor([6, 6]))
    with pytest.raises(ModelError, match=r"\(B, T, 3, H, W\)"):
        enc(video()[:, :, :1], torch.tensor([6, 6]))


def test_frozen_tower_stays_frozen_and_in_eval():
    enc = encoder()
    assert all(not p.requires_grad for p in enc.parameters())
    parent = torch.nn.ModuleDict({"video": enc, "head": torch.nn.Linear(64, 2)})
    parent.train()
    assert parent["head"].training and not enc.training and not enc.tower.training
    with torch.enable_grad():
        assert not enc(video(), torch.tensor([6, 4])).requires_grad


def test_trainable_tower_gets_gradients_and_follows_train():
    enc = encoder(frozen=False)
    assert all(p.requires_grad for p in enc.tower.parameters())
    torch.nn.Sequential(enc).train()
    assert enc.training and enc.tower.training
    out = enc(video(), torch.tensor([6, 2]))
    out.pow(2).sum().backward()
    grad = getattr(enc.tower, "vision_model", enc.tower).embeddings.patch_embedding.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_hf_source_from_local_folder(tmp_path):
    reference = encoder()
    reference.tower.save_pretrained(tmp_path / "clip")
    loaded = build_video_encoder(VideoEncoderConfig(source="hf", name=str(tmp_path / "clip"), image_size=32))
    assert loaded.identity.startswith("hf:") and loaded.output_dim == 64
    clip, lengths = video(), torch.tensor([6, 5])
    torch.testing.assert_close(loaded(clip, lengths), reference(clip, lengths), atol=1e-5, rtol=0)
    with pytest.raises(ModelError, match="expects 32x32"):
        build_video_encoder(VideoEncoderConfig(source="hf", name=str(tmp_path / "clip"), image_size=96))


def test_hf_source_offline_is_a_model_error():
    with pytest.raises(ModelError, match="cannot load vision model"):
        build_video_encoder(VideoEncoderConfig(source="hf", name="openai/clip-nonexistent-test", image_size=32))


@pytest.fixture(scope="module")
def open_clip_dir(tmp_path_factory):
    """A tiny open_clip CLIP saved in open_clip's local-dir layout (config json + safetensors)."""
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    model_cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }
    torch.manual_seed(0)
    model = open_clip.CLIP(**model_cfg).eval()
    folder = tmp_path_factory.mktemp("open_clip")
    save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    return folder, model


def test_open_clip_cls_is_the_image_embedding_before_projection(open_clip_dir):
    folder, model = open_clip_dir
    enc = build_video_encoder(VideoEncoderConfig(source="open_clip", name=f"local-dir:{folder}", image_size=32))
    assert enc.output_dim == 64 and enc.identity.startswith(f"open_clip:local-dir:{folder}:")
    assert enc.identity.endswith(":cls")
    clip = video(b=1, t=3)
    out = enc(clip, torch.tensor([3]))
    with torch.no_grad():
        image_embedding = model.encode_image(enc.normalise(clip[0]))  # (T, 32) with the projection
    torch.testing.assert_close(out[0] @ model.visual.proj, image_embedding, atol=1e-5, rtol=0)
    mean = build_video_encoder(
        VideoEncoderConfig(source="open_clip", name=f"local-dir:{folder}", image_size=32, feature="mean")
    )
    assert mean(clip, torch.tensor([3])).shape == (1, 3, 64)
    assert (mean(clip, torch.tensor([3])) - out).abs().max() > 1e-2


def test_open_clip_missing_weights_is_a_model_error():
    pytest.importorskip("open_clip")
    with pytest.raises(ModelError, match="cannot load open_clip model"):
        build_video_encoder(VideoEncoderConfig(source="open_clip", name="no-such-arch/openai", image_size=32))


# --------------------------------------------------------------------------- 'resnet' lip front-end

LIP = dict(source="resnet", image_size=32, width=32, layers=1, frozen=False)


def lip_encoder(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_video_encoder(VideoEncoderConfig(**{**LIP, **overrides}))


def test_lip_encoder_shapes_identity_and_training():
    enc = lip_encoder()
    out = enc(video(t=8), torch.tensor([8, 5]))
    assert out.shape == (2, 8, 32) and out.dtype == torch.float32 and enc.output_dim == 32
    assert enc.identity.startswith("random:resnet:s32-w32-l1-t2:")
    assert lip_encoder().identity == enc.identity and lip_encoder(seed=1).identity != enc.identity
    assert torch.all(out[1, 5:] == 0) and torch.all(out[1, :5].abs().sum(-1) > 0)
    out.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())
    frozen = lip_encoder(frozen=True)
    assert not any(p.requires_grad for p in frozen.parameters()) and not frozen.train().training


def test_lip_encoder_rows_do_not_depend_on_batch_padding():
    enc = lip_encoder().eval()
    clip = video(b=2, t=9)
    with torch.no_grad():
        batched = enc(clip, torch.tensor([9, 4]))
        alone = enc(clip[1:, :4], torch.tensor([4]))
        garbage = clip.clone()
        garbage[1, 4:] = 255  # what lies past a row's length must not matter
        again = enc(garbage, torch.tensor([9, 4]))
    torch.testing.assert_close(batched[1, :4], alone[0])
    torch.testing.assert_close(again, batched)


@pytest.mark.parametrize("temporal_layers, reach", [(0, 2), (2, 6)])
def test_lip_encoder_sees_as_far_as_its_stem_and_temporal_convs_reach(temporal_layers, reach):
    enc = lip_encoder(temporal_layers=temporal_layers).eval()  # the stem reaches 2 frames, each conv 2 more
    clip = video(b=1, t=20)
    lengths = torch.tensor([20])
    with torch.no_grad():
        base = enc(clip, lengths)
        changed = clip.clone()
        changed[0, 10] = 255 - changed[0, 10]
        moved = enc(changed, lengths)
    for t in range(20):
        seen = not torch.allclose(moved[0, t], base[0, t])
        assert seen == (abs(t - 10) <= reach), (t, seen)


def test_lip_encoder_reads_grey_frames():
    enc = lip_encoder().eval()
    clip = video(b=1, t=6)
    grey = (clip.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 1, 3, 1, 1)).sum(2, keepdim=True)
    as_grey = grey.round().clamp(0, 255).to(torch.uint8).expand(-1, -1, 3, -1, -1).contiguous()
    a, b = enc.normalise(clip[0]), enc.normalise(as_grey[0])
    assert a.shape == (6, 1, 32, 32)
    torch.testing.assert_close(a, b, atol=1.01 / 255 / enc.STD, rtol=0)  # the colour is gone, only rounding differs


def test_lip_encoder_width_must_be_a_multiple_of_eight():
    with pytest.raises(ValueError, match="multiple of 8"):
        VideoEncoderConfig(**{**LIP, "width": 36})


def test_lip_encoder_utterance_norm_removes_each_clips_mean_over_its_real_frames():
    plain = lip_encoder(temporal_layers=0).eval()
    normed = lip_encoder(temporal_layers=0, utterance_norm=True).eval()
    assert normed.identity.startswith("random:resnet:s32-w32-l1-t0-un:") and normed.identity != plain.identity
    clip, lengths = video(b=2, t=9), torch.tensor([9, 4])
    with torch.no_grad():
        raw, out = plain(clip, lengths), normed(clip, lengths)  # same seed, same weights
        alone = normed(clip[1:, :4], torch.tensor([4]))
    torch.testing.assert_close(out[0], raw[0] - raw[0].mean(0))
    torch.testing.assert_close(out[1, :4], raw[1, :4] - raw[1, :4].mean(0))
    assert torch.all(out[1, 4:] == 0)  # padding stays zero and does not enter the mean
    torch.testing.assert_close(out[1, :4], alone[0])


def test_lip_encoder_utterance_scale_gives_every_clip_unit_root_mean_square():
    centred = lip_encoder(temporal_layers=0, utterance_norm=True).eval()
    scaled = lip_encoder(temporal_layers=0, utterance_norm=True, utterance_scale=True).eval()
    assert scaled.identity.startswith("random:resnet:s32-w32-l1-t0-un-us:")
    clip, lengths = video(b=2, t=9), torch.tensor([9, 4])
    with torch.no_grad():
        ref, out = centred(clip, lengths), scaled(clip, lengths)  # same seed, same weights
        alone = scaled(clip[1:, :4], torch.tensor([4]))
        still = scaled(clip[:1, :1].expand(1, 5, -1, -1, -1), torch.tensor([5]))
    for b, n in ((0, 9), (1, 4)):
        rms = ref[b, :n].pow(2).mean().sqrt()
        assert rms > 0.05  # the check below means something: the clip does move
        torch.testing.assert_close(out[b, :n], ref[b, :n] / rms, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out[b, :n].pow(2).mean(), torch.tensor(1.0), rtol=1e-4, atol=1e-5)
    assert torch.all(out[1, 4:] == 0)  # padding stays zero and does not enter the scale
    torch.testing.assert_close(out[1, :4], alone[0])
    assert torch.isfinite(still).all()  # a clip that never moves: only the stem's edge frames differ
    with pytest.raises(ValueError, match="utterance_scale .* needs utterance_norm"):
        VideoEncoderConfig(**LIP, utterance_scale=True)


def test_utterance_norm_needs_the_lip_encoder():
    with pytest.raises(ValueError, match="utterance_norm needs source 'resnet'"):
        VideoEncoderConfig(source="random", utterance_norm=True)
