"""A stand-in for the built-in model in tests: a tiny fused checkpoint with weights away from init."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# The demo's model settings (48 px lips, as the GRID recipe), so the stand-in decodes its corpus.
DEMO_SETTINGS = ["model.video_encoder.image_size=48", "data.roi_size=48", "decode.max_new_tokens=8"]


def standin_checkpoint(folder: Path, name: str = "final", seed: int = 0) -> Path:
    """A tiny 'both' model (serves audio, video and both) whose trainable weights are random
    values no float16 holds exactly, saved as a checkpoint under `folder`."""
    import torch

    from avsrctl.checkpoint import save_checkpoint
    from avsrctl.config import load_config
    from avsrctl.models.builder import build_model

    cfg = load_config("tiny", ["model.modality=both", *DEMO_SETTINGS])
    model = build_model(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.trainable_state_dict().values():
            p.add_(0.01 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return save_checkpoint(folder, name, model=model, cfg=cfg, meta={"modality": "both", "step": 7, "epoch": 1})


# Fixtures and figures shared by the tests of name lookup (test_pretrained) and export (test_export_builtin).
GOOD = {"s1-babble-5/both": {"wer": 0.10, "errors": 1, "words": 10}, "unseen/both": {"wer": 0.30}}


@pytest.fixture
def root(tmp_path, monkeypatch):
    """An empty folder of built-in models in place of the package's."""
    from avsrctl import pretrained

    folder = tmp_path / "builtin"
    monkeypatch.setattr(pretrained, "BUILTIN_ROOT", folder)
    return folder


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return standin_checkpoint(tmp_path_factory.mktemp("run"))


def results(tmp_path, figures: dict, name: str = "results.json"):
    path = tmp_path / name
    path.write_text(json.dumps({**figures, "video-weight/heldout": 0.4}))
    return path
