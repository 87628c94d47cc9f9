"""The sweep's parent run: one per invocation of `dqt sweep` (grid or Optuna search), created
when its first point starts, ended with the sweep's outcome and its results.

What a researcher reads on it in the MLflow UI:

- metrics = results: ``success_auc/best`` and ``success_auc/<configuration>`` (e.g.
  ``success_auc/std:5 robust:median``), each configuration's success AUC (the mean over its
  seeds of each run's `analysis.auc.budget_auc` of ``eval/success_rate`` over
  ``[0, trainer.train_steps]``, the number the reports give); a search logs its trials'
  objective the same way, at step = trial number.  A metric other than ``eval/success_rate``
  gives ``<metric>_auc/...``.
- tags = bookkeeping: ``dqt.points_total``, ``dqt.points_finished``, ``dqt.points_failed``,
  ``dqt.points_already_finished``, ``dqt.points_unfinished`` (grid), ``dqt.trials_completed``, ``dqt.trials_failed``
  (search), ``best.*`` (which configuration is best), and who ran the sweep (`parent_tags`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from dqt.sweeps.expand import Point, config_name
from dqt.sweeps.liveness import Owner, parent_tags
from dqt.sweeps.spec import Spec
from dqt.sweeps.store import Store

SUCCESS = "eval/success_rate"  # dqt.analysis.load.SUCCESS; analysis (pandas, MLflow) loads only when used
_UNSAFE = re.compile(r"[^/\w.\- :]+")  # what MLflow refuses in a metric name
MAX_KEY_LENGTH = 250
RESULTS_TABLE = "results/success_auc.csv"  # the parent run's AUC table, an artifact the UI renders


def success_auc(history: Sequence[tuple[float, float]], budget: float | None = None) -> float:
    """The AUC of one run: `analysis.auc.budget_auc` of its ``(step, value)`` points over
    [0, its budget] (default: its last step), the AUC the reports give; no points give 0."""
    from dqt.analysis.auc import budget_auc

    if not history:
        return 0.0
    steps, values = zip(*history, strict=True)
    return budget_auc(steps, values, max(steps) if budget is None else budget)


def results_prefix(metric: str = SUCCESS) -> str:
    """``success_auc`` for ``eval/success_rate``, ``<metric>_auc`` for any other metric."""
    return "success_auc" if metric == SUCCESS else f"{metric}_auc"


def result_key(prefix: str, name: str) -> str:
    """``<prefix>/<configuration>`` as a valid MLflow metric name: ``=`` becomes ``:``, ``/``
    and other characters MLflow refuses in a name's last part become ``_``."""
    return f"{prefix}/{_UNSAFE.sub('_', name.replace('=', ':').replace('/', '_'))}"[:MAX_KEY_LENGTH].rstrip()


def config_aucs(store: Store, points: Sequence[Point], keys: list[str],
                metric: str = SUCCESS) -> dict[str, tuple[str, float]]:
    """Configuration name -> (config_hash, AUC) for every configuration of `points` whose
    seeds all FINISHED with `metric` logged; the AUC is the mean over its seeds of
    `success_auc` over each run's budget (all its env steps, ``trainer.train_steps`` x the agents under a per-agent budget)."""
    stored = store.runs()
    groups: dict[str, list[Point]] = {}
    for point in points:
        groups.setdefault(point.config_hash, []).append(point)
    out: dict[str, tuple[str, float]] = {}
    for config_hash, seeds in groups.items():
        aucs = []
        for point in seeds:
            run_id = next((r.run_id for r in stored.get(point.key, []) if r.status == "FINISHED"), None)
            history = store.metric_history(run_id, metric) if run_id else []
            if not history:
                break
            aucs.append(success_auc(history, point.config.total_env_steps))
        else:
            out[config_name(seeds[0], keys) or config_hash] = (config_hash, sum(aucs) / len(aucs))
    return out


class SweepParent:
    """The parent run of one invocation; calling it creates the run on first use and returns
    its id (what `sweeps.launch.Launcher` passes to each point), so a worker that finds
    nothing to do leaves no empty parent behind."""

    def __init__(self, store: Store, spec: Spec, owner: Owner, mode: str, params: Mapping[str, Any],
                 tags: Mapping[str, str] | None = None) -> None:
        self.store, self.spec, self.owner, self.mode = store, spec, owner, mode
        self.params, self.extra_tags = dict(params), dict(tags or {})
        self.run_id: str | None = None

    def __call__(self) -> str:
        if self.run_id is None:
            self.run_id = self.store.start_parent(
                f"{self.spec.label} {'sweep' if self.mode == 'grid' else self.mode}",
                tags={"dqt.role": "parent", "sweep": self.spec.name, "profile": self.spec.profile or "",
                      "dqt.mode": self.mode, **parent_tags(self.owner), "dqt.spec": self.spec.path,
                      "mlflow.note.content": self.spec.description.strip(), **self.extra_tags},
                params=self.params)
        return self.run_id

    def end(self, *, interrupted: bool, failed: bool, counts: Mapping[str, int],
            results: Mapping[str, float] | None = None, steps: Mapping[str, int] | None = None,
            tags: Mapping[str, str] | None = None, params: Mapping[str, Any] | None = None,
            table: Mapping[str, tuple[str, float]] | None = None) -> None:
        """End the run (KILLED when `interrupted`, FAILED when a point `failed`, else
        FINISHED) with the bookkeeping `counts` as ``dqt.<name>`` tags, the `results` as
        metrics (at `steps`, default 0), any other `tags` and `params`, and the `table`
        (configuration -> (config_hash, AUC)) as the artifact ``results/success_auc.csv``, which
        the MLflow UI shows as a table to sort.  A no-op if the run was never created."""
        if self.run_id is None:
            return
        if table:
            rows = sorted(table.items(), key=lambda kv: -kv[1][1])
            lines = ["configuration,config_hash,success_auc", *(f'"{name}",{h},{auc:.6g}' for name, (h, auc) in rows)]
            self.store.log_text(self.run_id, "\n".join(lines) + "\n", RESULTS_TABLE)
        status = "KILLED" if interrupted else "FAILED" if failed else "FINISHED"
        self.store.end_parent(self.run_id, status,
                              tags={**{f"dqt.{k}": str(v) for k, v in counts.items()}, **(tags or {})},
                              metrics=dict(results or {}), steps=dict(steps or {}), params=dict(params or {}))
