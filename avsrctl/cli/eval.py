"""`avsrctl eval`: Score hypotheses, a checkpoint, or the faster-whisper baseline against references."""

from __future__ import annotations

from avsrctl.errors import UsageError


def eval_() -> None:
    """Score hypotheses, a checkpoint, or the faster-whisper baseline against references."""
    raise UsageError("this command is not available yet")
