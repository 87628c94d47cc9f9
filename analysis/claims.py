"""The paper's claims beside this toolkit's numbers: one row per claim, with a verdict.

Each claim compares two arms (sets of runs): the arm the paper says does better against the
one it says does worse, on two measures: the success AUC (the paper's figure 5 measure) and
the eval-return AUC (the mean full-episode eval return over the budget, the top row of the
paper's figures 2 and 4), which moves long before a short budget shows any success.  Per
measure, the verdict comes from a 95 % bootstrap CI of the difference of the arms' means
(seeds resampled within each arm, `difference_ci`):

- **agree**: the CI lies above 0, in the paper's direction;
- **disagree**: the CI lies below 0;
- **this budget cannot tell**: the CI holds 0 -- or, for success, neither arm ever
  succeeds, so the budget measured nothing (the AUCs are all 0).

What the paper claims (DQT section 6 and the captions of figures 2, 4 and 5):

- figure 2: "linear decay scaled by n fails to converge under all tested configurations",
  "linear decay with log(n) ... breaks down as the number of agents increases beyond 7",
  "plain linear decay and log curve decay yield consistent performance across agent counts".
  Rows: per agent count n > 1, which schedule wins here, and whether the better of linear
  and log-curve beats linear-n (and linear-log-n beyond 7 agents).
- figure 4: without the median QT "exhibits significant degradation under both high-mean
  and high-variance noise"; with it "the model becomes less sensitive to noise variance, but
  remains sensitive to changes in noise mean".  Rows: the median against no median at each
  sigma; the noise-free reference against the median at each mu; the reference against no
  median at the largest sigma and mu.
- figure 5: the median is "beneficial for other tasks": the median against no median, per task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dqt.analysis.labels import format_value
from dqt.analysis.plotting import LR_KEY, ROBUST_KEY, TASK_KEY, where
from dqt.analysis.selection import ExperimentRuns
from dqt.analysis.stats import difference_ci

AGREE, DISAGREE, CANNOT_TELL = "agree", "disagree", "this budget cannot tell"
AGENTS_KEY = "trainer.num_agents"
MEAN_KEY, STD_KEY = "noise.mean", "noise.std"


SUCCESS_AUC, RETURN_AUC = "success", "return"
# The measures a claim is judged on: the paper's success AUC, and the mean eval return over the
# budget (the AUC of eval/return), which shows learning long before the first success.
MEASURES = {SUCCESS_AUC: "success AUC", RETURN_AUC: "eval-return AUC"}


@dataclass(frozen=True)
class Claim:
    """One row of the claims table: what the paper says, and per measure our numbers and verdict."""

    figure: str  # "2", "4" or "5"
    paper: str  # what the paper says, in a few words
    ours: dict[str, str]  # measure -> the two arms' means and the difference's CI
    verdicts: dict[str, str]  # measure -> AGREE, DISAGREE or CANNOT_TELL

    @property
    def verdict(self) -> str:
        """The verdict on the paper's own measure, the success AUC."""
        return self.verdicts[SUCCESS_AUC]


@dataclass(frozen=True)
class Arm:
    """A named set of runs."""

    name: str
    run_ids: tuple[str, ...]


@dataclass(frozen=True)
class Judge:
    """Per measure, every run's AUC (`analysis.auc.AucTable.per_run`), and the bootstrap seed."""

    per_run: dict[str, dict[str, float]]
    seed: int = 0

    def values(self, measure: str, arm: Arm) -> np.ndarray:
        table = self.per_run.get(measure, {})
        return np.array([table[r] for r in arm.run_ids if r in table], dtype=float)


def arm(data: ExperimentRuns, name: str, **match: object) -> Arm:
    """The runs of every configuration whose params equal `match` (a key absent from the
    configurations is the experiment's one shared value: it matches)."""
    configs = data.configs
    for key, value in match.items():
        configs = where(configs, key, value)
    return Arm(name, tuple(r for ids in configs["run_ids"] for r in ids))


def judge_values(better: Arm, worse: Arm, a: np.ndarray, b: np.ndarray, *, never_zero: bool,
                 seed: int = 0) -> tuple[str, str]:
    """(our numbers, verdict) for the claim that `better`'s values exceed `worse`'s."""
    if a.size == 0 or b.size == 0:
        return f"no runs of {better.name if a.size == 0 else worse.name}", CANNOT_TELL
    diff, low, high = difference_ci(a, b, seed=seed)
    ours = (f"{better.name} {np.mean(a):.3g} vs {worse.name} {np.mean(b):.3g} "
            f"(difference {diff:+.3g}, 95% CI [{low:+.3g}, {high:+.3g}]; {a.size} vs {b.size} seeds)")
    if never_zero and not (np.any(a > 0) or np.any(b > 0)):
        return ours + "; neither arm ever succeeds", CANNOT_TELL
    if not (np.isfinite(low) and np.isfinite(high)):
        return ours + "; too few seeds for a CI", CANNOT_TELL
    return ours, AGREE if low > 0 else DISAGREE if high < 0 else CANNOT_TELL


def compare(figure: str, paper: str, better: Arm, worse: Arm, judge: Judge) -> Claim:
    """The claim that `better` does better than `worse`, judged on our runs by every measure."""
    ours, verdicts = {}, {}
    for measure in MEASURES:
        ours[measure], verdicts[measure] = judge_values(
            better, worse, judge.values(measure, better), judge.values(measure, worse),
            never_zero=measure == SUCCESS_AUC, seed=judge.seed)
    return Claim(figure, paper, ours, verdicts)


def _values(data: ExperimentRuns, key: str) -> list:
    if key in data.configs.columns:
        return sorted(pd.unique(data.configs[key]), key=lambda v: (isinstance(v, str), v))
    if key in data.runs.columns and len(data.runs):
        return [data.runs[key].iloc[0]]
    return []


def figure2_claims(data: ExperimentRuns, judge: Judge) -> list[Claim]:
    """Per agent count n > 1: which schedule wins, and linear / log-curve against the scaled ones."""
    claims = []
    schedules = [s for s in _values(data, LR_KEY) if s is not None]
    for n in [n for n in _values(data, AGENTS_KEY) if int(n) > 1]:
        arms = {s: arm(data, f"{s} (n={n})", **{AGENTS_KEY: n, LR_KEY: s}) for s in schedules}
        claims.append(_winner(n, arms, judge))
        steady = [s for s in ("linear", "log-curve") if s in arms]
        if not steady:
            continue
        top = max(steady, key=lambda s: float(np.mean(judge.values(SUCCESS_AUC, arms[s])) if
                                              judge.values(SUCCESS_AUC, arms[s]).size else -1))
        if "linear-n" in arms:
            claims.append(compare("2", f"n={n}: linear-n fails to converge (worse than linear / log-curve)",
                                  arms[top], arms["linear-n"], judge))
        if "linear-log-n" in arms and int(n) > 7:
            claims.append(compare("2", f"n={n}: linear-log-n breaks down beyond 7 agents",
                                  arms[top], arms["linear-log-n"], judge))
    return claims


def _winner(n: object, arms: dict[str, Arm], judge: Judge) -> Claim:
    """Which schedule has the highest mean, per measure: agree when it is one the paper
    recommends (linear, log-curve), disagree when it is linear-n; with every success AUC 0
    nothing was measured."""
    ours, verdicts = {}, {}
    for measure in MEASURES:
        means = {s: float(np.mean(v)) for s, a in arms.items() if (v := judge.values(measure, a)).size}
        if not means:
            ours[measure], verdicts[measure] = "no runs", CANNOT_TELL
            continue
        best = max(means, key=means.__getitem__)
        ours[measure] = f"highest mean: {best} (" + ", ".join(
            f"{s} {m:.3g}" for s, m in sorted(means.items(), key=lambda kv: -kv[1])) + ")"
        if measure == SUCCESS_AUC and not any(m > 0 for m in means.values()):
            verdicts[measure] = CANNOT_TELL
        else:
            verdicts[measure] = AGREE if best in ("linear", "log-curve") else \
                DISAGREE if best == "linear-n" else CANNOT_TELL
    return Claim("2", f"n={n}: linear or log-curve is the schedule to use; linear-n fails", ours, verdicts)


def _robust_names(data: ExperimentRuns) -> list:
    return [r for r in _values(data, ROBUST_KEY) if r not in (None, "none")]


def figure4_claims(data: ExperimentRuns, judge: Judge) -> list[Claim]:
    """The median against no median as sigma grows (mu 0) and as mu grows (sigma fixed)."""
    claims = []
    ref = arm(data, "noise-free", **{MEAN_KEY: 0.0, STD_KEY: 0.0})
    stds = [s for s in _values(data, STD_KEY) if float(s) > 0]
    means = [m for m in _values(data, MEAN_KEY) if float(m) > 0]
    for robust in _robust_names(data):
        for s in stds:
            noisy = arm(data, f"noisy σ={format_value(s)}", **{MEAN_KEY: 0.0, STD_KEY: s, ROBUST_KEY: "none"})
            rob = arm(data, f"{robust} σ={format_value(s)}", **{MEAN_KEY: 0.0, STD_KEY: s, ROBUST_KEY: robust})
            if noisy.run_ids and rob.run_ids:
                claims.append(compare("4", f"μ=0, σ={format_value(s)}: the {robust} makes QT less sensitive "
                                           "to the noise's spread", rob, noisy, judge))
        for m in means:
            for s in stds:
                rob = arm(data, f"{robust} μ={format_value(m)}", **{MEAN_KEY: m, STD_KEY: s, ROBUST_KEY: robust})
                if rob.run_ids and ref.run_ids:
                    claims.append(compare("4", f"μ={format_value(m)}, σ={format_value(s)}: the {robust} stays "
                                               "sensitive to the noise's mean (below the noise-free runs)",
                                          ref, rob, judge))
    for key, values, fixed in ((STD_KEY, stds, {MEAN_KEY: 0.0}), (MEAN_KEY, means, {})):
        if not values or not ref.run_ids:
            continue
        top = max(values, key=float)
        symbol = "σ" if key == STD_KEY else "μ"
        noisy = arm(data, f"noisy {symbol}={format_value(top)}", **{**fixed, key: top, ROBUST_KEY: "none"})
        if noisy.run_ids:
            what = "variance" if key == STD_KEY else "mean"
            claims.append(compare("4", f"without the median, high-{what} noise degrades QT "
                                       f"({symbol}={format_value(top)})", ref, noisy, judge))
    return claims


def figure5_claims(data: ExperimentRuns, judge: Judge) -> list[Claim]:
    """The median against no median on every task."""
    claims = []
    for task in _values(data, TASK_KEY):
        for robust in _robust_names(data):
            rob = arm(data, robust, **{TASK_KEY: task, ROBUST_KEY: robust})
            noisy = arm(data, "noisy", **{TASK_KEY: task, ROBUST_KEY: "none"})
            claims.append(compare("5", f"{task}: the {robust} reward has a higher AUC than the noisy one",
                                  rob, noisy, judge))
    return claims


def markdown_claims(claims: Sequence[Claim]) -> str:
    """The claims as a GitHub Markdown table, one pair of columns per measure."""
    head = ["figure", "the paper"] + [c for m in MEASURES.values() for c in (f"ours: {m}", "verdict")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in claims:
        cells = [c.figure, c.paper] + [x for m in MEASURES for x in (c.ours[m], f"**{c.verdicts[m]}**")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
