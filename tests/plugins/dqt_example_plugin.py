"""A researcher's extensions, one registration each (loaded with DQT_PLUGINS=dqt_example_plugin):
an env family, a noise kind and an eval metric. tests/test_extensions.py runs them end to end."""

from __future__ import annotations

import numpy as np

from dqt.core.acting.envs.families import ENV_FAMILIES, EnvFamily
from dqt.core.acting.envs.toy_reach import ToyReachEnv
from dqt.core.metrics import EVAL_METRICS, Metric
from dqt.core.noise import NOISE_KINDS, NoiseKind

# toy-reach on a line: one action dim
ENV_FAMILIES.register("toy-line", EnvFamily(
    resolve=lambda name: "toy-line" if name.strip() == "toy-line" else None,
    make=lambda task, seed, opts: ToyReachEnv(seed=seed, dim=1, max_episode_steps=opts.episode_length or 20,
                                              terminate_on_success=opts.terminate_on_success),
    episode_steps=lambda task: 20,
    spellings=lambda: {"toy-line": "toy-line"},
    example="toy-line",
))

# uniform noise of mean 0 and std 1: U(-sqrt 3, sqrt 3)
NOISE_KINDS.register("uniform", NoiseKind("U(μ ± √3 σ)", lambda rng, shape, cfg: rng.uniform(-3**0.5, 3**0.5, shape)))

# how much the eval episodes' returns spread: a third row in every figure against env steps
EVAL_METRICS.register("eval/return_spread", Metric(
    "eval/return_spread", "eval return spread (std over episodes)", "env reward",
    lambda episodes, cfg: float(np.std([e.ret for e in episodes])), figure=True))
