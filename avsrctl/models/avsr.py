"""AVSRModel: encoders -> connectors -> (fusion) -> token compression -> causal LLM.

Every part is passed in (the builder in builder.py reads the config). The model serves the
modalities its parts allow: 'audio' (audio encoder + connector), 'video' (video encoder +
connector) and 'both' (the two plus fusion).

LLM input, one row per utterance (B frames of 25 Hz input, K = the modality's compression):

    audio: [BOS] <audio> a_1..a_n </audio> prompt transcript EOS        n = ceil(T / K_audio)
    video: [BOS] <video> v_1..v_n </video> prompt transcript EOS        n = ceil(T / K_video)
    both:  [BOS] <audio> <video> f_1..f_n </video> </audio> prompt ...  n = ceil(T / K_fusion)

For 'both' the fused stream is one sequence of tokens, so it is wrapped in both pairs of
markers, nested, which tells the LLM that each token carries both streams. Labels are -100
everywhere except the transcript and EOS, so the model learns to stop. Training rows are
right padded; generation rows are left padded so every row's next token sits at the end.

The marker embeddings the LLM reads are a trainable float32 copy (`marker_embeddings`, 4 x D) of the
rows added to the vocabulary: LoRA freezes the embedding matrix, and markers that cannot
learn would stay random-ish mean vectors. Encoders, connectors and fusion compute in float32
(autocast off for the encoders, so live and cached features agree); their tokens are cast to
the LLM dtype at the boundary.

The auxiliary losses' parts are passed in too (models/losses.py): CTC heads on each stream's
25 Hz connector output (models/ctc.py; the 'ctc' objective trains with them alone, without
running the LLM), an articulation head, the fusion's sync classifier and a video model's
lip-sync loss, with their weights (`loss_weights`, from model.losses); `forward` returns each
loss by name. Generation (greedy and beam search) is avsrctl/decoding.py; `generate` here
only hands the model to it. What the fusion decided for each utterance (video weight, lip sync, lips set aside: a `FusionOutput`) comes back
with the inputs (`LLMInputs.fusion`) and the output (`AVSROutput.fusion`); nothing is kept on the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from avsrctl.data.batch import Batch
from avsrctl.data.manifest import unsure_words
from avsrctl.decoding import DecodingOptions, DecodingResult
from avsrctl.errors import CheckpointError, ModelError, UsageError
from avsrctl.models.articulation import ArticulationHead
from avsrctl.models.connector import compress_tokens
from avsrctl.models.ctc import CTCHeads, ctc_targets
from avsrctl.models.fusion import FusionOutput
from avsrctl.models.llm import AUDIO_END, AUDIO_START, MARKERS, VIDEO_END, VIDEO_START, marker_ids
from avsrctl.models.losses import auxiliary_losses, check_loss_parts
from avsrctl.models.losses import objective as total_objective
from avsrctl.models.sync import LipSync
from avsrctl.models.weights import trainable_mismatches

IGNORE_INDEX = -100  # label of positions that carry no loss (Hugging Face convention)
_OPEN = {"audio": (AUDIO_START,), "video": (VIDEO_START,), "both": (AUDIO_START, VIDEO_START)}
_CLOSE = {"audio": (AUDIO_END,), "video": (VIDEO_END,), "both": (VIDEO_END, AUDIO_END)}


@dataclass(frozen=True)
class AVSROutput:
    loss: torch.Tensor | None  # mean cross-entropy over transcript + EOS tokens (None without texts)
    logits: torch.Tensor  # (N, V) float32, the predictions at the N supervised positions only
    n_tokens: int  # supervised tokens in the batch (weights the loss across micro-batches)
    # the auxiliary losses by name (models/losses.py), those computed: ctc (per character, mean over
    # streams), articulation, sync (the fusion's) or lip_sync (a video model's); training only, but
    # the CTC of the 'ctc' objective always
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    objective: torch.Tensor | None = None  # what training minimises: loss + each weight x its loss (None: loss)
    fusion: FusionOutput | None = None  # 'both' with the LLM objective: what the fusion decided per utterance

    @property
    def ctc(self) -> torch.Tensor | None:
        return self.losses.get("ctc")

    @property
    def articulation(self) -> torch.Tensor | None:
        return self.losses.get("articulation")

    @property
    def sync(self) -> torch.Tensor | None:
        """The audio-visual agreement loss: the fusion's, or a video model's lip-sync loss."""
        return self.losses.get("sync", self.losses.get("lip_sync"))


@dataclass(frozen=True)
class LLMInputs:
    """What `AVSRModel.llm_inputs` gives the LLM, and what the fusion decided on the way."""

    embeds: torch.Tensor  # (B, L, D) inputs_embeds in the LLM dtype
    attention_mask: torch.Tensor  # (B, L) 1 on real positions
    labels: torch.Tensor  # (B, L) IGNORE_INDEX except the transcript and EOS
    fusion: FusionOutput | None = None  # 'both': video weight, lip sync and set-aside lips per utterance


def _frozen(module: nn.Module) -> bool:
    return not any(p.requires_grad for p in module.parameters())


class AVSRModel(nn.Module):
    def __init__(
        self,
        encoders: dict[str, nn.Module],
        connectors: dict[str, nn.Module],
        fusion: nn.Module | None,
        llm: nn.Module,
        tokenizer,
        prompt: str,
        *,
        ctc_heads: CTCHeads | None = None,
        articulation_head: ArticulationHead | None = None,
        lip_sync: LipSync | None = None,
        loss_weights: dict[str, float] | None = None,
    ):
        """The streams' encoders and connectors by name ('audio', 'video'), the fusion (None: no
        'both'), the LLM and its tokenizer, the prompt; then the auxiliary losses' parts (None: that
        loss is off; the sync classifier is the fusion's `sync`) and their weights by name
        (models/losses.py: each part needs a weight above 0 and each weight its part)."""
        super().__init__()
        if set(encoders) - {"audio", "video"} or set(encoders) != set(connectors):
            raise ModelError(
                f"encoders {sorted(encoders)} and connectors {sorted(connectors)} must name the same "
                "streams, 'audio' and/or 'video'"
            )
        d_llm = llm.get_input_embeddings().embedding_dim
        for name, enc in encoders.items():
            conn = connectors[name]
            if enc.output_dim != conn.input_dim:
                raise ModelError(f"{name} encoder gives width {enc.output_dim}, its connector expects {conn.input_dim}")
            if conn.output_dim != d_llm:
                raise ModelError(f"{name} connector gives width {conn.output_dim}, the LLM expects {d_llm}")
        if fusion is not None and fusion.input_dim != d_llm:
            raise ModelError(f"fusion was built for width {fusion.input_dim}, the LLM width is {d_llm}")
        # Flat attributes give flat, stable parameter names: audio_encoder.*, audio_connector.*, ...
        self.audio_encoder = encoders.get("audio")
        self.video_encoder = encoders.get("video")
        self.audio_connector = connectors.get("audio")
        self.video_connector = connectors.get("video")
        self.fusion = fusion
        self.llm = llm
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.marker_index = {m: i for i, m in enumerate(MARKERS)}
        self.marker_vocab_ids = [marker_ids(tokenizer)[m] for m in MARKERS]
        vocab_rows = llm.get_input_embeddings().weight[self.marker_vocab_ids]
        self.marker_embeddings = nn.Parameter(vocab_rows.detach().float().clone())  # (4, D)
        self.bos_id = tokenizer.bos_token_id
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self.prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        # Frozen parameters whose values came from a checkpoint (--init-from a run that trained
        # them): saved with the trainable ones, since a rebuild from the config cannot restore them.
        self.loaded_frozen: set[str] = set()
        # The auxiliary losses' parts; their names are checkpoint keys: ctc_heads.<stream>.*,
        # articulation_head.*, lip_sync.scorer.* (the fusion's classifier is fusion.sync.*)
        self.ctc_heads = CTCHeads((), d_llm) if ctc_heads is None else ctc_heads  # empty: no CTC
        self.articulation_head = articulation_head
        self.lip_sync = lip_sync  # training only: decoding builds the model without it
        self.loss_weights = check_loss_parts(self, loss_weights or {})  # name -> weight (> 0)

    # ------------------------------------------------------------------ properties

    @property
    def modalities(self) -> tuple[str, ...]:
        out = [m for m in ("audio", "video") if self.encoder(m) is not None]
        if len(out) == 2 and self.fusion is not None:
            out.append("both")
        return tuple(out)

    @property
    def device(self) -> torch.device:
        return self.marker_embeddings.device

    @property
    def llm_dtype(self) -> torch.dtype:
        return self.llm.get_input_embeddings().weight.dtype

    def train(self, mode: bool = True) -> "AVSRModel":
        super().train(mode)
        for enc in (self.audio_encoder, self.video_encoder):  # frozen encoders keep eval-mode dropout/norms
            if enc is not None and _frozen(enc):
                enc.eval()
        return self

    def encoder(self, stream: str) -> nn.Module | None:
        return self.audio_encoder if stream == "audio" else self.video_encoder

    def connector(self, stream: str) -> nn.Module | None:
        return self.audio_connector if stream == "audio" else self.video_connector

    # ------------------------------------------------------------------ encoders

    def _run_encoder(self, name: str, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Encoders compute in float32 with autocast off, like the connectors: the features of a
        live step under the trainer's bf16 autocast, of the feature cache (filled outside
        autocast) and of decoding (no autocast) are then the same float32 features."""
        enc = self.encoder(name)
        with torch.autocast(device_type=x.device.type, enabled=False):
            if _frozen(enc):
                with torch.no_grad():
                    return enc(x, lengths).float()
            return enc(x, lengths).float()

    def encode_audio(self, batch: Batch) -> torch.Tensor:
        """(B, 2T, D_a) Whisper features of the batch audio (what the feature cache stores)."""
        if self.audio_encoder is None:
            raise UsageError(f"this model has no audio encoder (modalities: {', '.join(self.modalities)})")
        if batch.audio is None:
            raise ModelError(f"batch {batch.ids[:3]} has no audio")
        return self._run_encoder("audio", batch.audio, batch.lengths)

    def encode_video(self, batch: Batch) -> torch.Tensor:
        """(B, T, D_v) per-frame vision features of the batch video."""
        if self.video_encoder is None:
            raise UsageError(f"this model has no video encoder (modalities: {', '.join(self.modalities)})")
        if batch.video is None:
            raise ModelError(f"batch {batch.ids[:3]} has no video")
        return self._run_encoder("video", batch.video, batch.lengths)

    def _stream(self, batch: Batch, name: str) -> torch.Tensor:
        """(B, T, D) float32 connector output at 25 Hz, from cached features when the batch has them."""
        cached = batch.audio_features if name == "audio" else batch.video_features
        if cached is None:
            cached = self.encode_audio(batch) if name == "audio" else self.encode_video(batch)
        return self.connector(name).project(cached, batch.lengths)

    def streams(self, batch: Batch, modality: str) -> dict[str, torch.Tensor]:
        """The connector outputs (B, T, D) float32 at 25 Hz that one modality reads, by stream name."""
        self._check_modality(modality)
        names = ("audio", "video") if modality == "both" else (modality,)
        return {name: self._stream(batch, name) for name in names}

    def fuse(self, batch: Batch, streams: dict[str, torch.Tensor], min_lip_sync: float | None = None) -> FusionOutput:
        """The fusion of the audio and video streams (B, T, D) and what it decided per utterance;
        `min_lip_sync`: the in-sync threshold outside training (None: the fusion's configured one)."""
        lengths = batch.lengths.to(self.device)
        return self.fusion(streams["audio"], streams["video"], lengths=lengths, min_lip_sync=min_lip_sync)

    def modality_tokens(
        self,
        batch: Batch,
        modality: str,
        streams: dict[str, torch.Tensor] | None = None,
        fused: FusionOutput | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """LLM-width tokens (B, N, D) float32 and their mask (B, N) for one modality ('both': from
        `fused`, the fusion's output, fused here when not given)."""
        streams = self.streams(batch, modality) if streams is None else streams
        lengths = batch.lengths.to(self.device)
        if modality == "both":
            fused = self.fuse(batch, streams) if fused is None else fused
            return compress_tokens(fused.fused, lengths, self.fusion.compression)
        return compress_tokens(streams[modality], lengths, self.connector(modality).compression)

    def _check_modality(self, modality: str) -> None:
        if modality not in self.modalities:
            raise UsageError(
                f"modality '{modality}' is not available in this model (it serves: {', '.join(self.modalities)})",
                hint="build or train the model with that modality (model.modality / --modality)",
            )

    # ------------------------------------------------------------------ LLM inputs

    def target_ids(self, text: str) -> list[int]:
        """Transcript -> token ids + EOS. Light normalisation: strip; case is kept as in the .wrd; an
        unsure word (`~word`, data/manifest.py) reads as the word."""
        return self.targets(text)[0]

    def targets(self, text: str) -> tuple[list[int], list[int]]:
        """(token ids + EOS, their labels): a token of an unsure word is read but labelled IGNORE_INDEX."""
        words = unsure_words(text)
        if not any(u for _, u in words):
            clean = " ".join(w for w, _ in words)
            ids = self.tokenizer(" " + clean, add_special_tokens=False)["input_ids"] if clean else []
            return ids + [self.eos_id], ids + [self.eos_id]
        ids, word_of = self.token_words([w for w, _ in words])
        labels = [IGNORE_INDEX if w >= 0 and words[w][1] else i for i, w in zip(ids, word_of)]
        return ids + [self.eos_id], labels + [self.eos_id]

    def token_words(self, words: list[str]) -> tuple[list[int], list[int]]:
        """Token ids of the transcript `words` (no EOS) and the index of the word each token belongs
        to (-1: none, e.g. a lone space token)."""
        text = " " + " ".join(words)
        try:
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        except NotImplementedError:  # a slow tokenizer has no offsets: one word at a time
            ids, word_of = [], []
            for n, w in enumerate(words):
                piece = self.tokenizer(" " + w, add_special_tokens=False)["input_ids"]
                ids += piece
                word_of += [n] * len(piece)
            return ids, word_of
        spans, at = [], 1  # each word's characters in `text`
        for w in words:
            spans.append((at, at + len(w)))
            at += len(w) + 1
        word_of = [next((n for n, (a, b) in enumerate(spans) if s < b and a < e), -1) for s, e in enc["offset_mapping"]]
        return list(enc["input_ids"]), word_of

    def _embed_ids(self, ids: list[int]) -> torch.Tensor:
        t = torch.tensor(ids, dtype=torch.long, device=self.device)
        return self.llm.get_input_embeddings()(t)  # (L, D)

    def _rows(self, inputs: list[tuple[torch.Tensor, str]], targets: list[tuple[list[int], list[int]]] | None):
        """Per-row embeddings (L_b, D) and labels (L_b,) for [BOS] markers tokens markers prompt [target],
        from each row's modality tokens (N_b, D) and the modality whose markers enclose them."""
        dtype = self.llm_dtype
        head = self._embed_ids([self.bos_id]) if self.bos_id is not None else self.marker_embeddings[:0].to(dtype)
        prompt = self._embed_ids(self.prompt_ids) if self.prompt_ids else self.marker_embeddings[:0].to(dtype)
        rows, labels = [], []
        for b, (tokens, modality) in enumerate(inputs):
            opens = self.marker_embeddings[[self.marker_index[m] for m in _OPEN[modality]]].to(dtype)
            closes = self.marker_embeddings[[self.marker_index[m] for m in _CLOSE[modality]]].to(dtype)
            parts = [head, opens, tokens.to(dtype), closes, prompt]
            n_context = sum(p.shape[0] for p in parts)
            lab = [IGNORE_INDEX] * n_context
            if targets is not None:
                ids, target_labels = targets[b]
                parts.append(self._embed_ids(ids))
                lab += target_labels
            rows.append(torch.cat(parts, 0))  # (L_b, D)
            labels.append(torch.tensor(lab, dtype=torch.long, device=self.device))
        return rows, labels

    @staticmethod
    def _pad(rows: list[torch.Tensor], labels: list[torch.Tensor], left: bool):
        """Stack rows to (B, L, D) with an attention mask (B, L) and labels (B, L)."""
        L = max(r.shape[0] for r in rows)
        embeds, masks, labs = [], [], []
        for r, lab in zip(rows, labels):
            pad = L - r.shape[0]
            where = (0, 0, pad, 0) if left else (0, 0, 0, pad)
            embeds.append(F.pad(r, where))
            one = torch.ones(r.shape[0], dtype=torch.long, device=r.device)
            masks.append(F.pad(one, (pad, 0) if left else (0, pad)))
            labs.append(F.pad(lab, (pad, 0) if left else (0, pad), value=IGNORE_INDEX))
        return torch.stack(embeds), torch.stack(masks), torch.stack(labs)  # (B, L, D), (B, L), (B, L)

    def llm_inputs(
        self,
        batch: Batch,
        modality: str,
        with_targets: bool = True,
        streams: dict[str, torch.Tensor] | None = None,
        min_lip_sync: float | None = None,
    ) -> LLMInputs:
        """The LLM's inputs_embeds (B, L, D), attention_mask (B, L) and labels (B, L), with the
        fusion's decisions for 'both'.

        A 'both' utterance whose lips the fusion set aside (fusion.py, outside training, in-sync
        probability below `min_lip_sync`, None: the fusion's configured threshold) reads exactly
        as in audio mode: the audio connector's tokens between the audio markers.
        """
        streams = self.streams(batch, modality) if streams is None else streams
        fused = self.fuse(batch, streams, min_lip_sync) if modality == "both" else None
        tokens, mask = self.modality_tokens(batch, modality, streams, fused)
        inputs = [(tokens[b, :n], modality) for b, n in enumerate(mask.sum(1).tolist())]
        aside = None if fused is None else fused.set_aside
        if aside is not None and bool(aside.any()) and "audio" in self.modalities:
            audio, audio_mask = self.modality_tokens(batch, "audio", streams)
            for b in aside.nonzero()[:, 0].tolist():
                inputs[b] = (audio[b, : int(audio_mask[b].sum())], "audio")
        targets = [self.targets(t) for t in batch.texts] if with_targets else None
        rows, labels = self._rows(inputs, targets)
        return LLMInputs(*self._pad(rows, labels, left=not with_targets), fusion=fused)

    def build_inputs(
        self, batch: Batch, modality: str, with_targets: bool = True, streams: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs_embeds, attention_mask, labels) of `llm_inputs`, without the fusion's decisions."""
        inputs = self.llm_inputs(batch, modality, with_targets, streams)
        return inputs.embeds, inputs.attention_mask, inputs.labels

    # ------------------------------------------------------------------ forward

    def forward(self, batch: Batch, modality: str, objective: str = "llm") -> AVSROutput:
        """Training/validation losses. objective 'llm': the LLM's cross-entropy on transcript + EOS (plus
        each auxiliary loss x its weight while training); 'ctc': the CTC alone, per character, without
        running the LLM (plus the other auxiliary losses while training)."""
        streams = self.streams(batch, modality)
        aux = auxiliary_losses(self, streams, batch)  # articulation, sync, lip_sync: {} outside training
        if objective == "ctc":
            if not len(self.ctc_heads):
                raise UsageError("the 'ctc' objective needs CTC heads: set model.losses.ctc above 0")
            ctc = self.ctc_heads.loss(streams, batch.texts, batch.lengths)
            n_chars = sum(len(t) for t in ctc_targets(batch.texts))
            losses = {"ctc": ctc, **aux}
            return AVSROutput(
                loss=ctc,
                logits=ctc.new_zeros(0, 0),
                n_tokens=n_chars,
                losses=losses,
                objective=total_objective(ctc, losses, self.loss_weights, ctc_is_main=True),
            )
        if objective != "llm":
            raise ModelError(f"unknown training objective '{objective}' (expected 'llm' or 'ctc')")
        inputs = self.llm_inputs(batch, modality, with_targets=True, streams=streams)
        embeds, attn, labels = inputs.embeds, inputs.attention_mask, inputs.labels
        targets = labels[:, 1:]  # (B, L-1): position t predicts token t+1
        keep = targets != IGNORE_INDEX  # (B, L-1) transcript + EOS only
        decoder, head = self.llm.get_decoder(), self.llm.get_output_embeddings()
        if decoder is None or head is None:  # an architecture without the usual split: full forward
            out = self.llm(inputs_embeds=embeds, attention_mask=attn, use_cache=False)
            logits = out.logits[:, :-1][keep].float()  # (N, V)
        else:
            # Only the ~10 transcript positions of a ~50-token row need the vocabulary projection;
            # projecting every position onto 49k+ entries costs a fifth of a small LLM's compute.
            hidden = decoder(inputs_embeds=embeds, attention_mask=attn, use_cache=False).last_hidden_state
            logits = head(hidden[:, :-1][keep]).float()  # (N, V)
        loss = F.cross_entropy(logits, targets[keep]) if logits.shape[0] else None
        losses = {}
        if self.training and len(self.ctc_heads) and loss is not None:
            losses["ctc"] = self.ctc_heads.loss(streams, batch.texts, batch.lengths)
        losses.update(aux)
        return AVSROutput(
            loss=loss,
            logits=logits,
            n_tokens=int(keep.sum()),
            losses=losses,
            objective=total_objective(loss, losses, self.loss_weights, ctc_is_main=False),
            fusion=inputs.fusion,
        )

    # ------------------------------------------------------------------ decoding

    def generate(self, batch: Batch, modality: str, options: DecodingOptions | None = None) -> list[DecodingResult]:
        """Greedy or beam search, one result per row: `avsrctl.decoding.generate` on this model."""
        from avsrctl.decoding import generate

        return generate(self, batch, modality, options)

    @torch.no_grad()
    def ctc_transcribe(self, batch: Batch, modality: str) -> list[str]:
        """Greedy CTC transcripts from the CTC heads (for 'both', the mean of the two streams' log-probabilities).

        What validation decodes when the run trains the CTC objective alone, where the LLM has not learnt
        to read the streams yet.
        """
        if not len(self.ctc_heads):
            raise UsageError("this model has no CTC heads (model.losses.ctc is 0)")
        was_training = self.training
        self.eval()
        try:
            streams = self.streams(batch, modality)
        finally:
            self.train(was_training)
        return self.ctc_heads.greedy(streams, batch.lengths)

    # ------------------------------------------------------------------ trainable weights

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: the parameters that train (connectors, fusion, markers, LoRA,
        unfrozen encoders) plus the frozen ones loaded from a checkpoint (`keep_loaded`)."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad or n in self.loaded_frozen}

    def keep_loaded(self, names) -> set[str]:
        """Mark frozen parameters among `names` as loaded from a checkpoint, so they are loaded by
        `load_trainable_state_dict` and saved with the trainable weights. Returns those marked."""
        frozen = {n for n, p in self.named_parameters() if not p.requires_grad}
        marked = frozen & set(names)
        self.loaded_frozen |= marked
        return marked

    def load_trainable_state_dict(self, state_dict: dict[str, torch.Tensor], strict: bool = True) -> None:
        """Load weights saved by `trainable_state_dict`; strict checks the keys match exactly."""
        params = {n: p for n, p in self.named_parameters() if p.requires_grad or n in self.loaded_frozen}
        problems = trainable_mismatches(params, state_dict, strict=strict)
        if problems:
            raise CheckpointError("trainable weights do not fit this model: " + "; ".join(problems))
        with torch.no_grad():
            for k, p in params.items():
                if k in state_dict:
                    p.copy_(state_dict[k].to(device=p.device, dtype=p.dtype))
        for stream in ("audio", "video"):  # a frozen encoder with loaded weights is another encoder
            enc = self.encoder(stream)
            prefix = f"{stream}_encoder."
            if enc is not None and any(k.startswith(prefix) and k in self.loaded_frozen for k in state_dict):
                from avsrctl.models.weights import params_fingerprint

                base = str(getattr(enc, "identity", "") or "").split("+loaded:")[0]
                enc.identity = f"{base}+loaded:{params_fingerprint(enc)}"  # keys the feature cache
