"""Greedy, noise-free evaluation with MetaWorld's own success convention.

The convention, from ``metaworld/evaluation.py`` of the installed package (3.1.1),
function ``evaluation``::

    eval_envs.call("toggle_terminate_on_success", True)
    ...
        obs, _, terminations, truncations, infos = eval_envs.step(actions)
        dones = np.logical_or(terminations, truncations)
        ...
                successes[task_names[i]] += int(infos["final_info"]["success"][i])

with ``AutoTerminateOnSuccessWrapper.step`` doing ``terminated = info["success"] == 1.0``.
An evaluation episode therefore stops at the first step whose ``info["success"]`` is 1,
and counts as a success exactly when such a step occurred before truncation: success
at ANY step, not only at the last one.  Its return is the undiscounted sum of rewards
up to that step (``RecordEpisodeStatistics`` sits outside the terminating wrapper).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np


def episode_success(successes: Sequence[float | bool]) -> bool:
    """Whether an episode with these per-step ``info["success"]`` values succeeded.

    MetaWorld's ``evaluation`` terminates an episode when ``info["success"] == 1.0``
    and counts the success flag of its final step, so the episode succeeds iff any
    step reported success (see the module docstring for the quoted lines).
    """
    return any(float(s) == 1.0 for s in successes)


def run_eval_episodes(
    env: gym.Env,
    policy: Callable[[np.ndarray], np.ndarray],
    episodes: int,
    stop_on_success: bool = True,
) -> dict[str, float]:
    """Run ``episodes`` episodes of ``policy`` and summarise them.

    Args:
        env: A fresh-episode-per-``reset()`` env (``make_env``); use one separate from
            the training env so evaluation does not disturb its episode stream.
        policy: Maps one observation ``[obs_dim]`` to one continuous action ``[act_dim]``.
        episodes: Number of episodes (MetaWorld's default is 50; the trainer uses 10).
        stop_on_success: End each episode at its first success, as MetaWorld's
            ``evaluation`` does; False plays every episode to truncation.

    Returns:
        ``success_rate`` (fraction of episodes with ``episode_success``), ``return``
        (mean undiscounted episode return) and ``length`` (mean steps per episode).
    """
    if episodes <= 0:
        raise ValueError(f"episodes must be > 0, got {episodes}")
    successes, returns, lengths = [], [], []
    for _ in range(episodes):
        obs, _ = env.reset()
        flags: list[float] = []
        total, steps, done = 0.0, 0, False
        while not done:
            action = np.asarray(policy(obs), dtype=np.float32)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            steps += 1
            flags.append(float(info.get("success", 0.0)))
            done = terminated or truncated or (stop_on_success and flags[-1] == 1.0)
        successes.append(episode_success(flags))
        returns.append(total)
        lengths.append(steps)
    return {
        "success_rate": float(np.mean(successes)),
        "return": float(np.mean(returns)),
        "length": float(np.mean(lengths)),
    }
