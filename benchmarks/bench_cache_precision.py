"""WER with encoder features as the feature cache stores them (float16) vs as computed (float32).

    .venv/bin/python benchmarks/bench_cache_precision.py --checkpoint RUN/final --tsv heldout/test.tsv
                                                        [--modality audio] [--threads 2] [--max-utts N]

The feature cache (avsrctl/training/cache.py) stores frozen encoder outputs in float16 and casts
them back to float32 on read. This decodes one test set twice with the same trained model, in
one process, batch by batch: once from the encoder's float32 features, once from the same
features passed through the cache's own storage conversion (`to_storage`, float16 unless a
value would overflow) and back. Greedy decoding, so any difference in the transcripts comes from
the features alone. Figures: the WER of each, the utterances whose transcript changed, and the
largest and mean relative feature error. Target (issue 18): WER unchanged.

A model trained from the cache reads float16-rounded features in every step and float32 ones
when it decodes live media; this measures how much that difference moves its transcripts.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import common


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--tsv", required=True)
    ap.add_argument("--modality", default="audio", choices=["audio", "both"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-utts", type=int, default=0, help="the first N utterances only (0: all)")
    args = ap.parse_args()
    threads = common.set_threads(args.threads)

    import torch

    from avsrctl.checkpoint import load_checkpoint
    from avsrctl.data.dataset import AVDataset, FrameBucketSampler
    from avsrctl.data.manifest import read_manifest
    from avsrctl.decoding import DecodingOptions
    from avsrctl.metrics import score
    from avsrctl.training.cache import to_storage

    common.print_machine(f"; {threads} torch threads")
    model, cfg, _ = load_checkpoint(args.checkpoint)
    manifest = read_manifest(args.tsv)
    if args.max_utts:
        manifest = replace(manifest, utterances=manifest.utterances[: args.max_utts])
    dataset = AVDataset(manifest, args.modality, roi=cfg.data.roi, roi_size=cfg.data.roi_size)
    sampler = FrameBucketSampler(dataset.lengths, max_frames=cfg.data.max_frames_per_batch, max_batch=16, shuffle=False)
    options = DecodingOptions(beam_size=1)
    hyps: dict[str, dict[str, str]] = {"float32": {}, "float16": {}}
    worst, err_sum, err_n = 0.0, 0.0, 0
    with torch.no_grad():
        for index in sampler:
            batch = dataset.collate([dataset[i] for i in index])
            feats = model.encode_audio(batch)  # (B, 2T, D) float32, as a live step computes them
            stored = to_storage(feats).float()  # what a cache hit gives back
            rel = (stored - feats).abs() / feats.abs().clamp_min(1e-3)
            worst, err_sum, err_n = max(worst, float(rel.max())), err_sum + float(rel.sum()), err_n + rel.numel()
            for name, f in (("float32", feats), ("float16", stored)):
                batch.audio_features = f
                for r in model.generate(batch, args.modality, options):
                    hyps[name][r.id] = r.text
    refs = [u.text for u in manifest]
    reports = {name: score(refs, [h[u.id] for u in manifest], "basic") for name, h in hyps.items()}
    changed = sum(hyps["float32"][u.id] != hyps["float16"][u.id] for u in manifest)
    for name, rep in reports.items():
        print(f"{name} features: WER {rep.wer:.2%} ({rep.errors} errors / {rep.ref_words} words)")
    print(
        f"transcripts that differ: {changed} of {len(manifest)}; feature error: max {worst:.2e}, mean {err_sum / err_n:.2e}"
    )
    same = reports["float16"].errors == reports["float32"].errors
    common.record(
        "feature cache float16 vs float32: WER",
        100 * (reports["float16"].wer - reports["float32"].wer),
        "0 points",
        same,
        unit=" points",
        detail=f"{reports['float32'].wer:.2%} -> {reports['float16'].wer:.2%}, {changed} transcripts differ",
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
