"""Task layer: task names, env construction and evaluation.

Every task is a gymnasium env with a continuous action box [-1, 1]^d, float32
observations, ``info["success"]`` where the task has a success signal, and episodes that
end by truncation. Tasks come from env families (`core.acting.envs.families.ENV_FAMILIES`): the
built-in ``toy-reach`` (pure numpy, for tests and demos), MetaWorld v3 (any id of the
installed package, e.g. ``door-unlock-v3``), and ``gym:<id>`` for any gymnasium env with a
Box action space; a researcher's family registers the same way.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from dqt.core.acting.envs.evaluation import (
    LAST_ENV_STEP_SUCCESS,
    episode_success,
    episode_successes,
    run_eval_episodes,
    step_success,
)
from dqt.core.acting.envs.families import ENV_FAMILIES, EnvFamily, EnvOptions
from dqt.core.acting.envs.metaworld_env import benchmark_goals
from dqt.core.acting.envs.protocol import ActionRepeat
from dqt.core.acting.envs.toy_reach import TOY_REACH, ToyReachEnv, move_to_goal_policy
from dqt.core.config import ConfigError
from dqt.core.names import did_you_mean

PAPER_TASKS = ("door-unlock-v3", "hammer-v3", "reach-wall-v3", "plate-slide-v3")

__all__ = [
    "ENV_FAMILIES",
    "LAST_ENV_STEP_SUCCESS",
    "ActionRepeat",
    "EnvFamily",
    "EnvOptions",
    "PAPER_TASKS",
    "TASKS",
    "TOY_REACH",
    "ToyReachEnv",
    "benchmark_goals",
    "canonical_task",
    "decisions_per_episode",
    "episode_success",
    "episode_successes",
    "family_of",
    "make_env",
    "make_run_env",
    "move_to_goal_policy",
    "run_eval_episodes",
    "step_success",
]


def __getattr__(name: str) -> Any:
    # TASKS is computed on first use so that importing dqt.core.acting.envs does not load MuJoCo.
    if name == "TASKS":
        return tuple(t for _, family in ENV_FAMILIES.items() for t in dict.fromkeys(family.spellings().values()))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def family_of(name: str) -> tuple[EnvFamily, str]:
    """The family a task name belongs to and the task's canonical id, or a one-line
    `ConfigError` with a suggestion. The families are asked in registration order."""
    for _, family in ENV_FAMILIES.items():
        task = family.resolve(name)
        if task is not None:
            return family, task
    spellings: dict[str, str] = {}
    for _, family in ENV_FAMILIES.items():
        spellings |= dict(family.spellings())
    key = name.strip().lower().replace("_", "-")
    key = key[3:] if key.startswith("mw-") else key
    hint = did_you_mean(key, spellings, shown=spellings) or did_you_mean(name.strip(), spellings, shown=spellings)
    examples = ", ".join(f"'{family.example}'" for _, family in ENV_FAMILIES.items())
    raise ConfigError(f"unknown task '{name}'{hint}; expected a task of a registered env family "
                      f"({', '.join(ENV_FAMILIES.names())}: e.g. {examples})")


def canonical_task(name: str) -> str:
    """The canonical id of a task name (``door-unlock``, ``mw-door-unlock`` -> ``door-unlock-v3``;
    ``gym:Pendulum-v1``), or a one-line `ConfigError` with a suggestion."""
    return family_of(name)[1]


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
        seed: Seeds the episode stream (which goal each reset visits) and the action space.
        episode_length: If > 0, truncate episodes after this many env steps; 0 keeps the
            task's own length (500 for MetaWorld, 30 for toy-reach, the gymnasium spec's).
        terminate_on_success: Terminate at the first success (evaluation-style episodes).
        action_repeat: Env steps per step of the returned env (`ActionRepeat`).
        reward_scale: Multiplies the summed reward of those env steps.
        benchmark_seed: MetaWorld: picks the benchmark's 50 goal variants (None: ``seed``);
            every env of one run passes the same value. Ignored by the other families.
        cycle_variants: MetaWorld: visit the variants in order (evaluation).
        goals: MetaWorld: ``mt1`` (the benchmark's 50 variants, MetaWorld's own) or ``fresh``
            (a new goal at every reset, the peers'). toy-reach always draws fresh goals.
    """
    family, task_id = family_of(task)
    if episode_length < 0:
        raise ConfigError(f"episode_length must be >= 0 (0 = the task's own length), got {episode_length}")
    env = family.make(task_id, seed, EnvOptions(episode_length, terminate_on_success, benchmark_seed, cycle_variants,
                                                goals))
    return ActionRepeat(env, action_repeat, reward_scale) if action_repeat > 1 or reward_scale != 1.0 else env


def decisions_per_episode(task: str, episode_length: int, action_repeat: int) -> int:
    """Decisions (steps of the protocol env) in one episode; the env steps must divide evenly."""
    family, task_id = family_of(task)
    steps = episode_length or family.episode_steps(task_id)
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
