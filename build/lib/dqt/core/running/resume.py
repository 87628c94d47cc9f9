"""What `dqt train --resume RUN_ID` continues from: the run's config and last checkpoint."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dqt.core.config import ConfigError, RunConfig
from dqt.core.running.checkpoint import CHECKPOINT_FILE, load_checkpoint


@dataclass
class ResumePoint:
    cfg: RunConfig  # the run's own config (config.yaml artifact)
    checkpoint: dict[str, Any]
    experiment: str


def load_resume_point(uri: str, run_id: str) -> ResumePoint:
    """Fetch a run's config and checkpoint, or a one-line ConfigError saying why it cannot resume."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    # MLflow draws a progress bar per download on stderr; an error must stay one line
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"--resume {run_id}: no such run in {uri}") from None
    if run.info.status == "FINISHED":
        raise ConfigError(f"--resume {run_id}: the run already FINISHED; nothing to resume")
    experiment = client.get_experiment(run.info.experiment_id).name
    with tempfile.TemporaryDirectory() as tmp:
        try:
            cfg_path = client.download_artifacts(run_id, "config.yaml", tmp)
            ckpt_path = client.download_artifacts(run_id, f"checkpoint/{CHECKPOINT_FILE}", tmp)
        except (MlflowException, OSError):
            raise ConfigError(f"--resume {run_id}: the run has no checkpoint to continue from") from None
        return ResumePoint(RunConfig.from_yaml(Path(cfg_path)), load_checkpoint(ckpt_path), experiment)
