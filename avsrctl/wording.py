"""Small wording helpers for messages: counts with the right plural ("1 segment", "0 epochs"), and
the one line that says how a fused model used the lips."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 segment', '2 segments', '0 epochs'; `many` for irregular plurals ('micro-batches')."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def lip_use_line(lips: dict, of: int, unit: str) -> str:
    """How a fused model used the lips of `of` pieces or utterances (`unit`), from a summary with
    `mean_video_weight` and, with a sync classifier, `mean_lip_sync`, `min_lip_sync` and `set_aside`;
    or, for the lips read alone, `mean_lip_sync`, `min_lip_sync` and `below` (pieces under it).
    When only some fall below the threshold, the mean is named as a mean (it may lie above it)."""
    threshold = f"{lips['min_lip_sync']:.2f}" if "min_lip_sync" in lips else ""
    if "mean_video_weight" not in lips:  # the lips read alone: do they follow the voice?
        sync = f"lips in sync {lips['mean_lip_sync']:.2f} with the voice"
        below = lips["below"]
        if below == 0:
            return sync
        if below < of:
            return f"{sync} on average; below {threshold} in {below} of {plural(of, unit)}: their lip reading may be unreliable"
        where = f" in {below} of {plural(of, unit)}" if of > 1 else ""
        return f"{sync} (below {threshold}{where}): this lip reading may be unreliable"
    weight = f"video weight {lips['mean_video_weight']:.2f}"
    if "set_aside" not in lips:
        return f"lips: {weight}"
    sync = f"in sync {lips['mean_lip_sync']:.2f}"
    aside = lips["set_aside"]
    if aside == 0:
        return f"lips: {weight}, {sync}"
    if aside < of:
        return (
            f"lips set aside in {aside} of {plural(of, unit)} (in sync below {threshold}; mean "
            f"{lips['mean_lip_sync']:.2f}): "
            f"those read from the audio alone; {weight}"
        )
    where = f" in {aside} of {plural(of, unit)}" if of > 1 else ""
    return f"lips set aside{where} ({sync}, below {threshold}): read from the audio alone; {weight}"
