"""`avsrctl inspect`: Show every model component, its dimensions and its (trainable) parameters."""

from __future__ import annotations

from avsrctl.errors import UsageError


def inspect_params() -> None:
    """Show every model component, its dimensions and its (trainable) parameters."""
    raise UsageError("this command is not available yet")
