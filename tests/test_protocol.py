"""The paper's environment protocol, one benchmark per run, and the acting options.

Hand-computed expectations: a 200-env-step episode under action repeat 2 is 100 decisions,
each scored 0.5 x the sum of its two env rewards; the time limit truncates (bootstrapped);
every lane and the evaluator of a run hold the same 50 MetaWorld goals; per-dim redraws happen
at their configured rate.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dqt.core.acting.actor import env_seed
from dqt.core.acting.envs import (
    LAST_ENV_STEP_SUCCESS,
    ActionRepeat,
    benchmark_goals,
    decisions_per_episode,
    make_env,
    make_run_env,
)
from dqt.core.acting.evaluator import EVAL_SEED_OFFSET
from dqt.core.acting.rollout import ExplorationPolicy, LaneArrays, run_lanes
from dqt.core.config import ConfigError, ModelConfig, RunConfig
from dqt.core.learning.model import QTransformer
from dqt.core.learning.replay import ReplayBuffer

PAPER = RunConfig()  # the defaults are the paper's protocol


def test_defaults_are_the_paper_protocol():
    assert (PAPER.env.episode_length, PAPER.env.action_repeat, PAPER.env.reward_scale) == (200, 2, 0.5)
    assert decisions_per_episode("door-unlock", 200, 2) == 100
    assert decisions_per_episode("door-unlock", 0, 1) == 500  # MetaWorld's native protocol
    with pytest.raises(ConfigError, match="env.episode_length"):
        decisions_per_episode("door-unlock", 0, 3)


def test_paper_episode_is_100_decisions_scored_half_the_sum_of_two_env_rewards():
    cfg = RunConfig.from_flat({"trainer.task": "door-unlock", "trainer.seed": 3})
    env = make_run_env(cfg, seed=5)
    # the same benchmark and episode stream without the protocol, stepped by hand
    raw = make_env("door-unlock", seed=5, episode_length=200, goals="fresh")
    assert isinstance(env, ActionRepeat) and not isinstance(raw, ActionRepeat)
    o, _ = env.reset()
    o_raw, _ = raw.reset()
    np.testing.assert_array_equal(o, o_raw)
    rng = np.random.default_rng(0)
    decisions, truncated, terminated = 0, False, False
    while not (truncated or terminated):
        a = rng.uniform(-1, 1, 4).astype(np.float32)
        o, r, terminated, truncated, info = env.step(a)
        _, r1, _, _, i1 = raw.step(a)
        o_raw, r2, te2, tr2, i2 = raw.step(a)
        decisions += 1
        assert r == pytest.approx(0.5 * (r1 + r2), rel=1e-12, abs=1e-12)
        assert info["success"] == max(i1["success"], i2["success"])
        assert info[LAST_ENV_STEP_SUCCESS] == i2["success"]  # the peers' last-step success reads this
        np.testing.assert_array_equal(o, o_raw)
        assert (terminated, truncated) == (te2, tr2)
    assert decisions == 100 and truncated and not terminated  # the time limit is a truncation


def test_actor_loop_delivers_100_transitions_that_bootstrap_at_the_time_limit():
    """The agents' own loop (`run_lanes`) on the protocol env: one episode = 100 decisions, stored
    with the truncation flag, so the replay's last transition keeps its bootstrap."""
    cfg = RunConfig.from_flat({"trainer.task": "door-unlock", "learner.warmup_decisions": 10**6,
                               "trainer.train_steps": 4 * 10**6})
    env = make_run_env(cfg, seed=1)
    lane = LaneArrays(np.zeros((1, 101, 39), np.float32), np.zeros((1, 100, 4), np.int16),
                      np.zeros((1, 100), np.float32))
    policy = ExplorationPolicy(None, 256, 4, np.random.default_rng(0), 2 * cfg.learner.warmup_decisions,
                               lambda t: 1.0, lambda: 0)
    got = []
    run_lanes([env], policy, 256, [lane], lambda i: True, lambda i: None if got else 0,
              lambda i, s, st: got.append(st), lambda: 0.0)
    (st,) = got
    assert st.length == 100 and not st.terminated
    buf = ReplayBuffer(100, 39, 4, gamma=0.98, n_step=3)
    buf.add_episode(lane.obs[0], lane.bins[0], lane.rewards[0], st.terminated)
    # the last decision's window is cut to 1 step, and the time limit keeps its bootstrap
    assert buf.discount[99] == pytest.approx(0.98)
    assert buf.discount[50] == pytest.approx(0.98**3)


def test_lanes_and_evaluator_share_the_runs_50_goals():
    cfg = RunConfig.from_flat({"trainer.task": "reach", "trainer.seed": 999, "env.goals": "mt1"})
    lanes = [make_run_env(cfg, seed=env_seed(cfg.trainer.seed, k)) for k in range(3)]
    evaluator = make_run_env(cfg, seed=cfg.trainer.seed + EVAL_SEED_OFFSET, evaluation=True)
    goals = benchmark_goals(evaluator)
    assert goals.shape[0] == 50 and len(np.unique(goals, axis=0)) == 50
    for env in lanes:
        np.testing.assert_array_equal(benchmark_goals(env), goals)
    # lanes still differ by the order in which they visit the goals
    starts = [env.reset()[0][-3:] for env in lanes]
    assert len({tuple(s) for s in starts}) > 1
    # another replicate seed is another benchmark
    other = make_run_env(RunConfig.from_flat({"trainer.task": "reach", "trainer.seed": 1000, "env.goals": "mt1"}),
                         seed=1)
    assert not np.isin(benchmark_goals(other).round(6), goals.round(6)).all(axis=1).any()


def test_evaluation_cycles_over_the_benchmarks_variants():
    cfg = RunConfig.from_flat({"trainer.task": "reach", "trainer.seed": 4, "env.goals": "mt1"})
    env = make_run_env(cfg, seed=0, evaluation=True)
    goals = benchmark_goals(env)
    for i in range(52):
        env.reset()
        np.testing.assert_array_equal(env.unwrapped._last_rand_vec, goals[i % 50])


def test_native_protocol_is_one_config_away():
    cfg = RunConfig.from_flat({"trainer.task": "door-unlock", "env.episode_length": 500, "env.action_repeat": 1,
                               "env.reward_scale": 1.0})
    env = make_run_env(cfg, seed=0)
    assert not isinstance(env, ActionRepeat)
    env.reset()
    steps, done = 0, False
    while not done:
        *_, te, tr, _ = env.step(np.zeros(4, np.float32))
        steps, done = steps + 1, te or tr
    assert steps == 500


@pytest.mark.parametrize("flat, words", [
    ({"trainer.train_steps": 3001}, "trainer.train_steps must be a multiple of env.action_repeat"),
    ({"env.episode_length": 201}, "env.episode_length must be a multiple of env.action_repeat"),
    ({"env.action_repeat": 0}, "env.action_repeat must be >= 1"),
    ({"env.reward_scale": -1}, "env.reward_scale must be > 0"),
    ({"trainer.train_steps": 4000}, r"must exceed the warm-up \(learner.warmup_decisions 2000 x env.action_repeat 2 "
                                    r"= 4000 env steps\)"),
])
def test_protocol_values_are_checked(flat, words):
    with pytest.raises(ConfigError, match=words):
        RunConfig.from_flat(flat)


def test_zero_initialised_head_gives_q_zero_for_every_bin():
    torch.manual_seed(0)
    m = QTransformer(39, 4, ModelConfig(zero_init_q_out=True))
    obs, bins = torch.randn(8, 39), torch.randint(0, 256, (8, 4))
    assert torch.equal(m(obs, bins), torch.zeros(2, 8, 4, 256))
    assert torch.equal(m.first_dim(obs), torch.zeros(2, 8, 256))
    random_init = QTransformer(39, 4, ModelConfig(zero_init_q_out=False))
    assert random_init(obs, bins).abs().amin() > 0


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5])
def test_per_dimension_redraw_rate_matches_its_setting(p):
    k, n, rows = 256, 4, 50_000
    greedy = torch.full((rows, n), 7)
    policy = ExplorationPolicy(lambda obs: greedy[: len(obs)], k, n, np.random.default_rng(1), 0,
                               lambda t: 0.0, lambda: 10, dim_redraw_prob=p)
    bins = policy(np.zeros((rows, 3), np.float32))
    changed = (bins != 7).mean()
    # a redraw lands on the greedy bin again with probability 1/K
    assert changed == pytest.approx(p * (1 - 1 / k), abs=4 * np.sqrt(p * (1 - p) / (rows * n)) + 1e-12)
    redrawn_dims = (bins != 7).sum(axis=1)
    if p == 0.5:  # independent per dim: the number of redrawn dims per row is binomial
        assert np.mean(redrawn_dims == 4) == pytest.approx((0.5 * (1 - 1 / k)) ** 4, abs=0.01)


def test_fresh_goals_draw_a_new_goal_at_every_reset_from_the_envs_own_seed():
    """The default (the peers' _freeze_rand_vec=False): no 50-goal benchmark, a new goal and
    object position per reset in training and evaluation, from MT1's box, repeatable per seed."""
    cfg = RunConfig.from_flat({"trainer.task": "reach", "trainer.seed": 4})
    assert cfg.env.goals == "fresh"

    def goals(env, n):
        out = []
        for _ in range(n):
            obs, _ = env.reset()
            out.append(env.unwrapped._last_rand_vec.copy())
            np.testing.assert_allclose(obs[-3:], out[-1][-3:], atol=1e-6)  # the goal is observed
        return np.array(out)

    lane = goals(make_run_env(cfg, seed=env_seed(4, 0)), 60)
    assert len(np.unique(lane.round(9), axis=0)) == 60  # more than MT1's 50 variants, none repeated
    np.testing.assert_array_equal(goals(make_run_env(cfg, seed=env_seed(4, 0)), 60), lane)  # same seed, same goals
    other = goals(make_run_env(cfg, seed=env_seed(4, 1)), 60)
    assert not np.isin(other.round(9), lane.round(9)).all(axis=1).any()  # another lane, other goals
    evaluator = goals(make_run_env(cfg, seed=4 + EVAL_SEED_OFFSET, evaluation=True), 60)
    assert len(np.unique(evaluator.round(9), axis=0)) == 60
    space = make_run_env(cfg, seed=0).unwrapped._random_reset_space
    assert ((lane >= space.low - 1e-9) & (lane <= space.high + 1e-9)).all()
    # the fixed-goal choice draws only from its 50
    mt1 = RunConfig.from_flat({"trainer.task": "reach", "trainer.seed": 4, "env.goals": "mt1"})
    env = make_run_env(mt1, seed=env_seed(4, 0))
    fixed = goals(env, 60)
    assert np.isin(fixed.round(9), benchmark_goals(env).round(9)).all(axis=1).all()
