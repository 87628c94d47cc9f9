"""Every random stream of a run, drawn from one `numpy.random.SeedSequence` tree.

``SeedSequence(seed, spawn_key=(purpose, *ids))`` is exactly the child that
``SeedSequence(seed).spawn`` hands out at that position of the tree, so two streams with
different keys are independent by construction: the learner's replay draws, each agent's
exploration and noise draws (one per agent, per restart or resume) and torch never share
or overlap a stream, whatever the number of agents. (Before, the learner's ``[seed, 7, r]``
equalled agent 7's ``[seed, agent, stream]``.)
"""

from __future__ import annotations

import numpy as np

PURPOSES = {"replay": 0, "explore": 1, "noise": 2, "torch": 3, "eval": 4}


def stream(seed: int, purpose: str, *ids: int) -> np.random.SeedSequence:
    """The run's stream for `purpose` (one of `PURPOSES`) and the given ids (agent, session, ...)."""
    return np.random.SeedSequence(seed, spawn_key=(PURPOSES[purpose], *ids))


def generator(seed: int, purpose: str, *ids: int) -> np.random.Generator:
    return np.random.default_rng(stream(seed, purpose, *ids))


def torch_seed(seed: int) -> int:
    """A 63-bit torch seed from the run's tree."""
    return int(stream(seed, "torch").generate_state(1, np.uint64)[0] >> np.uint64(1))
