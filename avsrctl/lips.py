"""How a fused model used the lips: one utterance's record, the summary over a run or a clip, the
JSON fields, and the one line the CLI shows. Read by decode, eval, transcribe and the recipes.

The vocabulary (the same in code, JSON keys and CLI lines):

- `video_weight`: the mean weight the fusion gave the lips (1 - w) over an utterance's real
  frames; 0 when its lips were set aside. Fused decodes ('both') only.
- `lip_sync`: the sync classifier's mean probability that an utterance's lips move with its voice
  (models/sync.py). Fused decodes, and lips read alone ('video') by a fused model that also hears
  the clip's audio.
- `min_lip_sync`: the threshold on `lip_sync` (decoding.DecodingOptions, else the checkpoint's
  model.fusion.min_lip_sync).
- `set_aside`: fused decodes: the utterances (or pieces) whose `lip_sync` fell below `min_lip_sync`,
  so the fusion left their lips out and read them from the audio alone.
- `below`: lips read alone: the utterances (or pieces) whose `lip_sync` fell below `min_lip_sync`;
  nothing is left out (there is nothing else to read), their lip reading is only said to be unreliable.
- `mean_video_weight`, `mean_lip_sync`: the means over a run's utterances (wer.json) or a clip's
  pieces (a transcript's meta["lips"], weighted by the pieces' lengths).

Nothing here imports torch: `eval --hyp` and the recipes read these too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from avsrctl.wording import plural

DIGITS = 4  # results.jsonl, wer.json and transcript figures are rounded to this many decimals


@dataclass(frozen=True)
class LipUse:
    """How a fused model used one utterance's (or piece's) lips."""

    video_weight: float | None  # 'both': mean fusion weight on the video over its frames (0 when set aside)
    lip_sync: float | None = None  # with a sync classifier: mean probability that the lips move with the voice

    def fields(self) -> dict:
        """Its results.jsonl fields, rounded; none that are unknown."""
        known = {"video_weight": self.video_weight, "lip_sync": self.lip_sync}
        return {k: round(v, DIGITS) for k, v in known.items() if v is not None}

    @classmethod
    def from_fields(cls, row: dict) -> LipUse | None:
        """The use recorded in one results.jsonl row (or a transcript segment); None when it has none."""
        use = cls(row.get("video_weight"), row.get("lip_sync"))
        return None if use.video_weight is None and use.lip_sync is None else use


def mean_known(values: Sequence[float | None] | None) -> float | None:
    """Mean of the values that are known (video weights, in-sync probabilities); None when none is."""
    known = [v for v in values or [] if v is not None]
    return sum(known) / len(known) if known else None


def count_below(uses: Sequence[LipUse | None], min_lip_sync: float) -> tuple[int, int]:
    """(below, judged): of the uses with a `lip_sync`, how many fall below `min_lip_sync`, and how many there are."""
    syncs = [u.lip_sync for u in uses if u is not None and u.lip_sync is not None]
    return sum(r < min_lip_sync for r in syncs), len(syncs)


def summarize(uses: Sequence[LipUse], min_lip_sync: float | None, spans: Sequence[float] | None = None) -> dict | None:
    """How a fused model used the lips over utterances or pieces, in the shape `lip_use_line` reads;
    means weighted by `spans` (equal without).

    Fused ('both'): `mean_video_weight` and, with a sync classifier and its threshold, `mean_lip_sync`,
    `min_lip_sync` and `set_aside`. Lips read alone and judged against the voice: `mean_lip_sync`,
    `min_lip_sync` and `below`. None for one stream."""
    spans = [1.0] * len(uses) if spans is None else spans
    weights = [(u.video_weight, s) for u, s in zip(uses, spans) if u.video_weight is not None]
    syncs = [(u.lip_sync, s) for u, s in zip(uses, spans) if u.lip_sync is not None]

    def mean(pairs):
        return sum(v * s for v, s in pairs) / sum(s for _, s in pairs)

    judged = {}
    if syncs and min_lip_sync is not None:
        low = count_below(uses, min_lip_sync)[0]
        judged = {"mean_lip_sync": mean(syncs), "min_lip_sync": min_lip_sync, "set_aside" if weights else "below": low}
    if not weights:
        return judged or None
    return {"mean_video_weight": mean(weights), **judged}


def clip_summary(segments: Sequence, min_lip_sync: float | None) -> dict | None:
    """How a fused model used the lips over a clip's decoded pieces (`subtitles.Segment`s): `summarize`
    weighted by the pieces' lengths, the means rounded, for the transcript's meta; None for one stream."""
    uses = [LipUse(s.video_weight, s.lip_sync) for s in segments]
    summary = summarize(uses, min_lip_sync, spans=[max(s.end - s.start, 1e-9) for s in segments])
    if summary is None:
        return None
    return {k: round(v, DIGITS) if k.startswith("mean_") else v for k, v in summary.items()}


class LipViews:
    """Per-row views of a run's `lips` (one `LipUse` per manifest row, None for a row that was not
    decoded; `lips` None for one stream): evaluate's `DecodeOutput` and `Run`."""

    lips: list[LipUse | None] | None

    @property
    def video_weights(self) -> list[float | None] | None:
        """'both': each row's mean fusion weight on the video; None for other modalities."""
        return None if self.lips is None else [None if u is None else u.video_weight for u in self.lips]

    @property
    def lip_syncs(self) -> list[float | None] | None:
        """With a sync classifier: each row's mean in-sync probability; None without one."""
        syncs = None if self.lips is None else [None if u is None else u.lip_sync for u in self.lips]
        return syncs if syncs and any(r is not None for r in syncs) else None

    @property
    def mean_video_weight(self) -> float | None:
        return mean_known(self.video_weights)

    def lip_summary(self, min_lip_sync: float | None) -> tuple[dict, int] | None:
        """(summary, rows) of how the lips were used over the decoded rows (`summarize`, each row
        counted once); None for one stream."""
        uses = [u for u in self.lips or [] if u is not None]
        summary = summarize(uses, min_lip_sync)
        if summary is None:
            return None
        fused = "mean_video_weight" in summary
        return summary, sum((u.video_weight if fused else u.lip_sync) is not None for u in uses)


def run_fields(out: LipViews) -> tuple[dict, list[dict] | None]:
    """What a run's use of the lips adds to wer.json (`mean_video_weight`, `mean_lip_sync`) and to
    each results.jsonl row (`LipUse.fields`); ({}, None) for one stream."""
    if out.lips is None:
        return {}, None
    rows = [{} if u is None else u.fields() for u in out.lips]
    means = {"mean_video_weight": mean_known(out.video_weights), "mean_lip_sync": mean_known(out.lip_syncs)}
    return {k: round(v, DIGITS) for k, v in means.items() if v is not None}, rows


def read_results(folder: Path) -> tuple[dict, list[LipUse | None] | None] | None:
    """A decode's or eval's output folder: (its wer.json, the `LipUse` of each results.jsonl row, None
    without that file); None when the folder has no wer.json."""
    path = Path(folder) / "wer.json"
    if not path.is_file():
        return None
    rows_path = Path(folder) / "results.jsonl"
    if not rows_path.is_file():
        return json.loads(path.read_text()), None
    rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line]
    return json.loads(path.read_text()), [LipUse.from_fields(r) for r in rows]


def utterance_note(use: LipUse | None, min_lip_sync: float) -> str:
    """The lips part of one utterance's verbose line: its video weight and in-sync probability, and
    whether it fell below `min_lip_sync` ('' when the decode read no lips)."""
    shown = "" if use is None or use.video_weight is None else f"  video weight {use.video_weight:.2f}"
    if use is not None and use.lip_sync is not None:
        low = use.lip_sync < min_lip_sync
        if use.video_weight is None:  # lips read alone
            shown += f"  lips in sync {use.lip_sync:.2f}{' (below the threshold)' if low else ''}"
        else:
            shown += f", lips in sync {use.lip_sync:.2f}{' (set aside: read from the audio alone)' if low else ''}"
    return shown


def lip_use_line(lips: dict, of: int, unit: str) -> str:
    """How a fused model used the lips of `of` pieces or utterances (`unit`), from a `summarize` summary:
    `mean_video_weight` and, with a sync classifier, `mean_lip_sync`, `min_lip_sync` and `set_aside`;
    or, for the lips read alone, `mean_lip_sync`, `min_lip_sync` and `below`.
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
