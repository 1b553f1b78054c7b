"""CTranslate2 model.bin reader and conversion to Hugging Face WhisperEncoder weights.

The reference is CTranslate2 itself: a random tiny HF Whisper is converted to CTranslate2
(float32, float16, int8) by ctranslate2's own converter, read back by our reader, and
compared with the original weights; the real tiny.en package is compared with
`ctranslate2.models.Whisper.encode`.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import requires_whisper_weights

from avsrctl.errors import ModelError
from avsrctl.models import ct2

ctranslate2 = pytest.importorskip("ctranslate2")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVSRCTL_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def hf_whisper(tmp_path_factory):
    """A random tiny HF Whisper saved to disk, and CTranslate2 conversions of it."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(
        d_model=64,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=128,
        num_mel_bins=80,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=128,
        vocab_size=100,
        max_target_positions=32,
        max_source_positions=1500,
        pad_token_id=99,
        bos_token_id=98,
        eos_token_id=99,
        decoder_start_token_id=98,
    )
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # non-zero biases and norms, so a dropped or swapped slice shows up
        for name, p in model.model.encoder.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    root = tmp_path_factory.mktemp("ct2")
    model.save_pretrained(root / "hf")
    folders = {}
    for quant in ("float32", "float16", "int8"):
        converter = ctranslate2.converters.TransformersConverter(str(root / "hf"), load_as_float16=False)
        folders[quant] = Path(converter.convert(str(root / quant), quantization=quant, force=True))
    return model.model.encoder, folders


def test_reader_parses_header_and_variables(hf_whisper):
    _, folders = hf_whisper
    model = ct2.read_ct2_model(folders["float16"])
    assert model.spec.startswith("Whisper") and model.version in ct2.SUPPORTED_VERSIONS
    assert model.variables["encoder/conv1/weight"].shape == (64, 80, 3)
    assert model.variables["encoder/conv1/weight"].dtype == torch.float16
    assert model.variables["encoder/layer_0/self_attention/linear_0/weight"].shape == (3 * 64, 64)
    assert int(model.variables["encoder/num_heads"].item()) == 2
    encoder_only = ct2.read_ct2_model(folders["float16"], prefix="encoder/")
    assert encoder_only.variables and all(n.startswith("encoder/") for n in encoder_only.variables)


@pytest.mark.parametrize("quant, atol", [("float32", 0.0), ("float16", 2e-3), ("int8", 3e-2)])
def test_conversion_reproduces_hf_weights(hf_whisper, quant, atol):
    encoder, folders = hf_whisper
    state, sizes = ct2.whisper_encoder_weights(ct2.read_ct2_model(folders[quant], prefix="encoder/"))
    assert sizes == dict(
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=128,
        max_source_positions=1500,
    )
    reference = encoder.state_dict()
    assert set(state) == set(reference)  # same names: nothing missing, nothing extra (no k bias)
    for name, value in state.items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, reference[name], atol=atol, rtol=0.0, msg=name)


def test_int8_encoder_output_matches_ctranslate2(hf_whisper):
    """Dequantised int8 weights in torch give what CTranslate2 computes with them (on float32 compute)."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    _, folders = hf_whisper
    converted = ct2.convert_ct2_whisper(folders["int8"])
    encoder = WhisperEncoder(converted.config).eval()
    encoder.load_state_dict(converted.state_dict)
    features = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = encoder(features).last_hidden_state.numpy()
    model = ctranslate2.models.Whisper(str(folders["int8"]), device="cpu", compute_type="float32")
    theirs = np.array(model.encode(ctranslate2.StorageView.from_array(features.numpy()), to_cpu=True))
    assert np.abs(ours - theirs).max() < 1e-3


def test_cache_written_once_then_read(hf_whisper, tmp_path):
    _, folders = hf_whisper
    first = ct2.convert_ct2_whisper(folders["float16"])
    assert not first.from_cache
    assert (first.cache_folder / "encoder.safetensors").is_file() and (first.cache_folder / "config.json").is_file()
    assert first.cache_folder.parent == tmp_path / "cache" / ct2.CACHE_KIND
    second = ct2.convert_ct2_whisper(folders["float16"])
    assert second.from_cache and second.fingerprint == first.fingerprint
    assert second.config.d_model == 64 and second.config.encoder_layers == 2
    for name, value in first.state_dict.items():
        assert torch.equal(value, second.state_dict[name])


def test_corrupt_cache_is_rebuilt(hf_whisper):
    _, folders = hf_whisper
    first = ct2.convert_ct2_whisper(folders["float32"])
    (first.cache_folder / "encoder.safetensors").write_bytes(b"not safetensors")
    again = ct2.convert_ct2_whisper(folders["float32"])
    assert not again.from_cache
    assert ct2.convert_ct2_whisper(folders["float32"]).from_cache


def test_split_model_bin_parts_are_concatenated(hf_whisper, tmp_path):
    _, folders = hf_whisper
    data = (folders["float16"] / "model.bin").read_bytes()
    split = tmp_path / "split"
    split.mkdir()
    (split / "model.bin.part1").write_bytes(data[: len(data) // 2])
    (split / "model.bin.part2").write_bytes(data[len(data) // 2 :])
    whole = ct2.read_ct2_model(folders["float16"], prefix="encoder/")
    parts = ct2.read_ct2_model(split, prefix="encoder/")
    assert set(whole.variables) == set(parts.variables)
    assert all(torch.equal(whole.variables[n], parts.variables[n]) for n in whole.variables)


def test_truncated_file_is_a_model_error(hf_whisper, tmp_path):
    _, folders = hf_whisper
    data = (folders["float16"] / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match="truncated"):
        ct2.read_ct2_model(tmp_path)


def test_missing_and_foreign_models_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="no model.bin"):
        ct2.read_ct2_model(tmp_path)
    with pytest.raises(ModelError, match="not found"):
        ct2.convert_ct2_whisper(tmp_path / "absent")

    def string(s: str) -> bytes:
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    # A valid header of another model type, no variables, no aliases.
    (tmp_path / "model.bin").write_bytes(
        struct.pack("<I", 6) + string("TransformerSpec") + struct.pack("<III", 1, 0, 0)
    )
    with pytest.raises(ModelError, match="not a Whisper model"):
        ct2.whisper_encoder_weights(ct2.read_ct2_model(tmp_path))
    (tmp_path / "model.bin").write_bytes(struct.pack("<I", 99) + string("WhisperSpec"))
    with pytest.raises(ModelError, match="version 99"):
        ct2.read_ct2_model(tmp_path)


@pytest.mark.slow
@pytest.mark.weights
@requires_whisper_weights
def test_tiny_en_matches_ctranslate2_encode(media_dir):
    """Real tiny.en (fp16 storage): our torch encoder vs CTranslate2's encoder on real speech."""
    from faster_whisper.audio import decode_audio
    from transformers import WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from avsrctl.models.weights import offline_path

    folder = offline_path("offline:tiny.en")
    converted = ct2.convert_ct2_whisper(folder)
    assert converted.config.d_model == 384 and converted.config.encoder_layers == 4
    assert converted.config.encoder_attention_heads == 6 and converted.config.num_mel_bins == 80
    encoder = WhisperEncoder(converted.config).eval()
    encoder.load_state_dict(converted.state_dict)

    audio = decode_audio(str(media_dir / "audio" / "LDC93S1.wav"), sampling_rate=16000)
    features = WhisperFeatureExtractor(feature_size=80)(audio, sampling_rate=16000, return_tensors="np")
    features = np.ascontiguousarray(features.input_features.astype(np.float32))  # (1, 80, 3000)
    with torch.no_grad():
        ours = encoder(torch.from_numpy(features)).last_hidden_state.numpy()
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    theirs = np.array(model.encode(ctranslate2.StorageView.from_array(features), to_cpu=True))
    # Both compute in float32 from the same fp16-stored weights; measured max 2.1e-5 (outputs ~|12|).
    assert ours.shape == theirs.shape == (1, 1500, 384)
    assert np.abs(ours - theirs).max() < 1e-3
