"""Named extension points: env families, noise kinds, robust estimators, metrics.

Each is a `Registry`; the built-ins register themselves exactly as a researcher's code does:

    from dqt.core.noise import NOISE_KINDS
    NOISE_KINDS.register("laplace", NoiseKind("Laplace(μ, b)", lambda rng, shape, cfg: ...))

A run's processes (the trainer, its agents and evaluator, a sweep's trainers) must all know an
extension, so it lives in a module that every process imports: name such modules in the
environment variable ``DQT_PLUGINS`` (comma-separated module names), or declare them as
``dqt.plugins`` entry points of an installed package. They are imported the first time any
registry is asked for a name, in every process (agents are spawned, and import them again).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from dqt.core.config import ConfigError
from dqt.core.names import did_you_mean

T = TypeVar("T")
PLUGINS_ENV = "DQT_PLUGINS"
PLUGINS_GROUP = "dqt.plugins"
_loaded = False


def load_plugins() -> None:
    """Import the modules of ``$DQT_PLUGINS`` and of the ``dqt.plugins`` entry points, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # set first: a plugin that registers things asks the registries, which call us
    for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(","))):
        importlib.import_module(name)
    for ep in entry_points(group=PLUGINS_GROUP):
        ep.load()


class Registry(Generic[T]):
    """Items of one kind by name, in registration order.

    Args:
        kind: What the items are, for messages ("noise kind", "env family", ...).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None) -> T | Callable[[T], T]:
        """Add `item` under `name`; without `item`, a decorator that adds what it decorates.
        A name is registered once: a second registration is a mistake, not an override."""
        def add(value: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered already")
            self._items[name] = value
            return value
        return add if item is None else add(item)

    def get(self, name: str) -> T:
        """The item called `name`; a one-line ConfigError naming the known ones otherwise."""
        load_plugins()
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} '{name}'{did_you_mean(name, self._items)} "
                              f"(known: {', '.join(self._items)})")
        return self._items[name]

    def names(self) -> tuple[str, ...]:
        load_plugins()
        return tuple(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        load_plugins()
        return iter(list(self._items.items()))

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._items
