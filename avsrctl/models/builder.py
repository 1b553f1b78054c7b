"""The one place a config becomes modules: encoders, connectors, fusion, LLM -> AVSRModel.

Each component is initialised under its own fixed seed (cfg.train.seed + a per-component
offset), so a component's random weights do not depend on which other components were
built before it. That matters beyond tidiness: frozen random weights (a 'random' encoder or
LLM, the resized vocabulary rows) are not stored in checkpoints, so `load_checkpoint` must
rebuild them bit for bit from config.yaml, whatever modalities it asks for.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from avsrctl.config import AudioEncoderConfig, Config, VideoEncoderConfig
from avsrctl.errors import UsageError
from avsrctl.models.avsr import AVSRModel
from avsrctl.models.connector import AudioConnector, VideoConnector
from avsrctl.models.fusion import WeightedFusion
from avsrctl.models.llm import build_llm

MODALITY_STREAMS = {"audio": ("audio",), "video": ("video",), "both": ("audio", "video")}
# Seed offsets per component (added to cfg.train.seed). Fixed forever: changing one changes the
# frozen random weights that old checkpoints were trained against.
_SEED_OFFSET = {
    "llm": 0,
    "audio_encoder": 101,
    "video_encoder": 202,
    "audio_connector": 303,
    "video_connector": 404,
    "fusion": 505,
    "ctc_heads": 606,
    "articulation_head": 707,
    "lip_sync": 808,
}


def build_audio_encoder(cfg: AudioEncoderConfig):
    """The Whisper encoder a config section names (see avsrctl/models/whisper.py)."""
    from avsrctl.models.whisper import build_audio_encoder as build

    return build(cfg)


def build_video_encoder(cfg: VideoEncoderConfig):
    """The vision encoder a config section names (see avsrctl/models/vision.py)."""
    from avsrctl.models.vision import build_video_encoder as build

    return build(cfg)


def resolve_modalities(cfg: Config, modalities: Iterable[str] | None) -> set[str]:
    """The modalities to serve: the config's model.modality when None; checks the names."""
    wanted = {cfg.model.modality} if modalities is None else set(modalities)
    bad = sorted(wanted - set(MODALITY_STREAMS))
    if bad or not wanted:
        raise UsageError(f"unknown modalities {bad or '(none)'}; expected audio, video and/or both")
    return wanted


def _seed(cfg: Config, component: str) -> None:
    torch.manual_seed(cfg.train.seed + _SEED_OFFSET[component])


def build_model(
    cfg: Config,
    modalities: Iterable[str] | None = None,
    device: str | torch.device = "cpu",
    *,
    training: bool = False,
    llm_shapes: dict | None = None,
) -> AVSRModel:
    """Config -> AVSRModel serving `modalities` (default: the one cfg.model.modality names).

    'both' needs the audio and video streams plus fusion; inspect-params asks for all three.
    `training` also builds what only training uses: a video model's lip-sync loss and its frozen
    audio partner (model.lip_sync_weight). Two builds of the same config are identical (seeded
    per component). `llm_shapes` builds the LLM's architecture without loading it (`build_architecture`).
    """
    wanted = resolve_modalities(cfg, modalities)
    streams = sorted({s for m in wanted for s in MODALITY_STREAMS[m]})
    m = cfg.model
    _seed(cfg, "llm")
    llm, tokenizer = build_llm(m.llm, device=device, shapes=llm_shapes)
    d_llm = llm.get_input_embeddings().embedding_dim
    encoders, connectors = {}, {}
    if "audio" in streams:
        _seed(cfg, "audio_encoder")
        encoders["audio"] = build_audio_encoder(m.audio_encoder)
        _seed(cfg, "audio_connector")
        connectors["audio"] = AudioConnector(
            encoders["audio"].output_dim, m.audio_connector.hidden, d_llm, m.audio_connector.compression
        )
    if "video" in streams:
        _seed(cfg, "video_encoder")
        encoders["video"] = build_video_encoder(m.video_encoder)
        _seed(cfg, "video_connector")
        connectors["video"] = VideoConnector(
            encoders["video"].output_dim, m.video_connector.hidden, d_llm, m.video_connector.compression
        )
    for stream, connector in connectors.items():
        if getattr(m, f"{stream}_connector").frozen:  # kept out of the optimiser; a checkpoint it came from restores it
            connector.requires_grad_(False)
    fusion = None
    if "both" in wanted:
        _seed(cfg, "fusion")
        f = m.fusion
        fusion = WeightedFusion(
            d_llm,
            f.weight,
            f.learned,
            f.compression,
            f.modality_dropout,
            f.weighting,
            f.gate_hidden,
            sync=f.sync_weight > 0,
            min_sync=f.min_lip_sync if f.sync_weight > 0 else 0.0,
        )
    _seed(cfg, "ctc_heads")
    model = AVSRModel(encoders, connectors, fusion, llm, tokenizer, prompt=m.llm.prompt, ctc_weight=m.ctc_weight)
    model.sync_weight = m.fusion.sync_weight if fusion is not None else 0.0
    if m.articulation_weight > 0 and "video" in encoders:
        _seed(cfg, "articulation_head")
        model.add_articulation_head(m.articulation_weight)
    # The LLM is already on `device` in its dtype; everything else moves here and stays float32.
    for part in (*encoders.values(), *connectors.values(), fusion):
        if part is not None:
            part.to(device)
    if training and m.lip_sync_weight > 0 and streams == ["video"]:
        _seed(cfg, "lip_sync")
        partner = build_audio_encoder(m.audio_encoder.model_copy(update={"frozen": True}))
        model.add_lip_sync(partner.to(device), m.lip_sync_weight)
    return model


def build_architecture(cfg: Config, modalities: Iterable[str] | None = None) -> tuple[AVSRModel, list[str]]:
    """The model `cfg` describes, to count its parameters: when hub weights are not at hand
    (offline, or not downloaded), the components models/known.py knows are built from their
    published shapes, and the whole model on the meta device (shapes, no storage, no weights).
    Returns the model and the names built that way (none: `build_model`'s model, with its weights)."""
    from avsrctl.models.known import without_weights

    shaped, llm_shapes, replaced = without_weights(cfg)
    if not replaced:
        return build_model(cfg, modalities), []
    with torch.device("meta"):
        return build_model(shaped, modalities, device="meta", llm_shapes=llm_shapes), replaced
