"""toy-reach: a tiny pure-numpy reaching task for tests and demos.

It mimics the MetaWorld interface the trainer relies on (continuous actions in
[-1, 1], dense reward, ``info["success"]``, episodes that end by truncation) but steps
in microseconds, so a Q-Transformer with coarse bins learns it within a minute of CPU.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

TOY_REACH = "toy-reach"
TOY_EPISODE_STEPS = 30
"""toy-reach's own episode length."""


class ToyReachEnv(gym.Env[np.ndarray, np.ndarray]):
    """Move a point in the box [-1, 1]^dim onto a goal drawn at reset.

    Observation ``[position (dim), goal (dim)]`` (float32); action: per-dim velocity in
    [-1, 1], applied as ``position += step_size * action`` and clipped to the box.
    Reward ``1 - sqrt(distance / max_distance)`` lies in [0, 1]: it is dense everywhere
    but steepest near the goal, so the reward agrees with the success test (a linear
    reward barely separates "at the goal" from "close to it").  ``info["success"]`` is
    1.0 when ``distance < success_threshold`` and 0.0 otherwise (a float, as MetaWorld
    reports it).  Episodes end by truncation after ``max_episode_steps`` (MetaWorld
    never terminates while training) unless ``terminate_on_success`` is set.

    Start and goal come from the env's generator: the constructor ``seed`` (or
    ``reset(seed=...)``) fixes the sequence of episodes.

    Args:
        seed: Seeds the episode generator and the action space; None draws fresh entropy.
        max_episode_steps: Steps before truncation.  The default 30 leaves ample time:
            the goal is at most ``2 / step_size = 8`` full-speed steps away.
        terminate_on_success: End the episode (``terminated=True``) at the first success,
            for tests of termination handling and MetaWorld-style evaluation.
        dim: Dimensions of position, goal and action (4, like MetaWorld's action).
        step_size: Displacement per unit of action and step.
        success_threshold: Euclidean distance under which the step counts as a success.
        min_start_distance: Start and goal are redrawn until at least this far apart, so
            no episode is solved by the reset alone.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        seed: int | None = None,
        max_episode_steps: int = TOY_EPISODE_STEPS,
        terminate_on_success: bool = False,
        dim: int = 4,
        step_size: float = 0.25,
        success_threshold: float = 0.2,
        min_start_distance: float = 0.5,
    ) -> None:
        if max_episode_steps <= 0:
            raise ValueError(f"max_episode_steps must be > 0, got {max_episode_steps}")
        self.max_episode_steps = max_episode_steps
        self.terminate_on_success = terminate_on_success
        self.dim = dim
        self.step_size = step_size
        self.success_threshold = success_threshold
        self.min_start_distance = min_start_distance
        self.max_distance = 2.0 * math.sqrt(dim)  # diagonal of the box
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2 * dim,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(dim,), dtype=np.float32)
        # Seed here, not in reset(): the first reset() of a fresh env then already gives
        # the seed's first episode, as with MetaWorld's gym.make(..., seed=...).
        self._np_random, _ = gym.utils.seeding.np_random(seed)
        self.action_space.seed(seed)
        self._position = np.zeros(dim, dtype=np.float64)
        self._goal = np.zeros(dim, dtype=np.float64)
        self._steps = 0
        self._needs_reset = True

    def toggle_terminate_on_success(self, on: bool) -> None:
        """Same switch as MetaWorld's ``AutoTerminateOnSuccessWrapper``."""
        self.terminate_on_success = on

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        while True:
            start = rng.uniform(-1.0, 1.0, size=self.dim)
            goal = rng.uniform(-1.0, 1.0, size=self.dim)
            if np.linalg.norm(goal - start) >= self.min_start_distance:
                break
        self._position, self._goal = start, goal
        self._steps = 0
        self._needs_reset = False
        return self._obs(), {"success": 0.0, "distance": float(np.linalg.norm(goal - start))}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (the episode has ended or never started)")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.dim,):
            raise ValueError(f"action must have shape ({self.dim},), got {a.shape}")
        # Clip like MetaWorld does, so out-of-range actions are harmless, not errors.
        a = np.clip(a, -1.0, 1.0)
        self._position = np.clip(self._position + self.step_size * a, -1.0, 1.0)
        self._steps += 1
        distance = float(np.linalg.norm(self._goal - self._position))
        success = distance < self.success_threshold
        reward = 1.0 - math.sqrt(min(distance / self.max_distance, 1.0))
        terminated = bool(success and self.terminate_on_success)
        truncated = (not terminated) and self._steps >= self.max_episode_steps
        self._needs_reset = terminated or truncated
        info = {"success": float(success), "distance": distance}
        return self._obs(), reward, terminated, truncated, info

    def _obs(self) -> np.ndarray:
        return np.concatenate([self._position, self._goal]).astype(np.float32)


def move_to_goal_policy(obs: np.ndarray, step_size: float = 0.25) -> np.ndarray:
    """Scripted expert for toy-reach: full speed toward the goal, exact on arrival.

    Reads only the observation ``[position, goal]``, so it is a valid eval policy.
    """
    half = obs.shape[-1] // 2
    return np.clip((obs[..., half:] - obs[..., :half]) / step_size, -1.0, 1.0).astype(np.float32)
