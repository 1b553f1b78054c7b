"""Audio-visual agreement: does the mouth move with this voice? The fused model's video reliability.

A gate that reads each frame's audio and video features (fusion.py) learns to distrust video
that looks broken: frozen, blank, blurred, occluded. It cannot see video that looks like a
plausible mouth but says something else: another speaker's face, a shifted track, or a real
mouth unlike any face the lip reader was trained on, whose features are as good as noise.
Stream reliability in the AVSR literature is measured from the streams' agreement as well as
from each stream alone; this module gives the fusion that agreement.

    audio, video (B, T, D) --Linear, unit length--> a_t, v_t (B, T, P)
    --cosine per frame, mean over a 1 s window--> s_t (B, T) --sigmoid((s_t - c) / 0.1)--> r_t in (0, 1)

r_t is the probability that frame t's lips belong to this audio. The fusion multiplies the
video weight by it, so where the lips disagree with the voice they fall out of the average
whatever the gate says. The temperature is fixed and the threshold c (learned) starts at 0.3:
unrelated streams (cosine near 0) start near r = 0.05, so a new fused model starts as its
audio path and the lips earn their weight as the projections learn what agrees. It is trained
(`loss`) as a binary classifier, SyncNet style, on pairs a batch gives for free:
- in sync (1): each utterance's own audio and video, when the video was not corrupted;
- out of sync (0): a corrupted video (data.video_corruption), the next utterance's video
  (another face saying other words), and the utterance's own video shifted by 8-20 frames
  (a third to four fifths of a second).
The classifier sees noisy audio too when training adds noise, so the lips stay trusted
where the audio is drowned.

A video model can train its lips with the same loss (`LipSync`, model.losses.lip_sync): its
partner is a frozen audio encoder that reads the utterance's audio during training only, so the
lip front-end learns to move with the voice from its first stage on, not only once it is fused.
Decoding builds the video model without it and never reads audio.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avsrctl.errors import ModelError
from avsrctl.models.connector import frame_mask, whisper_to_25hz

WINDOW = 25  # frames over which agreement is averaged (1 s at 25 Hz)
SHIFT = (8, 20)  # frames by which an utterance's own video is shifted to make an out-of-sync pair
TEMPERATURE = 0.1  # cosine units per logit unit: 0.6 of agreement spans r = 0.05 .. 0.95


def windowed_mean(x: torch.Tensor, mask: torch.Tensor, window: int = WINDOW) -> torch.Tensor:
    """Mean of (B, T) values over a centred window, counting only frames where mask (B, T) is True."""
    m = mask.to(x.dtype)[:, None]  # (B, 1, T)
    total = F.avg_pool1d((x[:, None] * m), window, stride=1, padding=window // 2, count_include_pad=True)
    count = F.avg_pool1d(m, window, stride=1, padding=window // 2, count_include_pad=True)
    return (total / count.clamp_min(1e-6))[:, 0, : x.shape[1]]  # (B, T)


class SyncScorer(nn.Module):
    """r_t = P(video frame t is in sync with the audio); checkpoint keys `fusion.sync.*`."""

    def __init__(self, dim: int, proj: int = 64, audio_dim: int | None = None):
        super().__init__()
        self.audio = nn.Linear(audio_dim or dim, proj, bias=False)
        self.video = nn.Linear(dim, proj, bias=False)
        self.threshold = nn.Parameter(torch.tensor(0.3))  # the agreement at which r = 0.5

    def embed(self, audio: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D_a) and (B, T, D) streams -> unit-length per-frame projections a, v (B, T, P)."""
        return F.normalize(self.audio(audio.float()), dim=-1), F.normalize(self.video(video.float()), dim=-1)

    def _logits(self, a: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Projections (B, T, P) and the real frames (B, T) -> (B, T) logits of 'in sync'."""
        return (windowed_mean((a * v).sum(-1), mask) - self.threshold) / TEMPERATURE

    def logits(self, audio: torch.Tensor, video: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) streams -> (B, T) logits of 'in sync'."""
        mask = frame_mask(lengths.to(audio.device), audio.shape[1])  # (B, T)
        return self._logits(*self.embed(audio, video), mask)

    def forward(self, audio: torch.Tensor, video: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) streams -> r (B, T, 1) in (0, 1)."""
        return torch.sigmoid(self.logits(audio, video, lengths))[..., None]

    def loss(
        self, audio: torch.Tensor, video: torch.Tensor, lengths: torch.Tensor, corrupted: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Binary cross-entropy of in-sync vs out-of-sync pairs (module docstring), mean over real frames.

        corrupted (B,) bool marks utterances whose video was replaced by a corrupted one (labelled 0).
        """
        B, T, _ = audio.shape
        device = audio.device
        lengths = lengths.to(device).clamp(1, T)
        mask = frame_mask(lengths, T)  # (B, T)
        own = torch.ones(B, device=device) if corrupted is None else (~corrupted.to(device)).float()  # (B,)
        a, v = self.embed(audio, video)  # (B, T, P) each, projected once for every pairing below
        pairs = [(v, mask, own)]
        if B > 1:  # the next utterance's video, over the frames both have
            nxt = torch.roll(torch.arange(B, device=device), -1)
            pairs.append((v[nxt], mask & mask[nxt], torch.zeros(B, device=device)))
        # the utterance's own video, shifted circularly within its real frames
        k = torch.randint(SHIFT[0], SHIFT[1] + 1, (B,)).to(device)  # (B,)
        t = torch.arange(T, device=device)[None, :]  # (1, T)
        src = (t + k[:, None]) % lengths[:, None]  # (B, T)
        shifted = v.gather(1, src[..., None].expand(-1, -1, v.shape[-1]))  # (B, T, P)
        long_enough = lengths > SHIFT[1]  # a short clip shifted by most of its length is barely shifted
        pairs.append((shifted, mask & long_enough[:, None], torch.zeros(B, device=device)))
        logits, targets = [], []
        for other, m, label in pairs:
            if bool(m.any()):
                logits.append(self._logits(a, other, mask)[m])  # (n,)
                targets.append(label[:, None].expand(B, T)[m])  # (n,)
        logit, target = torch.cat(logits), torch.cat(targets)
        each = F.binary_cross_entropy_with_logits(logit, target, reduction="none")  # (N,)
        # in-sync and out-of-sync frames weigh half each, however many of each the batch holds
        positive = target > 0.5
        halves = [each[side].mean() for side in (positive, ~positive) if bool(side.any())]
        return torch.stack(halves).mean()


class LipSync(nn.Module):
    """A video model's lips trained to agree with the voice; checkpoint keys `lip_sync.scorer.*`.

    partner: a frozen audio encoder (audio (B, S), lengths (B,) -> (B, 2T, D_a) at 50 Hz, a
    `WhisperAudioEncoder`). Its features are averaged in pairs to the video's 25 Hz and scored
    against the video stream by a `SyncScorer`, whose loss trains the lip front-end. The partner's
    weights come from the config (they are frozen), so checkpoints store the scorer only.
    """

    def __init__(self, partner: nn.Module, video_dim: int, proj: int = 64):
        super().__init__()
        partner.requires_grad_(False)
        self.partner = partner.eval()
        self.scorer = SyncScorer(video_dim, proj, audio_dim=partner.output_dim)

    def train(self, mode: bool = True) -> "LipSync":
        super().train(mode)
        self.partner.eval()  # frozen: no dropout, whatever the model asks
        return self

    def audio_stream(self, audio: torch.Tensor | None, lengths: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, frames, D_a) float32 partner features at 25 Hz (frames past the audio's are zero)."""
        if audio is None:
            raise ModelError("model.losses.lip_sync needs each training batch's audio; this batch has none")
        with torch.no_grad(), torch.autocast(device_type=audio.device.type, enabled=False):
            features = self.partner(audio, lengths)  # (B, 2T, D_a)
        paired = whisper_to_25hz(features.float(), lengths)  # (B, T, D_a)
        return F.pad(paired, (0, 0, 0, frames - paired.shape[1]))

    def loss(
        self,
        video: torch.Tensor,
        lengths: torch.Tensor,
        audio: torch.Tensor | None,
        corrupted: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The SyncScorer loss of the video stream (B, T, D) against the partner's view of the audio."""
        return self.scorer.loss(self.audio_stream(audio, lengths, video.shape[1]), video, lengths, corrupted)
