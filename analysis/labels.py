"""What a configuration is called in legends, tables and report.md.

A label names the params that vary across an experiment's runs with their values, e.g.
``"agents=4, LR=linear"``: the params the paper varies by its symbols (`PRETTY_NAMES`), any
other param by the last part of its dotted key (the whole key when two share that part).
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


def config_label(values: Mapping[str, Any], keys: Sequence[str]) -> str:
    """``"agents=4, LR=linear"`` from a run's values of `keys`; "all runs" when none vary."""
    names = short_names(keys)
    return ", ".join(f"{names[k]}={format_value(values[k])}" for k in keys) or "all runs"
