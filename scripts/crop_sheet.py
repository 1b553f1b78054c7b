"""A sheet of mouth crops: real GRID ROI crops (top rows) above rendered demo-data speakers (bottom rows).

    python scripts/crop_sheet.py docs/crops.png [--media ../shared/media] [--size 48] [--speakers 4]

Real rows come from the clips in MEDIA/video cut by the same ROI code as `prepare --roi auto`
(landmark crops when dlib is installed; skipped when the folder is absent); rendered rows are held-out speakers of `demo-data`
saying one GRID sentence. Eight frames per row, every fifth frame, scaled up 3x.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def real_rows(media: Path, size: int) -> list[np.ndarray]:
    from avsrctl.data.media import load_video
    from avsrctl.data.roi import apply_roi, source_side

    rows = []
    for clip in sorted((media / "video").glob("grid_*.mpg")):
        frames = apply_roi(load_video(clip, max_short_side=source_side(size)), "auto", size, path=clip)
        rows.append(frames[10:50:5])
    return rows


def rendered_rows(n: int, size: int) -> list[np.ndarray]:
    from avsrctl.synth.corpus import render_utterance
    from avsrctl.synth.plan import make_speakers, plan_corpus
    from avsrctl.synth.speech import build_word_bank

    speakers = make_speakers(n, held_out=True, seed=1)
    plans = plan_corpus(n, speakers, seed=1, valid_fraction=0.0)
    rows = []
    for plan in plans[:n]:
        speaker = speakers[plan.speaker]
        bank = build_word_bank(speaker.voice, sorted(set(plan.words)))
        _, _, frames = render_utterance(plan, speaker, bank, size)
        rows.append(frames[10:50:5])
    return rows


def main() -> None:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--speakers", type=int, default=4)
    args = ap.parse_args()
    rows = real_rows(args.media, args.size) if (args.media / "video").is_dir() else []
    rows += rendered_rows(args.speakers, args.size)
    gap = np.full((4, 8 * args.size, 3), 255, np.uint8)
    sheet = np.concatenate([np.concatenate([np.concatenate(list(r), 1), gap]) for r in rows])
    sheet = cv2.resize(sheet, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), sheet[..., ::-1])
    print(args.out)


if __name__ == "__main__":
    main()
