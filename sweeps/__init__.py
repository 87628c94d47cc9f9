"""Declarative sweeps over the trainer (DESIGN §6).

- `sweeps.spec`: load a YAML spec, check every key and value, apply a profile.
- `sweeps.expand`: grids x seeds -> validated, de-duplicated points with stable hashes.
- `sweeps.runner`: skip FINISHED points, claim the rest through an Optuna storage queue,
  run each as a `dqt train` process (`--jobs` at a time), dry-run table.
- `sweeps.search`: Optuna search over a spec's `search.space` (objective: success AUC).
- `sweeps.cli`: the `dqt sweep` subcommand.

The shipped specs (`noise.yaml`, `agents.yaml`, `tasks.yaml`, `search.yaml`) are the
paper's experiments; docs/SWEEPS.md describes the format.
"""
