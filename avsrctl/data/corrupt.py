"""Video corruption for fused training: clips whose lips say nothing useful, so fusion learns to distrust them.

A fused model trained only on good video leans on the lips even when the camera shows
something else. `corrupt_video` replaces one clip's frames by one of the failures seen in real
recordings: a frozen frame, blank or noise frames, heavy blur, an occluded mouth, another
utterance's face, or a time shift. The transcript stays, so the loss rewards the audio path.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

VIDEO_CORRUPTIONS = ("freeze", "blank", "noise", "blur", "occlude", "swap", "shift")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (T, C, H, W) float frames."""
    radius = max(1, int(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    T, C, H, W = x.shape
    y = x.reshape(T * C, 1, H, W)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return y.reshape(T, C, H, W)


def corrupt_video(
    video: torch.Tensor, rng: np.random.Generator, kind: str | None = None, other: torch.Tensor | None = None
) -> tuple[torch.Tensor, str]:
    """(T, 3, H, W) uint8 -> (corrupted copy, the kind used). `kind` None draws one at random.

    `other` is another utterance's (T', 3, H, W) frames for 'swap' (without it, 'swap' becomes
    'freeze'). Every kind keeps the shape, so the clip stays aligned with its audio.
    """
    kinds = [k for k in VIDEO_CORRUPTIONS if k != "swap" or other is not None]
    if kind is None:
        kind = kinds[int(rng.integers(len(kinds)))]
    if kind not in VIDEO_CORRUPTIONS:
        raise ValueError(f"unknown video corruption {kind!r}; choose from {', '.join(VIDEO_CORRUPTIONS)}")
    if kind == "swap" and other is None:
        kind = "freeze"
    T, C, H, W = video.shape
    x = video.float()
    if kind == "freeze":  # the camera stalls on one frame
        x = x[int(rng.integers(T))].expand(T, C, H, W)
    elif kind == "blank":  # a flat grey or black picture
        x = torch.full_like(x, float(rng.choice([0.0, rng.uniform(40, 200)])))
    elif kind == "noise":  # no signal: sensor noise around mid grey
        x = torch.from_numpy(rng.normal(128, rng.uniform(20, 60), (T, C, H, W)).astype(np.float32))
    elif kind == "blur":  # far out of focus
        x = gaussian_blur(x, float(rng.uniform(0.15, 0.3) * H))
    elif kind == "occlude":  # a hand, microphone or mask over the mouth
        h, w = int(H * rng.uniform(0.4, 0.7)), int(W * rng.uniform(0.5, 0.9))
        top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        x = x.clone()
        x[:, :, top : top + h, left : left + w] = float(rng.uniform(0, 255))
    elif kind == "swap":  # another speaker saying something else
        src = other.float()
        idx = torch.arange(T) % src.shape[0]
        x = src[idx]
        if x.shape[-2:] != (H, W):
            x = F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)
    elif kind == "shift":  # audio and video out of sync by 0.4-1.2 s
        s = int(rng.integers(10, 31)) * (1 if rng.random() < 0.5 else -1)
        s = max(-T + 1, min(T - 1, s))
        idx = (torch.arange(T) + s).clamp(0, T - 1)
        x = x[idx]
    return x.round().clamp(0, 255).to(torch.uint8), kind
