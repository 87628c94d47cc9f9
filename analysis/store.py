"""The MLflow store behind ``dqt figures``: opening it, its experiments, runs and sweep parents.

Reading only: a local store that does not exist is bad input (a ConfigError), never an empty
store created by MLflow.  Parent runs (tag ``dqt.role=parent``) are the sweeps' bookkeeping;
`training_runs` leaves them out, `latest_parent_run` finds the one a report is logged to.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from mlflow.entities import Experiment, Run, ViewType
from mlflow.tracking import MlflowClient

from dqt.core.config import ConfigError

ROLE_TAG = "dqt.role"
PARENT_ROLE = "parent"


def open_client(tracking_uri: str) -> MlflowClient:
    """A client for `tracking_uri`; a local store that does not exist is bad input.

    MLflow would silently create an empty SQLite file or mlruns folder, which is never what
    ``dqt figures`` on a mistyped path wants.
    """
    path = local_store_path(tracking_uri)
    if path is not None and not path.exists():
        raise ConfigError(f"no MLflow store at {path} (run a sweep first, or pass --tracking-uri)")
    return MlflowClient(tracking_uri=tracking_uri)


def local_store_path(tracking_uri: str) -> Path | None:
    """The file or folder behind a local tracking URI (SQLite, file store); None for servers."""
    if tracking_uri.startswith("sqlite:///"):
        rest = tracking_uri[len("sqlite:///"):]
        return None if rest in ("", ":memory:") else Path(rest)
    if tracking_uri.startswith("file:"):
        return Path(urlparse(tracking_uri).path)
    if "://" not in tracking_uri:
        return Path(tracking_uri)
    return None


def find_experiment(client: MlflowClient, name: str, tracking_uri: str) -> Experiment:
    """The active experiment called `name`, or a ConfigError listing the known ones."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage != "active":
        known = sorted(e.name for e in client.search_experiments())
        raise ConfigError(
            f"experiment '{name}' not found in {tracking_uri} (known: {', '.join(known) or 'none'})"
        )
    return experiment


def experiments_with_runs(client: MlflowClient) -> list[str]:
    """Names of the active experiments holding at least one run, sorted."""
    return sorted(
        e.name for e in client.search_experiments()
        if client.search_runs([e.experiment_id], max_results=1)
    )


def training_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """Every active run of the experiment except sweep parents, oldest first."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
            order_by=["attributes.start_time ASC"], page_token=token,
        )
        runs.extend(r for r in page if r.data.tags.get(ROLE_TAG) != PARENT_ROLE)
        token = page.token
        if not token:
            return runs


def latest_parent_run(client: MlflowClient, experiment_id: str, profile: str | None = None) -> Run | None:
    """The most recently started sweep parent run of the experiment (of `profile`, if given)."""
    parents = client.search_runs(
        [experiment_id], filter_string=f"tags.`{ROLE_TAG}` = '{PARENT_ROLE}'",
        run_view_type=ViewType.ACTIVE_ONLY, order_by=["attributes.start_time DESC"], max_results=1000,
    )
    # Filtered here, not in the query: a profile name then needs no quoting rules.
    return next((r for r in parents if profile is None or r.data.tags.get("profile") == profile), None)
