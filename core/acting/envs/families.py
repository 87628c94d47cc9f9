"""Env families: where task names come from and how their envs are made (`ENV_FAMILIES`).

A family knows its task names (`EnvFamily.resolve`: a name as a user types it -> the
canonical id, or None when not its own), makes an env of one of them (`EnvFamily.make`), and
gives a task's own episode length. The built-ins register themselves below as a researcher's
family would (`core.registry`); `core.acting.envs.make_env` asks the families in registration order.

- ``toy-reach``: the built-in pure-numpy task (tests, demos);
- ``metaworld``: every MetaWorld v3 task of the installed package (``door-unlock``,
  ``mw-door-unlock``, ``door-unlock-v3``), with its goal options (`EnvOptions.goals`);
- ``gymnasium``: ``gym:<id>`` for any gymnasium id with a Box action space (`core.acting.envs.gym_env`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import gymnasium as gym

from dqt.core.registry import Registry


@dataclass(frozen=True)
class EnvOptions:
    """What `make_env` asks of a family beyond the task and seed; a family ignores what it has
    no use for (only MetaWorld has goal variants).

    Attributes:
        episode_length: Env steps before truncation; 0 = the task's own.
        terminate_on_success: End episodes at the first success (MetaWorld's evaluation).
        benchmark_seed: MetaWorld MT1 goals: the seed that draws the 50 variants.
        cycle_variants: MetaWorld MT1 goals: visit the variants in order (evaluation).
        goals: ``mt1`` (MetaWorld's 50 fixed goals) or ``fresh`` (a new goal per reset).
    """

    episode_length: int = 0
    terminate_on_success: bool = False
    benchmark_seed: int | None = None
    cycle_variants: bool = False
    goals: str = "mt1"


@dataclass(frozen=True)
class EnvFamily:
    """One family of tasks.

    Attributes:
        resolve: A task name as typed -> the family's canonical id for it, or None.
        make: ``(task id, seed, options) -> env`` under the trainer's contract (actions in
            [-1, 1], float32 observations, ``info["success"]`` where the task has one).
        episode_steps: A task's own episode length in env steps.
        spellings: ``{spelling: task id}`` for "did you mean" hints (may be empty).
        example: A task name to show in messages.
    """

    resolve: Callable[[str], str | None]
    make: Callable[[str, int, EnvOptions], gym.Env]
    episode_steps: Callable[[str], int]
    spellings: Callable[[], Mapping[str, str]]
    example: str


ENV_FAMILIES: Registry[EnvFamily] = Registry("env family")


def _toy() -> EnvFamily:
    from dqt.core.acting.envs.toy_reach import TOY_EPISODE_STEPS, TOY_REACH, ToyReachEnv

    def make(task: str, seed: int, opts: EnvOptions) -> gym.Env:
        kwargs = {"max_episode_steps": opts.episode_length} if opts.episode_length > 0 else {}
        return ToyReachEnv(seed=seed, terminate_on_success=opts.terminate_on_success, **kwargs)

    return EnvFamily(lambda name: TOY_REACH if name.strip().lower().replace("_", "-") == TOY_REACH else None,
                     make, lambda task: TOY_EPISODE_STEPS, lambda: {TOY_REACH: TOY_REACH}, TOY_REACH)


def _metaworld() -> EnvFamily:
    from dqt.core.acting.envs import metaworld_env as mw

    def resolve(name: str) -> str | None:
        key = name.strip().lower().replace("_", "-")
        key = key[3:] if key.startswith("mw-") else key
        ids = mw.metaworld_task_ids()
        return next((c for c in (key, f"{key}-v3") if c in ids), None)

    def make(task: str, seed: int, opts: EnvOptions) -> gym.Env:
        return mw.make_metaworld_env(task, seed, opts.episode_length, opts.terminate_on_success, opts.benchmark_seed,
                                     opts.cycle_variants, fresh_goals=opts.goals == "fresh")

    def spellings() -> dict[str, str]:
        ids = mw.metaworld_task_ids()  # short names too, so "door-unlok" finds "door-unlock"
        return {t: t for t in ids} | {t.removesuffix("-v3"): t for t in ids}

    return EnvFamily(resolve, make, lambda task: mw.EPISODE_STEPS, spellings, "door-unlock-v3")


def _gymnasium() -> EnvFamily:
    from dqt.core.acting.envs import gym_env

    def resolve(name: str) -> str | None:
        found = gym_env.gym_id(name)
        return None if found is None else gym_env.PREFIX + found

    def make(task: str, seed: int, opts: EnvOptions) -> gym.Env:
        return gym_env.make_gym_env(task, seed, opts.episode_length, opts.terminate_on_success)

    return EnvFamily(resolve, make, gym_env.episode_steps, lambda: {t: t for t in gym_env.gym_task_ids()},
                     "gym:Pendulum-v1")


ENV_FAMILIES.register("toy-reach", _toy())
ENV_FAMILIES.register("metaworld", _metaworld())
ENV_FAMILIES.register("gymnasium", _gymnasium())
