"""Per-frame mouth parameters of rendered clips: what they are and where they lie.

`demo-data` stores each clip's articulation beside its video (`video/<id>.mouth.npy`, (T, 7)
float16, one row per 25 Hz frame, each value in [0, 1]): free per-frame labels that
`model.losses.articulation` trains the lip-reading front-end to predict
(models/articulation.py); `dataset.AVDataset` reads them. avsrctl/synth/mouth.py computes them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from avsrctl.atomic import write_atomic

# articulatory parameters, each in [0, 1]
PARAMS = ("open", "spread", "round", "teeth", "tongue", "press", "tuck")
OPEN, SPREAD, ROUND, TEETH, TONGUE, PRESS, TUCK = range(len(PARAMS))
MOUTH_SUFFIX = ".mouth.npy"


def mouth_path(video: str | os.PathLike) -> Path:
    """Where a rendered clip's mouth parameters lie: `video/<id>.mp4` -> `video/<id>.mouth.npy`."""
    video = Path(video)
    return video.with_name(video.stem + MOUTH_SUFFIX)


def write_mouth(path: Path, track: np.ndarray) -> None:
    """Store a (T, len(PARAMS)) track as float16, atomically (a reader never sees half a file)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(track, np.float16))
    write_atomic(path, buf.getvalue())
