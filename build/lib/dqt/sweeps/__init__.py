"""Declarative sweeps over the trainer (docs/SWEEPS.md).

- `sweeps.spec`: load a YAML spec, check every key and value, apply a profile.
- `sweeps.expand`: grids x seeds -> validated, de-duplicated points with stable hashes.
- `sweeps.runner`: the orchestration: skip FINISHED points, claim the rest, run each as a
  `dqt train` process (`--jobs` at a time); the dry-run table.
- `sweeps.store`: the MLflow side: runs and status of each point, the sweep's parent run.
- `sweeps.parent`: the parent run of one invocation: bookkeeping tags, success-AUC results.
- `sweeps.claims`: the Optuna-storage claim queue shared by workers, and claim liveness.
- `sweeps.launch`: `dqt train` child processes, signals (Ctrl-C / SIGTERM), progress line.
- `sweeps.search`: Optuna search over a spec's `search.space` (objective: success AUC,
  `analysis.auc.budget_auc`).
- `sweeps.cli`: the `dqt sweep` subcommand.

The shipped specs (`noise.yaml`, `agents.yaml`, `tasks.yaml`, `search.yaml`) are the
paper's experiments; docs/SWEEPS.md describes the format.
"""
