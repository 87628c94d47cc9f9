"""Analysis: read sweeps back from MLflow and turn them into the paper's figures and tables.

One module per job:

- `analysis.store`      -- the MLflow store: open it, its experiments, training runs, sweep parents.
- `analysis.load`       -- the tidy table (one row per run, metric, step) read from MLflow, cached
                           per run (`joblib.Memory`); per-run curves.
- `analysis.selection`  -- which runs count (one profile, finished, one per (config, seed)) and
                           their configurations (`prepare` -> `ExperimentRuns`).
- `analysis.labels`     -- what a configuration is called in legends and tables.
- `analysis.auc`        -- the normalised area under each run's success curve over [0, its budget].
- `analysis.stats`      -- bootstrap confidence intervals and the interquartile mean (scipy).
- `analysis.figures`    -- the figures (DQT figures 2, 4, 5 and a generic success plot).
- `analysis.report`     -- ``summary.csv`` and ``report.md`` for one experiment, logged to MLflow.
- `analysis.cli`        -- the ``dqt figures`` subcommand.

The package needs only an MLflow store: it imports neither torch, the trainer, nor `sweeps`.
"""
