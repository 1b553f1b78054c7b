"""Smoothing along time, shared by the Haar face track (roi.py) and the landmark crops (landmarks.py)."""

from __future__ import annotations

import numpy as np


def median_filter(values: np.ndarray, window: int) -> np.ndarray:
    """Running median along axis 0 (edges use the shorter window that fits): (T, ...) -> (T, ...)."""
    half = window // 2
    out = np.empty_like(values)
    for i in range(len(values)):
        out[i] = np.median(values[max(0, i - half) : i + half + 1], axis=0)
    return out
