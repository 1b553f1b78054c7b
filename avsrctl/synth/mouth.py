"""Mouth articulation for the synthetic corpus: timed visemes -> seven parameters per 25 Hz frame.

Each viseme class sets a target for the parameters (data/mouth_params.py `PARAMS`); targets are
blended over time with a dominance-weighted Gaussian (lip closure for p/b/m and lip rounding
dominate their neighbours, as in real coarticulation) and sampled at each frame instant.
face.py draws the frames from them; `demo-data` also stores them beside each clip
(`mouth_params.write_mouth`), the labels of `model.losses.articulation`.
"""

from __future__ import annotations

import numpy as np

from avsrctl.data.manifest import VIDEO_FPS
from avsrctl.data.mouth_params import OPEN, PARAMS

# viseme -> (targets in PARAMS order, dominance); silence relaxes to "rest"
VISEMES: dict[str, tuple[tuple[float, ...], float]] = {
    "rest": ((0.02, 0.0, 0.0, 0.0, 0.0, 0.2, 0.0), 0.6),
    "bilabial": ((0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0), 6.0),  # p b m: lips pressed together
    "labiodental": ((0.10, 0.15, 0.0, 1.0, 0.0, 0.0, 1.0), 5.0),  # f v: upper teeth on the lower lip
    "dental": ((0.22, 0.15, 0.0, 0.8, 1.0, 0.0, 0.0), 2.0),  # th: tongue tip between the teeth
    "sibilant": ((0.12, 0.55, 0.0, 1.0, 0.0, 0.0, 0.0), 2.0),  # s z: teeth close, lips spread
    "postalveolar": ((0.20, 0.0, 0.65, 0.8, 0.2, 0.0, 0.0), 2.5),  # sh ch j: lips pushed out
    "alveolar": ((0.25, 0.2, 0.0, 0.5, 0.7, 0.0, 0.0), 1.0),  # t d n
    "lateral": ((0.35, 0.15, 0.0, 0.4, 1.0, 0.0, 0.0), 1.0),  # l: tongue tip up
    "velar": ((0.32, 0.1, 0.0, 0.3, 0.3, 0.0, 0.0), 0.8),  # k g ng
    "glottal": ((0.40, 0.05, 0.0, 0.2, 0.1, 0.0, 0.0), 0.5),  # h
    "rhotic": ((0.22, 0.0, 0.55, 0.3, 0.3, 0.0, 0.0), 1.5),  # r
    "round": ((0.10, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0), 3.0),  # w
    "palatal": ((0.18, 0.6, 0.0, 0.5, 0.5, 0.0, 0.0), 1.0),  # y
    "i": ((0.22, 1.0, 0.0, 0.7, 0.5, 0.0, 0.0), 2.0),
    "I": ((0.32, 0.7, 0.0, 0.5, 0.4, 0.0, 0.0), 2.0),
    "e": ((0.50, 0.6, 0.0, 0.4, 0.3, 0.0, 0.0), 2.0),
    "a": ((0.95, 0.3, 0.0, 0.3, 0.1, 0.0, 0.0), 2.0),
    "V": ((0.62, 0.15, 0.0, 0.3, 0.2, 0.0, 0.0), 2.0),
    "@": ((0.42, 0.1, 0.0, 0.3, 0.3, 0.0, 0.0), 1.2),
    "O": ((0.65, 0.0, 0.7, 0.2, 0.1, 0.0, 0.0), 2.0),
    "U": ((0.30, 0.0, 0.75, 0.1, 0.2, 0.0, 0.0), 2.0),
    "u": ((0.18, 0.0, 1.0, 0.0, 0.1, 0.0, 0.0), 3.0),
}
GRID_S = 0.005  # 5 ms timeline on which targets are blended


def mouth_track(visemes, n_frames: int, look, rng: np.random.Generator) -> np.ndarray:
    """(viseme, start, end) segments -> (T, len(PARAMS)) parameters at each frame instant.

    `look` gives the speaker's `coarticulation_s` (blending width) and `expressiveness` (jaw).
    """
    n_grid = int(np.ceil(n_frames / VIDEO_FPS / GRID_S)) + 1
    rest, rest_w = VISEMES["rest"]
    target = np.tile(np.asarray(rest, np.float32), (n_grid, 1))  # (G, P)
    weight = np.full(n_grid, rest_w, np.float32)  # (G,)
    for name, start, end in visemes:
        values, dom = VISEMES[name]
        a, b = int(round(start / GRID_S)), max(int(round(end / GRID_S)), int(round(start / GRID_S)) + 1)
        target[a:b] = values
        weight[a:b] = dom
    # dominance-weighted Gaussian blending: a closure wins over its neighbouring vowels
    half = int(np.ceil(3 * look.coarticulation_s / GRID_S))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * GRID_S / look.coarticulation_s) ** 2)
    num = np.stack([np.convolve(target[:, p] * weight, kernel, mode="same") for p in range(len(PARAMS))], 1)
    den = np.convolve(weight, kernel, mode="same")[:, None]
    smooth = num / den  # (G, P)
    centres = (np.arange(n_frames) + 0.5) / VIDEO_FPS
    track = smooth[np.minimum(np.round(centres / GRID_S).astype(int), n_grid - 1)].copy()  # (T, P)
    track[:, OPEN] = track[:, OPEN] * look.expressiveness + rng.normal(0, 0.015, n_frames)
    return np.clip(track, 0.0, 1.0).astype(np.float32)


def smooth_walk(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    """A smooth random path of n values that starts and ends at 0, peaking at `amplitude`."""
    steps = rng.normal(0.0, 1.0, n + 8)
    walk = np.convolve(steps, np.ones(8) / 8, mode="valid")[:n]
    walk = np.cumsum(walk) * 0.3
    walk -= np.linspace(walk[0], walk[-1], n) if n > 1 else walk
    scale = np.abs(walk).max()
    return walk * (amplitude / scale) if scale > 0 else walk
