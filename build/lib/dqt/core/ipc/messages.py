"""What the run's processes say to each other (docs/ARCHITECTURE.md).

Episodes themselves travel through shared memory (`core.ipc.transport`); these messages carry
only indices and a few numbers, so they stay small and cheap to pickle. Frozen slotted
dataclasses pickle as their field values, about as compactly as the tuples they replace,
and let the receiver dispatch on the type instead of on positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class EpisodeMsg:
    """Agent -> learner: one finished episode is waiting in shared-memory slot (lane, slot)."""

    agent: int
    pid: int  # the agent's OS process: a restarted agent shows up as a new pid in agents.json
    lane: int
    slot: int
    length: int  # decisions
    terminated: bool  # False: truncated, so the learner bootstraps the last step
    true_return: float  # in env-reward units (unscaled) and before reward noise: train/episode_return
    success: bool  # under the run's eval.success convention
    has_success: bool  # the env reported a success flag at all
    weights_updates: int  # learner update count of the weights the episode acted with (policy lag)
    epsilon: float
    t_start: float  # wall clock (time.time), comparable across processes
    t_end: float


@dataclass(frozen=True, slots=True)
class AgentDone:
    """Agent -> learner: every lane of the agent used its quota; the agent exits next."""

    agent: int


AgentMsg = EpisodeMsg | AgentDone


@dataclass(frozen=True, slots=True)
class SlotFree:
    """Learner -> agent: the learner has copied the slot, the agent may fill it again."""

    lane: int
    slot: int


@dataclass(frozen=True, slots=True)
class EvalRequest:
    """Learner -> evaluator: evaluate these weights and report them at this env step."""

    env_steps: int
    weights: np.ndarray  # flat float32, `core.ipc.transport.load_flat` order


@dataclass(frozen=True, slots=True)
class EvalResult:
    """Evaluator -> learner."""

    env_steps: int
    values: dict[str, float]  # every registered eval metric with a value (`core.metrics.eval_values`)
    has_success: bool  # the task reported a success flag in these episodes
