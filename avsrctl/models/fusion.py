"""Fusion of the aligned audio and video streams ('both'): a per-frame weighted average at 25 Hz.

fused[b, t] = w[b, t] * audio[b, t] + (1 - w[b, t]) * video[b, t]

Both inputs come out of the connectors at 25 Hz with the same T by construction (the audio
was cut or padded to 640 samples per video frame and pooled 2x), so frame t of one stream is
the same instant as frame t of the other. Mismatched lengths are an error: padding one stream
to the other's length would average speech with silence at the end of every shorter clip.

Weighting:
- 'dynamic' (stream reliability): a small gate reads [audio_t; video_t] and gives one audio
  weight per frame, smoothed over 5 frames (200 ms), so the model can lean on the lips where the
  audio is drowned and ignore them where the video is frozen, occluded or unlike any face it has
  seen. The gate starts at the configured `weight` for every frame (zero output layer, bias at
  its logit). With `sync` on, the video weight is also multiplied by the probability that the
  lips are in sync with the voice (models/sync.py), which sees what a per-frame gate cannot:
  a plausible mouth saying something else.
  Outside training, an utterance whose mean in-sync probability (`lip_sync`) is below
  `min_lip_sync` has its lips set aside (video weight 0 on every frame, `FusionOutput.set_aside`),
  and the model then reads it exactly as in its audio mode (AVSRModel.llm_inputs): lips that
  disagree with the voice over the whole utterance are left out rather than let in at a small
  weight, which on real faces unlike any the lip reader was trained on still flips a word or two.
  Training keeps the soft weights, so the gate and the classifier go on learning from every
  utterance.
- 'static': w fixed, or learned per feature channel (D values) and then the same for every
  frame and utterance. A learned w is the sigmoid of a learned logit, squeezed into
  [1e-6, 1 - 1e-6] so that it stays strictly inside (0, 1) however far the logit goes (a float32
  sigmoid reaches exactly 1.0 from a logit of ~17).

Modality dropout (training only): for each utterance, with probability p, one stream is
dropped (audio or video with equal chance) and the utterance uses the other stream alone.
The weights are renormalised over the streams kept (the kept one gets weight 1), rather than
zeroing a stream and still scaling the other by w, which would also shrink the input.
The fused stream is then compressed by `compression` frames per LLM token.

`forward` returns a `FusionOutput`: the fused stream and what the fusion decided for each
utterance: `video_weight` (B,), its mean video weight (1 - w) over its real frames, how much the
model leaned on the lips (decode reports it); `lip_sync` (B,), the mean in-sync probability when
`sync` is on (None otherwise); `set_aside` (B,) bool, the utterances whose lips were left out
(None when none can be: training, no classifier, or a threshold of 0). The threshold is the
module's `min_lip_sync` (from the config) unless the call passes its own (decoding.DecodingOptions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avsrctl.errors import ModelError
from avsrctl.models.connector import frame_mask
from avsrctl.models.sync import SyncScorer

_W_EPS = 1e-3  # keeps a learned weight's initial logit finite when weight is 0 or 1
_W_BOUND = 1e-6  # a learned weight lies in [_W_BOUND, 1 - _W_BOUND]: each stream keeps a share


def _mean_over_frames(x: torch.Tensor, real: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """(B, T) per-frame values -> (B,) their mean over each utterance's n real frames (mask `real`)."""
    return (x.float() * real).sum(1) / n


def _bounded_sigmoid(logit: torch.Tensor) -> torch.Tensor:
    """sigmoid squeezed into [_W_BOUND, 1 - _W_BOUND] (float32 sigmoid alone rounds to 0 and 1)."""
    return _W_BOUND + (1.0 - 2.0 * _W_BOUND) * torch.sigmoid(logit)


@dataclass(frozen=True)
class FusionOutput:
    """What `WeightedFusion.forward` returns: the fused stream and what it decided per utterance."""

    fused: torch.Tensor  # (B, T, D) the weighted average of the two streams
    video_weight: torch.Tensor  # (B,) mean video weight (1 - w) over the real frames; 0 when set aside
    lip_sync: torch.Tensor | None = None  # (B,) mean P(lips in sync with the voice); None without `sync`
    set_aside: torch.Tensor | None = None  # (B,) bool: lips left out, read as audio alone; None: none can be


def check_threshold(min_lip_sync: float) -> float:
    """`min_lip_sync` as a float when it lies in [0, 1), else a ModelError."""
    if not 0.0 <= min_lip_sync < 1.0:
        raise ModelError(f"fusion min_lip_sync must be in [0, 1) (got {min_lip_sync})")
    return float(min_lip_sync)


WEIGHTINGS = ("static", "dynamic")
GATE_SMOOTH = 5  # frames over which the dynamic weight is averaged (200 ms at 25 Hz)


class WeightedFusion(nn.Module):
    def __init__(
        self,
        dim: int,
        *,
        weight: float = 0.5,
        learned: bool = False,
        compression: int = 2,
        modality_dropout: float = 0.0,
        weighting: str = "dynamic",
        gate_hidden: int = 64,
        sync: bool = False,
        min_lip_sync: float = 0.5,
    ):
        """Fusion of two `dim`-wide streams; the defaults are model.fusion's (builder.build_fusion
        reads the config), `sync` adds the agreement classifier (model.losses.sync > 0) and
        `min_lip_sync` is its decoding threshold."""
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise ModelError(f"fusion weighting must be one of {', '.join(WEIGHTINGS)} (got {weighting!r})")
        if not 0.0 <= weight <= 1.0:
            raise ModelError(f"fusion weight must be in [0, 1] (got {weight})")
        if not 0.0 <= modality_dropout < 1.0:
            raise ModelError(f"modality_dropout must be in [0, 1) (got {modality_dropout})")
        if compression < 1:
            raise ModelError(f"fusion compression K must be >= 1 (got {compression})")
        self.input_dim = dim
        self.output_dim = dim
        self.compression = compression
        self.modality_dropout = modality_dropout
        self.weighting = weighting
        self.learned = learned  # static weighting only: the dynamic gate always trains
        if sync and weighting != "dynamic":
            raise ModelError("fusion sync needs dynamic weighting (model.fusion.weighting=dynamic)")
        self.sync = SyncScorer(dim) if sync else None
        # outside training, with sync: below this mean P(in sync), audio alone (a call may pass its own)
        self.min_lip_sync = check_threshold(min_lip_sync)
        w = min(max(weight, _W_EPS), 1.0 - _W_EPS)
        if weighting == "dynamic":
            self.gate = nn.Sequential(nn.Linear(2 * dim, gate_hidden), nn.GELU(), nn.Linear(gate_hidden, 1))
            nn.init.zeros_(self.gate[2].weight)  # every frame starts at the configured weight
            nn.init.constant_(self.gate[2].bias, math.log(w / (1.0 - w)))
        elif learned:
            self.logit = nn.Parameter(torch.full((dim,), math.log(w / (1.0 - w))))  # (D,)
        else:
            self.register_buffer("fixed_weight", torch.full((dim,), float(weight)), persistent=False)

    def audio_weight(self, audio: torch.Tensor | None = None, video: torch.Tensor | None = None) -> torch.Tensor:
        """Audio weight w (video gets 1 - w): (D,) per channel for static weighting; (B, T, 1) per
        frame for dynamic weighting, computed from the streams audio, video (B, T, D)."""
        if self.weighting == "static":
            return _bounded_sigmoid(self.logit) if self.learned else self.fixed_weight
        logit = self.gate(torch.cat([audio, video], -1).float())  # (B, T, 1)
        smooth = F.avg_pool1d(
            logit.transpose(1, 2), GATE_SMOOTH, stride=1, padding=GATE_SMOOTH // 2, count_include_pad=False
        )  # (B, 1, T)
        return _bounded_sigmoid(smooth.transpose(1, 2))  # (B, T, 1)

    @torch.no_grad()
    def mean_sync(self, audio: torch.Tensor, video: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) each utterance's mean in-sync probability over its real frames, as `forward` returns
        it in `FusionOutput.lip_sync`, without fusing: how well the lips follow the voice when the
        model reads the lips alone. Needs `sync`."""
        if self.sync is None:
            raise ModelError("mean_sync needs the sync classifier (model.losses.sync > 0)")
        T = audio.shape[1]
        n = lengths.to(audio.device).clamp(1, T)
        return _mean_over_frames(self.sync(audio, video, n)[..., 0], frame_mask(n, T).float(), n)

    def sample_dropout(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(drop_audio, drop_video), each (B,) bool: p per utterance, then audio or video 50/50."""
        drop = torch.rand(batch_size, device=device) < self.modality_dropout
        audio_side = torch.rand(batch_size, device=device) < 0.5
        return drop & audio_side, drop & ~audio_side

    def forward(
        self,
        audio: torch.Tensor,
        video: torch.Tensor,
        drop_audio: torch.Tensor | None = None,
        drop_video: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        min_lip_sync: float | None = None,
    ) -> FusionOutput:
        """audio, video (B, T, D) aligned at 25 Hz -> FusionOutput with fused (B, T, D).

        drop_audio / drop_video (B,) bool use only the other stream for those utterances;
        when not given and the module is training, they are sampled (modality dropout).
        lengths (B,) real frames per utterance, for the means over frames (all T when not given).
        min_lip_sync: the in-sync threshold below which an utterance's lips are set aside outside
        training (None: the module's own `min_lip_sync`).
        """
        if audio.shape != video.shape:
            raise ModelError(
                f"fusion needs frame-aligned streams of the same shape, got audio {tuple(audio.shape)} "
                f"and video {tuple(video.shape)}; align the audio to 640 samples per video frame"
            )
        B, _, D = audio.shape
        if D != self.input_dim:
            raise ModelError(f"fusion was built for width {self.input_dim}, got {D}")
        if drop_audio is None and drop_video is None and self.training and self.modality_dropout > 0:
            drop_audio, drop_video = self.sample_dropout(B, audio.device)
        T = audio.shape[1]
        n = torch.full((B,), T, device=audio.device) if lengths is None else lengths.to(audio.device).clamp(1, T)
        real = frame_mask(n, T).float()  # (B, T)
        threshold = self.min_lip_sync if min_lip_sync is None else check_threshold(min_lip_sync)
        lip_sync = set_aside = None
        if self.weighting == "dynamic":
            w = self.audio_weight(audio, video)  # (B, T, 1)
            if self.sync is not None:
                r = self.sync(audio, video, n)  # (B, T, 1): the lips' share is scaled by their agreement
                w = 1.0 - (1.0 - w) * r
                with torch.no_grad():
                    lip_sync = _mean_over_frames(r[..., 0], real, n)  # (B,)
                if not self.training and threshold > 0:
                    set_aside = lip_sync < threshold  # (B,): these read the audio alone
                    w = torch.where(set_aside[:, None, None], torch.ones_like(w), w)
            w = w.to(audio.dtype).expand(B, T, D)  # (B, T, D)
        else:
            w = self.audio_weight().to(audio.dtype).expand(B, T, D)  # (B, T, D)
        if drop_audio is not None or drop_video is not None:
            no = torch.zeros(B, dtype=torch.bool, device=audio.device)
            da = no if drop_audio is None else drop_audio.to(audio.device)
            dv = no if drop_video is None else drop_video.to(audio.device)
            if bool((da & dv).any()):
                raise ModelError("fusion cannot drop both streams of the same utterance")
            # Renormalise over the kept streams: audio alone -> w = 1, video alone -> w = 0.
            w = torch.where(da[:, None, None], torch.zeros_like(w), w)
            w = torch.where(dv[:, None, None], torch.ones_like(w), w)
        with torch.no_grad():
            video_weight = ((1.0 - w.float().mean(-1)) * real).sum(1) / n  # (B,)
        return FusionOutput(w * audio + (1.0 - w) * video, video_weight, lip_sync, set_aside)  # fused (B, T, D)
