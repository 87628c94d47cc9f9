"""MetaWorld v3 single-task environments, built through the package's own gymnasium entry.

Facts about the installed package (metaworld 3.1.x) that this module relies on:

- ``gym.make("Meta-World/MT1", env_name=..., seed=s)`` builds an MT1 benchmark whose
  50 task variants (goal / object positions, MetaWorld's ``rand_vec``) are drawn from
  ``s``, seeds the env's generator with ``s``, and wraps the env in
  ``RandomTaskSelectWrapper``: every ``reset()`` picks one of the 50 variants with that
  generator.  The physics itself is deterministic.
- Goals ``fresh`` (the peers' codes, ``_freeze_rand_vec = False``): after one ``set_task``
  (which makes the goal observable), task sampling on reset is switched off and the env's
  ``rand_vec`` unfrozen and drawn from the env's own seeded generator
  (``seeded_rand_vec``), so every reset draws a new goal and object position from the same
  box MT1 draws its 50 from. The peers drew them from numpy's global generator; a seeded
  one makes runs repeatable.
- Goals ``mt1``: one run is one benchmark: every lane and the evaluator build the MT1 of the run's seed
  (``benchmark_seed``), so they hold the same 50 variants, and each env's generator is
  then re-seeded with its own ``seed`` (``SawyerXYZEnv.seed``), so lanes visit those
  variants in different orders.  MetaWorld evaluates on the benchmark's own training
  tasks; ``cycle_variants`` visits them in order 0, 1, ..., 49, 0, ... instead of at
  random, so evaluations cover every variant equally.
- ``SawyerXYZEnv.reset(seed=...)`` ignores its seed; `_MetaWorldAdapter` makes
  ``reset(seed=s)`` re-seed the variant choice (the 50 variants stay those of the
  benchmark), so the gymnasium contract holds.
- Observations are float64 and the advertised observation space is stale (the goal
  slots have low = high = 0, although MT1 fills them in), so gymnasium's passive env
  checker warns on every step; the adapter casts to float32 and declares a correct space.
- Episodes end by truncation at ``max_path_length`` = 500; the raw env raises if stepped
  past it, so longer episodes are refused here.  Training never terminates on success
  (``terminate_on_success=False``, the package default for MT envs).
- Nothing renders: ``render_mode`` stays None, so no OpenGL context is created and
  ``MUJOCO_GL`` does not matter (an invalid value would still break ``import mujoco``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import gymnasium as gym
import numpy as np

from dqt.core.config import ConfigError

EPISODE_STEPS = 500
"""MetaWorld's ``max_path_length``: the episode length its success rates are defined on."""


@functools.cache
def metaworld_task_ids() -> tuple[str, ...]:
    """The v3 task ids of the installed package (read from it, never hard-coded)."""
    # Imported lazily: importing metaworld loads MuJoCo, which toy-reach users don't need.
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return tuple(ALL_V3_ENVIRONMENTS)


class _MetaWorldAdapter(gym.Wrapper[np.ndarray, np.ndarray, np.ndarray, np.ndarray]):
    """float32 observations with an honest space, a ``reset(seed=...)`` that works, and
    either fresh goals at every reset or the benchmark's variants, optionally in order."""

    def __init__(self, env: gym.Env, cycle_variants: bool = False, fresh_goals: bool = False) -> None:
        super().__init__(env)
        self.tasks = env.get_wrapper_attr("tasks")  # the benchmark's variants
        self.cycle_variants = cycle_variants and not fresh_goals
        self.next_variant = 0
        if cycle_variants or fresh_goals:
            env.get_wrapper_attr("toggle_sample_tasks_on_reset")(False)
        if fresh_goals:
            base = env.unwrapped
            base.set_task(self.tasks[0])  # the goal-observable settings of MT1
            base._freeze_rand_vec = False  # the peers' setting: a new goal at every reset
            base.seeded_rand_vec = True  # drawn from the env's seeded generator, not numpy's global one
        # The env advertises the space of its construction-time (goal-hidden) settings,
        # goal bounds all zero; MT1 shows the goal, whose bounds are the goal space's.
        base = env.unwrapped
        low, high = base.sawyer_observation_space.low.copy(), base.sawyer_observation_space.high.copy()
        low[-3:], high[-3:] = base.goal_space.low, base.goal_space.high
        self.observation_space = gym.spaces.Box(
            low.astype(np.float32), high.astype(np.float32), dtype=np.float32
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            # The task-variant choice draws from the base env's generator; MetaWorld's
            # own reset ignores `seed`, so re-seed that generator here.
            self.env.unwrapped.seed(seed)
        if self.cycle_variants:
            self.env.unwrapped.set_task(self.tasks[self.next_variant % len(self.tasks)])
            self.next_variant += 1
        obs, info = self.env.reset(options=options)
        return obs.astype(np.float32), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs.astype(np.float32), float(reward), bool(terminated), bool(truncated), info


def benchmark_goals(env: gym.Env) -> np.ndarray:
    """The ``rand_vec`` (goal and object positions) of each of the env's 50 variants: [50, d]."""
    import pickle

    return np.stack([pickle.loads(t.data)["rand_vec"] for t in env.get_wrapper_attr("tasks")])


def make_metaworld_env(
    task_id: str,
    seed: int,
    max_episode_steps: int = 0,
    terminate_on_success: bool = False,
    benchmark_seed: int | None = None,
    cycle_variants: bool = False,
    fresh_goals: bool = False,
) -> gym.Env:
    """One MetaWorld v3 MT1 env for ``task_id`` (a canonical id such as ``door-unlock-v3``).

    Args:
        task_id: A v3 task id of the installed package.
        seed: The order in which resets visit the variants.
        max_episode_steps: If > 0, truncate episodes after this many steps (<= 500).
        terminate_on_success: Terminate at the first success (MetaWorld's evaluation
            setting); False while training, as MetaWorld advises.
        benchmark_seed: Picks the 50 task variants (None: ``seed``); envs of one run share it.
        cycle_variants: Visit the variants in order instead of at random (evaluation).
        fresh_goals: Draw a new goal at every reset instead of one of the 50 variants.
    """
    if task_id not in metaworld_task_ids():
        raise ConfigError(f"unknown MetaWorld v3 task '{task_id}'")
    if max_episode_steps > EPISODE_STEPS:
        raise ConfigError(
            f"max_episode_steps={max_episode_steps}: MetaWorld episodes last at most {EPISODE_STEPS} steps"
        )
    import metaworld  # noqa: F401  (registers the Meta-World/* ids with gymnasium)

    spec = gym.spec("Meta-World/MT1")
    if max_episode_steps > 0:
        # gym.make's own max_episode_steps would add an outer TimeLimit, above
        # RecordEpisodeStatistics, whose truncations then go unrecorded (no
        # info["episode"]); spec kwargs reach MetaWorld's entry point, which sizes its
        # inner TimeLimit with them.
        spec = dataclasses.replace(spec, kwargs={**spec.kwargs, "max_episode_steps": max_episode_steps})
    env = gym.make(
        spec,
        env_name=task_id,
        seed=seed if benchmark_seed is None else benchmark_seed,
        terminate_on_success=terminate_on_success,
        # The checker only repeats warnings caused by the stale observation space.
        disable_env_checker=True,
    )
    if benchmark_seed is not None:
        env.unwrapped.seed(seed)  # same variants, this env's own visiting order
    return _MetaWorldAdapter(env, cycle_variants, fresh_goals)
