"""Fusion of the aligned audio and video streams ('both'): a per-frame weighted average at 25 Hz.

fused[b, t] = w * audio[b, t] + (1 - w) * video[b, t]

Both inputs come out of the connectors at 25 Hz with the same T by construction (the audio
was cut or padded to 640 samples per video frame and pooled 2x), so frame t of one stream is
the same instant as frame t of the other. Mismatched lengths are an error: padding one stream
to the other's length would average speech with silence, the defect of the design we start from.

The weight w is fixed, or learned per feature channel (D values). A learned w is the sigmoid
of a learned logit, so it stays in (0, 1) with no clamping; per channel because audio and
video carry different information in different channels, and D extra parameters are
negligible. Its initial value is `weight` (clipped to [1e-3, 1 - 1e-3] so the logit is finite).

Modality dropout (training only): for each utterance, with probability p, one stream is
dropped (audio or video with equal chance) and the utterance uses the other stream alone.
The weights are renormalised over the streams kept (the kept one gets weight 1), rather than
zeroing a stream and still scaling the other by w, which would also shrink the input.
The fused stream is then compressed by `compression` frames per LLM token.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from avsrctl.errors import ModelError

_W_EPS = 1e-3  # keeps a learned weight's initial logit finite when weight is 0 or 1


class WeightedFusion(nn.Module):
    def __init__(
        self,
        dim: int,
        weight: float = 0.5,
        learned: bool = False,
        compression: int = 2,
        modality_dropout: float = 0.0,
    ):
        super().__init__()
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
        self.learned = learned
        if learned:
            w = min(max(weight, _W_EPS), 1.0 - _W_EPS)
            self.logit = nn.Parameter(torch.full((dim,), math.log(w / (1.0 - w))))  # (D,)
        else:
            self.register_buffer("fixed_weight", torch.full((dim,), float(weight)), persistent=False)

    def audio_weight(self) -> torch.Tensor:
        """(D,) float32 audio weight w per channel (video gets 1 - w)."""
        return torch.sigmoid(self.logit) if self.learned else self.fixed_weight

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
    ) -> torch.Tensor:
        """audio, video (B, T, D) aligned at 25 Hz -> fused (B, T, D).

        drop_audio / drop_video (B,) bool use only the other stream for those utterances;
        when not given and the module is training, they are sampled (modality dropout).
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
        w = self.audio_weight().to(audio.dtype).expand(B, D)  # (B, D)
        if drop_audio is not None or drop_video is not None:
            no = torch.zeros(B, dtype=torch.bool, device=audio.device)
            da = no if drop_audio is None else drop_audio.to(audio.device)
            dv = no if drop_video is None else drop_video.to(audio.device)
            if bool((da & dv).any()):
                raise ModelError("fusion cannot drop both streams of the same utterance")
            # Renormalise over the kept streams: audio alone -> w = 1, video alone -> w = 0.
            w = torch.where(da[:, None], torch.zeros_like(w), w)
            w = torch.where(dv[:, None], torch.ones_like(w), w)
        w = w[:, None, :]  # (B, 1, D)
        return w * audio + (1.0 - w) * video  # (B, T, D)
