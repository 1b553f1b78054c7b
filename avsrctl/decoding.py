"""Decoding options and results: what `AVSRModel.generate` takes and returns.

Both are frozen dataclasses checked in one place (`__post_init__`), so a bad value fails
before any model runs and names itself. The search itself (greedy or beam search with a
KV cache) is Hugging Face `generate` on the LLM, driven by `AVSRModel.generate`.

This module does not import torch: the CLI builds options before loading a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from avsrctl.errors import UsageError


@dataclass(frozen=True)
class DecodingOptions:
    beam_size: int = 1  # 1: greedy search; >1: beam search
    max_new_tokens: int = 64  # upper bound on generated tokens per utterance (EOS usually stops first)
    length_penalty: float = 1.0  # beam search only, Hugging Face convention: score / length**penalty

    def __post_init__(self) -> None:
        if isinstance(self.beam_size, bool) or not isinstance(self.beam_size, int) or self.beam_size < 1:
            raise UsageError(f"beam_size must be an integer >= 1 (got {self.beam_size!r})")
        if (
            isinstance(self.max_new_tokens, bool)
            or not isinstance(self.max_new_tokens, int)
            or self.max_new_tokens < 1
        ):
            raise UsageError(f"max_new_tokens must be an integer >= 1 (got {self.max_new_tokens!r})")
        if not isinstance(self.length_penalty, (int, float)) or not math.isfinite(self.length_penalty):
            raise UsageError(f"length_penalty must be a finite number (got {self.length_penalty!r})")

    @property
    def is_greedy(self) -> bool:
        return self.beam_size == 1

    @classmethod
    def from_config(cls, decode_cfg) -> "DecodingOptions":
        """Options from a `DecodeConfig` section (the `decode:` part of a config)."""
        return cls(
            beam_size=decode_cfg.beam_size,
            max_new_tokens=decode_cfg.max_new_tokens,
            length_penalty=float(decode_cfg.length_penalty),
        )


@dataclass(frozen=True)
class DecodingResult:
    id: str  # utterance id from the batch
    text: str  # decoded transcript (special tokens removed, surrounding spaces stripped)
    token_ids: tuple[int, ...]  # generated ids up to and excluding EOS
    score: float  # mean log-probability per generated token (greedy) or the beam's final score
    modality: str  # 'audio', 'video' or 'both'
    n_input_tokens: int  # LLM input length for this utterance (markers + modality tokens + prompt)
    stopped_at_eos: bool  # False when max_new_tokens cut the hypothesis short

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "text": self.text,
            "token_ids": list(self.token_ids),
            "score": self.score,
            "modality": self.modality,
            "n_input_tokens": self.n_input_tokens,
            "stopped_at_eos": self.stopped_at_eos,
        }
