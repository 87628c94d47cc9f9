"""The trainer actually learns: `train` (agent process, learner, eval process, MLflow) on
toy-reach goes from <= 0.2 to >= 0.8 eval success within 5,000 env steps.

This runs the real machinery a user runs, not a second loop: the agent explores in its own
process, the learner trains
from what it delivers, the eval process scores greedy noise-free episodes. About 50-70 s on a
busy 2-core CPU; wall-clock speed is the benchmark's business, not asserted here.

One seed: a second doubled the suite's longest test for no new code path. The seeds' spread is
what the sweeps' reports show (2+ seeds an arm). Re-probed on 2026-12-04 with this config, seeds
0-3 peaked at 0.85, 0.85, 0.55 and 1.0 (seed 2 fails this bar; sync mode makes a seed's curve
repeat exactly on one machine, so the test is not flaky, but a change to what the trainer draws
from its generators can move a seed across it).
"""

import pytest
from mlflow.tracking import MlflowClient

from dqt.core.config import RunConfig
from dqt.core.running.trainer import TrackingOptions, train

# A small QT (1 layer, 64 wide, 11 bins, lr 3e-3) so the check fits CI (lr 1e-3 peaked at
# 0.25-0.75); gamma 0.8 suits 30-step episodes; toy-reach keeps its own protocol (repeat 1).
# Cheaper variants probed on seeds 0-3 (2026-12-04) fall short of 0.8 on most seeds: batch 64
# (peaks 0-0.3), 0.5 updates per step (0.05-0.9), 3,000 env steps (0-0.6).
# Success at any step (MetaWorld's convention): at this budget the policy reaches the goal (peak
# 0.85 at any step) but has not yet learnt to stop on it (last step, the peers' convention: <= 0.15,
# seed 0, 2026-12-05); this test is about learning to reach, through the real machinery.
TOY = {
    "trainer.task": "toy-reach", "trainer.train_steps": 5000,
    "env.episode_length": 30, "env.action_repeat": 1, "env.reward_scale": 1.0,
    "model.embed_dim": 64, "model.num_layers": 1, "model.num_heads": 4, "model.num_bins": 11, "model.dropout": 0.0,
    "learner.batch_size": 128, "learner.lr": 3e-3, "learner.lr_schedule": "constant", "learner.gamma": 0.8,
    "learner.warmup_decisions": 300, "learner.updates_per_step": 1.0, "learner.target_update_every": 1,
    "learner.target_tau": 0.02, "exploration.decay_fraction": 0.5, "eval.every": 500, "eval.episodes": 20,
    "eval.success": "any-step",
}


@pytest.mark.slow
def test_trainer_learns_toy_reach(store):
    seed = 0
    cfg = RunConfig.from_flat({**TOY, "trainer.seed": seed})
    result = train(cfg, TrackingOptions(uri=store, experiment="learning"), progress=False)
    assert result.status == "FINISHED", result.reason
    history = MlflowClient(store).get_metric_history(result.run_id, "eval/success_rate")
    curve = [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)]
    print(f"seed {seed}: {curve}")
    assert curve[0] == (0, pytest.approx(curve[0][1])) and curve[0][1] <= 0.2, \
        "the untrained policy should not already solve the task"
    assert max(v for _, v in curve) >= 0.8, f"the trainer did not learn toy-reach: {curve}"
