from __future__ import annotations

import time

import pytest
import torch
from conftest import requires_smollm2

from avsrctl.config import LLMConfig, LoraConfig
from avsrctl.errors import ModelError
from avsrctl.models.llm import (
    CHAR_SYMBOLS,
    MARKERS,
    build_llm,
    char_tokenizer,
    gguf_cache_path,
    marker_ids,
    resolve_dtype,
    resolve_gguf,
)


def _tiny_cfg(**lora) -> LLMConfig:
    return LLMConfig(
        source="random",
        hidden=32,
        layers=1,
        heads=2,
        intermediate=64,
        lora=LoraConfig(rank=2, alpha=4, dropout=0.0, **lora),
    )


def test_char_tokenizer_round_trips_text_and_is_deterministic():
    tok = char_tokenizer()
    text = "Hello, World! It's 42."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)  # one id per character
    assert tok.decode(ids) == text
    assert ids == char_tokenizer()(text, add_special_tokens=False)["input_ids"]
    assert len(tok) == 4 + len(CHAR_SYMBOLS)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok("é", add_special_tokens=False)["input_ids"] == [tok.unk_token_id]


def test_random_llm_has_markers_pad_and_only_float32_lora_trainable():
    torch.manual_seed(0)
    model, tok = build_llm(_tiny_cfg())
    ids = marker_ids(tok)
    assert set(ids) == set(MARKERS) and len(set(ids.values())) == 4
    assert tok.pad_token_id is not None
    assert model.get_input_embeddings().num_embeddings == len(tok)
    # markers are never split and are dropped from decoded text
    enc = tok("a<audio>b", add_special_tokens=False)["input_ids"]
    assert ids["<audio>"] in enc and tok.decode(enc, skip_special_tokens=True) == "ab"
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {p.dtype for n, p in model.named_parameters() if "lora_" in n} == {torch.float32}
    lora_modules = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert lora_modules == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_lora_disabled_freezes_the_whole_llm():
    torch.manual_seed(0)
    model, _ = build_llm(_tiny_cfg(enabled=False))
    assert not any(p.requires_grad for p in model.parameters())
    assert not any("lora_" in n for n, _ in model.named_parameters())


def test_lora_targets_that_match_nothing_name_the_real_layers():
    with pytest.raises(ModelError, match="match no module") as err:
        build_llm(_tiny_cfg(targets=["query_key_value"]))
    assert "q_proj" in (err.value.hint or "")


def test_two_seeded_builds_are_identical():
    torch.manual_seed(3)
    a, _ = build_llm(_tiny_cfg())
    torch.manual_seed(3)
    b, _ = build_llm(_tiny_cfg())
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)


def test_half_precision_only_on_gpu():
    assert resolve_dtype("bfloat16", "cpu")[0] == torch.float32
    assert "GPU only" in resolve_dtype("bfloat16", "cpu")[1]
    assert resolve_dtype("float32", "cpu") == (torch.float32, None)
    assert resolve_dtype("float16", "cuda:0") == (torch.float16, None)
    with pytest.raises(ModelError, match="unknown LLM dtype"):
        resolve_dtype("int8", "cpu")


def test_missing_gguf_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="GGUF file not found"):
        resolve_gguf(str(tmp_path / "nope.gguf"))
    with pytest.raises(ModelError, match="exactly one .gguf"):
        resolve_gguf(str(tmp_path))
    with pytest.raises(ModelError, match="unknown offline"):
        resolve_gguf("offline:gpt9")


@requires_smollm2
@pytest.mark.slow
@pytest.mark.weights
def test_gguf_is_dequantised_once_then_loaded_from_the_safetensors_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVSRCTL_CACHE", str(tmp_path))
    cfg = LLMConfig(source="gguf", name="offline:smollm2", lora=LoraConfig(enabled=False))
    cached = gguf_cache_path(resolve_gguf(cfg.name))
    assert not cached.exists()

    torch.manual_seed(0)
    t0 = time.perf_counter()
    first, tok = build_llm(cfg)
    first_s = time.perf_counter() - t0
    assert (cached / "model.safetensors").is_file() and (cached / "config.json").is_file()

    torch.manual_seed(0)
    t0 = time.perf_counter()
    second, tok2 = build_llm(cfg)
    cached_s = time.perf_counter() - t0
    print(f"GGUF first load {first_s:.1f} s, cached load {cached_s:.1f} s")
    assert cached_s < first_s / 3

    assert first.config.hidden_size == 576 and first.config.num_hidden_layers == 30
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    assert ids.tolist() == tok2("The capital of France is", return_tensors="pt")["input_ids"].tolist()
    with torch.no_grad():
        assert torch.equal(first(ids).logits, second(ids).logits)
        out = second.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok2.decode(out[0, ids.shape[1] :])  # real pretrained weights, not noise
