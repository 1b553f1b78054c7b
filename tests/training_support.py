"""Helpers shared by the training tests: a small corpus and a stand-in model with the
AVSRModel interface (used where a test needs to control the model, e.g. to inject NaN)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from avsrctl.decoding import DecodingResult

CHARS = "abcdefghijklmnopqrstuvwxyz '"  # the stand-in's vocabulary: one class per character


def make_corpus(root: Path, n: int = 20, seed: int = 0) -> Path:
    """A synthetic corpus at 32x32 with train and valid splits (a few seconds to generate)."""
    from avsrctl.synth.corpus import generate_corpus

    generate_corpus(
        root, n_utterances=n, n_speakers=3, n_test_speakers=1, size=32, seed=seed, jobs=1, valid_fraction=0.25
    )
    return root


_DECODED: dict = {}


def memoize_decoding(monkeypatch) -> None:
    """Decode each clip once per test session: the tests train several runs on one corpus, and
    ffmpeg decoding (not the tiny model) would dominate their time. Failures are not memoised."""
    import avsrctl.data.dataset as dataset

    original = dataset.decode_sample

    def decode(uid, text, video_path, audio_path, **kw):
        key = (uid, text, str(video_path), str(audio_path), tuple(sorted((k, repr(v)) for k, v in kw.items())))
        if kw.get("transform_audio") is not None:  # noise differs per epoch: never memoise it
            return original(uid, text, video_path, audio_path, **kw)
        if key not in _DECODED:
            _DECODED[key] = original(uid, text, video_path, audio_path, **kw)
        return _DECODED[key]

    monkeypatch.setattr(dataset, "decode_sample", decode)


def tiny_config(data: Path, output: Path, *overrides: str, **flags):
    """The tiny preset on `data`, writing to `output`; short decoding keeps validation quick."""
    from avsrctl.config import load_config

    base = {
        "data.root": str(data),
        "train.output": str(output),
        "decode.max_new_tokens": 6,
        "data.max_frames_per_batch": 300,
    }
    base.update({k.replace("__", "."): v for k, v in flags.items()})
    return load_config("tiny", list(overrides), base)


def read_metrics(output: Path, kind: str) -> list[dict]:
    path = Path(output) / "metrics.jsonl"
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("type") == kind]


def train_losses(output: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(output, "train")}


def fake_batch():
    """Two short utterances with random audio and video (4 and 3 frames)."""
    from avsrctl.data.batch import Batch

    return Batch(
        ids=["a", "b"],
        texts=["bin blue", "set red"],
        lengths=torch.tensor([4, 3]),
        audio=torch.randn(2, 4 * 640),
        video=torch.randint(0, 255, (2, 4, 3, 8, 8), dtype=torch.uint8),
    )


@dataclass
class FakeOutput:
    loss: torch.Tensor
    logits: torch.Tensor
    n_tokens: int


class FakeEncoder(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, identity: str):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)
        self.proj.requires_grad_(False)
        self.identity = identity
        self.output_dim = out_dim


class FakeAVSR(nn.Module):
    """Frozen 'encoders', trainable connectors, fusion and 'lora_' weights, a frozen 'llm' head.

    Predicts the first characters of the transcript from the pooled fused features: enough to
    show a falling loss, a meaningful parameter table and exact resume behaviour."""

    def __init__(self, modalities=("audio", "video"), width: int = 32, max_len: int = 12, dropout: float = 0.1):
        super().__init__()
        self.modalities = tuple(modalities)
        self.max_len = max_len
        self.audio_encoder = FakeEncoder(320, 16, "fake-audio-v1")
        self.video_encoder = FakeEncoder(3, 16, "fake-video-v1")
        self.audio_connector = nn.Sequential(nn.Linear(32, width), nn.Dropout(dropout))
        self.video_connector = nn.Sequential(nn.Linear(16, width), nn.Dropout(dropout))
        self.fusion = nn.Module()
        self.fusion.weight = nn.Parameter(torch.full((width,), 0.5))
        self.llm = nn.Module()
        self.llm.pos = nn.Embedding(max_len, width)
        self.llm.pos.requires_grad_(False)
        self.llm.lora_A = nn.Linear(width, width, bias=False)
        self.llm.head = nn.Linear(width, len(CHARS))
        self.llm.head.requires_grad_(False)
        self.tokenizer = None
        self.encoder_calls = 0

    def encode_audio(self, batch) -> torch.Tensor:
        self.encoder_calls += 1
        B = batch.audio.shape[0]
        frames = batch.audio.reshape(B, -1, 320)  # (B, 2T, 320)
        return torch.tanh(self.audio_encoder.proj(frames))  # (B, 2T, 16)

    def encode_video(self, batch) -> torch.Tensor:
        self.encoder_calls += 1
        v = batch.video.float().mean(dim=(3, 4)) / 255.0  # (B, T, 3)
        return torch.tanh(self.video_encoder.proj(v))  # (B, T, 16)

    def _pooled(self, batch, modality: str) -> torch.Tensor:
        mask = batch.mask.float()  # (B, T)
        parts = []
        if modality in ("audio", "both"):
            a = batch.audio_features if batch.audio_features is not None else self.encode_audio(batch)
            B, T2, D = a.shape
            a = a.reshape(B, T2 // 2, 2 * D)  # (B, T, 32): 50 Hz pairs to 25 Hz
            parts.append(self.audio_connector(a))
        if modality in ("video", "both"):
            v = batch.video_features if batch.video_features is not None else self.encode_video(batch)
            parts.append(self.video_connector(v))
        x = parts[0] if len(parts) == 1 else self.fusion.weight * parts[0] + (1 - self.fusion.weight) * parts[1]
        return (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (B, width)

    def _logits(self, batch, modality):
        pooled = self._pooled(batch, modality)  # (B, D)
        h = pooled[:, None, :] + self.llm.pos.weight[None]  # (B, L, D)
        return self.llm.head(torch.tanh(self.llm.lora_A(h)))  # (B, L, V)

    def forward(self, batch, modality: str, objective: str = "llm") -> FakeOutput:
        logits = self._logits(batch, modality)
        targets = torch.full(logits.shape[:2], -100, dtype=torch.long)
        for i, text in enumerate(batch.texts):
            ids = [CHARS.index(c) if c in CHARS else 26 for c in text.lower()[: self.max_len]]
            targets[i, : len(ids)] = torch.tensor(ids)
        n = int((targets != -100).sum())
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten().to(logits.device), ignore_index=-100)
        return FakeOutput(loss, logits, n)

    @torch.no_grad()
    def generate(self, batch, modality, options):
        ids = self._logits(batch, modality).argmax(-1)
        return [
            DecodingResult(
                uid, "".join(CHARS[j] for j in row.tolist()).strip(), tuple(row.tolist()), 0.0, modality, 0, False
            )
            for uid, row in zip(batch.ids, ids)
        ]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}

    def load_trainable_state_dict(self, sd) -> None:
        self.load_state_dict(sd, strict=False)
