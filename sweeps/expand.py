"""Grids -> points: the union of cartesian products, times seeds, de-duplicated by hash.

A point is one training run: a validated `RunConfig` plus its identity
``(config_hash, seed)``.  The hash leaves the seed out (`RunConfig.config_hash`), so the
seeds of one configuration share it, and two grids that produce the same configuration
produce one point, whatever order their keys or values are written in.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from dqt.core.config import RunConfig
from dqt.sweeps.spec import SEED_KEY, Spec

PointKey = tuple[str, int]


@dataclass(frozen=True)
class Point:
    """One (configuration, seed) of a sweep.

    Attributes:
        config: The complete run config, seed included.
        config_hash: `config.config_hash()`: the configuration without its seed.
        seed: `config.trainer.seed`.
        varied: The grid values of this point, ``(("noise.std", 5.0), ...)``, in grid order.
    """

    config: RunConfig
    config_hash: str
    seed: int
    varied: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> PointKey:
        """What the MLflow store and the claim queue identify the point by."""
        return (self.config_hash, self.seed)


def grid_combinations(grids: tuple[dict[str, tuple[Any, ...]], ...]) -> list[dict[str, Any]]:
    """Every combination of each grid, grid after grid (no grid: one empty combination)."""
    combos: list[dict[str, Any]] = []
    for grid in grids or ({},):
        keys = list(grid)
        combos.extend(dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values()))
    return combos


def expand(spec: Spec) -> list[Point]:
    """The spec's points in grid order, seeds innermost, each validated by `RunConfig.from_flat`.

    A configuration reached by two grids appears once (first occurrence wins), so a union
    of overlapping grids never runs a point twice.
    """
    seen: set[PointKey] = set()
    points: list[Point] = []
    for combo in grid_combinations(spec.grids):
        shown = ", ".join(f"{k}={v}" for k, v in combo.items())
        where = f"{spec.path}: grid point {{{shown}}}: " if combo else f"{spec.path}: base: "
        config = RunConfig.from_flat({**spec.base, **combo}, where=where)
        config_hash = config.config_hash()
        flat = config.to_flat()
        varied = tuple((k, flat[k]) for k in combo)
        for seed in spec.seeds:
            if (config_hash, seed) in seen:
                continue
            seen.add((config_hash, seed))
            seeded = RunConfig.from_flat({SEED_KEY: seed}, base=config, where=where)
            points.append(Point(config=seeded, config_hash=config_hash, seed=seed, varied=varied))
    return points


def varied_keys(points: list[Point]) -> list[str]:
    """The grid keys whose value differs between points, in first-seen order; these are
    the columns of the dry-run table and the words of run names."""
    keys = list(dict.fromkeys(key for point in points for key, _ in point.varied))
    # a key set by one grid only (the ablation's `env.action_repeat: [1]`) still differs from the
    # base value the other points keep, so compare the points' whole configs
    flats = [point.config.to_flat() for point in points]
    changing = [k for k in keys if len({repr(f[k]) for f in flats}) > 1]
    return changing or keys


def short_names(keys: list[str]) -> dict[str, str]:
    """``noise.std`` -> ``std`` unless two keys share the last part (then keep them whole)."""
    tails = [k.rpartition(".")[2] for k in keys]
    return {k: (t if tails.count(t) == 1 else k) for k, t in zip(keys, tails, strict=True)}


def config_name(point: Point, keys: list[str]) -> str:
    """The point's configuration in words, e.g. ``std=5 robust=median`` (its values of `keys`);
    empty when no key varies."""
    names = short_names(keys)
    flat = point.config.to_flat()
    return " ".join(f"{names[k]}={_fmt(flat[k])}" for k in keys)


def run_name(point: Point, keys: list[str]) -> str:
    """A readable MLflow run name, e.g. ``std=5 robust=median seed=0``."""
    return " ".join(filter(None, [config_name(point, keys), f"seed={point.seed}"]))


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.6g}"  # a sampled 0.000123456789 reads 0.000123457
    return str(value)
