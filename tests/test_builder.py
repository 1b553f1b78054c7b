"""models/builder.py: one builder per component from its config section; AVSRModel gets every part,
the auxiliary losses' included, at construction, with their weights from model.losses."""

from __future__ import annotations

import inspect

import pytest
import torch

from avsrctl.config import ConnectorConfig, FusionConfig, load_config
from avsrctl.errors import ModelError
from avsrctl.models import builder
from avsrctl.models.avsr import AVSRModel
from avsrctl.models.connector import AudioConnector, VideoConnector
from avsrctl.models.fusion import WeightedFusion
from avsrctl.models.losses import objective

FUSION_SETTINGS = ("weight", "learned", "compression", "modality_dropout", "weighting", "gate_hidden", "min_lip_sync")


def test_the_fusion_takes_keyword_arguments_whose_defaults_are_the_configs():
    params = inspect.signature(WeightedFusion).parameters
    defaults = FusionConfig()
    for name in FUSION_SETTINGS:
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert params[name].default == getattr(defaults, name), name
    with pytest.raises(TypeError):
        WeightedFusion(8, 0.5)  # the weight by position is refused


def test_build_fusion_reads_its_section_and_the_sync_flag():
    section = FusionConfig(weight=0.3, learned=True, weighting="static", compression=3, modality_dropout=0.1)
    fusion = builder.build_fusion(section, dim=8, sync=False)
    assert (fusion.compression, fusion.modality_dropout, fusion.weighting, fusion.learned) == (3, 0.1, "static", True)
    assert fusion.sync is None and fusion.min_lip_sync == 0.0  # no classifier: no threshold
    torch.testing.assert_close(fusion.audio_weight(), torch.full((8,), 0.3))
    judged = builder.build_fusion(FusionConfig(min_lip_sync=0.4), dim=8, sync=True)
    assert judged.sync is not None and judged.min_lip_sync == 0.4 and judged.weighting == "dynamic"
    with pytest.raises(TypeError):
        builder.build_fusion(section, 8, False)  # keyword-only sizes


def test_build_connector_picks_the_streams_class_and_freezes_a_frozen_section():
    audio = builder.build_connector("audio", ConnectorConfig(compression=3, hidden=16), input_dim=8, output_dim=32)
    assert isinstance(audio, AudioConnector) and (audio.input_dim, audio.output_dim, audio.compression) == (8, 32, 3)
    assert all(p.requires_grad for p in audio.parameters())
    video = builder.build_connector("video", ConnectorConfig(hidden=16, frozen=True), input_dim=8, output_dim=32)
    assert isinstance(video, VideoConnector) and not any(p.requires_grad for p in video.parameters())


def test_the_auxiliary_parts_are_built_for_the_losses_model_losses_turns_on():
    cfg = load_config(
        "tiny",
        ["model.modality=video", "model.losses.ctc=0.5", "model.losses.articulation=2", "model.losses.lip_sync=0.25"],
    )
    trained = builder.build_model(cfg, training=True)
    assert trained.loss_weights == {"ctc": 0.5, "articulation": 2.0, "lip_sync": 0.25}
    assert sorted(trained.ctc_heads) == ["video"] and trained.articulation_head is not None
    assert trained.lip_sync is not None
    decoding = builder.build_model(cfg)  # the lip-sync loss and its partner are training only
    assert decoding.loss_weights == {"ctc": 0.5, "articulation": 2.0} and decoding.lip_sync is None
    fused = builder.build_model(load_config("tiny", ["model.losses.sync=0.5"]), {"audio", "video", "both"})
    assert fused.loss_weights == {"sync": 0.5} and fused.fusion.sync is not None
    plain = builder.build_model(load_config("tiny"), {"audio", "video", "both"})
    assert plain.loss_weights == {} and len(plain.ctc_heads) == 0 and plain.fusion.sync is None
    for method in ("add_articulation_head", "add_lip_sync"):
        assert not hasattr(AVSRModel, method)  # nothing grows after construction


def test_a_part_without_its_weight_or_a_weight_without_its_part_is_refused():
    built = builder.build_model(load_config("tiny", ["model.losses.ctc=0.5"]), {"video"})
    parts = dict(
        encoders={"video": built.video_encoder},
        connectors={"video": built.video_connector},
        fusion=None,
        llm=built.llm,
        tokenizer=built.tokenizer,
        prompt="x",
    )
    assert AVSRModel(**parts, ctc_heads=built.ctc_heads, loss_weights={"ctc": 0.5}).loss_weights == {"ctc": 0.5}
    with pytest.raises(ModelError, match="has a ctc part but the ctc loss weight is 0"):
        AVSRModel(**parts, ctc_heads=built.ctc_heads)
    with pytest.raises(ModelError, match="has no articulation part but the articulation loss weight is 1.0"):
        AVSRModel(**parts, loss_weights={"articulation": 1.0})
    with pytest.raises(ModelError, match="unknown auxiliary losses"):
        AVSRModel(**parts, loss_weights={"mouth": 1.0})
    with pytest.raises(ModelError, match="the model does not have"):
        AVSRModel(**parts, ctc_heads=builder.build_ctc_heads(["audio"], width=64), loss_weights={"ctc": 0.5})


def test_the_objective_adds_each_loss_times_its_weight_and_the_ctc_once():
    main, ctc, mouth, sync = (torch.tensor(v) for v in (2.0, 3.0, 5.0, 7.0))
    weights = {"ctc": 0.5, "articulation": 2.0, "sync": 0.25}
    losses = {"ctc": ctc, "articulation": mouth, "sync": sync}
    torch.testing.assert_close(objective(main, losses, weights, ctc_is_main=False), torch.tensor(2 + 1.5 + 10 + 1.75))
    torch.testing.assert_close(objective(ctc, losses, weights, ctc_is_main=True), torch.tensor(3 + 10 + 1.75))
    assert objective(ctc, {"ctc": ctc}, weights, ctc_is_main=True) is None  # nothing added: the main loss alone
    assert objective(None, losses, weights, ctc_is_main=False) is None


def test_the_output_names_each_auxiliary_loss():
    from test_avsr import media_batch

    cfg = load_config("tiny", ["model.modality=video", "model.losses.ctc=0.5", "model.losses.lip_sync=0.25"])
    model = builder.build_model(cfg, training=True).train()
    out = model(media_batch(), "video")
    assert set(out.losses) == {"ctc", "lip_sync"}
    assert out.ctc is out.losses["ctc"] and out.sync is out.losses["lip_sync"] and out.articulation is None
    torch.testing.assert_close(out.objective, out.loss + 0.5 * out.losses["ctc"] + 0.25 * out.losses["lip_sync"])
