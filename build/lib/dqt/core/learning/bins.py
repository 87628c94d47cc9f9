"""Per-dimension action discretisation (QT 4.1): K uniformly spaced bins over [-1, 1].

Bin 0 is exactly -1 and bin K-1 exactly +1 (the QT-TDM code maps the top bin to 0.992,
so its policy can never push an actuator to the limit).
"""

from __future__ import annotations

import numpy as np


def to_continuous(bins: np.ndarray, num_bins: int) -> np.ndarray:
    """Bin indices -> actions in [-1, 1]; the ends are exact because 2 * (K-1) / (K-1) - 1 == 1."""
    return (np.asarray(bins, dtype=np.float64) * (2.0 / (num_bins - 1)) - 1.0).astype(np.float32)


def to_bins(actions: np.ndarray, num_bins: int) -> np.ndarray:
    """Continuous actions -> nearest bin (clipped to [-1, 1]); the round trip errs by at most half a bin."""
    a = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
    return np.rint((a + 1.0) * ((num_bins - 1) / 2.0)).astype(np.int64)


def bin_width(num_bins: int) -> float:
    return 2.0 / (num_bins - 1)
