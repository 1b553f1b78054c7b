"""The batch every model entry point consumes.

Shape legend used across avsrctl: B batch, T frames at 25 Hz (T_v video frames; the audio
is aligned to them), S audio samples (= 640 * T), T_a Whisper frames (= 2 * T), L tokens,
D width, V vocabulary.

Audio is cut or padded to exactly 640 samples per video frame, so one `lengths` tensor in
25 Hz frames describes both streams: audio sample s belongs to frame s // 640.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch

from avsrctl.data.manifest import SAMPLES_PER_FRAME


@dataclass
class Batch:
    ids: list[str]
    texts: list[str]  # reference transcripts ('' when unknown)
    lengths: torch.Tensor  # (B,) int64, frames at 25 Hz per utterance
    audio: torch.Tensor | None = None  # (B, 640*T) float32 16 kHz mono, zero padded
    video: torch.Tensor | None = None  # (B, T, 3, H, W) uint8 RGB mouth crops, zero padded
    audio_features: torch.Tensor | None = None  # (B, 2*T, D_a) cached Whisper outputs, if any
    video_features: torch.Tensor | None = None  # (B, T, D_v) cached per-frame vision features, if any
    articulation: torch.Tensor | None = None  # (B, T, P) rendered mouth parameters, NaN where a row has none
    video_corrupted: torch.Tensor | None = None  # (B,) bool, rows whose video was corrupted in training
    meta: dict = field(default_factory=dict)  # free-form extras (e.g. skipped ids), not moved to device

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def max_frames(self) -> int:
        return int(self.lengths.max()) if len(self.ids) else 0

    @property
    def mask(self) -> torch.Tensor:
        """(B, T) bool, True on frames that exist."""
        t = torch.arange(self.max_frames, device=self.lengths.device)
        return t[None, :] < self.lengths[:, None]

    @property
    def audio_lengths(self) -> torch.Tensor:
        """(B,) samples per utterance after alignment."""
        return self.lengths * SAMPLES_PER_FRAME

    def to(self, device: torch.device | str) -> "Batch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in moved.items():
            if isinstance(v, torch.Tensor):
                moved[k] = v.to(device, non_blocking=True)
        return replace(self, **moved)

    def pin_memory(self) -> "Batch":
        """The batch with its tensors in page-locked memory: DataLoader(pin_memory=True) calls this
        on custom batch types, so the copies to the GPU in `to()` can be asynchronous."""
        pinned = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in pinned.items():
            if isinstance(v, torch.Tensor):
                pinned[k] = v.pin_memory()
        return replace(self, **pinned)

    def select(self, index: list[int]) -> "Batch":
        """A sub-batch of the given rows (used to split a micro-batch after out-of-memory)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                out[f.name] = v.index_select(0, idx.to(v.device))
            elif isinstance(v, list):
                out[f.name] = [v[i] for i in index]
            else:
                out[f.name] = v
        return Batch(**out)
