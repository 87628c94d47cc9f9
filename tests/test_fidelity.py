"""The paper's set-up, item by item: each place where the DQT and QT-TDM codes are explicit.

- reward noise drawn on a decision's unscaled env-reward sum, the median taken there, then
  the 0.5 scale (`noise.before_reward_scale`), checked on what reaches replay;
- evaluation episodes that run to the time limit, with the full return in env-reward units;
- success at the last step (the peers') beside success at any step (MetaWorld's);
- warm-up counted in decisions; a per-agent budget with a batch of n x 512 (figure 2).

Fresh versus fixed goals is tests/test_protocol.py.
"""

from __future__ import annotations

import subprocess

import gymnasium as gym
import numpy as np
import pytest
from conftest import dqt_command
from mlflow.tracking import MlflowClient

from dqt.core.acting.envs import ActionRepeat, make_env, make_run_env, run_eval_episodes
from dqt.core.acting.envs.toy_reach import move_to_goal_policy
from dqt.core.config import RunConfig
from dqt.core.learning.replay import ReplayBuffer
from dqt.core.running.resume import load_resume_point
from dqt.core.running.trainer import TrackingOptions, train

# toy-reach under the paper protocol (repeat 2, scale 0.5), a model too small to cost time
SMALL = {
    "trainer.task": "toy-reach", "env.episode_length": 60,
    "model.embed_dim": 32, "model.num_heads": 2, "model.num_layers": 1, "model.num_bins": 11,
    "learner.batch_size": 16, "eval.episodes": 2,
}


def replay_rewards(store: str, run_id: str) -> np.ndarray:
    """The training rewards a finished run stored (n_step 1: the replay's return is the reward)."""
    client = MlflowClient(store)
    client.set_terminated(run_id, "KILLED")  # load_resume_point reads only unfinished runs
    point = load_resume_point(store, run_id)
    return point.checkpoint["replay"]["arrays"]["ret"].astype(np.float64)


@pytest.mark.slow
def test_reward_noise_reaches_replay_with_the_papers_spread(tmp_path, store):
    """sigma = 100 dwarfs toy-reach's rewards (in [0, 1]), so the spread of what replay holds is
    the noise's: 0.5 x 100 = 50 when drawn before the 0.5 scale (the DQT code), 100 after it;
    the median of 100 draws cuts it to 0.5 x 100 x 1.2533 / sqrt(100) = 6.27."""
    arms = {
        "noisy": ["--set", "noise.robust=none"],
        "median": ["--set", "noise.robust=median"],
        "noisy-after-scale": ["--set", "noise.robust=none", "--set", "noise.before_reward_scale=false"],
    }
    common = ["train", "--quiet", "--task", "toy-reach", "--train-steps", "4000", "--tracking-uri", store,
              "--experiment", "noise-spread", "--set", "noise.std=100", "--set", "learner.n_step=1",
              "--set", "learner.updates_per_step=0.01", "--set", "learner.warmup_decisions=100",
              "--eval-every", "4000", *[a for k, v in SMALL.items() if k != "trainer.task"
                                        for a in ("--set", f"{k}={v}")]]
    procs = {name: subprocess.Popen(dqt_command(*common, "--run-name", name, *extra), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
             for name, extra in arms.items()}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {out[-2000:]}"
    runs = {r.info.run_name: r.info.run_id for r in MlflowClient(store).search_runs(
        [MlflowClient(store).get_experiment_by_name("noise-spread").experiment_id])}
    spread = {name: replay_rewards(store, runs[name]).std() for name in arms}
    assert len(replay_rewards(store, runs["noisy"])) == 2000  # every decision of the budget
    assert spread["noisy"] == pytest.approx(50, rel=0.08), spread
    assert spread["noisy-after-scale"] == pytest.approx(100, rel=0.08), spread
    assert spread["median"] == pytest.approx(0.5 * 100 * 1.2533 / 10, rel=0.12), spread


def test_evaluation_runs_to_the_time_limit_and_returns_the_full_episodes_env_reward():
    """The peers' eval: 200 env steps whatever happens, the return summed over all of them in
    env-reward units (no 0.5 scale); success counted both ways from the same episodes."""
    from metaworld.policies import SawyerReachV3Policy

    cfg = RunConfig.from_flat({"trainer.task": "reach", "trainer.seed": 2})
    env = make_run_env(cfg, seed=7, evaluation=True)
    expert = SawyerReachV3Policy()
    actions: list[np.ndarray] = []

    def policy(obs):
        actions.append(np.clip(expert.get_action(obs), -1, 1).astype(np.float32))
        return actions[-1]

    out = run_eval_episodes(env, policy, episodes=1)
    assert out["length"] == 100  # decisions: 200 env steps, although the expert succeeds early
    assert out["success_last_step"] == out["success_any_step"] == out["success_rate"] == 1.0
    # the same episode, stepped by hand on a raw env (same seed, same goal): every env reward summed
    raw = make_env("reach", seed=7, episode_length=200, goals="fresh")
    raw.reset()
    total, steps, first_success = 0.0, 0, None
    for a in actions:
        for _ in range(2):
            _, r, _, truncated, info = raw.step(a)
            total += r
            steps += 1
            if info["success"] and first_success is None:
                first_success = steps
    assert steps == 200 and truncated
    assert first_success is not None and first_success < 100  # stopping there would have cut the return
    assert out["return"] == pytest.approx(total, rel=1e-9)
    # MetaWorld's convention stops at the first success: a shorter, smaller return, same success
    stopped = run_eval_episodes(make_run_env(RunConfig.from_flat({"trainer.task": "reach", "trainer.seed": 2,
                                                                   "eval.stop_on_success": True}),
                                             seed=7, evaluation=True),
                                lambda o: np.clip(expert.get_action(o), -1, 1), episodes=1)
    assert stopped["length"] < 50 and stopped["return"] < total / 2 and stopped["success_any_step"] == 1.0


def test_success_at_the_last_step_and_at_any_step_differ_on_an_episode_that_succeeds_then_fails():
    """A scripted toy-reach episode reaches the goal, stays, then leaves it: MetaWorld's
    convention counts it, the peers' (info['success'] at the last env step) does not."""

    def reach_then_leave(leave_at: int):
        t = {"n": 0}

        def policy(obs):
            t["n"] += 1
            if t["n"] > leave_at:  # walk away from the goal, at full speed
                half = obs.shape[-1] // 2
                return -np.sign(obs[half:] - obs[:half] + 1e-9).astype(np.float32)
            return move_to_goal_policy(obs)
        return policy

    env = make_env("toy-reach", seed=0, episode_length=30)
    out = run_eval_episodes(env, reach_then_leave(20), episodes=1)
    assert out["success_any_step"] == 1.0 and out["success_last_step"] == 0.0
    assert out["success_rate"] == out["success_last_step"]  # the default convention is the peers'
    stays = run_eval_episodes(make_env("toy-reach", seed=0, episode_length=30), reach_then_leave(99), 1,
                              success="any-step")
    assert stays["success_any_step"] == stays["success_last_step"] == stays["success_rate"] == 1.0
    # under action repeat, a decision's last-step flag is its last env step's, not either of its two
    class Flags(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

        def __init__(self, flags):
            self.flags = list(flags)

        def reset(self, *, seed=None, options=None):
            return np.zeros(1, np.float32), {}

        def step(self, action):
            flag = self.flags.pop(0)
            return np.zeros(1, np.float32), 1.0, False, not self.flags, {"success": flag}

    rep = ActionRepeat(Flags([0.0, 0.0, 0.0, 1.0, 1.0, 0.0]), 2, 0.5)  # 3 decisions: (0,0) (0,1) (1,0)
    out = run_eval_episodes(rep, lambda o: np.zeros(1, np.float32), 1)
    assert out["length"] == 3 and out["return"] == pytest.approx(3.0)
    assert out["success_any_step"] == 1.0 and out["success_last_step"] == 0.0
    rep = ActionRepeat(Flags([0.0, 0.0, 1.0, 0.0, 0.0, 1.0]), 2, 0.5)
    assert run_eval_episodes(rep, lambda o: np.zeros(1, np.float32), 1)["success_last_step"] == 1.0


def _spy_batches(monkeypatch) -> list[int]:
    sizes: list[int] = []
    sample = ReplayBuffer.sample

    def spy(self, batch_size, rng):
        sizes.append(batch_size)
        return sample(self, batch_size, rng)

    monkeypatch.setattr(ReplayBuffer, "sample", spy)
    return sizes


@pytest.mark.slow
@pytest.mark.parametrize("budget", ["total", "per-agent"])
def test_warm_up_counts_decisions_and_a_per_agent_budget_gives_each_agent_the_whole_run(store, monkeypatch,
                                                                                       budget):
    """2 agents, train_steps 1,200 env steps under action repeat 2, warm-up 150 decisions, one
    update per decision of the budget's clock.

    total: 1,200 env steps in all = 600 decisions -> 600 - 150 = 450 updates of batch 16, evals
    every 300 env steps of all agents.
    per-agent (the DQT code's figure 2): each agent runs 1,200 env steps (2,400 in all); warm-up,
    updates and evals count one agent's 600 decisions -> 450 updates of batch 2 x 16 at lr / 2,
    evals every 300 env steps of one agent = 600 of all."""
    sizes = _spy_batches(monkeypatch)
    cfg = RunConfig.from_flat({**SMALL, "trainer.num_agents": 2, "trainer.train_steps": 1200,
                               "trainer.budget": budget, "learner.warmup_decisions": 150,
                               "learner.updates_per_step": 1.0, "learner.lr_schedule": "constant",
                               "learner.batch_per_agent": budget == "per-agent",
                               "learner.lr_divided_by_agents": budget == "per-agent", "eval.every": 300})
    result = train(cfg, TrackingOptions(uri=store, experiment=f"budget-{budget}"), progress=False)
    assert result.status == "FINISHED", result.reason
    n = 2 if budget == "per-agent" else 1
    client = MlflowClient(store)
    assert sorted(m.step for m in client.get_metric_history(result.run_id, "eval/success_rate")) == \
        [k * 300 * n for k in range(5)]
    assert len(sizes) == 600 - 150 and set(sizes) == {16 * n}
    lr = client.get_metric_history(result.run_id, "opt/lr")
    assert [m.value for m in lr] == pytest.approx([cfg.learner.lr / n] * len(lr))
    length = client.get_metric_history(result.run_id, "eval/episode_length")
    assert {m.value for m in length} == {60.0}  # eval episodes run to the time limit, in env steps
    agents = client.get_run(result.run_id).data.metrics
    assert agents["explore/epsilon"] < 1.0
    # warm-up in decisions: the first update came only after 150 decisions of the clock
    client.set_terminated(result.run_id, "KILLED")
    ckpt = load_resume_point(store, result.run_id).checkpoint
    assert ckpt["env_steps"] == 1200 * n and ckpt["learner"]["updates"] == 450
