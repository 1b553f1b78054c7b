"""Decoding: options, results, and the search that turns an AVSRModel's inputs into text.

Options and results are frozen dataclasses checked in one place (`__post_init__`). `generate`
runs greedy or beam search with a KV cache (Hugging Face `generate` on the LLM) over the rows
that `AVSRModel.llm_inputs` makes, and scores each hypothesis by its mean log-probability.

The lips' vocabulary (fused models with the sync classifier, models/fusion.py): `lip_sync` is an
utterance's mean probability that its lips move with its voice; `min_lip_sync` the threshold below
which a fused ('both') decode sets the lips aside (reads the utterance from its audio alone) and a
decode of the lips alone ('video') says they are below it; `video_weight` the mean weight the fusion
gave the lips (0 when set aside). The threshold is an option of the decode (`DecodingOptions`),
passed into the fusion's forward; the loaded model is never changed.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from avsrctl.errors import UsageError

_SCORE_CHUNK = 1 << 26  # logits elements scored at once after beam search (~256 MB in float32)


@dataclass(frozen=True)
class DecodingOptions:
    beam_size: int = 1  # 1: greedy search; >1: beam search
    max_new_tokens: int = 64  # upper bound on generated tokens per utterance (EOS usually stops first)
    length_penalty: float = 1.0  # beam search only, Hugging Face convention: score / length**penalty
    # fused models with the sync classifier: lips with a lower mean in-sync probability are set aside
    # ('both') or said to be below it ('video'); None: the checkpoint's model.fusion.min_lip_sync
    min_lip_sync: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.beam_size, bool) or not isinstance(self.beam_size, int) or self.beam_size < 1:
            raise UsageError(f"beam_size must be an integer >= 1 (got {self.beam_size!r})")
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise UsageError(f"max_new_tokens must be an integer >= 1 (got {self.max_new_tokens!r})")
        if not isinstance(self.length_penalty, (int, float)) or not math.isfinite(self.length_penalty):
            raise UsageError(f"length_penalty must be a finite number (got {self.length_penalty!r})")
        check_min_lip_sync(self.min_lip_sync)

    @classmethod
    def from_config(
        cls,
        decode_cfg,
        *,
        beam_size: int | None = None,
        max_new_tokens: int | None = None,
        min_lip_sync: float | None = None,
    ) -> "DecodingOptions":
        """Options from a `DecodeConfig` section (the `decode:` part of a config); a value given here
        (a command-line flag) wins over the config's. `min_lip_sync` None: the model's own threshold."""
        return cls(
            beam_size=beam_size or decode_cfg.beam_size,
            max_new_tokens=max_new_tokens or decode_cfg.max_new_tokens,
            length_penalty=float(decode_cfg.length_penalty),
            min_lip_sync=None if min_lip_sync is None else float(min_lip_sync),
        )


def check_min_lip_sync(value: float | None) -> None:
    """A usage error unless `value` is None or a valid in-sync threshold, in [0, 1)."""
    if value is not None and not 0.0 <= value < 1.0:
        raise UsageError(f"--min-lip-sync must be in [0, 1) (got {value})")


def sync_fusion(model):
    """The model's fusion when it has the sync classifier, else None."""
    fusion = getattr(model, "fusion", None)
    return fusion if fusion is not None and getattr(fusion, "sync", None) is not None else None


def check_options_fit(model, options: DecodingOptions) -> None:
    """A usage error when `options` ask `model` for what it cannot do: an in-sync threshold
    (`min_lip_sync`) without a fused model's sync classifier."""
    if options.min_lip_sync is not None and sync_fusion(model) is None:
        raise UsageError(
            "--min-lip-sync needs a fused model with the sync classifier",
            hint="it applies to checkpoints trained with model.losses.sync above 0",
        )


def lip_sync_threshold(model, options: DecodingOptions | None = None) -> float | None:
    """The in-sync threshold a decode with `options` reads the lips with: the options' own, else the
    model's configured one (model.fusion.min_lip_sync); None without a sync classifier."""
    fusion = sync_fusion(model)
    if fusion is None:
        return None
    return fusion.min_lip_sync if options is None or options.min_lip_sync is None else options.min_lip_sync


def lip_sync_setting(model, modality: str, options: DecodingOptions | None = None) -> dict:
    """{"min_lip_sync": value} for a report's settings when `modality` 'both' reads a sync classifier
    (below it, lips are set aside), or 'video' can (below it, the lips are said not to follow the voice);
    the value is `lip_sync_threshold` of the decode's `options`."""
    threshold = lip_sync_threshold(model, options)
    return {"min_lip_sync": threshold} if modality in ("both", "video") and threshold is not None else {}


@dataclass(frozen=True)
class DecodingResult:
    id: str  # utterance id from the batch
    text: str  # decoded transcript (special tokens removed, surrounding spaces stripped)
    token_ids: tuple[int, ...]  # generated ids up to and excluding EOS
    score: float  # mean log-probability per generated token, EOS included (greedy and beam alike)
    modality: str  # 'audio', 'video' or 'both'
    n_input_tokens: int  # LLM input length for this utterance (markers + modality tokens + prompt)
    stopped_at_eos: bool  # False when max_new_tokens cut the hypothesis short
    video_weight: float | None = None  # 'both': mean weight the fusion gave the video over the clip's frames
    lip_sync: float | None = None  # sync classifier's mean P(lips move with the voice): 'both'; 'video' + audio
    # log-probability of each token of token_ids under the model's raw distribution (EOS not included);
    # `score` is their mean with EOS's. Not written by to_dict.
    token_logprobs: tuple[float, ...] = ()

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "text": self.text,
            "token_ids": list(self.token_ids),
            "score": self.score,
            "modality": self.modality,
            "n_input_tokens": self.n_input_tokens,
            "stopped_at_eos": self.stopped_at_eos,
            **({} if self.video_weight is None else {"video_weight": self.video_weight}),
            **({} if self.lip_sync is None else {"lip_sync": self.lip_sync}),
        }


# ---------------------------------------------------------------------------- search


class _StepScorer:
    """A logits processor for greedy search: keeps the log-probability of each chosen token under
    the model's raw distribution, then masks the tokens that are never generated.

    Step t sees the token chosen at step t-1 as the last input id, so only one step's (B, V)
    log-probabilities are held at a time; the final token is read in `scores`.
    """

    def __init__(self, never: list[int]):
        self.never = torch.tensor(never, dtype=torch.long)
        self.logp: torch.Tensor | None = None  # (B, V) of the step whose token is not chosen yet
        self.taken: list[torch.Tensor] = []  # (B,) per generated token

    def _take(self, chosen: torch.Tensor) -> None:
        self.taken.append(self.logp.gather(-1, chosen[:, None])[:, 0])

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.logp is not None:
            self._take(input_ids[:, -1])
        self.logp = torch.log_softmax(scores.float(), -1)
        if self.never.numel():
            scores = scores.index_fill(-1, self.never.to(scores.device), float("-inf"))
        return scores

    def logprobs(self, new: torch.Tensor) -> torch.Tensor:
        """(B, n_new) log-probability of each generated token."""
        if new.shape[1] == 0:
            return new.new_zeros(new.shape, dtype=torch.float32)
        self._take(new[:, -1])
        taken = torch.stack(self.taken, 1)  # (B, n_new)
        assert taken.shape == new.shape, f"{taken.shape[1]} scored steps for {new.shape[1]} generated tokens"
        return taken


@torch.no_grad()
def generate(model, batch, modality: str, options: DecodingOptions | None = None) -> list[DecodingResult]:
    """Batched greedy (beam_size 1) or beam search with KV cache over an AVSRModel; stops at EOS."""
    from transformers import GenerationConfig

    options = options or DecodingOptions()
    check_options_fit(model, options)
    if len(batch) == 0:
        return []
    was_training = model.training
    model.eval()
    try:
        streams, lip_syncs = None, None
        judge = sync_fusion(model)
        if modality == "video" and judge is not None and (batch.audio is not None or batch.audio_features is not None):
            # lips read alone by a fused model that can tell whether they follow the voice: say so,
            # from the clip's audio, which the transcript itself never reads
            streams = model.streams(batch, "both")
            lengths = batch.lengths.to(model.device)
            lip_syncs = judge.mean_sync(streams["audio"], streams["video"], lengths).tolist()
        inputs = model.llm_inputs(
            batch, modality, with_targets=False, streams=streams, min_lip_sync=options.min_lip_sync
        )
        embeds, attn, fused = inputs.embeds, inputs.attention_mask, inputs.fusion
        video_weights = fused.video_weight.tolist() if fused is not None else None
        if fused is not None and fused.lip_sync is not None:
            lip_syncs = fused.lip_sync.tolist()
        greedy = options.beam_size == 1
        # Greedy search scores its tokens as it goes (one (B, V) step held at a time) and so
        # applies the suppression itself, after reading the model's own distribution.
        scorer = _StepScorer(never_generated(model)) if greedy else None
        gen_cfg = GenerationConfig(
            max_new_tokens=options.max_new_tokens,
            num_beams=options.beam_size,
            do_sample=False,
            length_penalty=options.length_penalty,
            early_stopping=True if options.beam_size > 1 else False,
            eos_token_id=model.eos_id,
            pad_token_id=model.pad_id,
            bos_token_id=model.bos_id,
            suppress_tokens=None if greedy else never_generated(model),
            use_cache=True,
        )
        with only_these_settings(model.llm, gen_cfg):
            new = model.llm.generate(
                inputs_embeds=embeds,
                attention_mask=attn,
                generation_config=gen_cfg,
                logits_processor=[scorer] if greedy else None,
            )  # (B, L_new)
        logprobs = scorer.logprobs(new) if greedy else teacher_forced_logprobs(model, embeds, attn, new)
        scores = mean_kept(logprobs, kept_tokens(new, model.eos_id))
    finally:
        model.train(was_training)
    n_inputs = attn.sum(1).tolist()
    results = []
    for b in range(len(batch)):
        ids = new[b].tolist()
        stopped = model.eos_id in ids
        ids = ids[: ids.index(model.eos_id)] if stopped else ids
        token_logprobs = tuple(logprobs[b, : len(ids)].tolist())
        text = model.tokenizer.decode(ids, skip_special_tokens=True).strip()
        results.append(
            DecodingResult(
                id=batch.ids[b],
                text=text,
                token_ids=tuple(ids),
                score=scores[b],
                modality=modality,
                n_input_tokens=int(n_inputs[b]),
                stopped_at_eos=stopped,
                video_weight=None if video_weights is None else video_weights[b],
                lip_sync=None if lip_syncs is None else lip_syncs[b],
                token_logprobs=token_logprobs,
            )
        )
    return results


@contextlib.contextmanager
def only_these_settings(llm, gen_cfg):
    """Run `generate` with `gen_cfg` alone. transformers fills every setting a passed config
    leaves unset from `llm.generation_config`, which a hub model loads from its
    generation_config.json (repetition_penalty, suppress_tokens, temperature, ...): they would
    change the search and the processed scores that _StepScorer reads. The model's own config is
    the passed one for the call, and is restored after it."""
    saved = llm.generation_config
    llm.generation_config = gen_cfg
    try:
        yield
    finally:
        llm.generation_config = saved


def never_generated(model) -> list[int]:
    """Pad, BOS and the markers only ever appear in the input; EOS must stay reachable."""
    ids = {model.pad_id, model.bos_id, *model.marker_vocab_ids} - {model.eos_id, None}
    return sorted(ids)


def kept_tokens(new: torch.Tensor, eos_id: int) -> torch.Tensor:
    """(B, n_new) bool: generated tokens up to and including the first EOS; later ones are padding."""
    is_eos = (new == eos_id).long()
    return (torch.cumsum(is_eos, 1) - is_eos) == 0


def mean_kept(logprobs: torch.Tensor, keep: torch.Tensor) -> list[float]:
    """Mean log-probability per kept token (`keep`: up to and including the first EOS); 0 for none."""
    if logprobs.shape[1] == 0:
        return [0.0] * logprobs.shape[0]
    keep = keep.to(logprobs.dtype)
    return ((logprobs * keep).sum(1) / keep.sum(1).clamp(min=1)).tolist()


def teacher_forced_scores(model, embeds: torch.Tensor, attn: torch.Tensor, new: torch.Tensor) -> list[float]:
    """Mean log-probability per generated token (EOS included) by one teacher-forced pass."""
    return mean_kept(teacher_forced_logprobs(model, embeds, attn, new), kept_tokens(new, model.eos_id))


def teacher_forced_logprobs(model, embeds: torch.Tensor, attn: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """(B, n_new) log-probability of each generated token by one teacher-forced pass (0 after the first EOS).

    For beam search: the beam scores of `generate` are taken after suppress_tokens and divided
    by the length penalty, so the raw measure takes this pass. Greedy search uses `_StepScorer`.
    """
    B, n_new = new.shape
    if n_new == 0:
        return new.new_zeros(new.shape, dtype=torch.float32)
    keep = kept_tokens(new, model.eos_id)  # (B, n_new)
    full = torch.cat([embeds, model.llm.get_input_embeddings()(new)], 1)  # (B, L + n_new, D)
    mask = torch.cat([attn, keep.long()], 1)  # (B, L + n_new)
    positions = (mask.cumsum(1) - 1).clamp(min=0)  # left padding: positions start at each row's first token
    vocab = model.llm.get_output_embeddings().weight.shape[0]
    step = max(1, _SCORE_CHUNK // max(1, (n_new + 1) * vocab))
    out = []
    for s in range(0, B, step):
        sl = slice(s, s + step)
        logits = (
            model.llm(
                inputs_embeds=full[sl],
                attention_mask=mask[sl],
                position_ids=positions[sl],
                use_cache=False,
                logits_to_keep=n_new + 1,
            )
            .logits[:, :-1]
            .float()
        )  # (b, n_new, V): the prediction of each generated token
        logp = torch.log_softmax(logits, -1).gather(-1, new[sl, :, None])[..., 0]  # (b, n_new)
        out.append(logp * keep[sl])
    return torch.cat(out, 0)
