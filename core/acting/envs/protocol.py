"""The environment protocol: how many env steps make one decision, and what it earns.

The paper's protocol (QT-TDM Table I; the DQT and QT-TDM codes) repeats each chosen action
for 2 env steps, scores the decision with 0.5 x the sum of the two env rewards, and cuts
episodes at 200 env steps (100 decisions) by truncation. So gamma = 0.98 discounts per
decision, the n-step window of 3 covers 6 env steps, and budgets stay in env steps
(300k env steps = 150k decisions). MetaWorld's native protocol is 500 env steps, repeat
1, scale 1 (``env.episode_length=500 env.action_repeat=1 env.reward_scale=1``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from dqt.core.acting.envs.evaluation import LAST_ENV_STEP_SUCCESS


class ActionRepeat(gym.Wrapper[np.ndarray, np.ndarray, np.ndarray, np.ndarray]):
    """One step = `repeat` env steps with the same action; reward = `scale` x their sum.

    ``info["success"]`` is 1.0 when any of the env steps succeeded (MetaWorld's evaluation
    counts success at any step, so a success on the first of the two steps must not be lost);
    ``info[LAST_ENV_STEP_SUCCESS]`` is the last env step's own flag (the peers' last-step
    success reads it); the other info entries are the last env step's. A termination or
    truncation inside the repeat ends it there (with an even episode length, truncation falls
    on a decision).
    """

    def __init__(self, env: gym.Env, repeat: int, scale: float) -> None:
        super().__init__(env)
        if repeat < 1:
            raise ValueError(f"action repeat must be >= 1, got {repeat}")
        self.repeat = int(repeat)
        self.scale = float(scale)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        total, success = 0.0, 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            success = max(success, float(info.get("success", 0.0)))
            if terminated or truncated:
                break
        if "success" not in info:  # a task without a success signal stays without one
            return obs, self.scale * total, terminated, truncated, info
        return obs, self.scale * total, terminated, truncated, {**info, "success": success,
                                                                LAST_ENV_STEP_SUCCESS: float(info["success"])}
