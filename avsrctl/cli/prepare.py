"""`avsrctl prepare`: Build {train,valid,test}.tsv/.wrd from a folder of clips with transcripts."""

from __future__ import annotations

from avsrctl.errors import UsageError


def prepare() -> None:
    """Build {train,valid,test}.tsv/.wrd from a folder of clips with transcripts."""
    raise UsageError("this command is not available yet")
