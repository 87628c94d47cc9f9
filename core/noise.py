"""Reward noise and robust reward estimators (DQT eq. 12-15, and section 7.3's extensions).

Noise corrupts every *training* reward at the agent; evaluation never sees it. With a
robust estimator the agent draws M noisy copies of each reward and keeps their median
(DQT eq. 15), mean or trimmed mean. A median of symmetric noise removes its spread but
not its mean: E[median(r + noise)] = r + mu, which is the paper's finding in section 6.2.

Where (`noise.before_reward_scale`, the DQT code's trainer): once per decision, on the
unscaled sum of its env rewards; the estimate is taken there, and only then is the
decision's reward scaled (0.5 under the paper protocol). So the paper's sigma = 10 puts
a spread of 5 on the reward the learner sees; added after the scale it would be 10.

Noise kinds (`NOISE_KINDS`) and estimators (`ESTIMATORS`) are registries (`core.registry`):
a new one is one `register` call, and the built-ins below are registered the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dqt.core.registry import Registry

if TYPE_CHECKING:
    from dqt.core.config import NoiseConfig


@dataclass(frozen=True)
class NoiseKind:
    """A noise distribution of mean 0 and standard deviation 1; `RewardNoise` shifts it by
    ``noise.mean`` and scales it by ``noise.std``.

    Attributes:
        label: How figures name it, in terms of μ and σ (e.g. "N(μ, σ²)").
        standard: ``(rng, shape, cfg) -> draws`` of mean 0 and std 1.
    """

    label: str
    standard: Callable[[np.random.Generator, tuple[int, ...], NoiseConfig], np.ndarray]


@dataclass(frozen=True)
class Estimator:
    """A robust estimate over the last axis of ``M`` noisy draws of each reward (DQT eq. 15).

    Attributes:
        label: How figures name it ("median of the noisy draws").
        reduce: ``(draws, cfg) -> estimates``.
    """

    label: str
    reduce: Callable[[np.ndarray, NoiseConfig], np.ndarray]


NOISE_KINDS: Registry[NoiseKind] = Registry("noise kind")
ESTIMATORS: Registry[Estimator] = Registry("robust estimator")
NO_ESTIMATOR = "none"  # noise.robust: the noisy reward itself (DQT eq. 13)

NOISE_KINDS.register("gaussian", NoiseKind("N(μ, σ²)", lambda rng, shape, cfg: rng.standard_normal(size=shape)))
# A t variate with df > 2 has variance df / (df - 2); rescaled so that `std` means std.
NOISE_KINDS.register("student-t", NoiseKind(
    "Student-t (μ, σ, df)",
    lambda rng, shape, cfg: rng.standard_t(cfg.df, size=shape) / np.sqrt(cfg.df / (cfg.df - 2.0))))


def _trimmed_mean(draws: np.ndarray, cfg: NoiseConfig) -> np.ndarray:
    m = draws.shape[-1]
    k = int(cfg.trim_fraction * m)
    return np.sort(draws, axis=-1)[..., k: m - k].mean(axis=-1)


ESTIMATORS.register("median", Estimator("median", lambda draws, cfg: np.median(draws, axis=-1)))
ESTIMATORS.register("mean", Estimator("mean", lambda draws, cfg: draws.mean(axis=-1)))
ESTIMATORS.register("trimmed-mean", Estimator("trimmed mean", _trimmed_mean))


def robust_names() -> tuple[str, ...]:
    """What ``noise.robust`` accepts: none, or a registered estimator."""
    return (NO_ESTIMATOR, *ESTIMATORS.names())


class RewardNoise:
    """Applies `cfg`'s noise (and robust estimator) to arrays of rewards."""

    def __init__(self, cfg: NoiseConfig, rng: np.random.Generator, reward_scale: float = 1.0):
        self.cfg = cfg
        self.rng = rng
        self.kind = NOISE_KINDS.get(cfg.kind)
        self.estimator = None if cfg.robust == NO_ESTIMATOR else ESTIMATORS.get(cfg.robust)
        # rewards arrive scaled; with before_reward_scale the noise meets them unscaled
        self.scale = reward_scale if cfg.before_reward_scale else 1.0

    @property
    def active(self) -> bool:
        return self.cfg.std > 0 or self.cfg.mean != 0

    def sample(self, shape: tuple[int, ...]) -> np.ndarray:
        """Noise draws with mean `mean` and standard deviation `std` (DQT eq. 12, std named honestly)."""
        return self.cfg.mean + self.cfg.std * self.kind.standard(self.rng, shape, self.cfg)

    def __call__(self, rewards: np.ndarray) -> np.ndarray:
        """Noisy (or robustly estimated) decision rewards, same shape as the scaled `rewards`."""
        r = np.asarray(rewards, dtype=np.float64)
        if not self.active:
            return r.astype(np.float32)
        r = r / self.scale  # the unscaled sum of the decision's env rewards
        if self.estimator is None:
            noisy = r + self.sample(r.shape)  # DQT eq. 13
        else:
            draws = r[..., None] + self.sample(r.shape + (self.cfg.samples,))  # DQT eq. 14
            noisy = self.estimator.reduce(draws, self.cfg)  # DQT eq. 15
        return (self.scale * noisy).astype(np.float32)


def robust_estimate(draws: np.ndarray, estimator: str, cfg: NoiseConfig) -> np.ndarray:
    """Reduce the last axis of `draws` with the registered estimator `estimator`."""
    return ESTIMATORS.get(estimator).reduce(draws, cfg)
