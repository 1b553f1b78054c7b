"""The GPU recipe's model as `avsrctl train` builds it, at the published sizes, with random weights.

Shared by estimate_gpu_memory.py (on the meta device, to count parameters), gpu_memory_check.py
(on the GPU, one real training step) and gpu_check.py (through the estimate): all three build
with the package's own `build_model(cfg, training=True)`, so they measure the model `train`
builds, every part the config turns on included (the fusion's sync classifier of
configs/default.yaml among them). Only the weights' sources are swapped: each hub model the
config names is built from its published config.json values (avsrctl/models/known.py), and the
LLM gets avsrctl's character tokenizer, whose prompt of PROMPT_TOKENS characters gives the LLM
rows the length the Llama tokenizer would.

The row layout (`tokens_per_utterance`) is the estimate's assumption about transcripts, which
gpu_memory_check.py checks against the rows the model really builds.
"""

from __future__ import annotations

import math

import common  # noqa: F401  (puts the repository on sys.path, forbids hub access)

PROMPT_TOKENS = 8  # "Transcribe the speech in the recording." in the Llama 3 tokenizer (estimate)
WORDS_PER_SECOND = 3.0  # conversational English (LRS3 is TED talks), a generous rate
TOKENS_PER_WORD = 1.3  # BPE tokens per English word


def published_config(cfg, layers: int | None = None):
    """(config, LLM shapes or None): `cfg` with the hub components it names replaced by their
    published architectures, `layers` LLM layers when given (a CPU smoke test), and a prompt of
    PROMPT_TOKENS characters (one token each in the character tokenizer)."""
    from avsrctl.models.known import without_weights

    shaped, llm_shapes, _ = without_weights(cfg, always=True)
    if layers and llm_shapes is not None:
        llm_shapes = {**llm_shapes, "num_hidden_layers": layers}
    shaped = shaped.model_copy(deep=True)
    shaped.model.llm.prompt = "x" * (PROMPT_TOKENS - 1) + "."
    return shaped, llm_shapes


def training_model(cfg, device, layers: int | None = None):
    """What `train` builds from `cfg` (`build_model(..., training=True)`), at the published sizes with
    random weights, created directly on `device` ('meta': shapes only, to count parameters)."""
    import torch

    from avsrctl.models.builder import build_model

    shaped, llm_shapes = published_config(cfg, layers)
    with torch.device(device):
        return build_model(shaped, device=device, training=True, llm_shapes=llm_shapes)


def tokens_per_utterance(cfg, modality: str, frames: int) -> dict[str, int]:
    """LLM row length for an utterance of `frames` 25 Hz frames (avsr.py's layout)."""
    m = cfg.model
    k = {"both": m.fusion.compression, "audio": m.audio_connector.compression, "video": m.video_connector.compression}[
        modality
    ]
    markers = 4 if modality == "both" else 2
    text = math.ceil(frames / 25 * WORDS_PER_SECOND * TOKENS_PER_WORD)
    parts = {
        "BOS": 1,
        "markers": markers,
        "modality tokens": math.ceil(frames / k),
        "prompt": PROMPT_TOKENS,
        "transcript": text,
        "EOS": 1,
    }
    parts["total"] = sum(parts.values())
    return parts
