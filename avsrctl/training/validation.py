"""Validation during training: loss over the valid manifest, WER of greedy decoding on its
first `train.valid_max_utts` utterances (corpus-level, on normalised text).

With `train.objective` 'ctc' the loss is the CTC per character and the WER is that of greedy
CTC decoding, since the LLM is not trained by that objective."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from avsrctl.config import Config
from avsrctl.decoding import DecodingOptions
from avsrctl.metrics import score


@dataclass(frozen=True)
class ValidResult:
    step: int
    epoch: int
    loss: float  # token-weighted mean over every valid utterance
    wer: float | None  # None when nothing could be decoded
    n_utts: int
    n_wer_utts: int
    examples: tuple[tuple[str, str], ...] = ()  # (reference, hypothesis) of the first few
    n_nonfinite: int = 0  # batches whose loss was NaN or inf (left out of `loss`)

    def to_record(self) -> dict:
        rec = asdict(self)
        rec["examples"] = [list(e) for e in self.examples]
        return {"type": "valid", **rec}


def word_error_rate(refs: list[str], hyps: list[str], normalizer: str) -> float | None:
    """Corpus WER through avsrctl.metrics (jiwer underneath); None without reference words."""
    try:
        return score(refs, hyps, normalizer).wer
    except Exception:  # e.g. all references empty after normalisation
        return None


def _loader(dataset: Any, indices: list[int], batches: list[list[int]]):
    subset = torch.utils.data.Subset(dataset, indices) if len(indices) != len(dataset) else dataset
    return torch.utils.data.DataLoader(subset, batch_sampler=batches, collate_fn=dataset.collate, num_workers=0)


@torch.no_grad()
def validate(
    model: Any,
    dataset: Any,
    modality: str,
    cfg: Config,
    *,
    step: int,
    epoch: int,
    prepare: Callable[[Any], Any],
    autocast: Callable[[], Any],
    sampler_cls: Any,
    stopped: Callable[[], bool] = lambda: False,
) -> ValidResult | None:
    """Evaluate `model` (the bare module, put in eval mode here) on `dataset`.

    None when `stopped()` turns true on the way (Ctrl-C): the run saves instead of waiting for it."""
    model.eval()
    lengths = list(dataset.lengths)
    sampler = sampler_cls(
        lengths, cfg.data.max_frames_per_batch, cfg.data.max_batch_size, shuffle=False, seed=cfg.train.seed
    )
    loss_sum, tokens, n_utts, n_nonfinite = 0.0, 0, 0, 0
    for mb in _loader(dataset, list(range(len(dataset))), list(sampler)):
        if stopped():
            return None
        if not len(mb):
            continue
        batch = prepare(mb)
        with autocast():
            out = model(batch, modality, cfg.train.objective)
        n = getattr(out, "n_tokens", None)
        n = len(mb) if n is None else int(n)
        value = float(out.loss)
        if math.isfinite(value):
            loss_sum += value * n
            tokens += n
            n_utts += len(mb)
        else:
            n_nonfinite += 1
    loss = loss_sum / tokens if tokens else math.nan

    cap = min(cfg.train.valid_max_utts, len(dataset))
    refs, hyps = [], []
    if hasattr(model, "generate"):
        options = DecodingOptions.from_config(cfg.decode, beam_size=1)
        first = list(range(cap))
        wer_sampler = sampler_cls(
            lengths[:cap], cfg.data.max_frames_per_batch, cfg.decode.batch_size, shuffle=False, seed=cfg.train.seed
        )
        for mb in _loader(dataset, first, list(wer_sampler)):
            if stopped():
                return None
            if not len(mb):
                continue
            batch = prepare(mb)
            with autocast():
                if cfg.train.objective == "ctc":
                    by_id = dict(zip(batch.ids, model.ctc_transcribe(batch, modality)))
                else:
                    by_id = {r.id: r.text for r in model.generate(batch, modality, options)}
            refs.extend(mb.texts)
            hyps.extend(by_id.get(uid, "") for uid in mb.ids)
    wer = word_error_rate(refs, hyps, cfg.decode.normalizer) if refs else None
    return ValidResult(step, epoch, loss, wer, n_utts, len(refs), tuple(zip(refs[:3], hyps[:3])), n_nonfinite)
