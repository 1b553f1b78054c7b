"""Small wording helpers for messages: counts with the right plural ("1 segment", "0 epochs").
(The line that says how a fused model used the lips is avsrctl/lips.py's `lip_use_line`.)"""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 segment', '2 segments', '0 epochs'; `many` for irregular plurals ('micro-batches')."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
