"""`avsrctl transcribe`: Transcribe one audio or video file."""

from __future__ import annotations

from avsrctl.errors import UsageError


def transcribe() -> None:
    """Transcribe one audio or video file."""
    raise UsageError("this command is not available yet")
