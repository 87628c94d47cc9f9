"""This toolkit's version, recorded with every run (tag ``dqt.version``) so a store that mixes
runs of several versions says so (`dqt sweep`, docs/SWEEPS.md)."""

from __future__ import annotations


def toolkit_version() -> str:
    """The installed package's version, or "unknown" when run from a tree that is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dqt")
    except PackageNotFoundError:
        return "unknown"
