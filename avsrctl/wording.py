"""Small wording helpers for messages: counts with the right plural ("1 segment", "0 epochs")."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 segment', '2 segments', '0 epochs'; `many` for irregular plurals ('micro-batches')."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
