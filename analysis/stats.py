"""Aggregating over seeds: mean, interquartile mean (IQM) and percentile-bootstrap CIs.

A sweep has few seeds per configuration (the paper: 6), so the spread of the mean is shown as
a bootstrap confidence interval: resample the seeds with replacement, recompute the statistic,
take the (1 - confidence) / 2 quantiles.  The IQM (mean of the middle 50 %, as in Agarwal et
al. 2021, "Deep RL at the edge of the statistical precipice") is offered because one diverged
seed moves a mean of six a lot.  Every resampling uses a numpy Generator seeded by the caller,
so reports are reproducible.

One seed has no spread to resample, so it has no confidence interval: its CI is (NaN, NaN)
(a band or error bar is not drawn, report.md says "n/a"), never the degenerate [v, v] that
would read as certainty.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

STATISTICS = ("mean", "iqm")
# Resamples per block: bounds memory at (block x seeds x grid points) for curve bands.
_BLOCK = 256


def iqm(values: np.ndarray | Sequence[float], axis: int = -1) -> np.ndarray | float:
    """Interquartile mean along `axis`: the mean after cutting floor(n / 4) values from each end
    (scipy.stats.trim_mean(x, 0.25)); equal to the mean for fewer than 4 values."""
    x = np.sort(np.asarray(values, dtype=float), axis=axis)
    n = x.shape[axis]
    cut = int(np.floor(0.25 * n))
    kept = np.take(x, np.arange(cut, n - cut), axis=axis)
    result = np.mean(kept, axis=axis)
    return float(result) if np.ndim(result) == 0 else result


def statistic_fn(name: str) -> Callable[..., np.ndarray | float]:
    """The aggregate called `name` ("mean" or "iqm") as f(array, axis)."""
    if name == "mean":
        return lambda x, axis=-1: np.mean(x, axis=axis)
    if name == "iqm":
        return iqm
    raise ValueError(f"unknown statistic '{name}' (one of {', '.join(STATISTICS)})")


def bootstrap_distribution(
    samples: np.ndarray, statistic: str = "mean", n_resamples: int = 10_000, seed: int = 0
) -> np.ndarray:
    """The statistic over axis 0 of `samples` for `n_resamples` resamples of that axis.

    `samples` is (n,) for scalars (one AUC per seed) or (n, grid) for curves; the result is
    (n_resamples,) or (n_resamples, grid).
    """
    x = np.asarray(samples, dtype=float)
    fn = statistic_fn(statistic)
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    out = []
    for start in range(0, n_resamples, _BLOCK):
        idx = rng.integers(0, n, size=(min(_BLOCK, n_resamples - start), n))
        out.append(fn(x[idx], axis=1))
    return np.concatenate(out, axis=0)


def bootstrap_ci(
    values: np.ndarray | Sequence[float],
    *,
    statistic: str = "mean",
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap CI of the statistic of `values`; NaNs for fewer than two values
    (one seed has no CI)."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return float("nan"), float("nan")
    dist = bootstrap_distribution(x, statistic, n_resamples, seed)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(dist, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def curve_band(
    curves: np.ndarray,
    *,
    statistic: str = "mean",
    confidence: float = 0.95,
    n_resamples: int = 1_000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pointwise center and bootstrap CI of (runs x grid) curves resampled over runs.

    Fewer resamples than for scalars by default: a plotted band needs no third decimal.
    One run has no CI: low and high are then all NaN.
    """
    x = np.atleast_2d(np.asarray(curves, dtype=float))
    center = np.asarray(statistic_fn(statistic)(x, axis=0), dtype=float)
    if x.shape[0] == 1:
        nan = np.full_like(center, np.nan)
        return center, nan, nan.copy()
    dist = bootstrap_distribution(x, statistic, n_resamples, seed)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(dist, [alpha, 1.0 - alpha], axis=0)
    return center, lo, hi


@dataclass(frozen=True)
class Summary:
    """Seeds of one configuration summarised: n, mean with CI, IQM with CI."""

    n: int
    mean: float
    ci_low: float
    ci_high: float
    iqm: float
    iqm_ci_low: float
    iqm_ci_high: float


def summarize(
    values: np.ndarray | Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> Summary:
    """Mean and IQM of `values` with their bootstrap CIs (all NaN when there are no values;
    the CIs NaN for a single value)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan, nan, nan)
    kw = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    lo, hi = bootstrap_ci(x, statistic="mean", **kw)
    iqm_lo, iqm_hi = bootstrap_ci(x, statistic="iqm", **kw)
    return Summary(int(x.size), float(np.mean(x)), lo, hi, float(iqm(x)), iqm_lo, iqm_hi)
