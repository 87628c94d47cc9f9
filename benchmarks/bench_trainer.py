"""Env steps/s of the full trainer (async, learner training alongside) with 1 and 2 agents.

Measured from the agents' own episode timestamps (agents.json), so process start-up and
the final evaluation are excluded. Each agent steps ENVS_PER_AGENT envs with one batched
decode; the paper's one env per agent is reported as `env_steps_per_s_1agent_1env`. Exploration is mostly greedy (eps 0.05, no warm-up) so
every step pays for the policy's decode, as it does for most of a real run.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

from core.config import RunConfig
from core.trainer import TrackingOptions, train

STEPS_PER_AGENT = 8000
ENVS_PER_AGENT = 8  # one batched decode for 8 envs (the 1-env figure is reported beside it)


def agent_steps_per_s(num_agents: int, store: str, envs_per_agent: int) -> float:
    cfg = RunConfig.from_flat({
        "trainer.task": "door-unlock", "trainer.num_agents": num_agents, "trainer.mode": "async",
        "trainer.envs_per_agent": envs_per_agent,
        "trainer.train_steps": STEPS_PER_AGENT * num_agents, "learner.warmup_steps": 0,
        "exploration.eps_max": 0.05, "exploration.eps_min": 0.05, "eval.every": 10**9, "eval.episodes": 1,
        # Agents outrun the CPU learner, so it is busy the whole time they step; a low ratio
        # keeps the updates it makes up after they finish short.
        "learner.updates_per_step": 0.02,
        "trainer.max_episode_steps": 500,
    })
    result = train(cfg, TrackingOptions(uri=store, experiment=f"bench-{num_agents}"), progress=False)
    if result.status != "FINISHED":
        raise RuntimeError(f"benchmark run {result.status}: {result.reason}")
    client = MlflowClient(store)
    agents = json.loads(Path(client.download_artifacts(result.run_id, "agents.json")).read_text())
    intervals = [iv for a in agents.values() for iv in a["intervals"]]
    span = max(e for _, e in intervals) - min(s for s, _ in intervals)
    return sum(a["env_steps"] for a in agents.values()) / span


def run(raw: float | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        out = {"env_steps_per_s_1agent": agent_steps_per_s(1, store, ENVS_PER_AGENT),
               "env_steps_per_s_2agents": agent_steps_per_s(2, store, ENVS_PER_AGENT),
               "env_steps_per_s_1agent_1env": agent_steps_per_s(1, store, 1)}
    if raw:
        out["ratio_1agent_to_raw"] = out["env_steps_per_s_1agent"] / raw
    return out
