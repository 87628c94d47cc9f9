"""Env steps/s of the full trainer (async, learner training alongside) with 1 and 2 agents.

Measured from the agents' own episode records (agents.json: start, end and steps of every
episode) and only over episodes that began after the first episode reached the learner:
from then on the learner trains the whole time the agents step, which is the load the
figure is about; process start-up, the first episodes (before the learner has data) and the
learner's catch-up after the agents finish are all outside the window.

Each agent steps LANES envs with one batched decode per step of all of them (trainer
field `envs_per_agent`); the paper's one env per agent is reported as
`env_steps_per_s_1agent_1env`. Exploration is mostly greedy (eps 0.05, no warm-up) so
nearly every step pays for the policy's decode, as it does for most of a real run.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

from dqt.core.config import RunConfig
from dqt.core.running.trainer import TrackingOptions, train

LANES = 64  # batch-64 decode: ~0.06-0.09 ms per env step instead of ~0.45 ms at batch 1
EPISODE_STEPS = 500  # MetaWorld's horizon
ROUNDS = 3  # episodes per lane; the first is outside the measured window


def steady_steps_per_s(agents: dict) -> float:
    """Env steps/s over the episodes that started once the learner had its first episode."""
    episodes = [tuple(ep) for a in agents.values() for ep in a["intervals"]]
    learner_busy_from = min(end for _, end, _ in episodes)
    window = [ep for ep in episodes if ep[0] >= learner_busy_from]
    if not window:
        raise RuntimeError("no episode started after the first one ended: raise ROUNDS")
    span = max(end for _, end, _ in window) - min(start for start, _, _ in window)
    return sum(steps for _, _, steps in window) / span


def agent_steps_per_s(num_agents: int, store: str, lanes: int, rounds: int, updates_per_step: float) -> float:
    cfg = RunConfig.from_flat({
        "trainer.task": "door-unlock", "trainer.num_agents": num_agents, "trainer.mode": "async",
        "trainer.envs_per_agent": lanes, "env.episode_length": EPISODE_STEPS, "env.action_repeat": 1, "env.reward_scale": 1.0,
        "trainer.train_steps": num_agents * lanes * EPISODE_STEPS * rounds, "learner.warmup_decisions": 0,
        "exploration.eps_max": 0.05, "exploration.eps_min": 0.05, "eval.every": 10**9, "eval.episodes": 1,
        # The CPU learner makes ~10 updates/s: a ratio a little above that over the agents' rate
        # keeps it busy the whole window while the updates it owes at the end stay few.
        "learner.updates_per_step": updates_per_step,
    })
    result = train(cfg, TrackingOptions(uri=store, experiment=f"bench-{num_agents}x{lanes}"), progress=False)
    if result.status != "FINISHED":
        raise RuntimeError(f"benchmark run {result.status}: {result.reason}")
    client = MlflowClient(store)
    agents = json.loads(Path(client.download_artifacts(result.run_id, "agents.json")).read_text())
    return steady_steps_per_s(agents)


def run(raw: float | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        out = {"env_steps_per_s_1agent": agent_steps_per_s(1, store, LANES, ROUNDS, 0.004),
               "env_steps_per_s_2agents": agent_steps_per_s(2, store, LANES, ROUNDS, 0.003),
               "env_steps_per_s_1agent_1env": agent_steps_per_s(1, store, 1, 16, 0.02)}
    out["envs_per_agent"] = float(LANES)
    if raw:
        out["ratio_1agent_to_raw"] = out["env_steps_per_s_1agent"] / raw
    return out
