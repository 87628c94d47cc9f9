"""The evaluation process: greedy, noise-free episodes on separate envs (docs/ARCHITECTURE.md).

The learner sends a weight snapshot with the env step it belongs to; evaluating in a
process of its own keeps the learner training while MetaWorld episodes roll. Episodes run
to the time limit (``eval.stop_on_success`` off) and every registered eval metric is
computed from them (`core.metrics.EVAL_METRICS`: return, success under both conventions, ...).
"""

from __future__ import annotations

import queue
from typing import Any

import numpy as np
import torch

from dqt.core.acting.envs import make_run_env
from dqt.core.acting.envs.evaluation import play_eval_episodes
from dqt.core.config import RunConfig
from dqt.core.ipc.messages import EvalRequest, EvalResult
from dqt.core.ipc.procutil import become_child_of_run, exit_now, parent_alive
from dqt.core.ipc.transport import load_flat
from dqt.core.learning.bins import to_continuous
from dqt.core.learning.decode import GreedyDecoder
from dqt.core.learning.model import QTransformer
from dqt.core.metrics import eval_values
from dqt.core.seeding import generator

EVAL_SEED_OFFSET = 999


def eval_main(cfg: RunConfig, obs_dim: int, action_dims: int, requests: Any, results: Any, parent_pid: int) -> None:
    """Answer each EvalRequest on `requests` with an EvalResult on `results`; None ends it."""
    become_child_of_run(parent_pid)
    torch.set_num_threads(1)
    tr = cfg.trainer
    env = make_run_env(cfg, seed=tr.seed + EVAL_SEED_OFFSET, evaluation=True)
    model = QTransformer(obs_dim, action_dims, cfg.model).eval()
    decoder = GreedyDecoder(model, cfg.exploration.greedy_heads)
    k, redraw = cfg.model.num_bins, cfg.eval.dim_redraw_prob
    rng = generator(tr.seed, "eval")

    def policy(obs: np.ndarray) -> np.ndarray:
        bins = decoder(obs[None])[0].numpy()
        if redraw > 0:  # the peers' evaluation kept their acting's per-dim redraws
            mask = rng.random(bins.shape) < redraw
            bins[mask] = rng.integers(0, k, size=int(mask.sum()))
        return to_continuous(bins, k)

    while True:
        try:
            req: EvalRequest | None = requests.get(timeout=0.5)
        except queue.Empty:
            if not parent_alive(parent_pid):
                return
            continue
        if req is None:
            exit_now(0)
        load_flat(model, torch.from_numpy(np.asarray(req.weights, dtype=np.float32)))
        decoder.refresh()
        episodes = play_eval_episodes(env, policy, cfg.eval.episodes, cfg.eval.stop_on_success,
                                      cfg.env.action_repeat)
        results.put(EvalResult(req.env_steps, eval_values(episodes, cfg), any(e.has_success for e in episodes)))
