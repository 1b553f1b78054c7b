"""One real training step of the GPU recipe's architecture with random weights, for its peak memory.

Used by `estimate_gpu_memory.py --cuda`; runnable alone as a smoke test on CPU with a smaller LLM:

    .venv/bin/python benchmarks/gpu_memory_check.py --device cpu --layers 1 --batch 2 --frames 50

The model is what `train` builds (gpu_recipe.training_model: `build_model(..., training=True)`,
every part the config turns on, the fusion's sync classifier included) from the published
configs with random weights, so nothing is downloaded. The tokenizer is avsrctl's character
tokenizer (the vocabulary size stays Llama's 128256 + added rows): the prompt and transcripts
are made of as many characters as the Llama tokenizer would give tokens, so every LLM row has
the length the estimate assumes. The step is what the trainer does on a GPU: bf16 autocast,
forward, the training objective (loss plus the weighted auxiliary losses) x tokens backward,
AdamW step.
"""

from __future__ import annotations

import argparse
import sys

import common  # noqa: F401  (puts the repository on sys.path)
from gpu_recipe import tokens_per_utterance, training_model


def make_batch(batch: int, frames: int, text_tokens: int, device, roi: int = 96):
    import torch

    from avsrctl.data.batch import Batch

    g = torch.Generator().manual_seed(0)
    # AVSRModel.target_ids tokenises " " + text: one token for the space, one per letter, then EOS
    text = "".join("abcdefghij"[i % 10] for i in range(text_tokens - 2))
    return Batch(
        ids=[f"u{i}" for i in range(batch)],
        texts=[text] * batch,
        lengths=torch.full((batch,), frames, dtype=torch.long),
        audio=0.1 * torch.randn(batch, 640 * frames, generator=g),
        video=torch.randint(0, 256, (batch, frames, 3, roi, roi), dtype=torch.uint8, generator=g),
    ).to(device)


def run_step(cfg, batch: int, frames: int, parts: dict, device: str = "cuda", layers: int | None = None) -> int:
    """Peak bytes allocated on `device` over model build + one training step (CPU: 0, it is a smoke test)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    model = training_model(cfg, dev, layers)
    model.train()
    data = make_batch(batch, frames, parts["transcript"] + 1, dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    use_amp = dev.type == "cuda" and cfg.train.mixed_precision in ("bf16", "fp16")
    amp = torch.bfloat16 if cfg.train.mixed_precision == "bf16" else torch.float16
    with torch.autocast(dev.type, dtype=amp, enabled=use_amp):
        out = model(data, cfg.model.modality)
    objective = out.loss if out.objective is None else out.objective  # as the trainer (training/oom.py)
    (objective.float() * out.n_tokens).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    supervised = batch * (parts["transcript"] + 1)
    if out.n_tokens != supervised:
        raise RuntimeError(f"the step supervised {out.n_tokens} tokens, the estimate assumed {supervised}")
    with torch.no_grad():
        rows = model.build_inputs(data, cfg.model.modality)[0].shape[1]  # (B, L, D)
    if rows != parts["total"]:
        raise RuntimeError(f"LLM rows have {rows} tokens, the estimate assumed {parts['total']}")
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else 0
    del model, out, opt, data
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--layers", type=int, default=None, help="fewer LLM layers (smoke test on CPU)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()
    from avsrctl.config import load_config

    cfg = load_config(args.config)
    parts = tokens_per_utterance(cfg, cfg.model.modality, args.frames)
    peak = run_step(cfg, args.batch, args.frames, parts, args.device, args.layers)
    print(
        f"one training step of {args.batch} x {args.frames} frames ({parts['total']} tokens per row) on "
        f"{args.device}: peak allocated {peak / 1024**3:.2f} GiB" + (" (not tracked on CPU)" if not peak else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
