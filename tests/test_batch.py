"""The Batch dataclass: device moves and page-locked memory for DataLoader(pin_memory=True)."""

from __future__ import annotations

import torch
from torch.utils.data._utils.pin_memory import pin_memory

from avsrctl.data.batch import Batch


def test_dataloader_pinning_pins_every_tensor_of_a_batch(monkeypatch):
    pinned = []

    def fake_pin(self, *args, **kwargs):  # no GPU here: record the call, return a marked copy
        out = self.clone()
        pinned.append(out)
        return out

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    batch = Batch(
        ids=["a", "b"],
        texts=["x", "y"],
        lengths=torch.tensor([2, 1]),
        audio=torch.randn(2, 2 * 640),
        video_features=torch.randn(2, 2, 4),
        meta={"skipped": ["c"]},
    )
    out = pin_memory(batch)  # what DataLoader's pinning thread calls on each batch
    assert isinstance(out, Batch) and out.ids == batch.ids and out.meta == batch.meta
    assert len(pinned) == 3
    for name in ("lengths", "audio", "video_features"):
        assert any(getattr(out, name) is p for p in pinned) and torch.equal(getattr(out, name), getattr(batch, name))
    assert out.video is None and out.audio_features is None
