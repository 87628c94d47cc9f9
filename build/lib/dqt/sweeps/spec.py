"""Sweep specs: load a YAML file, check every key and value, and resolve a profile.

A spec is data, not code (docs/SWEEPS.md)::

    name: noise                      # the MLflow experiment of the sweep
    description: ...
    base:                            # config sections, exactly as in a `dqt train --config` file
      trainer: {task: door-unlock, train_steps: 300000}
    grids:                           # a union of cartesian products (or `grid:` for one)
      - {noise.mean: [0], noise.std: [0.1, 1, 5, 10], noise.robust: [none, median]}
      - {noise.mean: [1, 10, 14, 18, 20], noise.std: [1], noise.robust: [none, median]}
    seeds: 6                         # a count (seeds 0..5) or a list of seeds
    profiles:                        # named overrides of base / grid(s) / seeds / search
      quick: {base: {trainer: {train_steps: 4000}}, seeds: 1}
      paper: {}
    search:                          # only in Optuna specs: the space searched instead of a grid
      space: {learner.lr: {low: 1.0e-5, high: 1.0e-3, log: true}, learner.n_step: {choices: [1, 3]}}
      n_trials: 30

Every mistake raises one `ConfigError` line ``FILE: WHERE: WHAT`` naming the file and the
key, e.g. ``sweeps/x.yaml: grid: unknown config key 'noise.sdt' (did you mean 'noise.std'?)``
or ``sweeps/x.yaml: profiles.paper: grids[1]: noise.std must be >= 0 (got -5.0)``.
A key written twice in one mapping is an error too (plain YAML keeps the last silently).
Every profile is resolved and every configuration of its grids built with
`RunConfig.from_flat` on every load, whichever profile runs, so an impossible value in
``paper`` fails the ``quick`` run too; `sweeps.expand` then builds the chosen profile's points.

One module on purpose (about 475 lines): every rule a spec must follow is here, so the rule
behind any spec error is found in one place; the strict YAML parsing is `sweeps.spec_yaml`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dqt.core.config import SECTIONS, ConfigError, RunConfig, coerce, field_docs, flatten
from dqt.core.names import did_you_mean
from dqt.sweeps.spec_yaml import load_yaml

DEFAULT_PROFILE = "quick"
TOP_KEYS = ("name", "description", "base", "grid", "grids", "seeds", "profiles", "search")
PROFILE_KEYS = ("description", "base", "grid", "grids", "seeds", "search")
SEARCH_KEYS = ("space", "n_trials", "direction", "metric", "sampler_seed")
PARAM_KEYS = ("low", "high", "log", "step", "choices")
DIRECTIONS = ("maximize", "minimize")
SEED_KEY = "trainer.seed"
TASK_KEY = "trainer.task"
# The name becomes an MLflow experiment and part of an Optuna study name: keep it plain.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

Scalar = str | int | float | bool


@dataclass(frozen=True)
class SearchParam:
    """One dimension of an Optuna search space: a numeric range or a list of choices."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Scalar, ...] | None = None


@dataclass(frozen=True)
class SearchSpec:
    """The `search` block: the space, the trial budget and what the objective measures.

    The objective is the area under the curve of `metric` over env steps, normalised
    to the step range (DQT figure 5), averaged over the spec's seeds.
    """

    space: tuple[SearchParam, ...]
    n_trials: int
    direction: str = "maximize"
    metric: str = "eval/success_rate"
    sampler_seed: int | None = None


@dataclass(frozen=True)
class Spec:
    """A sweep spec with one profile applied; everything `expand` and the runner need.

    Attributes:
        path: The file, as given (error messages quote it).
        name: MLflow experiment and sweep tag.
        description: Free text: the spec's, then the applied profile's (what it runs and why).
        profile: The applied profile, or None when the spec has no profiles.
        profiles: Every profile the file defines.
        base: Flat ``{"section.field": value}`` config shared by all points.
        grids: Each a mapping of dotted key -> candidate values; points are the union of
            their cartesian products.
        seeds: Seeds every configuration runs with.
        search: The Optuna search block, or None for a grid sweep.
    """

    path: str
    name: str
    description: str
    profile: str | None
    profiles: tuple[str, ...]
    base: dict[str, Any]
    grids: tuple[dict[str, tuple[Any, ...]], ...]
    seeds: tuple[int, ...]
    search: SearchSpec | None = None

    @property
    def content_hash(self) -> str:
        """8-hex id of what the spec runs (base, grids, seeds, search), for naming its search study."""
        blob = json.dumps({"base": self.base, "grids": self.grids, "seeds": self.seeds,
                           "search": dataclasses.asdict(self.search) if self.search else None},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    @property
    def label(self) -> str:
        """``name[profile]``, how progress lines and tables name the sweep."""
        return f"{self.name}[{self.profile}]" if self.profile else self.name


def load_spec(path: str | Path, profile: str | None = None) -> Spec:
    """Read, check and resolve the spec at `path` with `profile` (default: ``quick``
    when the file defines it, else the spec as written)."""
    shown = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read sweep spec ({exc.strerror})") from None
    return parse_spec(load_yaml(text, shown), shown, profile)


def parse_spec(data: Any, path: str, profile: str | None = None) -> Spec:
    """`load_spec` for already-parsed YAML; `path` only labels error messages."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a sweep spec must be a mapping with at least 'name'")
    _check_keys(data, TOP_KEYS, path, "")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"{path}: name must be a plain string like 'noise' (letters, digits, _ . -), got {name!r}")
    description = _string(data.get("description", ""), path, "description")

    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: profiles must map profile names to overrides")
    # Every profile is checked, not just the chosen one, so a typo in `paper` shows up
    # on the first quick run instead of on the GPU machine.
    for pname, override in profiles.items():
        where = f"profiles.{pname}"
        if not isinstance(override, dict | None):
            raise ConfigError(f"{path}: {where} must be a mapping of overrides (or empty)")
        _check_keys(override or {}, PROFILE_KEYS, path, where)
        _check_sections(override or {}, path, where)
    _check_sections(data, path, "")

    if profile is None:
        profile = DEFAULT_PROFILE if DEFAULT_PROFILE in profiles else None
    elif profile not in profiles:
        known = ", ".join(map(str, profiles)) or "none defined"
        raise ConfigError(f"{path}: profiles: unknown profile '{profile}' (profiles: {known})")
    spec = _resolve(data, profiles, profile, path, name, description)
    # The other profiles are resolved too, every configuration built: an impossible value in
    # `paper` (std -5, warm-up longer than the run) fails the quick run, not the GPU machine.
    # Their messages name the profile (`profiles.paper: grids[1]: ...`).
    for other in profiles:
        if other != profile:
            _resolve(data, profiles, other, path, name, description, scoped=True)
    return spec


def _resolve(data: dict[str, Any], profiles: dict[str, Any], profile: str | None, path: str, name: str,
             description: str, scoped: bool = False) -> Spec:
    """The spec with `profile` applied, every value and grid configuration checked.

    `scoped` (a profile other than the one run) prefixes every part that does not already
    name the profile with ``profiles.NAME: ``, so each message says which profile is broken.
    """
    chosen = profiles.get(profile) if profile else None
    merged, origin = _apply_profile(data, chosen, profile)
    if isinstance(chosen, dict) and chosen.get("description"):
        description = f"{description}\n\nProfile {profile}: {_string(chosen['description'], path, f'profiles.{profile}.description')}"
    if scoped:
        tag = f"profiles.{profile}"
        origin = {part: label if tag in label else f"{tag}: {label}" for part, label in origin.items()}
    base = _base(merged.get("base"), path, origin["base"])
    grids = _grids(merged, path, origin["grid"])
    listed = "grids" in merged  # `grids:` errors name the list index, `grid:` has one
    for i, grid in enumerate(grids):
        where = f"{origin['grid']}[{i}]" if listed else origin["grid"]
        _check_grid_configs(grid, base, path, where)
    seeds = _seeds(merged.get("seeds", 1), path, origin["seeds"])
    search = _search(merged.get("search"), path, origin["search"], base)
    if search is not None and grids:
        raise ConfigError(f"{path}: {origin['search']}: a spec has either a search space or grid(s), not both")
    return Spec(
        path=path,
        name=name,
        description=description,
        profile=profile,
        profiles=tuple(map(str, profiles)),
        base=base,
        grids=grids,
        seeds=seeds,
        search=search,
    )


def _check_grid_configs(grid: dict[str, tuple[Any, ...]], base: dict[str, Any], path: str, where: str) -> None:
    """Build every configuration of one grid over `base`: first each value on its own (so a
    negative std is blamed on its key), then every combination (e.g. a warm-up that a grid's
    train_steps would not exceed)."""
    for key, values in grid.items():
        for value in values:
            RunConfig.from_flat({**base, key: value}, where=f"{path}: {where}: ")
    keys = list(grid)
    for values in itertools.product(*grid.values()):
        combo = dict(zip(keys, values, strict=True))
        shown = ", ".join(f"{k}={v}" for k, v in combo.items())
        RunConfig.from_flat({**base, **combo}, where=f"{path}: {where}: point {{{shown}}}: ")


# ---- structure ------------------------------------------------------------------------
def _check_keys(data: Mapping[str, Any], allowed: Iterable[str], path: str, where: str) -> None:
    allowed = tuple(allowed)
    for key in data:
        if key not in allowed:
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{path}: {prefix}unknown key '{key}'{did_you_mean(str(key), allowed)}")


def _check_sections(block: Mapping[str, Any], path: str, where: str) -> None:
    """The parts of a spec or a profile whose shape can be checked without merging."""
    label = f"{where}." if where else ""
    if "grid" in block and "grids" in block:
        raise ConfigError(f"{path}: {label}grids: give either 'grid' (one product) or 'grids' (a list), not both")
    if "base" in block:
        _base(block["base"], path, f"{label}base", full=False)
    if "grid" in block:
        _grid(block["grid"], path, f"{label}grid")
    if "grids" in block:
        _grid_list(block["grids"], path, f"{label}grids")
    if "seeds" in block:
        _seeds(block["seeds"], path, f"{label}seeds")
    if block.get("search") is not None:
        _search_shape(block["search"], path, f"{label}search")


def _apply_profile(
    data: dict[str, Any], override: dict[str, Any] | None, profile: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The spec with a profile's overrides applied, and where each part now comes from.

    `base` merges per field (a profile changes a few fields); grid(s), seeds and each
    top-level key of `search` are replaced whole, since merging lists has no obvious meaning.
    """
    merged = dict(data)
    origin = {"base": "base", "grid": "grid", "seeds": "seeds", "search": "search"}
    if "grids" in data:
        origin["grid"] = "grids"
    if not override:
        return merged, origin
    tag = f"profiles.{profile}"
    if "base" in override:
        base = flatten(data.get("base") or {}) | flatten(override["base"] or {})
        merged["base"] = base
        origin["base"] = f"base + {tag}.base"
    if "grid" in override or "grids" in override:
        merged.pop("grid", None)
        merged.pop("grids", None)
        kind = "grid" if "grid" in override else "grids"
        merged[kind] = override[kind]
        origin["grid"] = f"{tag}.{kind}"
    if "seeds" in override:
        merged["seeds"] = override["seeds"]
        origin["seeds"] = f"{tag}.seeds"
    if override.get("search"):
        merged["search"] = {**(data.get("search") or {}), **override["search"]}
        origin["search"] = f"search + {tag}.search"
    return merged, origin


# ---- base -----------------------------------------------------------------------------
def _base(block: Any, path: str, where: str, full: bool = True) -> dict[str, Any]:
    """Flat base config; `full` also checks cross-field rules (base must be runnable)."""
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: {where} must be a mapping of config sections, e.g. trainer: {{task: door-unlock}}")
    flat = flatten(block, where=f"{path}: {where}: ")
    # `noise: {std: 1}` next to `noise.std: 2` names one field twice; flatten keeps one silently.
    spelled: list[str] = []
    for key, value in block.items():
        spelled += [f"{key}.{sub}" for sub in value] if isinstance(value, dict) else [str(key)]
    if len(spelled) != len(set(spelled)):
        twice = next(k for k in spelled if spelled.count(k) > 1)
        raise ConfigError(f"{path}: {where}: {twice} is given twice (as a section field and as a dotted key)")
    for key, value in flat.items():
        _check_value(key, value, path, where)
    if SEED_KEY in flat:
        raise ConfigError(f"{path}: {where}: {SEED_KEY} is set by 'seeds', not in base")
    if TASK_KEY in flat:
        flat[TASK_KEY] = canonical_task(flat[TASK_KEY], path, where)
    if full:
        RunConfig.from_flat(flat, where=f"{path}: {where}: ")
    return flat


# ---- grids ----------------------------------------------------------------------------
def _grid(block: Any, path: str, where: str) -> dict[str, tuple[Any, ...]]:
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: {where} must map dotted config keys to lists, e.g. noise.std: [0.1, 1]")
    if not block:
        raise ConfigError(f"{path}: {where} is empty (give at least one key with a list of values)")
    out: dict[str, tuple[Any, ...]] = {}
    for key, values in block.items():
        key = str(key)
        if "." not in key and key in SECTIONS:
            raise ConfigError(f"{path}: {where}: '{key}' must be a dotted key like '{key}.{_first_field(key)}'")
        _check_key(key, path, where)
        if key == SEED_KEY:
            raise ConfigError(f"{path}: {where}: {SEED_KEY} is set by 'seeds', not in a grid")
        if not isinstance(values, list):
            raise ConfigError(f"{path}: {where}: {key} must be a list of values, got {values!r}")
        if not values:
            raise ConfigError(f"{path}: {where}: {key} is an empty list")
        checked = [_check_value(key, v, path, where) for v in values]
        if key == TASK_KEY:
            checked = [canonical_task(v, path, where) for v in checked]
        out[key] = tuple(checked)
    return out


def _grid_list(block: Any, path: str, where: str) -> tuple[dict[str, tuple[Any, ...]], ...]:
    if not isinstance(block, list):
        raise ConfigError(f"{path}: {where} must be a list of grids (mappings of key -> values)")
    if not block:
        raise ConfigError(f"{path}: {where} is empty (give at least one grid)")
    return tuple(_grid(g, path, f"{where}[{i}]") for i, g in enumerate(block))


def _grids(merged: dict[str, Any], path: str, where: str) -> tuple[dict[str, tuple[Any, ...]], ...]:
    if "grid" in merged:
        return (_grid(merged["grid"], path, where),)
    if "grids" in merged:
        return _grid_list(merged["grids"], path, where)
    return ()


# ---- seeds ----------------------------------------------------------------------------
def _seeds(value: Any, path: str, where: str) -> tuple[int, ...]:
    """``6`` means seeds 0..5; a list gives them explicitly."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigError(f"{path}: {where} must be a count >= 1 or a list of seeds, got {value}")
        return tuple(range(value))
    if isinstance(value, list) and value:
        for s in value:
            if not isinstance(s, int) or isinstance(s, bool) or s < 0:
                raise ConfigError(f"{path}: {where}: each seed must be an integer >= 0, got {s!r}")
        if len(set(value)) != len(value):
            raise ConfigError(f"{path}: {where}: seeds repeat in {value}")
        return tuple(value)
    raise ConfigError(f"{path}: {where} must be a count >= 1 or a non-empty list of seeds, got {value!r}")


# ---- search ---------------------------------------------------------------------------
def _search_shape(block: Any, path: str, where: str) -> None:
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: {where} must be a mapping with 'space' and 'n_trials'")
    _check_keys(block, SEARCH_KEYS, path, where)
    space = block.get("space")
    if space is None:
        return
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{path}: {where}.space must map dotted config keys to {{low, high, log}} or {{choices}}")
    for key, param in space.items():
        _check_key(str(key), path, f"{where}.space")
        if not isinstance(param, dict):
            raise ConfigError(f"{path}: {where}.space: {key} must be {{low, high, log}} or {{choices: [...]}}")
        _check_keys(param, PARAM_KEYS, path, f"{where}.space.{key}")


def _search(block: Any, path: str, where: str, base: dict[str, Any]) -> SearchSpec | None:
    if block is None:
        return None
    _search_shape(block, path, where)
    if "space" not in block:
        raise ConfigError(f"{path}: {where}: missing 'space'")
    if "n_trials" not in block:
        raise ConfigError(f"{path}: {where}: missing 'n_trials'")
    n_trials = block["n_trials"]
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise ConfigError(f"{path}: {where}: n_trials must be an integer >= 1, got {n_trials!r}")
    direction = block.get("direction", "maximize")
    if direction not in DIRECTIONS:
        raise ConfigError(f"{path}: {where}: direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    metric = _string(block.get("metric", "eval/success_rate"), path, f"{where}.metric")
    sampler_seed = block.get("sampler_seed")
    if sampler_seed is not None and (not isinstance(sampler_seed, int) or isinstance(sampler_seed, bool)):
        raise ConfigError(f"{path}: {where}: sampler_seed must be an integer, got {sampler_seed!r}")
    params = tuple(_param(str(k), v, path, f"{where}.space", base) for k, v in block["space"].items())
    return SearchSpec(space=params, n_trials=n_trials, direction=direction, metric=metric, sampler_seed=sampler_seed)


def _param(key: str, raw: dict[str, Any], path: str, where: str, base: dict[str, Any]) -> SearchParam:
    if key in (SEED_KEY, TASK_KEY):
        raise ConfigError(f"{path}: {where}: {key} cannot be searched")
    if "choices" in raw:
        if set(raw) != {"choices"}:
            raise ConfigError(f"{path}: {where}: {key} gives either choices or low/high, not both")
        choices = raw["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{path}: {where}: {key}.choices must be a non-empty list")
        values = tuple(_check_value(key, c, path, where) for c in choices)
        for v in values:  # each choice must give a runnable config on its own
            RunConfig.from_flat({**base, key: v}, where=f"{path}: {where}: ")
        return SearchParam(key=key, choices=values)
    if "low" not in raw or "high" not in raw:
        raise ConfigError(f"{path}: {where}: {key} needs low and high (or choices)")
    typ = _type_of(key)
    if typ not in (int, float):
        raise ConfigError(f"{path}: {where}: {key} is not numeric; give it choices instead of low/high")
    low = _check_value(key, raw["low"], path, where)
    high = _check_value(key, raw["high"], path, where)
    if not low < high:
        raise ConfigError(f"{path}: {where}: {key} needs low < high, got low={low} high={high}")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{path}: {where}: {key}.log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{path}: {where}: {key} with log: true needs low > 0, got {low}")
    step = raw.get("step")
    if step is not None:
        step = _check_value(key, step, path, where)
        if step <= 0:
            raise ConfigError(f"{path}: {where}: {key}.step must be > 0, got {step}")
    for v in (low, high):  # both ends must give a runnable config (catches lr <= 0 etc.)
        RunConfig.from_flat({**base, key: v}, where=f"{path}: {where}: ")
    return SearchParam(key=key, low=low, high=high, log=log, step=step)


# ---- single keys and values -----------------------------------------------------------
def _check_key(key: str, path: str, where: str) -> None:
    if key not in field_docs():
        raise ConfigError(f"{path}: {where}: unknown config key '{key}'{did_you_mean(key, field_docs())}")


def _type_of(key: str) -> Any:
    section, _, name = key.partition(".")
    return typing.get_type_hints(SECTIONS[section])[name]


def _check_value(key: str, value: Any, path: str, where: str) -> Any:
    """`value` coerced to the field's type; a wrong type names file, part and key."""
    _check_key(key, path, where)
    if isinstance(value, dict | list):
        raise ConfigError(f"{path}: {where}: {key} expects a single value, got {value!r}")
    return coerce(value, _type_of(key), f"{path}: {where}: {key}")


def canonical_task(name: Any, path: str, where: str) -> str:
    """The task's canonical id (``door-unlock`` -> ``door-unlock-v3``), so aliases of one
    task hash to one point; unknown tasks fail here, before anything runs."""
    from dqt.core.acting.envs import canonical_task as canonical  # imported late: it loads MetaWorld

    try:
        return canonical(str(name))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {where}: {TASK_KEY}: {exc}") from None


def _string(value: Any, path: str, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{path}: {where} must be a string, got {value!r}")
    return value


def _first_field(section: str) -> str:
    return next(iter(typing.get_type_hints(SECTIONS[section])))

