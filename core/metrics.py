"""Metrics a run logs from its episodes, each declared once (`EVAL_METRICS`, `TRAIN_METRICS`).

A declaration names the metric, says what its axis shows and in which unit, and gives its
producer: for an eval metric, ``(episodes, cfg) -> value`` over one evaluation's episodes
(`EvalEpisode`); for a training metric, ``(episode, cfg) -> value`` for one training
episode (`core.ipc.messages.EpisodeMsg`). A producer returning None logs nothing (a success
metric of a task without a success signal). The evaluator, the learner loop and the
analysis (which rows every figure against env steps has: ``figure=True``, in registration
order) all read these declarations; a researcher's metric is one `register` call
(`core.registry`), the built-ins below included.

Light on purpose (no torch): the analysis imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dqt.core.registry import Registry


@dataclass(frozen=True)
class EvalEpisode:
    """One greedy, noise-free evaluation episode.

    Attributes:
        ret: Undiscounted return in env-reward units (unscaled).
        length: Env steps.
        success_any: Success at any step (MetaWorld's convention).
        success_last: Success at the last env step (the DQT and QT-TDM codes').
        has_success: Whether the env reported a success flag at all.
    """

    ret: float
    length: int
    success_any: bool
    success_last: bool
    has_success: bool


@dataclass(frozen=True)
class Metric:
    """A metric's one declaration.

    Attributes:
        name: MLflow key, namespaced (``eval/...``, ``train/...``).
        label: Axis label in figures.
        unit: What one unit of the value is ("env reward", "fraction of episodes", ...).
        produce: The producer (module docstring); None from it logs nothing.
        figure: A row of every figure against env steps (rows in registration order).
        needs_success: Only a task with a success signal has it (the analysis then leaves
            its row out and says so, instead of calling it missing).
    """

    name: str
    label: str
    unit: str
    produce: Callable[..., float | None]
    figure: bool = False
    needs_success: bool = False


EVAL_METRICS: Registry[Metric] = Registry("eval metric")
TRAIN_METRICS: Registry[Metric] = Registry("training metric")

SUCCESS = "eval/success_rate"  # the AUC's metric: success under the run's eval.success convention
EVAL_RETURN = "eval/return"


def _rate(flag: str) -> Callable[[Sequence[EvalEpisode], Any], float | None]:
    def produce(episodes: Sequence[EvalEpisode], cfg: Any) -> float | None:
        if not any(e.has_success for e in episodes):
            return None
        return float(np.mean([getattr(e, flag) for e in episodes]))
    return produce


def _convention(episodes: Sequence[EvalEpisode], cfg: Any) -> float | None:
    return _rate("success_last" if cfg.eval.success == "last-step" else "success_any")(episodes, cfg)


def eval_values(episodes: Sequence[EvalEpisode], cfg: Any) -> dict[str, float]:
    """Every registered eval metric of one evaluation (those whose producer gives a value)."""
    values = {name: m.produce(episodes, cfg) for name, m in EVAL_METRICS.items()}
    return {name: float(v) for name, v in values.items() if v is not None}


def train_values(episode: Any, cfg: Any) -> dict[str, float]:
    """Every registered training metric of one training episode."""
    values = {name: m.produce(episode, cfg) for name, m in TRAIN_METRICS.items()}
    return {name: float(v) for name, v in values.items() if v is not None}


EVAL_METRICS.register(EVAL_RETURN, Metric(
    EVAL_RETURN, "eval return (full episode, env reward)", "env reward",
    lambda episodes, cfg: float(np.mean([e.ret for e in episodes])), figure=True))
EVAL_METRICS.register(SUCCESS, Metric(
    SUCCESS, "eval success", "fraction of episodes", _convention, figure=True, needs_success=True))
EVAL_METRICS.register("eval/success_last_step", Metric(
    "eval/success_last_step", "eval success, last step (the paper's)", "fraction of episodes", _rate("success_last"),
    needs_success=True))
EVAL_METRICS.register("eval/success_any_step", Metric(
    "eval/success_any_step", "eval success, any step (MetaWorld's)", "fraction of episodes", _rate("success_any"),
    needs_success=True))
EVAL_METRICS.register("eval/episode_length", Metric(
    "eval/episode_length", "eval episode length", "env steps",
    lambda episodes, cfg: float(np.mean([e.length for e in episodes]))))

TRAIN_METRICS.register("train/episode_return", Metric(
    "train/episode_return", "training episode return (noise-free, env reward)", "env reward",
    lambda msg, cfg: msg.true_return))
TRAIN_METRICS.register("train/success", Metric(
    "train/success", "training episode success", "fraction of episodes",
    lambda msg, cfg: float(msg.success) if msg.has_success else None, needs_success=True))


def figure_metrics() -> list[Metric]:
    """The eval metrics every figure against env steps draws, one row each, in order."""
    return [m for _, m in EVAL_METRICS.items() if m.figure]
