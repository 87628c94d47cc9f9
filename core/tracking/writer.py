"""`RunTracker`: one MLflow run written by the learner process.

It uses `MlflowClient` only, never the fluent ``mlflow.start_run`` global state, so several
trackers can live in one process and nothing depends on import order.  Metric points go
through a `MetricWriter` (`core.tracking.metrics`): buffered, written asynchronously by
MLflow's worker threads, and all written before the run ends.
"""

from __future__ import annotations

import logging
import math
import os
import posixpath
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from dqt.core.config import ConfigError
from dqt.core.tracking.experiments import get_or_create_experiment, last_logged_step
from dqt.core.tracking.metrics import MAX_METRICS_PER_BATCH, MetricWriter
from dqt.core.tracking.retry import TrackingError, with_retry
from dqt.core.tracking.store import ensure_store, settle_store

log = logging.getLogger(__name__)

T = TypeVar("T")

# MLflow's own limits (mlflow.utils.validation); copied so this module never imports mlflow eagerly.
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_KEY_LENGTH = 250

RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
FAILURE_REASON_TAG = "dqt.failure_reason"
PARENT_RUN_TAG = "mlflow.parentRunId"
_KEY_RE = re.compile(r"^[/\w.\- :]+$")  # MLflow's rule for metric/param names (POSIX)


def _check_key(key: str, what: str) -> str:
    """Reject names MLflow would reject, at the call site rather than in a later batch write
    (a batch with one bad name is refused as a whole)."""
    key = str(key)
    if (len(key) > MAX_KEY_LENGTH or not _KEY_RE.match(key) or posixpath.normpath(key) != key
            or key.startswith(("/", ".."))):
        raise ValueError(f"invalid MLflow {what} name {key!r}: use at most {MAX_KEY_LENGTH} letters, "
                         "digits, _ - . / : or spaces, without empty or relative path parts")
    return key


class RunTracker:
    """One MLflow run written by the learner process (agents report through the learner).

    Args:
        uri: tracking URI, None for the repo's ``mlflow.db``; see `resolve_tracking_uri`.
        experiment: experiment name, created if missing (`get_or_create_experiment`).
        run_name: display name of a new run; MLflow picks one when None.
        tags: tags of the run, set at creation (and again when resuming).
        parent_run_id: makes this a child run (tag ``mlflow.parentRunId``), as sweeps do.
        resume_run_id: reopen this run (status RUNNING) instead of creating one.  Params must
            match what it logged; metric points at or before a key's last logged step are
            dropped, so a learner restarted from an older checkpoint appends without
            duplicating steps.
        flush_every_s: buffered metrics are handed over once this old (checked on each call).
        max_buffer: ... or once this many points are waiting.
        retry_timeout_s: how long one write retries transient errors before `TrackingError`.
        async_metrics: write metric batches in MLflow's worker threads (`core.tracking.metrics`),
            so the learner never waits on the store (a locked SQLite file can hold a write for
            20 s); every exit path flushes and waits (`end`, `exit_now`).  False writes them in
            the calling thread.

    Not thread-safe: one learner thread logs.  Usable as a context manager: a clean exit
    ends FINISHED, Ctrl-C ends KILLED, an exception ends FAILED with the error as
    ``dqt.failure_reason``.
    """

    def __init__(self, uri: str | None, experiment: str, run_name: str | None = None,
                 tags: Mapping[str, Any] | None = None, parent_run_id: str | None = None,
                 resume_run_id: str | None = None, *, flush_every_s: float = 5.0,
                 max_buffer: int = MAX_METRICS_PER_BATCH, retry_timeout_s: float = 60.0,
                 async_metrics: bool = True) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = ensure_store(uri)  # first: schema creation must not race with other processes
        self.client = MlflowClient(tracking_uri=self.uri)
        self.flush_every_s = flush_every_s
        self.max_buffer = max(1, min(max_buffer, MAX_METRICS_PER_BATCH))
        self.retry_timeout_s = retry_timeout_s
        self.retries = 0  # transient errors absorbed so far (observability, tests)
        self.skipped_points = 0  # points dropped on resume because their step was logged
        self._last_flush = time.monotonic()
        self._ended = False
        self._resume_floor: dict[str, int] = {}
        self._resumed = resume_run_id is not None
        user_tags = {str(k): v for k, v in (tags or {}).items()}
        if parent_run_id:
            user_tags[PARENT_RUN_TAG] = parent_run_id

        if resume_run_id:
            self.run_id = self._reopen(resume_run_id, experiment)
            self.experiment_id = self._run.info.experiment_id
            if user_tags:
                self.set_tags(user_tags)
        else:
            from mlflow.tracking.context.registry import resolve_tags

            self.experiment_id = get_or_create_experiment(self.client, experiment, self.uri)
            # resolve_tags adds what mlflow.start_run would: user, source name, git commit
            all_tags = {k: self._tag_value(v) for k, v in resolve_tags(user_tags).items()}
            run = self._retry(lambda: self.client.create_run(self.experiment_id, run_name=run_name,
                                                             tags=all_tags), "create run")
            self.run_id = run.info.run_id
        self._metrics = MetricWriter(self.client, self.run_id, self.uri, asynchronous=async_metrics,
                                     on_retry=self._count_retry)

    # ---- helpers ----
    def _count_retry(self, _exc: BaseException) -> None:
        self.retries += 1

    def _retry(self, fn: Callable[[], T], what: str) -> T:
        return with_retry(fn, what, self.retry_timeout_s, on_retry=self._count_retry)

    @staticmethod
    def _tag_value(value: Any) -> str:
        return str(value)[:MAX_TAG_VAL_LENGTH]

    def _reopen(self, run_id: str, experiment: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            self._run = self._retry(lambda: self.client.get_run(run_id), "get run")
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise ConfigError(f"--resume {run_id}: no such run in {self.uri}") from None
            raise
        exp = self._retry(lambda: self.client.get_experiment(self._run.info.experiment_id), "get experiment")
        if self._run.info.lifecycle_stage == "deleted":
            raise ConfigError(f"--resume {run_id}: the run is deleted")
        if exp.name != experiment:
            raise ConfigError(f"--resume {run_id}: the run belongs to experiment '{exp.name}', "
                              f"not '{experiment}'")
        self._retry(lambda: self.client.update_run(run_id, status="RUNNING"), "reopen run")
        for key in self._run.data.metrics:
            step = last_logged_step(self.client, run_id, key)
            if step is not None:
                self._resume_floor[key] = step
        return run_id

    # ---- params and tags (synchronous; MLflow's log_batch sends 100 per request) ----
    def log_params(self, flat: Mapping[str, Any]) -> None:
        """Log the flattened run config, values cut to MLflow's limit.

        Params a resumed run already holds with the same value are skipped; a different value
        raises `ConfigError` (MLflow forbids changing a param, and the run would lie)."""
        from mlflow.entities import Param

        params = {_check_key(k, "param"): str(v)[:MAX_PARAM_VAL_LENGTH] for k, v in flat.items()}
        if self._resumed:
            logged = self._retry(lambda: self.client.get_run(self.run_id), "get run").data.params
            changed = [k for k, v in params.items() if k in logged and logged[k] != v]
            if changed:
                k = changed[0]
                raise ConfigError(f"--resume {self.run_id}: param '{k}' was {logged[k]!r}, now "
                                  f"{params[k]!r} ({len(changed)} changed); resume with the same config")
            params = {k: v for k, v in params.items() if k not in logged}
        items = [Param(k, v) for k, v in params.items()]
        self._retry(lambda: self.client.log_batch(self.run_id, params=items, synchronous=True), "log params")

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set (or overwrite) run tags."""
        from mlflow.entities import RunTag

        items = [RunTag(_check_key(k, "tag"), self._tag_value(v)) for k, v in tags.items()]
        self._retry(lambda: self.client.log_batch(self.run_id, tags=items, synchronous=True), "set tags")

    # ---- metrics ----
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer one point per metric at `step` (timestamped now); once the buffer is full or
        `flush_every_s` old, hand it to MLflow's writer threads and return at once (a
        synchronous tracker writes it here).  NaN is kept (MLflow stores it); a value that is
        not a number raises at once."""
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        step = int(step)
        buffer = self._metrics.buffer
        for key, value in metrics.items():
            key = _check_key(key, "metric")
            if step <= self._resume_floor.get(key, -math.inf):
                self.skipped_points += 1
                continue
            buffer.append(Metric(key, float(value), now_ms, step))
        if len(buffer) >= self.max_buffer or time.monotonic() - self._last_flush >= self.flush_every_s:
            self._last_flush = time.monotonic()
            try:
                self._metrics.send(self.retry_timeout_s)
            except TrackingError as exc:
                # Keep training through a store outage: the points stay buffered for the next
                # flush; `end` raises if they still cannot be written.
                log.warning("MLflow unavailable, %d metric points kept for later: %s", len(buffer), exc)

    @property
    def pending(self) -> int:
        """Metric points not yet written: buffered, or handed to MLflow and not confirmed."""
        return self._metrics.pending

    def flush(self) -> None:
        """Write every point held and wait until it is in the store; transient errors are
        retried for `retry_timeout_s`, then `TrackingError`, the points kept: nothing is lost."""
        self._last_flush = time.monotonic()
        self._metrics.flush(self.retry_timeout_s)
        self._last_flush = time.monotonic()

    # ---- artifacts ----
    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Copy a file, or a folder (as ``<artifact_path>/<folder name>``), to the run's artifacts."""
        if not Path(path).exists():
            raise FileNotFoundError(f"artifact {path} does not exist")
        self._retry(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path), "log artifact")

    def log_text(self, text: str, artifact_file: str) -> None:
        """Write `text` as the artifact `artifact_file` (e.g. ``config.yaml``)."""
        self._retry(lambda: self.client.log_text(self.run_id, text, artifact_file), "log text")

    # ---- end ----
    def end(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """Flush (waiting until every point is written), tag ``dqt.failure_reason`` when
        `reason` is given, terminate the run with `status` (FINISHED, FAILED or KILLED) and
        `settle_store`.  Idempotent; a failed flush still terminates the run, then raises."""
        if status not in RUN_STATUSES:
            raise ValueError(f"run status must be one of {RUN_STATUSES}, not {status!r}")
        if self._ended:
            return
        flush_error: TrackingError | None = None
        try:
            self.flush()
        except TrackingError as exc:
            flush_error = exc
        if reason:
            self.set_tags({FAILURE_REASON_TAG: reason})
        self._retry(lambda: self.client.set_terminated(self.run_id, status=status), "end run")
        self._ended = True
        self._metrics.close()
        settle_store(self.uri)  # leave mlflow.db complete on its own, even if the process os._exits next
        if flush_error is not None:
            raise flush_error

    @property
    def ended(self) -> bool:
        return self._ended

    def __enter__(self) -> RunTracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> None:
        if exc_type is None:
            self.end("FINISHED")
            return
        status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:  # never hide the training error behind a tracking error
            self.end(status, f"{exc_type.__name__}: {exc}" if status == "FAILED" else "interrupted")
        except Exception:
            log.exception("could not end MLflow run %s", self.run_id)
