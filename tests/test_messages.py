"""Typed messages between the run's processes, and the learner-side bookkeeping they drive
(no processes started here: the end-to-end paths are in test_trainer.py / test_reliability.py)."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from dqt.core.config import RunConfig
from dqt.core.ipc.messages import AgentDone, EpisodeMsg, EvalRequest, EvalResult, SlotFree
from dqt.core.running.agent_pool import AgentPool, AgentProc, EnvSpec
from dqt.core.running.metric_window import Window

EPISODE = EpisodeMsg(agent=1, pid=4242, lane=3, slot=2, length=30, terminated=False, true_return=1.5, success=True,
                     has_success=True, weights_updates=7, epsilon=0.1, t_start=10.0, t_end=11.0)
EVAL = EvalResult(540, {"eval/return": 12.0, "eval/success_rate": 0.5, "eval/success_last_step": 0.5,
                        "eval/success_any_step": 0.7, "eval/episode_length": 200.0}, True)


@pytest.mark.parametrize("msg", [EPISODE, AgentDone(1), SlotFree(3, 2), EVAL])
def test_messages_survive_pickling_and_stay_small(msg):
    back = pickle.loads(pickle.dumps(msg))
    assert back == msg and type(back) is type(msg)
    # indices and a few numbers (episodes travel through shared memory); an evaluation's
    # metrics, once per eval, by name
    assert len(pickle.dumps(msg)) < (400 if msg is EVAL else 160)


def test_eval_request_carries_the_weights():
    req = pickle.loads(pickle.dumps(EvalRequest(300, np.arange(4, dtype=np.float32))))
    assert req.env_steps == 300 and req.weights.dtype == np.float32 and req.weights.tolist() == [0, 1, 2, 3]


class _Writer:
    def __init__(self, fail: bool = False):
        self.sent, self.fail = [], fail

    def send(self, msg):
        if self.fail:
            raise OSError("closed")
        self.sent.append(msg)


def test_pool_counts_delivered_decisions_and_hands_held_slots_back():
    cfg = RunConfig.from_flat({"trainer.task": "toy-reach", "trainer.num_agents": 2, "trainer.envs_per_agent": 2})
    pool = AgentPool(cfg, EnvSpec(4, 2, 30), tracker=None, quota=[10] * 4, steps_before=0, resumes=0)
    live, gone = _Writer(), _Writer(fail=True)
    pool.agents[1] = AgentProc(proc=None, reader=None, writer=live, lanes=range(2, 4))
    pool.agents[0] = AgentProc(proc=None, reader=None, writer=gone, lanes=range(0, 2))  # exited: slot dropped
    pool.received(EPISODE)
    pool.received(dataclasses.replace(EPISODE, agent=0, lane=0, slot=1, length=5))
    assert pool.delivered == [5, 0, 0, 30]
    pool.release_held()
    assert live.sent == [SlotFree(3, 2)] and pool.held == []
    assert not pool.all_done()
    pool.finished(0)
    pool.finished(1)
    assert pool.all_done()


def test_window_reports_rates_epsilon_and_policy_lag_then_starts_over():
    w = Window(steps=100)
    w.episode(lag=2, eps=0.5)
    w.episode(lag=4, eps=0.4)
    out = w.flush(w.t_last + 2.0, steps=300, updates=10)
    assert out == {"perf/env_steps_per_s": 100.0, "perf/updates_per_s": 5.0, "explore/epsilon": 0.4,
                   "perf/policy_lag": 3.0}
    assert "perf/policy_lag" not in w.flush(w.t_last + 1.0, steps=300, updates=10)
