"""The MLflow side of a sweep: which points ran, how each ended, and the sweep's parent run.

The tracking store is the authority on which points are done: a point ``(config_hash,
seed)`` is done when a run of the spec's experiment tagged with that ``config_hash`` and
``seed`` FINISHED (`point_status`); a run made before 0.2.0 counts under the hash its params
get now (`core.config.recorded_config_hash`), not its tag.  Every call goes through `core.tracking.with_retry`, so a
store shared by parallel runs ("database is locked") does not fail the sweep.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dqt.core.config import VERSION_TAG, recorded_config_hash
from dqt.core.tracking import ensure_store, get_or_create_experiment, sqlite_path, with_retry
from dqt.sweeps.expand import PointKey

STATUS_NONE = "-"
FAILURE_REASON_TAG = "dqt.failure_reason"  # the trainer's tag for why a run did not finish


@dataclass(frozen=True)
class StoredRun:
    """One MLflow run of a point."""

    run_id: str
    status: str
    start_time: int
    version: str = ""  # the toolkit version that made it (tag `VERSION_TAG`; "" before 0.2.0)


@dataclass(frozen=True)
class ParentRun:
    """A sweep's parent run, with the tags saying which process started it."""

    run_id: str
    tags: dict[str, str]


class Store:
    """The sweep's experiment in the tracking store.

    Args:
        uri: A resolved tracking URI (`core.tracking.resolve_tracking_uri`).
        experiment: The spec's name.
        create: Create the store and the experiment when missing; a dry run passes False
            and uses `open_existing`, so it never writes.
    """

    def __init__(self, uri: str, experiment: str, create: bool = True):
        from mlflow import MlflowClient

        self.uri = ensure_store(uri) if create else uri
        self.experiment = experiment
        self.client = MlflowClient(tracking_uri=self.uri)
        if create:
            self.experiment_id: str | None = get_or_create_experiment(self.client, experiment, self.uri)
        else:
            found = with_retry(lambda: self.client.get_experiment_by_name(experiment), "get experiment")
            self.experiment_id = found.experiment_id if found is not None else None
        # Runs made before 0.2.0, by the point their params hash to now (`runs` fills it); a tag
        # query cannot find them, and no run made since joins them, so one scan serves the process.
        self._before_versions: dict[PointKey, list[StoredRun]] | None = None

    @classmethod
    def open_existing(cls, uri: str, experiment: str) -> Store | None:
        """The store if it already exists; None otherwise (a dry run must not create a database)."""
        db = sqlite_path(uri)
        if db is not None and not db.exists():
            return None
        store = cls(uri, experiment, create=False)
        return store if store.experiment_id is not None else None

    def runs(self, key: PointKey | None = None) -> dict[PointKey, list[StoredRun]]:
        """Runs of the experiment by point (one point when `key` is given), newest first."""
        if self.experiment_id is None:
            return {}
        query = f"tags.config_hash = '{key[0]}' and tags.seed = '{key[1]}'" if key else ""
        out: dict[PointKey, list[StoredRun]] = {}
        before: dict[PointKey, list[StoredRun]] = {}
        token = None
        while True:
            page = with_retry(lambda t=token: self.client.search_runs(
                [self.experiment_id], query, max_results=1000, order_by=["attributes.start_time DESC"],
                page_token=t), "search runs")
            for run in page:
                tags = run.data.tags
                if "config_hash" not in tags or not tags.get("seed", "").isdigit():  # e.g. parent runs
                    continue
                point = (recorded_config_hash(tags, run.data.params), int(tags["seed"]))
                stored = StoredRun(run.info.run_id, run.info.status, run.info.start_time or 0,
                                   tags.get(VERSION_TAG, ""))
                out.setdefault(point, []).append(stored)
                if not stored.version:
                    before.setdefault(point, []).append(stored)
            token = page.token
            if not token:
                if key is None:
                    self._before_versions = before
                return out

    def point_runs(self, key: PointKey) -> list[StoredRun]:
        """Runs of one point, newest first, those made before 0.2.0 included."""
        runs = self.runs(key).get(key, [])
        if self._before_versions is None:
            self.runs()
        assert self._before_versions is not None
        seen = {r.run_id for r in runs}
        older = [r for r in self._before_versions.get(key, []) if r.run_id not in seen]
        return sorted(runs + older, key=lambda r: r.start_time, reverse=True) if older else runs

    def finished_run(self, key: PointKey) -> str | None:
        """The newest FINISHED run of a point, if any."""
        return next((r.run_id for r in self.point_runs(key) if r.status == "FINISHED"), None)

    def resumable(self, runs: Sequence[StoredRun]) -> str | None:
        """The newest run of a point when it left a ``checkpoint/`` to continue from."""
        return runs[0].run_id if runs and self.has_checkpoint(runs[0].run_id) else None

    def has_checkpoint(self, run_id: str) -> bool:
        try:
            return bool(with_retry(lambda: self.client.list_artifacts(run_id, "checkpoint"), "list artifacts"))
        except OSError:
            return False

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        with_retry(lambda: self.client.log_text(run_id, text, artifact_file), "log text")

    def set_status(self, run_id: str, status: str) -> None:
        with_retry(lambda: self.client.set_terminated(run_id, status=status), "end run")

    def start_parent(self, name: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        assert self.experiment_id is not None
        run = with_retry(lambda: self.client.create_run(self.experiment_id, run_name=name, tags=tags), "create run")
        for key, value in params.items():
            with_retry(lambda k=key, v=value: self.client.log_param(run.info.run_id, k, v), "log param")
        return run.info.run_id

    def running_parents(self, sweep: str, profile: str) -> list[ParentRun]:
        """Parent runs (tag ``dqt.role=parent``) of `sweep` / `profile` still RUNNING."""
        if self.experiment_id is None:
            return []
        query = "attributes.status = 'RUNNING' and tags.`dqt.role` = 'parent'"
        out: list[ParentRun] = []
        token = None
        while True:
            page = with_retry(lambda t=token: self.client.search_runs(
                [self.experiment_id], query, max_results=1000, page_token=t), "search runs")
            out += [ParentRun(run.info.run_id, dict(run.data.tags)) for run in page
                    if run.data.tags.get("sweep") == sweep and run.data.tags.get("profile", "") == profile]
            token = page.token
            if not token:
                return out

    def kill_parent(self, run_id: str, reason: str) -> None:
        """End a parent run whose sweep died without ending it: KILLED, with the reason."""
        with_retry(lambda: self.client.set_tag(run_id, FAILURE_REASON_TAG, reason), "set tag")
        self.set_status(run_id, "KILLED")

    def end_parent(self, run_id: str, status: str, tags: dict[str, str], metrics: dict[str, float],
                   steps: dict[str, int] | None = None, params: dict[str, Any] | None = None) -> None:
        """Write a parent run's last tags, params and metrics (at `steps`, default 0), then end it."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        points = [Metric(k, float(v), now, (steps or {}).get(k, 0)) for k, v in metrics.items()]
        labels = [RunTag(k, str(v)) for k, v in tags.items()]
        values = [Param(k, str(v)) for k, v in (params or {}).items()]
        with_retry(lambda: self.client.log_batch(run_id, metrics=points, params=values, tags=labels,
                                                 synchronous=True), "log results")
        self.set_status(run_id, status)

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in with_retry(lambda: self.client.get_metric_history(run_id, key), "read metric")]


def point_status(runs: Sequence[StoredRun]) -> str:
    """FINISHED if any run of the point finished, else the newest run's status, else '-'."""
    if any(r.status == "FINISHED" for r in runs):
        return "FINISHED"
    return runs[0].status if runs else STATUS_NONE
