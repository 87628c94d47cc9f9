"""Metrics the learner accumulates between two log points, and the per-agent record of the run."""

from __future__ import annotations

import time

import numpy as np


class AgentLog:
    """Who collected what, and when: shows that agents really ran side by side."""

    def __init__(self):
        self.agents: dict[int, dict] = {}

    def record(self, agent: int, pid: int, steps: int, t0: float, t1: float) -> None:
        a = self.agents.setdefault(agent, {"pids": [], "env_steps": 0, "episodes": 0, "intervals": []})
        # [start, end, env steps] per episode: enough to show overlap and to time any stretch of the run
        if pid not in a["pids"]:
            a["pids"].append(pid)
        a["env_steps"] += steps
        a["episodes"] += 1
        a["intervals"].append((t0, t1, steps))

    def summary(self) -> dict[str, dict]:
        return {str(k): v for k, v in sorted(self.agents.items())}


class Window:
    """Throughput, exploration and policy lag between two log points (the learner's own
    metrics come from `Learner.window_metrics`)."""

    def __init__(self, steps: int = 0):
        self.t_last = time.monotonic()
        self.steps_last = steps
        self.updates_last = 0
        self.lags: list[int] = []
        self.epsilon = 1.0

    def episode(self, lag: int, eps: float) -> None:
        self.lags.append(lag)
        self.epsilon = eps

    def flush(self, now: float, steps: int, updates: int) -> dict[str, float]:
        dt = max(now - self.t_last, 1e-9)
        out = {
            "perf/env_steps_per_s": (steps - self.steps_last) / dt,
            "perf/updates_per_s": (updates - self.updates_last) / dt,
            "explore/epsilon": self.epsilon,
        }
        if self.lags:
            out["perf/policy_lag"] = float(np.mean(self.lags))
        self.t_last, self.steps_last, self.updates_last = now, steps, updates
        self.lags = []
        return out
