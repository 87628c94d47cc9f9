"""Reward noise and robust reward estimators (DQT eq. 12-15, and section 7.3's extensions).

Noise corrupts every *training* reward at the agent; evaluation never sees it. With a
robust estimator the agent draws M noisy copies of each reward and keeps their median
(DQT eq. 15), mean or trimmed mean. A median of symmetric noise removes its spread but
not its mean: E[median(r + noise)] = r + mu, which is the paper's finding in section 6.2.

Where (`noise.before_reward_scale`, the DQT code's trainer): once per decision, on the
unscaled sum of its env rewards; the estimate is taken there, and only then is the
decision's reward scaled (0.5 under the paper protocol). So the paper's sigma = 10 puts
a spread of 5 on the reward the learner sees; added after the scale it would be 10.
"""

from __future__ import annotations

import numpy as np

from core.config import NoiseConfig


class RewardNoise:
    """Applies `cfg`'s noise (and robust estimator) to arrays of rewards."""

    def __init__(self, cfg: NoiseConfig, rng: np.random.Generator, reward_scale: float = 1.0):
        self.cfg = cfg
        self.rng = rng
        # rewards arrive scaled; with before_reward_scale the noise meets them unscaled
        self.scale = reward_scale if cfg.before_reward_scale else 1.0

    @property
    def active(self) -> bool:
        return self.cfg.std > 0 or self.cfg.mean != 0

    def sample(self, shape: tuple[int, ...]) -> np.ndarray:
        """Noise draws with mean `mean` and standard deviation `std` (DQT eq. 12, std named honestly)."""
        c = self.cfg
        if c.kind == "student-t":
            # A t variate with df > 2 has variance df / (df - 2); rescale so `std` means std.
            z = self.rng.standard_t(c.df, size=shape) / np.sqrt(c.df / (c.df - 2.0))
        else:
            z = self.rng.standard_normal(size=shape)
        return c.mean + c.std * z

    def __call__(self, rewards: np.ndarray) -> np.ndarray:
        """Noisy (or robustly estimated) decision rewards, same shape as the scaled `rewards`."""
        r = np.asarray(rewards, dtype=np.float64)
        if not self.active:
            return r.astype(np.float32)
        c = self.cfg
        r = r / self.scale  # the unscaled sum of the decision's env rewards
        if c.robust == "none":
            noisy = r + self.sample(r.shape)  # DQT eq. 13
        else:
            draws = r[..., None] + self.sample(r.shape + (c.samples,))  # DQT eq. 14
            noisy = robust_estimate(draws, c.robust, c.trim_fraction)  # DQT eq. 15
        return (self.scale * noisy).astype(np.float32)


def robust_estimate(draws: np.ndarray, estimator: str, trim_fraction: float = 0.1) -> np.ndarray:
    """Reduce the last axis of `draws` with the named estimator (DQT eq. 15 for the median)."""
    if estimator == "median":
        return np.median(draws, axis=-1)
    if estimator == "mean":
        return draws.mean(axis=-1)
    if estimator == "trimmed-mean":
        m = draws.shape[-1]
        k = int(trim_fraction * m)
        return np.sort(draws, axis=-1)[..., k : m - k].mean(axis=-1)
    raise ValueError(f"unknown robust estimator '{estimator}'")
