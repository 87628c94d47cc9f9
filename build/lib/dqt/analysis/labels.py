"""What a configuration is called in legends, tables and report.md.

A label names the params that vary across an experiment's runs with their values, e.g.
``"agents=4, LR=linear"``: the params the paper varies by its symbols (`PRETTY_NAMES`), any
other param by the last part of its dotted key (the whole key when two share that part).
When many params vary (an ablation: one factor at a time around a baseline), a label names
only the values that differ from each param's most common one (`common_values`), and the
configuration that differs in none is the ``baseline``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Legend names of the params the paper varies; any other key shows its last dotted part.
PRETTY_NAMES = {
    "trainer.num_agents": "agents",
    "learner.lr_schedule": "LR",
    "noise.mean": "μ",
    "noise.std": "σ",
    "noise.robust": "robust",
    "trainer.task": "task",
}
# Labels list these first, in the paper's order of importance; other params follow by name.
LABEL_ORDER = tuple(PRETTY_NAMES)
# With more varied params than this, labels name only what differs from the common values.
MAX_FULL_LABEL_KEYS = 3
BASELINE = "baseline"


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Legend names for param keys: the paper's symbols, else the last dotted part if unique."""
    tails = [k.rsplit(".", 1)[-1] for k in keys]
    return {
        k: PRETTY_NAMES.get(k, t if tails.count(t) == 1 else k) for k, t in zip(keys, tails, strict=True)
    }


def format_value(value: Any) -> str:
    """A param value as a legend shows it: 10.0 -> "10", 0.10000 -> "0.1"."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def common_values(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """Each key's most common value over the configurations `rows`, for the keys that have one
    (a tie, like two tasks run alike, has none: that key is always named).  Empty when few
    keys vary: then every label names every key."""
    if len(keys) <= MAX_FULL_LABEL_KEYS:
        return {}
    common = {}
    for key in keys:
        counts: dict[str, int] = {}
        for row in rows:
            counts[format_value(row[key])] = counts.get(format_value(row[key]), 0) + 1
        ranked = sorted(counts.values(), reverse=True)
        if len(ranked) > 1 and ranked[0] > ranked[1]:
            common[key] = max(counts, key=counts.__getitem__)
    return common


def config_label(values: Mapping[str, Any], keys: Sequence[str], common: Mapping[str, Any] | None = None) -> str:
    """``"agents=4, LR=linear"`` from a run's values of `keys`; "all runs" when none vary.
    With `common` (`common_values`), keys at their common value are left out, and a
    configuration at the common value of every such key is marked ``baseline``."""
    names = short_names(keys)
    common = common or {}
    parts = [f"{names[k]}={format_value(values[k])}" for k in keys
             if k not in common or format_value(values[k]) != common[k]]
    if common and not any(k in common and format_value(values[k]) != common[k] for k in keys):
        parts.append(BASELINE)
    return ", ".join(parts) or "all runs"
