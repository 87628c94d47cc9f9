"""Helpers for names a person typed: the closest known spelling, for "did you mean" hints."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


def closest(name: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice most like `name` (difflib ratio >= `cutoff`), or None."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(name: str, choices: Iterable[str], shown: Mapping[str, str] | None = None) -> str:
    """`` (did you mean 'X'?)`` for the choice closest to `name`, or ``""``.

    `shown` maps a matched choice to what the hint names instead (e.g. the full task id a
    short name stands for); a dict given as `choices` offers its keys.
    """
    match = closest(name, choices)
    if match is None:
        return ""
    return f" (did you mean '{shown.get(match, match) if shown else match}'?)"
