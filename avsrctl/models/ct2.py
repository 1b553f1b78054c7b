"""CTranslate2 Whisper `model.bin` -> Hugging Face `WhisperEncoder` weights.

faster-whisper models (and the offline tiny.en package) ship as CTranslate2 folders. The
torch encoder needs HF names and float32 tensors, so the encoder half of `model.bin` is read
here and renamed; the result is cached once as safetensors plus a WhisperConfig json under
`cache_dir("whisper-ct2")/<fingerprint of model.bin>/`, so later loads skip the parsing.

Binary layout (version 6, little endian):

    uint32 version | string spec_name | uint32 revision | uint32 n_vars
    n_vars x (string name | uint8 rank | rank x uint32 dims | uint8 dtype | uint32 nbytes | bytes)
    uint32 n_aliases | n_aliases x (string alias | string target)

where a string is `uint16 length` + bytes ending in NUL, and dtype is 0 f32, 1 i8, 2 i16,
3 i32, 4 f16, 5 bf16. Quantised weights carry a `<name>_scale` tensor (one scale per output
row, q = round(w * scale)).

Names (CTranslate2 -> HF WhisperEncoder): `encoder/conv{1,2}` -> `conv{1,2}`,
`encoder/position_encodings/encodings` -> `embed_positions.weight`, `encoder/layer_norm` ->
`layer_norm`, and per layer `self_attention/linear_0` = fused q,k,v (three blocks of d_model
rows; Whisper's k projection has no bias, so that bias slice must be zero and is dropped),
`self_attention/linear_1` -> `self_attn.out_proj`, `self_attention/layer_norm` ->
`self_attn_layer_norm`, `ffn/linear_{0,1}` -> `fc{1,2}`, `ffn/layer_norm` ->
`final_layer_norm`; layer norms store `gamma|beta` for `weight|bias`.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

from avsrctl.atomic import write_atomic
from avsrctl.errors import ModelError
from avsrctl.models.weights import cache_dir, file_fingerprint

SUPPORTED_VERSIONS = (5, 6)
CACHE_KIND = "whisper-ct2"
CACHE_FORMAT = 1  # bump when the converted layout changes, so stale caches are rebuilt

_DTYPES = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.float16, 5: torch.bfloat16}
_LAYER = re.compile(r"^encoder/layer_(\d+)/(.+)$")
# Per-layer CTranslate2 names -> HF names (fused qkv handled separately).
_LAYER_NAMES = {
    "self_attention/layer_norm/gamma": "self_attn_layer_norm.weight",
    "self_attention/layer_norm/beta": "self_attn_layer_norm.bias",
    "self_attention/linear_1/weight": "self_attn.out_proj.weight",
    "self_attention/linear_1/bias": "self_attn.out_proj.bias",
    "ffn/layer_norm/gamma": "final_layer_norm.weight",
    "ffn/layer_norm/beta": "final_layer_norm.bias",
    "ffn/linear_0/weight": "fc1.weight",
    "ffn/linear_0/bias": "fc1.bias",
    "ffn/linear_1/weight": "fc2.weight",
    "ffn/linear_1/bias": "fc2.bias",
}
_TOP_NAMES = {
    "encoder/conv1/weight": "conv1.weight",
    "encoder/conv1/bias": "conv1.bias",
    "encoder/conv2/weight": "conv2.weight",
    "encoder/conv2/bias": "conv2.bias",
    "encoder/position_encodings/encodings": "embed_positions.weight",
    "encoder/layer_norm/gamma": "layer_norm.weight",
    "encoder/layer_norm/beta": "layer_norm.bias",
}


@dataclass
class Ct2Model:
    """The variables of a CTranslate2 model file (only those whose names passed the filter)."""

    path: Path
    version: int
    spec: str
    revision: int
    variables: dict[str, torch.Tensor] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


def _model_stream(folder: Path) -> BinaryIO:
    """model.bin, or model.bin.part1 + .part2 + ... concatenated (how some packages split large files)."""
    single = folder / "model.bin"
    if single.is_file():
        return single.open("rb")
    parts = sorted(folder.glob("model.bin.part*"), key=lambda p: int(re.sub(r"\D", "", p.suffix) or 0))
    if not parts:
        raise ModelError(
            f"no model.bin in CTranslate2 folder {folder}",
            hint="point model.audio_encoder.name at a faster-whisper/CTranslate2 model folder",
        )
    return io.BytesIO(b"".join(p.read_bytes() for p in parts))


def model_file(folder: Path) -> Path:
    """The file whose fingerprint identifies the model (model.bin or its first part)."""
    single = folder / "model.bin"
    return single if single.is_file() else sorted(folder.glob("model.bin.part*"))[0]


def read_ct2_model(folder: str | Path, prefix: str = "") -> Ct2Model:
    """Parse a CTranslate2 model folder; variables whose names do not start with `prefix` are skipped."""
    folder = Path(folder)
    f = _model_stream(folder)
    with f:

        def take(fmt: str):
            size = struct.calcsize("<" + fmt)
            raw = f.read(size)
            if len(raw) != size:
                raise ModelError(f"{folder / 'model.bin'}: file ends early (truncated download?)")
            return struct.unpack("<" + fmt, raw)[0]

        def string() -> str:
            raw = f.read(take("H"))
            return raw.rstrip(b"\0").decode("utf-8")

        version = take("I")
        if version not in SUPPORTED_VERSIONS:
            raise ModelError(
                f"{folder / 'model.bin'}: CTranslate2 binary version {version} is not supported "
                f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})"
            )
        model = Ct2Model(path=folder, version=version, spec=string(), revision=take("I"))
        for _ in range(take("I")):
            name = string()
            dims = [take("I") for _ in range(take("B"))]  # rank, then one uint32 per dimension
            dtype_id, nbytes = take("B"), take("I")
            if dtype_id not in _DTYPES:
                raise ModelError(f"{folder / 'model.bin'}: variable {name} has unknown dtype id {dtype_id}")
            if not name.startswith(prefix):
                f.seek(nbytes, io.SEEK_CUR)
                continue
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise ModelError(f"{folder / 'model.bin'}: file ends inside variable {name} (truncated download?)")
            model.variables[name] = torch.frombuffer(bytearray(raw), dtype=_DTYPES[dtype_id]).reshape(dims)
        for _ in range(take("I")):
            alias = string()
            model.aliases[alias] = string()
    return model


def _dequantize(variables: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """float32 weights; int8/int16 weights are divided by their per-row `<name>_scale`."""
    w = variables[name]
    scale = variables.get(name + "_scale")
    if w.is_floating_point():
        return w.float()
    if scale is None:
        raise ModelError(f"{name} is stored as {w.dtype} without a {name}_scale tensor")
    scale = scale.float()
    return w.float() / scale.reshape(-1, *([1] * (w.dim() - 1)))  # (out, in) / (out, 1)


def whisper_encoder_weights(model: Ct2Model) -> tuple[dict[str, torch.Tensor], dict]:
    """HF `WhisperEncoder` state dict (float32) and the WhisperConfig sizes it implies."""
    if not model.spec.startswith("Whisper"):
        raise ModelError(
            f"{model.path}: a {model.spec} model, not a Whisper model",
            hint="the 'ct2' audio source reads faster-whisper (CTranslate2 Whisper) folders",
        )
    v = model.variables
    state: dict[str, torch.Tensor] = {}
    layers: set[int] = set()
    for name in v:
        if name.endswith("_scale") or name == "encoder/num_heads":
            continue
        if name in _TOP_NAMES:
            state[_TOP_NAMES[name]] = _dequantize(v, name)
            continue
        m = _LAYER.match(name)
        if m is None:
            raise ModelError(f"{model.path}: unexpected encoder variable {name} (unknown CTranslate2 layout)")
        i, rest = int(m.group(1)), m.group(2)
        layers.add(i)
        hf = f"layers.{i}."
        if rest == "self_attention/linear_0/weight":
            q, k, val = _dequantize(v, name).chunk(3, dim=0)  # (3D, D) -> three (D, D)
            state[hf + "self_attn.q_proj.weight"], state[hf + "self_attn.k_proj.weight"] = q, k
            state[hf + "self_attn.v_proj.weight"] = val
        elif rest == "self_attention/linear_0/bias":
            qb, kb, vb = _dequantize(v, name).chunk(3, dim=0)  # (3D,) -> three (D,)
            if kb.abs().max() > 0:
                raise ModelError(f"{model.path}: {name} has a non-zero key bias, which Whisper's encoder cannot hold")
            state[hf + "self_attn.q_proj.bias"], state[hf + "self_attn.v_proj.bias"] = qb, vb
        elif rest in _LAYER_NAMES:
            state[hf + _LAYER_NAMES[rest]] = _dequantize(v, name)
        else:
            raise ModelError(f"{model.path}: unexpected encoder variable {name} (unknown CTranslate2 layout)")
    missing = [n for n in _TOP_NAMES.values() if n not in state]
    if missing or not layers or sorted(layers) != list(range(len(layers))):
        raise ModelError(f"{model.path}: incomplete Whisper encoder (missing {missing or 'layers'})")

    d_model, n_mels, _ = state["conv1.weight"].shape  # (D, n_mels, 3)
    heads = v.get("encoder/num_heads")
    n_heads = int(heads.item()) if heads is not None else d_model // 64  # Whisper's head width is 64
    sizes = dict(
        num_mel_bins=int(n_mels),
        d_model=int(d_model),
        encoder_layers=len(layers),
        encoder_attention_heads=n_heads,
        encoder_ffn_dim=int(state["layers.0.fc1.weight"].shape[0]),
        max_source_positions=int(state["embed_positions.weight"].shape[0]),
    )
    return {k: t.contiguous() for k, t in state.items()}, sizes


def whisper_config(sizes: dict):
    """A WhisperConfig whose encoder has the given sizes (the decoder half is never built)."""
    from transformers import WhisperConfig

    return WhisperConfig(
        **sizes,
        decoder_layers=sizes["encoder_layers"],
        decoder_attention_heads=sizes["encoder_attention_heads"],
        decoder_ffn_dim=sizes["encoder_ffn_dim"],
        activation_function="gelu",
    )


@dataclass(frozen=True)
class ConvertedEncoder:
    config: object  # transformers.WhisperConfig
    state_dict: dict[str, torch.Tensor]
    fingerprint: str  # SHA-256 of the whole model.bin (weights.file_fingerprint)
    cache_folder: Path
    from_cache: bool


def convert_ct2_whisper(folder: str | Path, *, use_cache: bool = True) -> ConvertedEncoder:
    """Encoder weights of a CTranslate2 Whisper folder, converted once and then read from the cache."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file, save_file
    from transformers import WhisperConfig

    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"CTranslate2 model folder not found: {folder}")
    fingerprint = file_fingerprint(model_file(folder))
    target = cache_dir(CACHE_KIND) / fingerprint
    weights_path, config_path = target / "encoder.safetensors", target / "config.json"
    if use_cache and weights_path.is_file() and config_path.is_file():
        try:
            with safe_open(str(weights_path), framework="pt") as f:
                fmt = (f.metadata() or {}).get("avsrctl_cache_format")
            if fmt == str(CACHE_FORMAT):
                config = WhisperConfig.from_json_file(str(config_path))
                return ConvertedEncoder(config, load_file(weights_path), fingerprint, target, True)
        except (OSError, ValueError, KeyError, TypeError, SafetensorError):
            pass  # unreadable or stale cache: convert again and overwrite it

    state, sizes = whisper_encoder_weights(read_ct2_model(folder, prefix="encoder/"))
    config = whisper_config(sizes)
    if use_cache:
        # Weights first, config last: a folder with both files is complete.
        meta = {"avsrctl_cache_format": str(CACHE_FORMAT), "source": str(folder)}
        write_atomic(weights_path, lambda p: save_file(state, str(p), metadata=meta))
        write_atomic(config_path, lambda p: config.to_json_file(str(p)))
    return ConvertedEncoder(config, state, fingerprint, target, False)
