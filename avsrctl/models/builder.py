"""The one place a config becomes modules: one builder per component, and `build_model` composing them.

Each builder takes its config section and the sizes it depends on as keyword-only arguments:
`build_audio_encoder(cfg.model.audio_encoder)`, `build_connector("audio", cfg.model.audio_connector,
input_dim=..., output_dim=...)`, `build_fusion(cfg.model.fusion, dim=..., sync=...)`, `build_llm`
(models/llm.py), and the auxiliary heads (`build_ctc_heads`, `build_articulation_head`,
`build_lip_sync`) whose losses `model.losses` weighs (`loss_weights`). `train`, checkpoint
loading, inspect-params and the GPU benchmarks all build through `build_model`.

Each component is initialised under its own fixed seed (cfg.train.seed + a per-component
offset), so a component's random weights do not depend on which other components were
built before it. That matters beyond tidiness: frozen random weights (a 'random' encoder or
LLM, the resized vocabulary rows) are not stored in checkpoints, so `load_checkpoint` must
rebuild them bit for bit from config.yaml, whatever modalities it asks for.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from avsrctl.config import AudioEncoderConfig, Config, ConnectorConfig, FusionConfig, LossesConfig, VideoEncoderConfig
from avsrctl.errors import UsageError
from avsrctl.models.articulation import ArticulationHead
from avsrctl.models.avsr import AVSRModel
from avsrctl.models.connector import AudioConnector, VideoConnector
from avsrctl.models.ctc import CTCHeads
from avsrctl.models.fusion import WeightedFusion
from avsrctl.models.llm import build_llm
from avsrctl.models.sync import LipSync

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
_CONNECTORS = {"audio": AudioConnector, "video": VideoConnector}


def build_audio_encoder(cfg: AudioEncoderConfig):
    """The Whisper encoder a config section names (see avsrctl/models/whisper.py)."""
    from avsrctl.models.whisper import build_audio_encoder as build

    return build(cfg)


def build_video_encoder(cfg: VideoEncoderConfig):
    """The vision encoder a config section names (see avsrctl/models/vision.py)."""
    from avsrctl.models.vision import build_video_encoder as build

    return build(cfg)


def build_connector(stream: str, cfg: ConnectorConfig, *, input_dim: int, output_dim: int) -> nn.Module:
    """model.{stream}_connector -> the stream's connector from encoder width `input_dim` to the LLM
    width `output_dim`; with `frozen` its weights stay out of the optimiser."""
    connector = _CONNECTORS[stream](input_dim, cfg.hidden, output_dim, cfg.compression)
    if cfg.frozen:  # a checkpoint it came from restores its weights
        connector.requires_grad_(False)
    return connector


def build_fusion(cfg: FusionConfig, *, dim: int, sync: bool) -> WeightedFusion:
    """model.fusion -> the fusion of two `dim`-wide streams; `sync` (model.losses.sync > 0) adds the
    audio-visual agreement classifier, and with it the decoding threshold min_lip_sync."""
    return WeightedFusion(
        dim,
        weight=cfg.weight,
        learned=cfg.learned,
        compression=cfg.compression,
        modality_dropout=cfg.modality_dropout,
        weighting=cfg.weighting,
        gate_hidden=cfg.gate_hidden,
        sync=sync,
        min_lip_sync=cfg.min_lip_sync if sync else 0.0,
    )


def build_ctc_heads(streams: Iterable[str], *, width: int) -> CTCHeads:
    """One CTC head per stream on its `width`-wide 25 Hz connector output (model.losses.ctc)."""
    return CTCHeads(streams, width)


def build_articulation_head(*, width: int) -> ArticulationHead:
    """The mouth-parameter regression on the `width`-wide video stream (model.losses.articulation)."""
    return ArticulationHead(width)


def build_lip_sync(cfg: AudioEncoderConfig, *, video_dim: int) -> LipSync:
    """A video model's lip-sync loss (model.losses.lip_sync): a frozen copy of the audio encoder
    `cfg` names as the partner, scored against the `video_dim`-wide video stream."""
    partner = build_audio_encoder(cfg.model_copy(update={"frozen": True}))
    return LipSync(partner, video_dim)


def loss_weights(cfg: LossesConfig, *, ctc: bool, articulation: bool, sync: bool, lip_sync: bool) -> dict[str, float]:
    """model.losses -> {name: weight} of the auxiliary losses whose parts were built (the flags)."""
    built = {"ctc": ctc, "articulation": articulation, "sync": sync, "lip_sync": lip_sync}
    return {name: float(getattr(cfg, name)) for name, on in built.items() if on}


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
    The auxiliary heads are built for the losses model.losses turns on (> 0) that the streams
    allow. `training` also builds what only training uses: a video model's lip-sync loss and its
    frozen audio partner (model.losses.lip_sync). Two builds of the same config are identical
    (seeded per component). `llm_shapes` builds the LLM's architecture without loading it
    (`build_architecture`).
    """
    wanted = resolve_modalities(cfg, modalities)
    streams = sorted({s for m in wanted for s in MODALITY_STREAMS[m]})
    m, losses = cfg.model, cfg.model.losses
    _seed(cfg, "llm")
    llm, tokenizer = build_llm(m.llm, device=device, shapes=llm_shapes)
    d_llm = llm.get_input_embeddings().embedding_dim
    encoders, connectors = {}, {}
    for stream in streams:
        _seed(cfg, f"{stream}_encoder")
        build_encoder = build_audio_encoder if stream == "audio" else build_video_encoder
        encoders[stream] = build_encoder(getattr(m, f"{stream}_encoder"))
        _seed(cfg, f"{stream}_connector")
        connectors[stream] = build_connector(
            stream, getattr(m, f"{stream}_connector"), input_dim=encoders[stream].output_dim, output_dim=d_llm
        )
    fusion = None
    if "both" in wanted:
        _seed(cfg, "fusion")
        fusion = build_fusion(m.fusion, dim=d_llm, sync=losses.sync > 0)
    _seed(cfg, "ctc_heads")
    ctc_heads = build_ctc_heads(streams if losses.ctc > 0 else (), width=d_llm)
    articulation_head = None
    if losses.articulation > 0 and "video" in streams:
        _seed(cfg, "articulation_head")
        articulation_head = build_articulation_head(width=d_llm)
    lip_sync = None
    if training and losses.lip_sync > 0 and streams == ["video"]:
        _seed(cfg, "lip_sync")
        lip_sync = build_lip_sync(m.audio_encoder, video_dim=d_llm)
    # The LLM is already on `device` in its dtype; everything else moves here and stays float32.
    for part in (*encoders.values(), *connectors.values(), fusion, ctc_heads, articulation_head, lip_sync):
        if part is not None:
            part.to(device)
    weights = loss_weights(
        losses,
        ctc=len(ctc_heads) > 0,
        articulation=articulation_head is not None,
        sync=fusion is not None and fusion.sync is not None,
        lip_sync=lip_sync is not None,
    )
    return AVSRModel(
        encoders,
        connectors,
        fusion,
        llm,
        tokenizer,
        prompt=m.llm.prompt,
        ctc_heads=ctc_heads,
        articulation_head=articulation_head,
        lip_sync=lip_sync,
        loss_weights=weights,
    )


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
