"""Experiments as the MLflow UI should show them, and what a run already holds.

Every experiment this toolkit creates is a model-training experiment: the experiment tag
``mlflow.experimentKind`` = ``custom_model_development`` makes MLflow 3's UI open it on its
runs (table, charts, compare) instead of the GenAI traces and evaluation pages it shows for
an experiment of unknown kind.  MLflow's Python package exposes no constant for the tag (the
UI's JavaScript enum ``ExperimentKind`` does; ``mlflow/assistant/skills`` names the values),
so the names are kept here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from dqt.core.config import ConfigError
from dqt.core.tracking.retry import TrackingError, with_retry
from dqt.core.tracking.uri import artifact_root_for

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"  # the UI's ExperimentKind.CUSTOM_MODEL_DEVELOPMENT


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"


def get_or_create_experiment(client: MlflowClient, name: str, uri: str | None) -> str:
    """Id of experiment `name`, created if missing as a model-training experiment (tag
    ``mlflow.experimentKind``) with the absolute artifact location ``<mlartifacts>/<name>``
    (SQLite stores; servers pick their own).  An existing experiment without a kind (created
    by an older version or by hand) gets the tag; one with a kind keeps it.

    Safe when several processes create the same experiment at once: the loser of the race
    gets RESOURCE_ALREADY_EXISTS and re-reads.  A deleted experiment of that name raises
    `ConfigError` (runs logged there would be invisible)."""
    from mlflow.exceptions import MlflowException

    if not name or not name.strip():
        raise ConfigError("experiment name is empty")
    exp = with_retry(lambda: client.get_experiment_by_name(name), "get experiment")
    if exp is None:
        root = artifact_root_for(uri)
        location = f"{root}/{_slug(name)}" if root else None
        try:
            return with_retry(lambda: client.create_experiment(
                name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: TRAINING_KIND}), "create experiment")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        exp = with_retry(lambda: client.get_experiment_by_name(name), "get experiment")
        if exp is None:
            raise TrackingError(f"experiment '{name}' reported as existing but cannot be read")
    if exp.lifecycle_stage == "deleted":
        raise ConfigError(f"experiment '{name}' is deleted in {uri}; restore it in the MLflow UI or "
                          f"purge it with `mlflow gc --backend-store-uri {uri}`")
    if not exp.tags.get(EXPERIMENT_KIND_TAG):
        with_retry(lambda: client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND),
                   "set experiment tag")
    return exp.experiment_id


def last_logged_step(client: MlflowClient, run_id: str, key: str) -> int | None:
    """Largest step logged for metric `key` of a run, None when it has none; a resumed learner
    continues after it so no step appears twice."""
    history = with_retry(lambda: client.get_metric_history(run_id, key), "read metric history")
    return max((m.step for m in history), default=None)
