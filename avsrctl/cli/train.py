"""`avsrctl train`: Train the model on a train/valid manifest pair."""

from __future__ import annotations

from avsrctl.errors import UsageError


def train() -> None:
    """Train the model on a train/valid manifest pair."""
    raise UsageError("this command is not available yet")
