"""GPU memory per training micro-batch of the GPU recipe (configs/default.yaml), worked out on paper.

    .venv/bin/python benchmarks/estimate_gpu_memory.py [--config default] [--no-measure]
    # on a machine with a GPU, to check the estimate against a real training step:
    .venv/bin/python benchmarks/estimate_gpu_memory.py --cuda [--frames 187 --batch 32]

Parameter counts come from the model `train` builds (`build_model(..., training=True)`, every
part the config turns on: connectors, fusion with its sync classifier, marker embeddings, LoRA,
auxiliary heads), built on the meta device (no weights, no download) with the hub components at
their published config.json values: Llama-3.2-1B, the Whisper-medium encoder and the CLIP
ViT-B/32 vision tower (gpu_recipe.py). Token counts follow the alignment rules (25 Hz frames,
fusion compression K, markers, prompt, transcript, EOS). Bytes of activations per token and LLM
layer are measured: one decoder layer of the real width with LoRA runs forward under bf16
autocast on CPU at two lengths, and the tensors autograd saves for backward are summed (the
slope is the per-token cost; --no-measure uses 129 KiB, the value measured on the reference
machine).

--cuda runs one real training step (AVSRModel forward, backward, AdamW) of the same
architecture with random weights on the GPU and prints torch.cuda.max_memory_allocated beside
the estimate. Exits 0; this is an estimate, not a gate.
"""

from __future__ import annotations

import argparse
import sys
import time

import common
from gpu_memory_check import run_step
from gpu_recipe import tokens_per_utterance, training_model

# Published config.json values of the three hub models (hard-coded, since nothing may be downloaded
# here), defined once in the package: inspect-params builds their architectures from them too.
from avsrctl.models.known import ADDED_TOKENS, CLIP_VIT_B_32, LLAMA_3_2_1B, WHISPER_MEDIUM

GiB = 1024**3
SYNC_PROJ = 64  # width of the sync classifier's per-frame projections (models/sync.py SyncScorer)
DEFAULT_LAYER_BYTES = 129 * 1024  # saved-for-backward bytes per token per decoder layer (measured, see docs)


def parameter_counts(model) -> dict:
    """Parameters of the model `train` builds: the LLM's base weights (with the added vocabulary
    rows), the two encoders, LoRA, and the trainable parts outside the LLM by name."""

    def total(params) -> int:
        return sum(p.numel() for p in params)  # tied weights are listed once

    llm = dict(model.llm.named_parameters())
    trainable: dict[str, int] = {}
    for name, p in model.named_parameters():
        part = name.split(".")[0]
        if p.requires_grad and part != "llm":
            label = part.replace("_", " ")
            trainable[label] = trainable.get(label, 0) + p.numel()
    return {
        "llm": total(p for n, p in llm.items() if "lora_" not in n),
        "whisper": total(model.audio_encoder.parameters()) if model.audio_encoder is not None else 0,
        "clip": total(model.video_encoder.parameters()) if model.video_encoder is not None else 0,
        "lora": total(p for n, p in llm.items() if "lora_" in n),
        "trainable": trainable,
    }


def measure_layer_bytes(rank: int, alpha: float, dropout: float, targets: list[str]) -> float:
    """Bytes autograd saves per token in one Llama-3.2-1B decoder layer with LoRA under bf16 autocast."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    one = LlamaConfig(**{**LLAMA_3_2_1B, "num_hidden_layers": 1, "vocab_size": 256})
    model = LlamaForCausalLM(one).to(torch.bfloat16)
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets), model)
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
        if "lora_" in n:
            p.data = p.data.float()  # avsrctl keeps LoRA weights in float32
    model.train()
    layer, rotary = model.model.layers[0], model.model.rotary_emb
    saved = {}
    for length in (64, 128):
        storages: dict[int, int] = {}

        def pack(t):
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()  # one storage saved by several ops counts once
            return t

        x = torch.randn(2, length, one.hidden_size, dtype=torch.bfloat16, requires_grad=True)  # (B, L, D)
        pos = torch.arange(length)[None].expand(2, length)  # (B, L)
        mask = torch.ones(2, 1, length, length, dtype=torch.bool).tril()  # (B, 1, L, L) causal + padding mask
        with torch.autocast("cpu", dtype=torch.bfloat16):
            emb = rotary(x, pos)
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                layer(x, attention_mask=mask, position_embeddings=emb, position_ids=pos)
        weights = {p.untyped_storage().data_ptr() for p in layer.parameters()}
        saved[length] = sum(b for ptr, b in storages.items() if ptr not in weights)
    return (saved[128] - saved[64]) / (2 * 64)  # slope: bytes per extra token


def estimate(cfg, counts: dict, layer_bytes: float, batch: int, frames: int, modality: str) -> dict[str, float]:
    """Bytes per component for one micro-batch of `batch` utterances of `frames` frames."""
    m, llm = cfg.model, LLAMA_3_2_1B
    D, V, n_layers = llm["hidden_size"], llm["vocab_size"] + ADDED_TOKENS, llm["num_hidden_layers"]
    llm_bytes = 2 if m.llm.dtype in ("bfloat16", "float16") else 4
    parts = tokens_per_utterance(cfg, modality, frames)
    L, text = parts["total"], parts["transcript"]
    tokens, bt = batch * L, batch * frames
    trainable = counts["lora"] + sum(counts["trainable"].values())
    out = {
        "LLM weights": counts["llm"] * llm_bytes,
        "Whisper encoder weights (fp32, frozen)": counts["whisper"] * 4 if modality != "video" else 0,
        "CLIP vision weights (fp32, frozen)": counts["clip"] * 4 if modality != "audio" else 0,
        "trainable weights + grads + AdamW (fp32, 16 B each)": trainable * 16,
        "LLM activations saved for backward": tokens * n_layers * layer_bytes + batch * L * L,  # + bool mask
        # AVSRModel.forward projects only the supervised positions (transcript + EOS) onto the
        # vocabulary: fp32 logits (N, V) kept in the output + fp32 log-softmax saved by the loss,
        # and two fp32 gradients of that size at the start of the backward: 16 bytes per element.
        "logits of supervised positions (N, V), peak in backward": batch * (text + 1) * V * 16,
        "connectors + fusion activations (fp32)": 0,
        "frozen encoder transients (largest layer, no grad)": 0,
    }
    act = 0
    if modality != "video":
        act += bt * (2 * WHISPER_MEDIUM["d_model"] + WHISPER_MEDIUM["d_model"] + 2 * m.audio_connector.hidden + D) * 4
        whisper = batch * 2 * frames * (WHISPER_MEDIUM["encoder_ffn_dim"] + 3 * WHISPER_MEDIUM["d_model"]) * 4
    else:
        whisper = 0
    if modality != "audio":
        act += bt * (CLIP_VIT_B_32["hidden_size"] + 2 * m.video_connector.hidden + D) * 4
        chunk = min(m.video_encoder.frame_batch, bt)
        patches = (CLIP_VIT_B_32["image_size"] // CLIP_VIT_B_32["patch_size"]) ** 2 + 1
        clip = (
            chunk
            * (
                patches * (CLIP_VIT_B_32["intermediate_size"] + 3 * CLIP_VIT_B_32["hidden_size"]) * 4
                + 3 * CLIP_VIT_B_32["image_size"] ** 2 * 4
            )
            + bt * 3 * 96 * 96
        )  # + uint8 ROI video
    else:
        clip = 0
    if modality == "both":
        act += 4 * bt * D * 4  # fusion weight products and the compression's masked sum
        if m.losses.sync > 0:  # the sync classifier: two unit projections, 3 pairings' agreement and logits
            act += bt * (4 * SYNC_PROJ + 3 * 4) * 4
    out["connectors + fusion activations (fp32)"] = act
    out["frozen encoder transients (largest layer, no grad)"] = max(whisper, clip)
    return out


def show(cfg, counts, layer_bytes, shapes, modality: str) -> dict:
    results = {}
    for batch, frames in shapes:
        parts = tokens_per_utterance(cfg, modality, frames)
        est = estimate(cfg, counts, layer_bytes, batch, frames, modality)
        total = sum(est.values())
        results[(batch, frames)] = total
        print(
            f"\nmicro-batch {batch} x {frames} frames ({frames / 25:.1f} s), modality {modality}: "
            f"L = {' + '.join(f'{v} {k}' for k, v in parts.items() if k != 'total')} = {parts['total']} tokens "
            f"per row, {batch * parts['total']} tokens"
        )
        for name, b in est.items():
            print(f"  {name:<62} {b / GiB:7.2f} GiB")
        print(f"  {'total (plus CUDA context ~0.5 GiB and allocator slack)':<62} {total / GiB:7.2f} GiB")
        common.record(
            f"GPU memory estimate, {modality}, micro-batch {batch} x {frames / 25:.1f} s",
            total / GiB,
            "paper estimate, no GPU here",
            None,
            unit=" GiB",
        )
        full = batch * parts["total"] * (LLAMA_3_2_1B["vocab_size"] + ADDED_TOKENS) * 14
        print(
            f"  (logits at all {parts['total']} positions, bf16 + fp32 log-softmax as transformers' loss keeps "
            f"them, would need {full / GiB:.2f} GiB: the forward projects only the "
            f"{parts['transcript'] + 1} supervised ones)"
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default")
    parser.add_argument("--no-measure", action="store_true", help="use the stored per-token layer bytes")
    parser.add_argument("--cuda", action="store_true", help="also run one real training step on the GPU")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None)
    args = parser.parse_args()
    import torch

    from avsrctl.config import load_config

    cfg = load_config(args.config)
    m = cfg.model
    counts = parameter_counts(training_model(cfg, "meta"))
    print(
        f"config {args.config}: modality {m.modality}, LLM {m.llm.name} ({m.llm.dtype}), LoRA r={m.llm.lora.rank} "
        f"on {', '.join(m.llm.lora.targets)}, max_frames_per_batch {cfg.data.max_frames_per_batch}, "
        f"max_batch_size {cfg.data.max_batch_size}, mixed precision {cfg.train.mixed_precision}"
    )
    print("parameters (the model train builds, on the meta device, at the published sizes):")
    print(
        f"  Llama-3.2-1B {counts['llm']:,} (incl. {ADDED_TOKENS} added vocabulary rows); Whisper-medium encoder "
        f"{counts['whisper']:,}; CLIP ViT-B/32 vision {counts['clip']:,}"
    )
    print(f"  trainable: LoRA {counts['lora']:,}; " + "; ".join(f"{k} {v:,}" for k, v in counts["trainable"].items()))
    if args.no_measure:
        layer_bytes = DEFAULT_LAYER_BYTES
        print(f"LLM activations: {layer_bytes / 1024:.0f} KiB per token per layer (stored value)")
    else:
        start = time.perf_counter()
        lora = m.llm.lora
        layer_bytes = measure_layer_bytes(lora.rank, lora.alpha, lora.dropout, list(lora.targets))
        print(
            f"LLM activations: {layer_bytes / 1024:.1f} KiB per token per layer (measured on one layer in "
            f"{time.perf_counter() - start:.1f} s: saved-for-backward bytes, bf16 autocast, LoRA fp32)"
        )
    B, F = cfg.data.max_batch_size, cfg.data.max_frames_per_batch
    shapes = [(args.batch, args.frames)] if args.batch and args.frames else [(B, F // B), (F // 750, 750)]
    results = show(cfg, counts, layer_bytes, shapes, m.modality)
    if args.cuda:
        for (batch, frames), total in results.items():
            peak = run_step(cfg, batch, frames, tokens_per_utterance(cfg, m.modality, frames))
            print(
                f"measured on {torch.cuda.get_device_name()}: {peak / GiB:.2f} GiB max allocated for "
                f"{batch} x {frames} frames; estimate {total / GiB:.2f} GiB ({total / peak:.2f}x)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
