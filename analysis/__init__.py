"""Analysis: read sweeps back from MLflow and turn them into the paper's figures and tables.

One module per job:

- `analysis.load`    -- the tidy table (one row per run, metric, step) read from MLflow, cached
                        per run; run selection and configuration labels.
- `analysis.auc`     -- the normalised area under each run's success curve over [0, its budget].
- `analysis.stats`   -- bootstrap confidence intervals and the interquartile mean.
- `analysis.figures` -- the figures (DQT figures 2, 4, 5 and a generic success plot).
- `analysis.report`  -- ``summary.csv`` and ``report.md`` for one experiment, logged to MLflow.
- `analysis.cli`     -- the ``dqt figures`` subcommand.

The package needs only an MLflow store: it imports neither torch, the trainer, nor `sweeps`.
"""
