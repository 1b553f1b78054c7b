"""Auxiliary character CTC: one linear head per stream on its 25 Hz connector output.

An encoder trained from scratch gets its own gradient from it instead of only through the
LLM; the 'ctc' objective trains with it alone, and validation then decodes it greedily.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

# Characters of the CTC targets (index 0 is the blank); transcripts are lower-cased and any
# other character is left out of the target.
CTC_CHARS = " 'abcdefghijklmnopqrstuvwxyz0123456789"
_CTC_INDEX = {c: i + 1 for i, c in enumerate(CTC_CHARS)}


def ctc_targets(texts: list[str]) -> list[list[int]]:
    """Transcripts -> CTC character indices (lower-cased; characters outside CTC_CHARS left out)."""
    return [[_CTC_INDEX[c] for c in text.lower() if c in _CTC_INDEX] for text in texts]


class CTCHeads(nn.ModuleDict):
    """`Linear(width, len(CTC_CHARS) + 1)` per stream name; empty when the model has no CTC.

    A ModuleDict, so the weights keep the names `ctc_heads.<stream>.weight` in checkpoints.
    """

    def __init__(self, streams: Iterable[str], width: int):
        super().__init__({name: nn.Linear(width, len(CTC_CHARS) + 1) for name in sorted(streams)})

    def log_probs(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) stream -> (B, T, C) float32 log-probabilities, outside any autocast."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return torch.log_softmax(self[name](x.float()), -1)  # (B, T, C)

    def loss(self, streams: dict[str, torch.Tensor], texts: list[str], lengths: torch.Tensor) -> torch.Tensor:
        """Character CTC of each stream's 25 Hz output (B, T, D) against the transcripts, mean over streams."""
        device = next(iter(streams.values())).device
        targets = ctc_targets(texts)
        flat = torch.tensor([i for t in targets for i in t], dtype=torch.long, device=device)
        target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long, device=device)
        lengths = lengths.to(device)
        losses = []
        for name, x in streams.items():
            logp = self.log_probs(name, x)  # (B, T, C)
            # zero_infinity: a transcript longer than its frames allow gives no gradient, not inf
            losses.append(
                F.ctc_loss(
                    logp.transpose(0, 1), flat, lengths, target_lengths, blank=0, reduction="mean", zero_infinity=True
                )
            )
        return torch.stack(losses).mean()

    @torch.no_grad()
    def greedy(self, streams: dict[str, torch.Tensor], lengths: torch.Tensor) -> list[str]:
        """Best path per row (for several streams, of their mean log-probabilities), blanks and repeats removed."""
        logp = torch.stack([self.log_probs(n, x) for n, x in streams.items()]).mean(0)  # (B, T, C)
        texts = []
        for b, n in enumerate(lengths.tolist()):
            ids = torch.unique_consecutive(logp[b, :n].argmax(-1)).tolist()
            texts.append(" ".join("".join(CTC_CHARS[i - 1] for i in ids if i).split()))
        return texts
