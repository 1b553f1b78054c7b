"""The GPU recipe, checked end to end on one machine, with nothing downloaded.

    python benchmarks/gpu_check.py            # CUDA: the `default` preset at its real sizes
    python benchmarks/gpu_check.py --tiny     # the same path at `tiny` sizes (CPU: under a minute)

What it runs is what `avsrctl train` and `avsrctl decode` run: `run_training` on a small synthetic
corpus (`avsrctl demo-data`'s generator) for `--steps` optimiser steps, then `load_checkpoint` and
`generate` on one batch. At real sizes the `default` preset's components are built from configs
with random weights: Whisper-medium encoder and CLIP ViT-B/32 vision tower (their 'random'
sources at the published widths), Llama-3.2-1B (the published config.json, GQA, 128256 + added
vocabulary rows, tied embeddings) with LoRA as configured. Only the LLM's weights source is
swapped (a random Llama-3.2-1B instead of the hub's); building, the dtype resolution, LoRA,
the trainer, checkpoints and decoding are the package's own.

Reports: parameter dtypes as `train` built them and as decode loads them, peak GPU memory
against estimate_gpu_memory.py's estimate, optimiser steps/s, decoded utterances/s, and a
2-process DDP run (NCCL where two GPUs exist; else gloo on the CPU at `tiny` sizes, since
avsrctl puts one rank on each GPU). `--json` prints the figures as one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path, forbids hub access)

GiB = 1024**3


def _real_llm(cfg):
    """avsrctl's 'random' LLM source at Llama-3.2-1B's published sizes (character tokenizer kept)."""
    from avsrctl.models.known import LLAMA_3_2_1B
    from avsrctl.models.llm import shaped_llm

    return shaped_llm(LLAMA_3_2_1B)


def configure(tiny: bool, corpus: Path, output: Path, steps: int):
    """The config the check trains: the tiny preset, or the default preset at its real sizes."""
    from avsrctl.config import load_config
    from avsrctl.models.known import CLIP_VIT_B_32, WHISPER_MEDIUM, audio_encoder_sizes, video_encoder_sizes

    flags = {
        "data.root": str(corpus),
        "train.output": str(output),
        "train.max_steps": steps,
        "train.max_epochs": 10_000,  # max_steps ends the run
        "train.save_every": 0,
        "train.log_every": 5,
        "decode.max_new_tokens": 8,
    }
    if tiny:
        return load_config("tiny", None, flags)
    real = [
        *(f"model.audio_encoder.{k}={v}" for k, v in audio_encoder_sizes(WHISPER_MEDIUM).items()),
        *(f"model.video_encoder.{k}={v}" for k, v in video_encoder_sizes(CLIP_VIT_B_32).items()),
        "model.llm.source=random",  # built by _real_llm at Llama-3.2-1B's sizes
        "data.roi_size=96",
    ]
    return load_config("default", real, flags)


def make_corpus(root: Path, n: int) -> Path:
    from avsrctl.synth.corpus import generate_corpus

    generate_corpus(root, n_utterances=n, n_speakers=2, n_test_speakers=1, size=96, seed=0, jobs=1, valid_fraction=0)
    return root


def dtypes(model, modality: str) -> dict[str, str]:
    from avsrctl.models.inspect import param_report

    return {r.name: r.dtype for r in param_report(model, modality).rows if r.built}


def estimate_gib(cfg, batch: int, frames: int) -> float:
    """estimate_gpu_memory.py's total for one micro-batch (stored per-token layer bytes) of the model
    `train` builds from `cfg`, counted on the meta device."""
    import estimate_gpu_memory as E
    from gpu_recipe import training_model

    counts = E.parameter_counts(training_model(cfg, "meta"))
    return sum(E.estimate(cfg, counts, E.DEFAULT_LAYER_BYTES, batch, frames, cfg.model.modality).values()) / GiB


def train_and_decode(cfg, tiny: bool, device: str) -> dict:
    """`--steps` steps through run_training, then one decoded batch; the figures."""
    import torch

    import avsrctl.models.llm as llm_module
    from avsrctl.checkpoint import load_checkpoint
    from avsrctl.data.dataset import AVDataset
    from avsrctl.data.manifest import read_manifest
    from avsrctl.decoding import DecodingOptions
    from avsrctl.training.run import run_training

    if not tiny:
        llm_module._random_llm = _real_llm
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    built, seconds, shapes = {}, [], []

    def hook(trainer):
        built.update(dtypes(trainer.model, trainer.modality))
        step = trainer._optimizer_step

        def timed(micro):
            start = time.perf_counter()
            shapes.extend((len(b), b.max_frames) for b in micro)
            done = step(micro)
            if cuda:
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
            return done

        trainer._optimizer_step = timed

    result = run_training(cfg, device=device, trainer_hook=hook, live=False)
    peak = torch.cuda.max_memory_allocated() / GiB if cuda else None
    model, _, _ = load_checkpoint(result.final_checkpoint, device=device)
    loaded = dtypes(model, cfg.model.modality)
    manifest = read_manifest(Path(cfg.data.root) / f"{cfg.data.train_split}.tsv")
    data = AVDataset(manifest, cfg.model.modality, roi=cfg.data.roi, roi_size=cfg.data.roi_size)
    batch = data.collate([data[i] for i in range(min(cfg.decode.batch_size, len(data), 8))]).to(device)
    options = DecodingOptions.from_config(cfg.decode)
    model.generate(batch, cfg.model.modality, options)  # warm-up (kernels, caches)
    start = time.perf_counter()
    model.generate(batch, cfg.model.modality, options)
    if cuda:
        torch.cuda.synchronize()
    decode_s = time.perf_counter() - start
    timed = seconds[1:] or seconds  # the first step carries one-off set-up
    out = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "preset": "tiny" if tiny else "default (real sizes, random weights)",
        "steps": result.steps,
        "last_loss": result.last_loss,
        "steps_per_s": len(timed) / sum(timed) if timed else None,
        "decode_utt_per_s": len(batch) / decode_s,
        "dtypes_train": built,
        "dtypes_decode": loaded,
        "peak_gib": peak,
    }
    if cuda and not tiny and shapes:
        b, f = max(shapes, key=lambda s: s[0] * s[1])
        out["estimate_gib"] = estimate_gib(cfg, b, f)
        out["estimate_shape"] = [b, f]
    return out


def ddp_check(corpus: Path, output: Path, steps: int, tiny: bool) -> dict:
    """2 processes under torchrun: NCCL on two GPUs, else gloo on the CPU at tiny sizes."""
    import torch

    two_gpus = torch.cuda.is_available() and torch.cuda.device_count() >= 2
    mode = "nccl" if two_gpus else "gloo"
    worker = ["--ddp-worker", "--corpus", str(corpus), "--output", str(output), "--steps", str(steps)]
    if tiny or not two_gpus:
        worker.append("--tiny")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if not two_gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""  # gloo on the CPU: one rank per GPU is avsrctl's layout
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", __file__, *worker]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return {"backend": mode, "ok": False, "error": proc.stderr[-2000:]}
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    steps_done = [r["step"] for r in records if r["type"] == "train"]
    return {"backend": mode, "ok": True, "steps": max(steps_done) if steps_done else 0, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (the default without CUDA)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--utterances", type=int, default=24, help="size of the synthetic corpus")
    parser.add_argument("--no-ddp", action="store_true", help="skip the 2-process run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import torch

    tiny = args.tiny or not torch.cuda.is_available()
    if args.ddp_worker:  # one rank of ddp_check
        from avsrctl.training.run import run_training

        if not tiny:
            import avsrctl.models.llm as llm_module

            llm_module._random_llm = _real_llm
        run_training(configure(tiny, args.corpus, args.output, args.steps), live=False)
        return 0
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    with tempfile.TemporaryDirectory(prefix="avsrctl-gpu-check-") as tmp:
        tmp = Path(tmp)
        corpus = make_corpus(tmp / "corpus", args.utterances)
        cfg = configure(tiny, corpus, tmp / "run", args.steps)
        figures = train_and_decode(cfg, tiny, device)
        if not args.no_ddp:
            figures["ddp"] = ddp_check(corpus, tmp / "ddp", min(args.steps, 4), tiny)
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        _show(figures)
    ok = figures.get("ddp", {"ok": True})["ok"] and figures["steps"] == args.steps
    return 0 if ok else 1


def _show(f: dict) -> None:
    print(f"device {f['device']}, preset {f['preset']}: {f['steps']} steps, last loss {f['last_loss']:.3f}")
    print(f"  parameter dtypes as train built them: {f['dtypes_train']}")
    print(f"  parameter dtypes as decode loads them: {f['dtypes_decode']}")
    print(f"  training {f['steps_per_s']:.2f} steps/s; decoding {f['decode_utt_per_s']:.1f} utterances/s")
    if f.get("peak_gib") is not None:
        est = f.get("estimate_gib")
        vs = f"; estimate_gpu_memory.py {est:.2f} GiB for {f['estimate_shape']}" if est is not None else ""
        print(f"  peak GPU memory {f['peak_gib']:.2f} GiB{vs}")
    if "ddp" in f:
        d = f["ddp"]
        state = f"{d['steps']} steps in {d['seconds']:.0f} s" if d["ok"] else f"FAILED\n{d['error']}"
        print(f"  2-process DDP ({d['backend']}): {state}")


if __name__ == "__main__":
    sys.exit(main())
