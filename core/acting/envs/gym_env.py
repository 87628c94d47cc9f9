"""Any gymnasium environment with a Box action space, as a task ``gym:<id>`` (e.g. ``gym:Pendulum-v1``,
``gym:InvertedPendulum-v5``).

The trainer's contract (`core.acting.envs`): actions in [-1, 1]^d, float32 observations, episodes
that end by truncation or termination, the seed's first episode at the first ``reset()``, and
``info["success"]`` where the task has a success signal. So the env is wrapped: actions
rescaled from [-1, 1] to the env's own bounds, observations flattened and cast, the first reset
seeded, and ``info["is_success"]`` (gymnasium-robotics' key) reported as ``info["success"]``.
A task that reports neither has no success signal: it is evaluated by its return alone.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from dqt.core.config import ConfigError

PREFIX = "gym:"


def gym_id(task: str) -> str | None:
    """The gymnasium id of a task name ``gym:<id>``, when gymnasium registers it; else None."""
    key = task.strip()
    if not key.lower().startswith(PREFIX):
        return None
    name = key[len(PREFIX):]
    return name if name in gym.registry else None


def gym_task_ids() -> tuple[str, ...]:
    """Every gymnasium id as a task name (MetaWorld's own entries are tasks of their own family)."""
    return tuple(PREFIX + k for k in gym.registry if not k.startswith("Meta-World/"))


def episode_steps(task: str) -> int:
    spec = gym.spec(task[len(PREFIX):])
    return int(spec.max_episode_steps or 1000)


class _Contract(gym.Wrapper[np.ndarray, np.ndarray, Any, Any]):
    """Rescaled actions, flat float32 observations, a seeded first reset, ``success`` in info."""

    def __init__(self, env: gym.Env, seed: int, terminate_on_success: bool) -> None:
        super().__init__(env)
        space = env.action_space
        self.low, self.high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=space.shape, dtype=np.float32)
        self.action_space.seed(seed)
        size = int(np.prod(env.observation_space.shape))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)
        self.seed, self.seeded = seed, False
        self.terminate_on_success = terminate_on_success

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None and not self.seeded:
            seed = self.seed  # the first episode of this env is its seed's
        self.seeded = True
        obs, info = self.env.reset(seed=seed, options=options)
        return np.asarray(obs, dtype=np.float32).ravel(), _with_success(info)

    def step(self, action: np.ndarray):
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        obs, reward, terminated, truncated, info = self.env.step(self.low + (a + 1.0) * 0.5 * (self.high - self.low))
        info = _with_success(info)
        if self.terminate_on_success and info.get("success") == 1.0:
            terminated = True
        return np.asarray(obs, dtype=np.float32).ravel(), float(reward), bool(terminated), bool(truncated), info


def _with_success(info: dict[str, Any]) -> dict[str, Any]:
    if "success" not in info and "is_success" in info:
        return {**info, "success": float(info["is_success"])}
    return info


def make_gym_env(task: str, seed: int, episode_length: int = 0, terminate_on_success: bool = False) -> gym.Env:
    """The gymnasium env of task ``gym:<id>`` under the trainer's contract."""
    name = task[len(PREFIX):]
    kwargs = {"max_episode_steps": episode_length} if episode_length > 0 else {}
    env = gym.make(name, disable_env_checker=True, **kwargs)
    if not isinstance(env.action_space, gym.spaces.Box):
        raise ConfigError(f"task '{task}': its action space is {env.action_space}, not a Box; the "
                          "Q-Transformer bins continuous action dims")
    if not (np.all(np.isfinite(env.action_space.low)) and np.all(np.isfinite(env.action_space.high))):
        raise ConfigError(f"task '{task}': its action bounds are not finite, so they cannot be rescaled to [-1, 1]")
    return _Contract(env, seed, terminate_on_success)
