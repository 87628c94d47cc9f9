"""Env throughput: raw steps/s of one MetaWorld door-unlock-v3 env with random actions.

No learner and no policy: this is the ceiling an agent process could reach
(about 1,800-2,200 steps/s on a quiet 2-core build machine; docs/BACKGROUND.md).
"""

from __future__ import annotations

import statistics
import time

from dqt.core.acting.envs import make_env


def run(task: str = "door-unlock-v3", windows: int = 3, per_window: int = 1000) -> dict:
    """Median steps/s over ``windows`` windows of ``per_window`` steps (resets included)."""
    env = make_env(task, seed=0)
    env.reset()
    # Warm-up: the first steps pay for lazy MuJoCo and wrapper set-up.
    for _ in range(50):
        env.step(env.action_space.sample())
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(per_window):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        rates.append(per_window / (time.perf_counter() - start))
    env.close()
    return {"env_steps_per_s_raw": statistics.median(rates)}


if __name__ == "__main__":
    print(run())
