"""Aggregating over seeds: mean, interquartile mean (IQM) and bootstrap CIs, by scipy.

A sweep has few seeds per configuration (the paper: 6), so the spread of the mean is shown as
a bootstrap confidence interval from `scipy.stats.bootstrap`: the seeds are resampled with
replacement and the statistic recomputed.  The IQM is `scipy.stats.trim_mean(x, 0.25)` (the
mean of the middle 50 %, as in Agarwal et al. 2021, "Deep RL at the edge of the statistical
precipice"), offered because one diverged seed moves a mean of six a lot.  Every resampling
uses a numpy Generator seeded by the caller, so reports are reproducible.

Which interval (`ci_method`):

- BCa (bias-corrected and accelerated) for three or more values that are not all equal: at
  six seeds it covers closer to its nominal 95 % than the percentile interval, because it
  corrects for the skew and bias of the bootstrap distribution.
- percentile (the (1 - confidence) / 2 quantiles of the bootstrap distribution) for two
  values, and for values that are all equal: BCa's acceleration is a jackknife over
  leave-one-out statistics, which is 0 / 0 when they are all equal and meaningless with two
  (the bootstrap distribution of two values has three atoms).  All-equal values get the
  zero-width interval [v, v]: the spread was measured, and it is nil.
- BCa that scipy still cannot compute (it returns NaN, e.g. where every leave-one-out IQM
  coincides, or at a curve's grid point where every seed has the same value) falls back to
  the percentile interval of the same bootstrap distribution.

One seed has no spread to resample, so it has no confidence interval: its CI is (NaN, NaN)
(a band or error bar is not drawn, report.md says "n/a"), never the degenerate [v, v] that
would read as certainty.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

STATISTICS = ("mean", "iqm")
# Resamples per batch: bounds memory at (batch x seeds x grid points) for curve bands.
BATCH = 256
BCA, PERCENTILE = "BCa", "percentile"


def iqm(values: np.ndarray | Sequence[float], axis: int = -1) -> np.ndarray | float:
    """Interquartile mean along `axis`: ``scipy.stats.trim_mean(values, 0.25)``, the mean after
    cutting floor(n / 4) values from each end; equal to the mean for fewer than 4 values."""
    result = stats.trim_mean(np.asarray(values, dtype=float), 0.25, axis=axis)
    return float(result) if np.ndim(result) == 0 else result


def statistic_fn(name: str) -> Callable[..., np.ndarray | float]:
    """The aggregate called `name` ("mean" or "iqm") as f(array, axis)."""
    if name == "mean":
        return lambda x, axis=-1: np.mean(x, axis=axis)
    if name == "iqm":
        return iqm
    raise ValueError(f"unknown statistic '{name}' (one of {', '.join(STATISTICS)})")


def ci_method(values: np.ndarray | Sequence[float]) -> str | None:
    """The interval `bootstrap_ci` computes for `values` (module docstring): "BCa" for three or
    more values not all equal, "percentile" for two or for all equal, None (no CI) for one."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return None
    return BCA if x.size >= 3 and np.ptp(x) > 0 else PERCENTILE


def _bootstrap(
    samples: np.ndarray, statistic: str, confidence: float, n_resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The CI over axis 0 of `samples` ((n,) or (n, grid)): BCa where `ci_method` allows it
    and scipy can compute it, else the percentile interval of the same resamples."""
    fn = statistic_fn(statistic)
    x = np.asarray(samples, dtype=float)
    spread = np.ptp(x, axis=0) > 0
    kw = {"n_resamples": n_resamples, "confidence_level": confidence, "vectorized": True, "axis": 0,
          "batch": BATCH}
    if x.shape[0] >= 3 and np.any(spread):
        with warnings.catch_warnings():  # scipy warns where BCa is NaN; the NaNs are handled below
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.bootstrap((x,), fn, method=BCA, rng=np.random.default_rng(seed), **kw)
        low, high = (np.asarray(v, dtype=float) for v in res.confidence_interval)
        fallback = ~(np.isfinite(low) & np.isfinite(high) & spread)
        if not np.any(fallback):
            return low, high
        # The same resamples, no new ones: only the interval is computed again.
        kw["n_resamples"] = 0
        pct = stats.bootstrap((x,), fn, method=PERCENTILE, bootstrap_result=res, **kw)
        p_low, p_high = (np.asarray(v, dtype=float) for v in pct.confidence_interval)
        return np.where(fallback, p_low, low), np.where(fallback, p_high, high)
    res = stats.bootstrap((x,), fn, method=PERCENTILE, rng=np.random.default_rng(seed), **kw)
    return tuple(np.asarray(v, dtype=float) for v in res.confidence_interval)


def bootstrap_ci(
    values: np.ndarray | Sequence[float],
    *,
    statistic: str = "mean",
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap CI of the statistic of `values` (BCa or percentile, see `ci_method`); NaNs
    for fewer than two values (one seed has no CI)."""
    statistic_fn(statistic)  # an unknown statistic is an error even without values
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return float("nan"), float("nan")
    lo, hi = _bootstrap(x, statistic, confidence, n_resamples, seed)
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

    The interval is chosen per grid point as in `bootstrap_ci` (a point where every run has
    the same value gets [v, v]).  Fewer resamples than for scalars by default: a plotted band
    needs no third decimal.  One run has no CI: low and high are then all NaN.
    """
    x = np.atleast_2d(np.asarray(curves, dtype=float))
    center = np.asarray(statistic_fn(statistic)(x, axis=0), dtype=float)
    if x.shape[0] == 1:
        nan = np.full_like(center, np.nan)
        return center, nan, nan.copy()
    lo, hi = _bootstrap(x, statistic, confidence, n_resamples, seed)
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


def difference_ci(
    a: np.ndarray | Sequence[float],
    b: np.ndarray | Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """mean(a) - mean(b) with the percentile bootstrap CI of that difference, the seeds of each
    arm resampled independently (`scipy.stats.bootstrap` with two samples, unpaired); NaN CI
    when an arm has fewer than two values.  All-equal arms get the zero-width interval."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(np.mean(x) - np.mean(y))
    if x.size < 2 or y.size < 2:
        return diff, float("nan"), float("nan")
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return diff, diff, diff
    res = stats.bootstrap((x, y), lambda u, v, axis=-1: np.mean(u, axis=axis) - np.mean(v, axis=axis),
                          method=PERCENTILE, n_resamples=n_resamples, confidence_level=confidence,
                          vectorized=True, rng=np.random.default_rng(seed))
    low, high = res.confidence_interval
    return diff, float(low), float(high)
