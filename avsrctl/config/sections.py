"""The config sections outside the model: data, train, decode, and the base every section shares.

This module must not import torch: `avsrctl --help` imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

Modality = Literal["audio", "video", "both"]
MODALITIES: tuple[str, ...] = get_args(Modality)
Normalizer = Literal["basic", "whisper", "none"]  # text normalisers before scoring (avsrctl/metrics.py)
NORMALIZERS: tuple[str, ...] = get_args(Normalizer)
# The model's components as inspect-params and the parameter-update table name them (models/inspect.py):
# what train.freeze can keep as it is.
Component = Literal[
    "audio encoder",
    "audio connector",
    "video encoder",
    "video connector",
    "fusion",
    "audio CTC head",
    "video CTC head",
    "articulation head",
    "lip-sync head",
    "LoRA adapters",
    "LLM base",
    "marker embeddings",
]
COMPONENTS: tuple[str, ...] = get_args(Component)


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
        description="'llm': the LLM's cross-entropy on the transcript (plus model.losses.ctc x CTC); 'ctc': the "
        "auxiliary CTC alone, without running the LLM, to pre-train an encoder trained from scratch quickly "
        "(continue with --init-from). Needs model.losses.ctc > 0.",
    )
    init_from: list[Path] = Field(
        default_factory=list,
        description="Checkpoints whose matching trainable weights start a new run (later ones win); not used "
        "when resuming.",
    )
    freeze: list[Component] = Field(
        default_factory=list,
        description="Components (as inspect-params names them) that this run keeps as they are, whatever the model "
        "section says: their weights (from init_from) stay out of the optimiser and a frozen encoder keeps its "
        "normalisation statistics. E.g. ['video encoder', 'video connector', 'LoRA adapters', 'marker embeddings'] "
        "in a fused model trains the fusion and leaves the lips alone reading exactly as before.",
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
