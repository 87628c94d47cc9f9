"""Task layer: task names, env construction and evaluation.

Every task is a gymnasium env with a continuous action box [-1, 1]^d, float32
observations, ``info["success"]`` and episodes that end by truncation.  Two families:
MetaWorld v3 (any id of the installed package, e.g. ``door-unlock-v3``) and the built-in
``toy-reach`` (pure numpy, for tests and demos).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from core.config import ConfigError
from core.envs.evaluation import (
    LAST_ENV_STEP_SUCCESS,
    episode_success,
    episode_successes,
    run_eval_episodes,
    step_success,
)
from core.envs.metaworld_env import EPISODE_STEPS, benchmark_goals, make_metaworld_env, metaworld_task_ids
from core.envs.protocol import ActionRepeat
from core.envs.toy_reach import TOY_EPISODE_STEPS, ToyReachEnv, move_to_goal_policy
from core.names import did_you_mean

TOY_REACH = "toy-reach"
PAPER_TASKS = ("door-unlock-v3", "hammer-v3", "reach-wall-v3", "plate-slide-v3")

__all__ = [
    "ActionRepeat",
    "PAPER_TASKS",
    "TASKS",
    "TOY_REACH",
    "ToyReachEnv",
    "benchmark_goals",
    "canonical_task",
    "decisions_per_episode",
    "LAST_ENV_STEP_SUCCESS",
    "episode_success",
    "episode_successes",
    "make_env",
    "make_run_env",
    "move_to_goal_policy",
    "run_eval_episodes",
    "step_success",
]


def __getattr__(name: str) -> Any:
    # TASKS is computed on first use so that importing core.envs does not load MuJoCo.
    if name == "TASKS":
        return (*metaworld_task_ids(), TOY_REACH)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def canonical_task(name: str) -> str:
    """The canonical id of a task name, or a one-line `ConfigError` with a suggestion.

    Accepts the id itself (``door-unlock-v3``), the short name (``door-unlock``), the
    paper's ``mw-`` prefix (``mw-door-unlock``), any case, and ``_`` for ``-``.
    """
    key = name.strip().lower().replace("_", "-")
    if key == TOY_REACH:
        return TOY_REACH
    if key.startswith("mw-"):
        key = key[3:]
    ids = metaworld_task_ids()
    for candidate in (key, f"{key}-v3"):
        if candidate in ids:
            return candidate
    # Suggest among ids and short names alike, so "door-unlok" finds "door-unlock".
    spellings = {task: task for task in ids} | {task.removesuffix("-v3"): task for task in ids}
    spellings[TOY_REACH] = TOY_REACH
    hint = did_you_mean(key, spellings, shown=spellings)
    raise ConfigError(
        f"unknown task '{name}'{hint}; expected a MetaWorld v3 task id of the installed "
        f"package ({len(ids)} known, e.g. '{PAPER_TASKS[0]}') or '{TOY_REACH}'"
    )


def make_env(
    task: str,
    seed: int,
    episode_length: int = 0,
    terminate_on_success: bool = False,
    *,
    action_repeat: int = 1,
    reward_scale: float = 1.0,
    benchmark_seed: int | None = None,
    cycle_variants: bool = False,
    goals: str = "mt1",
) -> gym.Env:
    """A fresh env for ``task`` whose episodes are fixed by ``seed``.

    The first ``reset()`` (no seed needed) already gives the seed's first episode; the
    same seed replays the same episode sequence, different seeds give different starts
    and goals.

    Args:
        task: Any name `canonical_task` accepts.
        seed: Seeds the episode stream (which variant each reset visits) and the action space.
        episode_length: If > 0, truncate episodes after this many env steps; 0 keeps the
            task's own length (500 for MetaWorld, 30 for toy-reach).
        terminate_on_success: Terminate at the first success (evaluation-style episodes).
        action_repeat: Env steps per step of the returned env (`ActionRepeat`).
        reward_scale: Multiplies the summed reward of those env steps.
        benchmark_seed: MetaWorld: picks the benchmark's 50 goal variants (None: ``seed``);
            every env of one run passes the same value. Ignored by toy-reach.
        cycle_variants: MetaWorld: visit the variants in order (evaluation).
        goals: MetaWorld: ``mt1`` (the benchmark's 50 variants, MetaWorld's own) or ``fresh``
            (a new goal at every reset, the peers'). toy-reach always draws fresh goals.
    """
    task_id = canonical_task(task)
    if episode_length < 0:
        raise ConfigError(f"episode_length must be >= 0 (0 = the task's own length), got {episode_length}")
    if task_id == TOY_REACH:
        kwargs = {"max_episode_steps": episode_length} if episode_length > 0 else {}
        env: gym.Env = ToyReachEnv(seed=seed, terminate_on_success=terminate_on_success, **kwargs)
    else:
        env = make_metaworld_env(task_id, seed, episode_length, terminate_on_success, benchmark_seed,
                                 cycle_variants, fresh_goals=goals == "fresh")
    return ActionRepeat(env, action_repeat, reward_scale) if action_repeat > 1 or reward_scale != 1.0 else env


def decisions_per_episode(task: str, episode_length: int, action_repeat: int) -> int:
    """Decisions (steps of the protocol env) in one episode; the env steps must divide evenly."""
    steps = episode_length or (TOY_EPISODE_STEPS if canonical_task(task) == TOY_REACH else EPISODE_STEPS)
    if steps % action_repeat:
        raise ConfigError(f"env.episode_length: the episode's {steps} env steps are not a multiple of "
                          f"env.action_repeat ({action_repeat})")
    return steps // action_repeat


def make_run_env(cfg: Any, seed: int, evaluation: bool = False) -> gym.Env:
    """An env of run `cfg` (a `RunConfig`) under its protocol and goals (``env.goals``).

    Fresh goals: ``seed`` fixes the env's stream of goals. MT1 goals: every lane and the
    evaluator of a run share the MT1 benchmark of ``trainer.seed``, ``seed`` only orders the
    episodes, and evaluation visits the variants in turn. Evaluation envs score rewards in
    env-reward units (scale 1, the peers' eval return) and stop at the first success only
    with ``eval.stop_on_success``.
    """
    return make_env(cfg.trainer.task, seed, cfg.env.episode_length,
                    terminate_on_success=evaluation and cfg.eval.stop_on_success,
                    action_repeat=cfg.env.action_repeat, reward_scale=1.0 if evaluation else cfg.env.reward_scale,
                    benchmark_seed=cfg.trainer.seed, cycle_variants=evaluation, goals=cfg.env.goals)
