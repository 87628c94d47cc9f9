"""Random streams: one SeedSequence tree, disjoint for every process and purpose."""

from __future__ import annotations

import numpy as np

from dqt.core.seeding import PURPOSES, generator, stream, torch_seed


def first_draws(gen: np.random.Generator) -> tuple[int, ...]:
    return tuple(gen.integers(0, 2**62, size=4))


def test_streams_are_the_children_seedsequence_spawn_hands_out():
    root = np.random.SeedSequence(5)
    purposes = root.spawn(len(PURPOSES))
    agents = purposes[PURPOSES["explore"]].spawn(8)
    sessions = agents[7].spawn(3)
    assert stream(5, "explore", 7, 2).generate_state(4).tolist() == sessions[2].generate_state(4).tolist()
    assert stream(5, "replay").generate_state(4).tolist() == purposes[PURPOSES["replay"]].generate_state(4).tolist()


def test_learner_and_agent_seven_no_longer_share_a_stream():
    # the old scheme: learner [seed, 7, resumes] == agent 7's [seed, agent, stream]
    assert first_draws(np.random.default_rng([0, 7, 0])) == first_draws(np.random.default_rng([0, 7, 0]))
    draws = {first_draws(generator(0, "replay"))}
    for agent in range(12):
        for session in (0, 1, 1000):
            for purpose in ("explore", "noise"):
                draws.add(first_draws(generator(0, purpose, agent, session)))
    assert len(draws) == 1 + 12 * 3 * 2  # every process and purpose its own stream


def test_same_seed_same_streams_other_seed_other_streams():
    assert first_draws(generator(3, "noise", 1, 0)) == first_draws(generator(3, "noise", 1, 0))
    assert first_draws(generator(3, "noise", 1, 0)) != first_draws(generator(4, "noise", 1, 0))
    assert torch_seed(3) == torch_seed(3) != torch_seed(4)
    assert 0 <= torch_seed(3) < 2**63
