"""AVSRModel's auxiliary losses: the parts that compute them, and how they add up to what training minimises.

Each auxiliary loss has a name, a part passed to AVSRModel at construction and a weight from
model.losses (builder.py `loss_weights`):

    ctc           CTCHeads on each stream's 25 Hz connector output (models/ctc.py)
    articulation  ArticulationHead on the video stream (models/articulation.py; rendered clips only)
    sync          the fusion's audio-visual agreement classifier, `fusion.sync` (models/sync.py)
    lip_sync      a video model's LipSync against a frozen audio partner (models/sync.py; training only)

`auxiliary_losses` computes them while training (CTC: see AVSRModel.forward), and `objective`
adds them, each times its weight, to the main loss: the LLM's cross-entropy, or with the 'ctc'
objective the CTC itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from avsrctl.data.batch import Batch
from avsrctl.errors import ModelError

LOSS_NAMES = ("ctc", "articulation", "sync", "lip_sync")  # model.losses' keys, in the order they are added


def check_loss_parts(model: nn.Module, weights: Mapping[str, float]) -> dict[str, float]:
    """`weights` as a dict after checking that each names a loss whose part `model` has, that every
    part has its weight, and that the parts fit the streams; ModelError otherwise."""
    unknown = sorted(set(weights) - set(LOSS_NAMES))
    if unknown:
        raise ModelError(f"unknown auxiliary losses {unknown}; expected some of {', '.join(LOSS_NAMES)}")
    parts = {
        "ctc": len(model.ctc_heads) > 0,
        "articulation": model.articulation_head is not None,
        "sync": getattr(model.fusion, "sync", None) is not None,
        "lip_sync": model.lip_sync is not None,
    }
    for name in LOSS_NAMES:
        weight = weights.get(name, 0.0)
        if parts[name] != (weight > 0):
            has = "has a" if parts[name] else "has no"
            raise ModelError(f"the model {has} {name} part but the {name} loss weight is {weight}")
    missing = sorted(set(model.ctc_heads) - {m for m in ("audio", "video") if model.encoder(m) is not None})
    if missing:
        raise ModelError(f"CTC heads for streams {missing} the model does not have")
    if model.articulation_head is not None and model.video_connector is None:
        raise ModelError("an articulation head needs a video stream")
    if model.lip_sync is not None and (model.video_connector is None or model.audio_encoder is not None):
        raise ModelError("a lip-sync loss trains a video model's lips (a fused model has the fusion's sync loss)")
    return {name: float(weights[name]) for name in LOSS_NAMES if name in weights}


def auxiliary_losses(model: nn.Module, streams: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
    """The articulation, sync and lip_sync losses `model` computes on the streams (B, T, D) read
    from `batch`, by name: only while training, and only those its parts, streams and batch allow."""
    if not model.training:
        return {}
    out = {}
    if model.articulation_head is not None and batch.articulation is not None and "video" in streams:
        loss = model.articulation_head.loss(streams["video"], batch.articulation, batch.lengths)
        if loss is not None:  # no frame of the batch has a target
            out["articulation"] = loss
    sync = getattr(model.fusion, "sync", None)
    if sync is not None and {"audio", "video"} <= set(streams):
        out["sync"] = sync.loss(streams["audio"], streams["video"], batch.lengths, batch.video_corrupted)
    if model.lip_sync is not None and "video" in streams:
        out["lip_sync"] = model.lip_sync.loss(streams["video"], batch.lengths, batch.audio, batch.video_corrupted)
    return out


def objective(
    main: torch.Tensor | None, losses: Mapping[str, torch.Tensor], weights: Mapping[str, float], *, ctc_is_main: bool
) -> torch.Tensor | None:
    """What training minimises: `main` + each loss in `losses` x its weight (the CTC not twice when
    it is the main loss, `ctc_is_main`); None when nothing is added (then `main` alone) or no main loss."""
    if main is None:
        return None
    total = None
    if "ctc" in losses and not ctc_is_main:
        total = main + weights["ctc"] * losses["ctc"]
    others = [weights[name] * x for name, x in losses.items() if name != "ctc"]
    if others:
        total = (main if total is None else total) + sum(others)
    return total
