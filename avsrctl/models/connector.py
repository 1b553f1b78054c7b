"""Connectors: encoder features -> LLM-width vectors at 25 Hz, then token compression by K.

Audio: Whisper gives 50 frames/s (2 per video frame); adjacent pairs are averaged to 25 Hz,
then a two-layer MLP (Linear, GELU, Linear) maps D_a -> D. Video: the same MLP maps
D_v -> D, already at 25 Hz. Both stay frame-aligned with `Batch.lengths` (T frames per
utterance), which is what lets fusion average them frame by frame.

Token compression groups K consecutive 25 Hz frames into one LLM token, so an utterance of
T frames becomes ceil(T / K) tokens; the last group may be partial. We use a masked mean
over each group rather than Llama-AVSR's concatenate-K-then-linear, because:
  * the MLP already sits before compression (the design order), so a concat-linear would
    add a K*D x D matrix in LLM width (12.6M parameters at D=2048, K=3) for little gain;
  * the mean of a partial last group is exact (only real frames count), where concat must
    feed zero padding into a learned layer, so a token would depend on how the batch was padded;
  * it is parameter-free, so the same function compresses audio, video and the fused stream,
    and a per-frame, per-channel fusion weight commutes with it.

Connectors always compute in float32, whatever dtype the LLM uses: inputs are cast on the
way in and `AVSRModel` casts the tokens to the LLM dtype on the way out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avsrctl.data.align import WHISPER_FRAMES_PER_VIDEO_FRAME
from avsrctl.errors import ModelError


def frame_mask(lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
    """(B, n_frames) bool, True on frames that exist."""
    t = torch.arange(n_frames, device=lengths.device)
    return t[None, :] < lengths[:, None]


def n_compressed(lengths: torch.Tensor, k: int) -> torch.Tensor:
    """(B,) tokens per utterance after compression by k: ceil(T / k)."""
    return torch.div(lengths + (k - 1), k, rounding_mode="floor")


def compress_tokens(x: torch.Tensor, lengths: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean over groups of k consecutive frames.

    x (B, T, D), lengths (B,) in frames -> tokens (B, N, D) with N = ceil(T / k), and the
    token mask (B, N), True where a token holds at least one real frame. Padded frames
    never enter a token, so a row's tokens do not depend on the rest of the batch.
    """
    if k < 1:
        raise ModelError(f"token compression K must be >= 1 (got {k})")
    B, T, D = x.shape
    n = -(-T // k)  # ceil
    pad = n * k - T
    mask = frame_mask(lengths, T).to(x.dtype)  # (B, T)
    if pad:
        x = F.pad(x, (0, 0, 0, pad))  # (B, n*k, D)
        mask = F.pad(mask, (0, pad))  # (B, n*k)
    groups = (x * mask[..., None]).view(B, n, k, D).sum(2)  # (B, N, D)
    counts = mask.view(B, n, k).sum(2)  # (B, N)
    tokens = groups / counts.clamp(min=1.0)[..., None]  # (B, N, D)
    return tokens, counts > 0


class _MLPConnector(nn.Module):
    """Linear -> GELU -> Linear into the LLM width, in float32, plus the token compression K."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, compression: int):
        super().__init__()
        if min(in_dim, hidden, out_dim) < 1:
            raise ModelError(f"connector sizes must be positive (in {in_dim}, hidden {hidden}, out {out_dim})")
        if compression < 1:
            raise ModelError(f"token compression K must be >= 1 (got {compression})")
        self.input_dim = in_dim
        self.output_dim = out_dim
        self.compression = compression
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def _to_25hz(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def project(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Encoder features -> (B, T, D) float32 at 25 Hz; frames past each length are zero."""
        if features.dim() != 3 or features.shape[-1] != self.input_dim:
            raise ModelError(
                f"{type(self).__name__} expects features (B, time, {self.input_dim}), got {tuple(features.shape)}"
            )
        # float32 even inside the trainer's bf16/fp16 autocast: the design keeps connectors exact.
        with torch.autocast(device_type=features.device.type, enabled=False):
            x = self._to_25hz(features.float(), lengths)  # (B, T, D_enc)
            x = self.mlp(x)  # (B, T, D)
        return x * frame_mask(lengths, x.shape[1])[..., None].to(x.dtype)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features -> LLM tokens (B, ceil(T/K), D) float32 and their mask (B, ceil(T/K))."""
        return compress_tokens(self.project(features, lengths), lengths, self.compression)


def whisper_to_25hz(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Whisper features (B, 2T, D_a) at 50 Hz -> (B, T, D_a) at 25 Hz, the mean of each pair; T = lengths.max()."""
    T = int(lengths.max()) if lengths.numel() else 0
    need = WHISPER_FRAMES_PER_VIDEO_FRAME * T
    if features.shape[1] < need:
        raise ModelError(
            f"audio features have {features.shape[1]} frames at 50 Hz but the batch needs {need} "
            f"(2 per 25 Hz frame, longest utterance {T} frames); was the audio aligned to 640 samples per frame?"
        )
    B, _, D = features.shape
    x = features[:, :need].reshape(B, T, WHISPER_FRAMES_PER_VIDEO_FRAME, D)  # (B, T, 2, D_a)
    return x.mean(2)  # (B, T, D_a)


class AudioConnector(_MLPConnector):
    """Whisper features (B, 2T, D_a) at 50 Hz -> pool 2 -> MLP -> (B, T, D) at 25 Hz."""

    def _to_25hz(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return whisper_to_25hz(features, lengths)


class VideoConnector(_MLPConnector):
    """Per-frame vision features (B, T, D_v) at 25 Hz -> MLP -> (B, T, D)."""

    def _to_25hz(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        T = int(lengths.max()) if lengths.numel() else 0
        if features.shape[1] < T:
            raise ModelError(f"video features have {features.shape[1]} frames but the batch needs {T}")
        return features[:, :T]  # (B, T, D_v)
