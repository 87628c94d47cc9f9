"""MLflow tracking on the training side; the only package of the trainer that talks to MLflow
(docs/CONTRACTS.md).  Nothing here imports MLflow until a store is used (~1 s).

- `core.tracking.uri`: tracking URIs: default, validation, the SQLite file and artifact folder.
- `core.tracking.retry`: which errors are transient (`is_transient`); `with_retry`.
- `core.tracking.store`: the store shared by processes: schema set-up under a lock, journal
  mode, `settle_store(s)` on exit, fork safety.
- `core.tracking.experiments`: experiments created as model-training experiments (what the
  MLflow UI opens on), `last_logged_step`.
- `core.tracking.metrics`: `MetricWriter`, a run's metric points written asynchronously.
- `core.tracking.writer`: `RunTracker`, one run written by the learner.

The MLflow UI server (`dqt ui`) is the CLI's: `dqt/ui.py`.
"""

from dqt.core.tracking.experiments import (
    EXPERIMENT_KIND_TAG,
    TRAINING_KIND,
    get_or_create_experiment,
    last_logged_step,
)
from dqt.core.tracking.metrics import MAX_METRICS_PER_BATCH, MetricWriter
from dqt.core.tracking.retry import TrackingError, is_transient, with_retry
from dqt.core.tracking.store import (
    JOURNAL_SWITCH_TIMEOUT_S,
    SETTLE_TIMEOUT_S,
    _dispose_engines,
    ensure_store,
    settle_store,
    settle_stores,
)
from dqt.core.tracking.uri import (
    ARTIFACT_DIR,
    artifact_root_for,
    default_tracking_uri,
    repo_root,
    resolve_tracking_uri,
    sqlite_path,
)
from dqt.core.tracking.writer import (
    FAILURE_REASON_TAG,
    MAX_KEY_LENGTH,
    MAX_PARAM_VAL_LENGTH,
    MAX_TAG_VAL_LENGTH,
    PARENT_RUN_TAG,
    RUN_STATUSES,
    RunTracker,
)

__all__ = [
    "ARTIFACT_DIR", "EXPERIMENT_KIND_TAG", "FAILURE_REASON_TAG", "JOURNAL_SWITCH_TIMEOUT_S", "MAX_KEY_LENGTH",
    "MAX_METRICS_PER_BATCH", "MAX_PARAM_VAL_LENGTH", "MAX_TAG_VAL_LENGTH", "PARENT_RUN_TAG", "RUN_STATUSES",
    "SETTLE_TIMEOUT_S", "TRAINING_KIND", "MetricWriter", "RunTracker", "TrackingError", "_dispose_engines",
    "artifact_root_for", "default_tracking_uri", "ensure_store", "get_or_create_experiment", "is_transient",
    "last_logged_step", "repo_root", "resolve_tracking_uri", "settle_store", "settle_stores", "sqlite_path",
    "with_retry",
]
