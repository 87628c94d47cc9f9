"""toy-reach whose every env step takes at least 10 ms (loaded with DQT_PLUGINS=dqt_slow_env):
an agent's 1,500 steps then last 15 s whatever the machine's speed, far longer than two agents
take to start, so a test of agents running at once never races their start."""

from __future__ import annotations

import time

from dqt.core.acting.envs.families import ENV_FAMILIES, EnvFamily
from dqt.core.acting.envs.toy_reach import ToyReachEnv

STEP_S = 0.01


class SlowToyReachEnv(ToyReachEnv):
    def step(self, action):  # noqa: ANN001, ANN201 - ToyReachEnv's signature
        time.sleep(STEP_S)
        return super().step(action)


ENV_FAMILIES.register("toy-slow", EnvFamily(
    resolve=lambda name: "toy-slow" if name.strip() == "toy-slow" else None,
    make=lambda task, seed, opts: SlowToyReachEnv(seed=seed, max_episode_steps=opts.episode_length or 60,
                                                  terminate_on_success=opts.terminate_on_success),
    episode_steps=lambda task: 60,
    spellings=lambda: {"toy-slow": "toy-slow"},
    example="toy-slow",
))
