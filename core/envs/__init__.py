"""Task layer: task names, env construction and evaluation.

Every task is a gymnasium env with a continuous action box [-1, 1]^d, float32
observations, ``info["success"]`` and episodes that end by truncation.  Two families:
MetaWorld v3 (any id of the installed package, e.g. ``door-unlock-v3``) and the built-in
``toy-reach`` (pure numpy, for tests and demos).
"""

from __future__ import annotations

import difflib
from typing import Any

import gymnasium as gym

from core.config import ConfigError
from core.envs.evaluation import episode_success, run_eval_episodes
from core.envs.metaworld_env import make_metaworld_env, metaworld_task_ids
from core.envs.toy_reach import ToyReachEnv, move_to_goal_policy

TOY_REACH = "toy-reach"
PAPER_TASKS = ("door-unlock-v3", "hammer-v3", "reach-wall-v3", "plate-slide-v3")

__all__ = [
    "PAPER_TASKS",
    "TASKS",
    "TOY_REACH",
    "ToyReachEnv",
    "canonical_task",
    "episode_success",
    "make_env",
    "move_to_goal_policy",
    "run_eval_episodes",
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
    close = difflib.get_close_matches(key, list(spellings), n=1, cutoff=0.6)
    hint = f" (did you mean '{spellings[close[0]]}'?)" if close else ""
    raise ConfigError(
        f"unknown task '{name}'{hint}; expected a MetaWorld v3 task id of the installed "
        f"package ({len(ids)} known, e.g. '{PAPER_TASKS[0]}') or '{TOY_REACH}'"
    )


def make_env(task: str, seed: int, max_episode_steps: int = 0, terminate_on_success: bool = False) -> gym.Env:
    """A fresh env for ``task`` whose episodes are fixed by ``seed``.

    The first ``reset()`` (no seed needed) already gives the seed's first episode; the
    same seed replays the same episode sequence, different seeds give different starts
    and goals.

    Args:
        task: Any name `canonical_task` accepts.
        seed: Seeds task variants / goals and the action space.
        max_episode_steps: If > 0, truncate episodes after this many steps; 0 keeps the
            task's own length (500 for MetaWorld, 30 for toy-reach).
        terminate_on_success: Terminate at the first success (evaluation-style episodes).
    """
    task_id = canonical_task(task)
    if max_episode_steps < 0:
        raise ConfigError(
            f"max_episode_steps must be >= 0 (0 = the task's own length), got {max_episode_steps}"
        )
    if task_id == TOY_REACH:
        kwargs = {"max_episode_steps": max_episode_steps} if max_episode_steps > 0 else {}
        return ToyReachEnv(seed=seed, terminate_on_success=terminate_on_success, **kwargs)
    return make_metaworld_env(task_id, seed, max_episode_steps, terminate_on_success)
