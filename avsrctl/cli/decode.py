"""`avsrctl decode`: Decode a manifest with a trained checkpoint and score it."""

from __future__ import annotations

from avsrctl.errors import UsageError


def decode() -> None:
    """Decode a manifest with a trained checkpoint and score it."""
    raise UsageError("this command is not available yet")
