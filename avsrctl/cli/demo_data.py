"""`avsrctl demo-data`: Generate a synthetic audio-visual corpus with GRID's grammar."""

from __future__ import annotations

from avsrctl.errors import UsageError


def demo_data() -> None:
    """Generate a synthetic audio-visual corpus with GRID's grammar."""
    raise UsageError("this command is not available yet")
