"""Published shapes of the hub models the presets name: their architecture without their weights.

`inspect-params` shows the parameter table of a config whose weights are not at hand (offline,
or not downloaded yet: about 3 GB for the `default` preset) by building each such component
from the published config.json values below, on the meta device (tensors with shapes and no
storage): the counts and widths are those of the real model. The GPU benchmarks
(benchmarks/estimate_gpu_memory.py, gpu_memory_check.py, gpu_check.py) build the same
architectures from the same values (`without_weights(cfg, always=True)`) through `build_model`.

The encoders become avsrctl's 'random' sources at these sizes (whose layer widths follow the
published models: FFN 4 x width); the LLM is a Llama of these shapes (`llm.shaped_llm`), its
vocabulary widened by the rows `build_llm` adds to the real tokenizer.
"""

from __future__ import annotations

from avsrctl.config import Config

# Published config.json values (hub: meta-llama/Llama-3.2-1B, openai/whisper-medium,
# openai/clip-vit-base-patch32, the tower of open_clip's ViT-B-32/openai).
LLAMA_3_2_1B = dict(
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=64,
    vocab_size=128256,
    tie_word_embeddings=True,
    rope_theta=500000.0,
    max_position_embeddings=131072,
)
WHISPER_MEDIUM = dict(
    d_model=1024,
    encoder_layers=24,
    encoder_attention_heads=16,
    encoder_ffn_dim=4096,
    num_mel_bins=80,
    max_source_positions=1500,
)
CLIP_VIT_B_32 = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    image_size=224,
    patch_size=32,
    hidden_act="quick_gelu",
)
ADDED_TOKENS = 5  # <pad> (Llama 3.2 has none) and the 4 modality markers: rows build_llm adds to the vocabulary

# The names configs give them (model.*.name) -> shapes
KNOWN_LLMS = {"meta-llama/Llama-3.2-1B": LLAMA_3_2_1B}
KNOWN_AUDIO_ENCODERS = {"openai/whisper-medium": WHISPER_MEDIUM}
KNOWN_VIDEO_ENCODERS = {"ViT-B-32/openai": CLIP_VIT_B_32, "openai/clip-vit-base-patch32": CLIP_VIT_B_32}


def audio_encoder_sizes(shapes: dict) -> dict:
    """model.audio_encoder settings of the 'random' source that builds a Whisper encoder of `shapes`."""
    assert shapes["encoder_ffn_dim"] == 4 * shapes["d_model"], "the 'random' encoder's FFN is 4 x d_model"
    return {
        "source": "random",
        "n_mels": shapes["num_mel_bins"],
        "d_model": shapes["d_model"],
        "layers": shapes["encoder_layers"],
        "heads": shapes["encoder_attention_heads"],
    }


def video_encoder_sizes(shapes: dict) -> dict:
    """model.video_encoder settings of the 'random' source that builds a CLIP vision tower of `shapes`."""
    assert shapes["intermediate_size"] == 4 * shapes["hidden_size"], "the 'random' tower's MLP is 4 x width"
    return {
        "source": "random",
        "image_size": shapes["image_size"],
        "patch_size": shapes["patch_size"],
        "width": shapes["hidden_size"],
        "layers": shapes["num_hidden_layers"],
        "heads": shapes["num_attention_heads"],
    }


def without_weights(cfg: Config, *, always: bool = False) -> tuple[Config, dict | None, list[str]]:
    """`cfg` with each component whose hub weights are not at hand (`weights.needs_download`; with
    `always`, whether or not they are) and whose shapes are known here replaced by its architecture:
    (config, the LLM's shapes or None, the names replaced). Components with unknown names stay as
    they are (they load, or fail, as usual).
    """
    from avsrctl.models.weights import needs_download

    def replace(part) -> bool:
        return always or needs_download(part)

    m, replaced = cfg.model, []
    audio, video, llm_shapes = m.audio_encoder, m.video_encoder, None
    if replace(audio) and audio.name in KNOWN_AUDIO_ENCODERS:
        audio = audio.model_copy(update=audio_encoder_sizes(KNOWN_AUDIO_ENCODERS[audio.name]))
        replaced.append(str(m.audio_encoder.name))
    if replace(video) and video.name in KNOWN_VIDEO_ENCODERS:
        video = video.model_copy(update=video_encoder_sizes(KNOWN_VIDEO_ENCODERS[video.name]))
        replaced.append(str(m.video_encoder.name))
    if replace(m.llm) and m.llm.name in KNOWN_LLMS:
        llm_shapes = KNOWN_LLMS[m.llm.name]
        replaced.append(str(m.llm.name))
    model = m.model_copy(update={"audio_encoder": audio, "video_encoder": video})
    return cfg.model_copy(update={"model": model}), llm_shapes, replaced
