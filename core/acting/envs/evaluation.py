"""Greedy, noise-free evaluation, and the two conventions of episode success.

**Any step** -- MetaWorld's own, from ``metaworld/evaluation.py`` of the installed package
(3.1.1), function ``evaluation``::

    eval_envs.call("toggle_terminate_on_success", True)
    ...
        obs, _, terminations, truncations, infos = eval_envs.step(actions)
        dones = np.logical_or(terminations, truncations)
        ...
                successes[task_names[i]] += int(infos["final_info"]["success"][i])

with ``AutoTerminateOnSuccessWrapper.step`` doing ``terminated = info["success"] == 1.0``.
An episode stopped at its first success counts as a success exactly when such a step
occurred before truncation: success at ANY step.

**Last step** -- the DQT and QT-TDM codes' (``episode_success.append(info['success'])``
after the loop over a full 200-env-step episode): ``info["success"]`` of the episode's last
env step. An episode that touches the goal and drifts away counts under any-step only.

Evaluation here runs each episode to its time limit by default (as both peers did), so its
return is the full episode's, and both conventions are scored from the same episodes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from dqt.core.metrics import EvalEpisode

LAST_ENV_STEP_SUCCESS = "success_last_env_step"
"""info key of a step made of several env steps (action repeat): the success flag of its last
env step; its ``info["success"]`` is 1 when any of them succeeded."""


def step_success(info: dict[str, Any]) -> tuple[float, float] | None:
    """(success at any env step of this step, success at its last env step), or None when the
    env reports no success flag (a task evaluated by its return alone)."""
    if "success" not in info:
        return None
    any_flag = float(info["success"])
    return any_flag, float(info.get(LAST_ENV_STEP_SUCCESS, any_flag))


def episode_success(successes: Sequence[float | bool]) -> bool:
    """MetaWorld's convention: whether any of these per-step ``info["success"]`` values is 1."""
    return any(float(s) == 1.0 for s in successes)


def episode_successes(any_flags: Sequence[float], last_flag: float) -> dict[str, bool]:
    """Both conventions for one episode: ``any-step`` over the per-step flags, ``last-step``
    from the flag of the episode's final env step."""
    return {"any-step": episode_success(any_flags), "last-step": float(last_flag) == 1.0}


def play_eval_episodes(
    env: gym.Env,
    policy: Callable[[np.ndarray], np.ndarray],
    episodes: int,
    stop_on_success: bool = False,
    env_steps_per_step: int = 1,
) -> list[EvalEpisode]:
    """Play ``episodes`` episodes of ``policy`` and record each (`core.metrics.EvalEpisode`).

    Args:
        env: A fresh-episode-per-``reset()`` env (``make_env``); use one separate from
            the training env so evaluation does not disturb its episode stream.
        policy: Maps one observation ``[obs_dim]`` to one continuous action ``[act_dim]``.
        episodes: Number of episodes (MetaWorld's default is 50; the trainer uses 10).
        stop_on_success: End each episode at its first success, as MetaWorld's
            ``evaluation`` does (its return is then cut short); False plays every episode
            to the time limit, as the peers' evaluations did.
        env_steps_per_step: Env steps one step of `env` takes (its action repeat).
    """
    if episodes <= 0:
        raise ValueError(f"episodes must be > 0, got {episodes}")
    played = []
    for _ in range(episodes):
        obs, _ = env.reset()
        flags: list[float] = []
        last, total, steps, done, signal = 0.0, 0.0, 0, False, False
        while not done:
            action = np.asarray(policy(obs), dtype=np.float32)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            steps += 1
            flag = step_success(info)
            if flag is not None:
                signal = True
                flags.append(flag[0])
                last = flag[1]
            done = terminated or truncated or (stop_on_success and bool(flags) and flags[-1] == 1.0)
        ok = episode_successes(flags, last)
        played.append(EvalEpisode(total, steps * env_steps_per_step, ok["any-step"], ok["last-step"], signal))
    return played


def run_eval_episodes(
    env: gym.Env,
    policy: Callable[[np.ndarray], np.ndarray],
    episodes: int,
    stop_on_success: bool = False,
    success: str = "last-step",
) -> dict[str, float]:
    """`play_eval_episodes`, summarised: ``success_rate`` (under `success`: ``last-step`` or
    ``any-step``), ``success_last_step``, ``success_any_step`` (fractions of episodes),
    ``return`` (mean undiscounted episode return) and ``length`` (mean steps per episode)."""
    played = play_eval_episodes(env, policy, episodes, stop_on_success)
    rates = {"any-step": float(np.mean([e.success_any for e in played])),
             "last-step": float(np.mean([e.success_last for e in played]))}
    return {
        "success_rate": rates[success],
        "success_last_step": rates["last-step"],
        "success_any_step": rates["any-step"],
        "return": float(np.mean([e.ret for e in played])),
        "length": float(np.mean([e.length for e in played])),
    }
