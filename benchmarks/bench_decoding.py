"""Decoding: batched greedy generation with a KV cache vs one utterance at a time (and vs no cache).

    .venv/bin/python benchmarks/bench_decoding.py [--batch 16] [--repeats 2] [--naive 2] [--threads 1]
                                                 [--max-new-tokens 32] [--device cuda]

The model is configs/offline-small.yaml for audio: the real Whisper tiny.en encoder and the
real SmolLM2-135M-Instruct LLM with LoRA, connectors and LoRA as initialised (untrained), so the
hypotheses are whatever they are; what must hold is that they are identical whichever way they
are computed. Inputs are the 16 test utterances of the benchmark corpus (GRID grammar, ~3.4 s),
decoded from disk once before timing.

Three ways, all greedy, all through the product's code up to the LLM:
  batched   `AVSRModel.generate` on the whole batch (left padding, HF generate with KV cache)
  single    `AVSRModel.generate` on one utterance at a time
  no cache  a plain loop, one utterance at a time, that re-runs the LLM over the whole prefix for
            every new token (`use_cache=False`): the naive way, timed on --naive utterances only

`generate` includes the audio encoder, the LLM input assembly and the score (`DecodingResult.score`),
which greedy search takes from the raw logits of its own steps (`_StepScorer`, no second forward
pass; beam search, not timed here, still runs a teacher-forced pass); its share is printed. Target:
batched >= 4x the utterances per second of single, with identical token ids. Exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time

import common

TARGET = 4.0


def load_batch(n: int):
    from avsrctl.data.dataset import AVDataset
    from avsrctl.data.manifest import read_manifest

    corpus = common.bench_corpus()
    manifest = read_manifest(corpus / "test.tsv", corpus / "test.wrd")
    manifest.utterances = manifest.utterances[:n]
    data = AVDataset(manifest, "audio", roi="none")
    return data.collate([data[i] for i in range(len(data))])


def no_cache_greedy(model, batch, max_new_tokens: int) -> list[tuple[int, ...]]:
    """Greedy search without a KV cache: every step runs the LLM over the whole sequence so far."""
    import torch

    from avsrctl.decoding import never_generated

    suppress = torch.tensor(never_generated(model), dtype=torch.long, device=model.device)
    embed = model.llm.get_input_embeddings()
    out = []
    with torch.no_grad():
        for i in range(len(batch)):
            embeds, _, _ = model.build_inputs(batch.select([i]), "audio", with_targets=False)  # (1, L, D)
            ids: list[int] = []
            for _ in range(max_new_tokens):
                logits = model.llm(inputs_embeds=embeds, use_cache=False, logits_to_keep=1).logits[0, -1]  # (V,)
                logits[suppress] = -float("inf")
                nxt = int(logits.argmax())
                if nxt == model.eos_id:
                    break
                ids.append(nxt)
                embeds = torch.cat([embeds, embed(torch.tensor([[nxt]], device=model.device))], 1)  # (1, L + 1, D)
            out.append(tuple(ids))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="batched runs; the single-utterance pass is split into as many chunks, run between them",
    )
    parser.add_argument("--naive", type=int, default=1, help="utterances for the no-cache loop (0 skips it)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: offline-small's decode setting")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: stable on a shared machine; see docs/BENCHMARKS.md)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    args = parser.parse_args()
    if not (common.have_tiny_en() and common.have_smollm2()):
        print("skipped: offline weights not installed (make weights)")
        return 0
    import torch

    from avsrctl.config import load_config
    from avsrctl.decoding import DecodingOptions
    from avsrctl.models.builder import build_model

    threads = common.set_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_grad_enabled(False)
    cfg = load_config("offline-small", ["model.modality=audio"])
    options = DecodingOptions(beam_size=1, max_new_tokens=args.max_new_tokens or cfg.decode.max_new_tokens)
    common.print_machine(f"; {threads} thread(s), device {device}")
    start = time.perf_counter()
    model = build_model(cfg, device=device).eval()
    batch = load_batch(args.batch).to(device)
    n = len(batch)
    print(
        f"offline-small audio model built and {n} utterances loaded in {time.perf_counter() - start:.1f} s; "
        f"greedy, max_new_tokens {options.max_new_tokens}"
    )

    score_s = [0.0]
    from avsrctl.models import avsr

    def timed(fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                score_s[0] += time.perf_counter() - t

        return wrapper

    avsr._StepScorer.__call__ = timed(avsr._StepScorer.__call__)  # greedy scoring happens inside the search
    avsr._StepScorer.scores = timed(avsr._StepScorer.scores)

    model.generate(batch.select([0]), "audio", DecodingOptions(max_new_tokens=2))  # warm-up: one-time costs
    # Interleaved: batched, half of the single-utterance pass, batched, the other half ...
    chunks = [list(range(n))[c :: args.repeats] for c in range(args.repeats)]
    runs = {"batched": common.Timing(), "single": common.Timing()}
    scoring = {"batched": 0.0, "single": 0.0}
    outputs = {"batched": None, "single": [None] * n}
    for chunk in chunks:
        score_s[0] = 0.0
        wall, cpu, res = common.timed(lambda: model.generate(batch, "audio", options))
        runs["batched"].wall.append(wall)
        runs["batched"].cpu.append(cpu)
        scoring["batched"] += score_s[0]
        outputs["batched"] = [r.token_ids for r in res]
        score_s[0] = 0.0
        wall, cpu, res = common.timed(lambda: [model.generate(batch.select([i]), "audio", options)[0] for i in chunk])
        runs["single"].wall.append(wall)
        runs["single"].cpu.append(cpu)
        scoring["single"] += score_s[0]
        for i, r in zip(chunk, res):
            outputs["single"][i] = r.token_ids
    # seconds for the whole batch: median of the batched runs; sum of the single chunks
    batched_s, batched_cpu = runs["batched"].wall_median, runs["batched"].cpu_median
    single_s, single_cpu = sum(runs["single"].wall), sum(runs["single"].cpu)
    naive_t = naive_out = None
    if args.naive > 0:
        k = min(args.naive, n)
        naive_t, _, naive_out = common.timed(
            lambda: no_cache_greedy(model, batch.select(list(range(k))), options.max_new_tokens)
        )
    print(f"\n{'way':<10} {'utts':>5} {'seconds':>8} {'utt/s':>7} {'CPU s':>7} {'scoring':>8}  runs")
    print(
        f"{'batched':<10} {n:>5} {batched_s:>8.2f} {n / batched_s:>7.2f} {batched_cpu:>7.2f} "
        f"{scoring['batched'] / sum(runs['batched'].wall):>8.0%}  median of {runs['batched'].show()}"
    )
    print(
        f"{'single':<10} {n:>5} {single_s:>8.2f} {n / single_s:>7.2f} {single_cpu:>7.2f} "
        f"{scoring['single'] / single_s:>8.0%}  sum of {runs['single'].show()}"
    )
    if naive_t is not None:
        print(
            f"{'no cache':<10} {len(naive_out):>5} {naive_t:>8.2f} {len(naive_out) / naive_t:>7.2f} "
            f"{'':>7} {'-':>8}  one run (audio encoder included, no score)"
        )

    lengths = [len(ids) for ids in outputs["batched"]]
    same = outputs["batched"] == outputs["single"]
    naive_same = naive_out is None or list(naive_out) == outputs["single"][: len(naive_out)]
    if not same:
        diff = [i for i, (a, b) in enumerate(zip(outputs["batched"], outputs["single"])) if a != b]
        print(f"token ids differ for utterances {diff}")
    print(
        f"generated tokens per utterance: {min(lengths)}..{max(lengths)} (EOS reached by "
        f"{sum(x < options.max_new_tokens for x in lengths)}/{n}); batched == single: {same}; "
        f"no-cache loop == single on its {0 if naive_out is None else len(naive_out)}: {naive_same}"
    )
    print(f"example hypothesis: {model.tokenizer.decode(list(outputs['batched'][0]))[:100]!r}")

    ratio = single_s / batched_s
    cpu_ratio = single_cpu / batched_cpu
    common.record(
        f"decoding: batched ({n}) KV-cache greedy vs one at a time, utt/s",
        ratio,
        f">= {TARGET:.0f}x",
        ratio >= TARGET and same,
        unit="x",
        detail=f"CPU ratio {cpu_ratio:.2f}x; identical outputs: {same}",
    )
    if naive_t is not None:
        single_per_utt = single_s / n
        common.record(
            "decoding: one at a time with KV cache vs without (no-cache loop), utt/s",
            (naive_t / len(naive_out)) / single_per_utt,
            "info",
            None,
            unit="x",
            detail=f"identical outputs: {naive_same}",
        )
    return 0 if ratio >= TARGET and same and naive_same else 1


if __name__ == "__main__":
    sys.exit(main())
