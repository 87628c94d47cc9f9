"""Learner checkpoints: everything needed to continue a run (the run artifact `checkpoint/`, docs/CONTRACTS.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(path: str | Path, learner_state: dict, env_steps: int, extra: dict[str, Any] | None = None) -> Path:
    """Atomically write a checkpoint (a crash mid-write never leaves a torn file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"learner": learner_state, "env_steps": env_steps, **(extra or {})}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=device, weights_only=False)
