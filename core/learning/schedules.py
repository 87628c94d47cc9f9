"""Exploration and learning-rate schedules (DQT eq. 2 and section 4.2)."""

from __future__ import annotations

import math

from dqt.core.config import LR_SCHEDULES, ConfigError


def epsilon(t: int, eps_max: float, eps_min: float, decay_steps: float) -> float:
    """DQT eq. 2: eps_t = max(eps_min, eps_max * (1 - t / T_decay)); t counts env steps of all agents."""
    return max(eps_min, eps_max * (1.0 - t / max(decay_steps, 1.0)))


def lr_multiplier(name: str, t: int, T: int, n: int) -> float:
    """Multiplier on the base LR at learner step t of T with n agents (DQT 4.2).

    The log schedules fall back to plain linear decay for one agent because ln(1) = 0 would
    freeze the LR; `linear-log-n` keeps a 3e-5 floor so many agents never stop learning.
    """
    frac = t / max(T, 1)
    if name == "constant":
        return 1.0
    if name == "linear":
        return max(1.0 - frac, 0.0)
    if name == "log-curve":
        return max(1.0 - frac, 0.0) if n == 1 else 1.0 / (1.0 + math.log(n) * frac)
    if name == "linear-log-n":
        return max(1.0 - frac, 0.0) if n == 1 else max(1.0 - math.log(n) * frac, 3e-5)
    if name == "linear-n":
        return max(1.0 - n * frac, 0.0)
    raise ConfigError(f"unknown LR schedule '{name}' (known: {', '.join(LR_SCHEDULES)})")
