"""Auxiliary articulation loss: the video stream predicts the rendered mouth's parameters, frame by frame.

A lip-reading front-end trained from scratch on a few thousand clips gets one weak signal from
character CTC: a sequence label per clip, which it can lower for a long time by learning the
grammar's letter statistics and ignoring the lips. A rendered corpus knows, for every frame,
how open, spread and rounded the mouth is and whether teeth and tongue show
(data/mouth_params.py, stored by `demo-data` as `video/<id>.mouth.npy`). Regressing those from
the video stream's 25 Hz connector output gives the front-end a dense target that only the
mouth can answer. It is the synthetic-data counterpart of pre-training a lip front-end on
audio-derived targets (LiRA, AV-HuBERT's first iteration): labels that cost nothing, aligned to
every frame.

The loss is the mean squared error of each parameter divided by that parameter's variance in
the batch, averaged over parameters: 1 is what predicting the batch mean scores, 0 is perfect,
so its scale does not depend on how much each parameter moves.
"""

from __future__ import annotations

import torch
from torch import nn

from avsrctl.data.mouth_params import PARAMS
from avsrctl.models.connector import frame_mask

MIN_VARIANCE = 1e-3  # a parameter that barely moves in a batch (tongue in a batch of 'bin'/'blue') is not blown up


class ArticulationHead(nn.Linear):
    """`Linear(width, len(PARAMS))` on the video stream; its weights are `articulation_head.*` in checkpoints."""

    def __init__(self, width: int):
        super().__init__(width, len(PARAMS))

    def loss(self, video: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | None:
        """Normalised MSE of (B, T, D) stream outputs against (B, T, P) targets (NaN rows and padding
        left out); None when no frame of the batch has a target."""
        target = target.to(video.device, torch.float32)
        known = frame_mask(lengths.to(video.device), video.shape[1]) & ~torch.isnan(target).any(-1)  # (B, T)
        if not bool(known.any()):
            return None
        with torch.autocast(device_type=video.device.type, enabled=False):
            pred = self(video[known].float())  # (N, P)
        y = target[known]  # (N, P)
        variance = y.var(0, unbiased=False).clamp_min(MIN_VARIANCE)  # (P,)
        return (((pred - y) ** 2).mean(0) / variance).mean()
