"""``reports/paper/``: the paper's figures 2, 4 and 5 from one profile's runs, and a README
that sets the paper's claims beside ours.

`build_paper` writes, for the experiments ``agents`` (figure 2), ``noise`` (figure 4) and
``tasks`` (figure 5), each one's report (`analysis.report.build_report`: figures, summary.csv,
report.md) into ``<out>/paper/<experiment>/``, then ``<out>/paper/README.md`` with

- the commands that made the runs and this folder;
- the budget: per experiment the runs, seeds, tasks, env steps, model and learner, and the
  wall-clock span of its runs, beside the paper's set-up;
- which task stood in for which (the profile's own reason, from its sweep's parent run);
- the claims table (`analysis.claims`) and what this budget cannot show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from dqt.analysis.auc import auc_table
from dqt.analysis.claims import (
    RETURN_AUC,
    SUCCESS_AUC,
    Claim,
    Judge,
    figure2_claims,
    figure4_claims,
    figure5_claims,
    markdown_claims,
)
from dqt.analysis.labels import format_value
from dqt.analysis.load import EVAL_RETURN
from dqt.analysis.report import BOOTSTRAP_RESAMPLES, ReportResult, build_report, markdown_auc_table
from dqt.analysis.store import find_experiment, latest_parent_run
from dqt.core.config import ConfigError

PAPER_TASKS = ("door-unlock-v3", "hammer-v3", "reach-wall-v3", "plate-slide-v3")
PAPER_SEEDS = 6
PAPER_STEPS = 300_000


@dataclass(frozen=True)
class PaperFigure:
    """One figure of the paper and the experiment (sweep spec) that reproduces it."""

    number: str
    experiment: str
    figure: str  # our figure of it (report file name)
    what: str
    paper_setup: str
    paper_tasks: tuple[str, ...]


FIGURES = (
    PaperFigure("2", "agents", "agents", "LR schedule x agent count",
                "door-unlock; n in {1, 4, 7, 11} agents, each running 300k env steps; learner batch n x 512; "
                "4 LR schedules; 6 seeds", PAPER_TASKS[:1]),
    PaperFigure("4", "noise", "noise", "reward noise N(μ, σ²), noisy vs median-of-100",
                "door-unlock; 1 agent, 300k env steps; μ = 0 with σ in {0.1, 1, 5, 10}, σ = 1 with μ in "
                "{1, 10, 14, 18, 20}, each with and without the median; 6 seeds", PAPER_TASKS[:1]),
    PaperFigure("5", "tasks", "tasks", "success AUC per task, noisy vs median",
                "hammer, reach-wall, door-unlock, plate-slide; 1 agent, 300k env steps (the caption says "
                "600k); noisy vs median; 6 seeds", PAPER_TASKS),
)


def _one(runs: pd.DataFrame, key: str) -> str:
    """A param's value(s) over the runs: "v" or "v1, v2" (sorted), "–" when absent."""
    if key not in runs.columns:
        return "–"
    values = sorted({format_value(v) for v in runs[key].dropna()}, key=lambda v: (len(v), v))
    return ", ".join(values) or "–"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def budget_rows(result: ReportResult) -> dict[str, str]:
    """What one experiment's runs spent, from their params and times."""
    runs = result.data.runs
    span = (runs["end_time"].max() - runs["start_time"].min()) / 1000 if len(runs) else float("nan")
    per_agent = _one(runs, "trainer.budget") == "per-agent"
    return {
        "runs": f"{len(runs)} ({len(result.data.configs)} configurations x "
                f"{', '.join(map(str, sorted(set(result.data.configs['seeds']))))} seeds)",
        "tasks": _one(runs, "trainer.task"),
        "agents": _one(runs, "trainer.num_agents"),
        "env steps per run": (f"{_one(runs, 'trainer.train_steps')} per agent (budget per-agent)" if per_agent
                              else f"{_one(runs, 'trainer.train_steps')} in all"),
        "model (width, layers, bins)": f"{_one(runs, 'model.embed_dim')}, {_one(runs, 'model.num_layers')}, "
                                       f"{_one(runs, 'model.num_bins')}",
        "batch (x agents)": _one(runs, "learner.batch_size")
                            + (" x n" if _one(runs, "learner.batch_per_agent") == "True" else ""),
        "base LR": _one(runs, "learner.lr") + (" / n" if _one(runs, "learner.lr_divided_by_agents") == "True"
                                               else ""),
        "updates per decision": _one(runs, "learner.updates_per_step") + (" of one agent" if per_agent else ""),
        "eval": f"every {_one(runs, 'eval.every')} env steps, {_one(runs, 'eval.episodes')} episodes to the time "
                f"limit; {result.data.success_label}",
        "goals": _one(runs, "env.goals"),
        "wall clock (first start to last end)": _hours(span) if np.isfinite(span) else "–",
    }


def profile_note(client: MlflowClient, tracking_uri: str, result: ReportResult) -> str:
    """The profile's own description (why this task, this budget), from its sweep's parent run."""
    exp = find_experiment(client, result.experiment, tracking_uri)
    parent = latest_parent_run(client, exp.experiment_id, result.data.profile)
    note = parent.data.tags.get("mlflow.note.content", "") if parent is not None else ""
    return " ".join(note.split())


def cannot_show(results: dict[str, ReportResult]) -> list[str]:
    """Plain sentences on what these runs cannot tell, compared with the paper's set-up."""
    out = []
    for fig in FIGURES:
        result = results.get(fig.experiment)
        if result is None:
            out.append(f"Figure {fig.number}: no runs, so nothing.")
            continue
        runs = result.data.runs
        steps = pd.to_numeric(runs.get("trainer.train_steps"), errors="coerce").max()
        seeds = int(result.data.configs["seeds"].min()) if len(result.data.configs) else 0
        tasks = sorted({str(t).removesuffix("-v3") for t in runs.get("trainer.task", pd.Series(dtype=str))})
        paper_tasks = [t.removesuffix("-v3") for t in fig.paper_tasks]
        parts = [f"{steps / PAPER_STEPS:.0%} of the paper's 300k env steps" if np.isfinite(steps) else None,
                 f"{seeds} seeds an arm (the paper: {PAPER_SEEDS})",
                 None if set(tasks) <= set(paper_tasks) else f"{', '.join(tasks)} in place of "
                 f"{', '.join(paper_tasks)}"]
        if "any" in result.data.success_label:
            parts.append("success scored at any step (the paper: at the last step; both are logged)")
        if fig.experiment == "agents":
            counts = sorted({int(n) for n in pd.to_numeric(runs.get("trainer.num_agents"), errors="coerce").dropna()})
            parts.append(f"agent counts {', '.join(map(str, counts))} (the paper: 1, 4, 7, 11; "
                         "the beyond-7 claim needs n > 7)")
        text = "; ".join(p for p in parts if p)
        out.append(f"Figure {fig.number}: {text}. Curves that have not levelled off by the end of the budget "
                   "say which arm learns faster, not where it ends up.")
    return out


def claims_summary(claims: Sequence[Claim]) -> str:
    """One sentence per figure: how many of its claims each measure agrees with, and so on."""
    from dqt.analysis.claims import AGREE, CANNOT_TELL, DISAGREE, MEASURES

    lines = []
    for fig in FIGURES:
        mine = [c for c in claims if c.figure == fig.number]
        if not mine:
            continue
        parts = []
        for measure, name in MEASURES.items():
            counts = {v: sum(c.verdicts[measure] == v for c in mine) for v in (AGREE, DISAGREE, CANNOT_TELL)}
            parts.append(f"by {name}, {counts[AGREE]} agree, {counts[DISAGREE]} disagree, "
                         f"{counts[CANNOT_TELL]} cannot tell")
        lines.append(f"- Figure {fig.number}, {len(mine)} claims: " + "; ".join(parts) + ".")
    return "\n".join(lines)


def _convention_note(results: dict[str, ReportResult]) -> str:
    """Where this profile scores success otherwise than the paper, say so up front."""
    anys = [name for name, r in results.items() if "any" in r.data.success_label]
    if not anys:
        return ""
    return (f" This profile's {', '.join(f'`{n}`' for n in anys)} runs score success at any step of the episode "
            "instead (MetaWorld's convention; both are logged), as the budget table says.")


def render_readme(results: dict[str, ReportResult], claims: Sequence[Claim], *, profile: str | None,
                  tracking_uri: str, notes: dict[str, str], missing: dict[str, str]) -> str:
    p = profile or "quick"
    out = [f"# The paper's figures 2, 4 and 5, profile `{p}`", ""]
    out += ["Reproduced from this toolkit's own runs of the specs `sweeps/agents.yaml` (figure 2), "
            "`sweeps/noise.yaml` (figure 4) and `sweeps/tasks.yaml` (figure 5), under the paper's set-up "
            "(docs/BACKGROUND.md): action repeat 2, 200-env-step episodes, reward 0.5 x the sum, noise drawn "
            "before that scale, a fresh goal at every reset, evaluation episodes run to the time limit and "
            "scored by success at the last step, warm-up in decisions." + _convention_note(results), ""]
    out += ["## Commands", "", "From a fresh clone (the store survives interruptions: rerun the same command and "
            "every finished run is skipped, every interrupted one resumed):", "", "```bash",
            f"make paper PROFILE={p}        # the three sweeps below, then dqt paper", "```", "",
            "which runs", "", "```bash"]
    for fig in FIGURES:
        out.append(f"dqt sweep sweeps/{fig.experiment}.yaml --profile {p} --jobs 3 --tracking-uri {tracking_uri}")
    out += [f"dqt paper --profile {p} --tracking-uri {tracking_uri}   # this folder", "```", ""]
    out += ["## Claims", "", "Each row compares two arms, the paper's better arm first, on the success AUC "
            "(area under the eval success curve over the budget, 0-1: the paper's measure) and on the "
            "eval-return AUC (the mean full-episode eval return over the budget, in env reward: it moves "
            "long before a short budget shows success). Verdict per measure from a 95 % bootstrap CI of the "
            "difference of the arms' means over seeds: **agree** when it lies above 0, **disagree** below 0, "
            "**this budget cannot tell** when it holds 0 (or, for success, neither arm ever succeeds).", ""]
    out += [claims_summary(claims), "", markdown_claims(claims) if claims else "No claim could be checked: no runs.",
            ""]
    out += ["## What this budget cannot show", ""]
    out += [f"- {line}" for line in cannot_show(results)]
    out += ["- The paper's own scale is `make paper PROFILE=paper JOBS=4` on a GPU machine: the paper's tasks, "
            "300k env steps, 6 seeds, agent counts 1, 4, 7 and 11 (about 260 runs).", ""]
    out += ["## Budget", ""]
    rows = {fig.experiment: budget_rows(results[fig.experiment]) for fig in FIGURES if fig.experiment in results}
    if rows:
        keys = list(next(iter(rows.values())))
        head = [f"figure {fig.number} (`{fig.experiment}`)" for fig in FIGURES if fig.experiment in rows]
        out += ["| | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
        out += [f"| {k} | " + " | ".join(rows[e][k] for e in rows) + " |" for k in keys]
        out += [""]
    for fig in FIGURES:
        out += [f"## Figure {fig.number}: {fig.what}", ""]
        out += [f"- The paper: {fig.paper_setup}."]
        if fig.experiment not in results:
            out += [f"- Not reproduced here: {missing.get(fig.experiment, 'no runs')}.", ""]
            continue
        result = results[fig.experiment]
        if notes.get(fig.experiment):
            out += [f"- This profile: {notes[fig.experiment]}"]
        out += [f"- Full report: [{fig.experiment}/report.md]({fig.experiment}/report.md).", ""]
        if fig.figure in result.figures:
            out += [f"![figure {fig.number}]({fig.experiment}/{fig.figure}.png)", ""]
        out += [f"![success per configuration]({fig.experiment}/success.png)", ""]
        out += [markdown_auc_table(result.auc, result.data.varied), ""]
    return "\n".join(out)


def build_paper(tracking_uri: str, out_root: Path, *, profile: str | None = None, cache_dir: Path | None = None,
                seed: int = 0, log_artifacts: bool = True, client: MlflowClient | None = None) -> Path:
    """Write ``out_root/paper/``; returns the README's path. An experiment without runs of the
    profile is reported as missing; with none of the three there is nothing to write (ConfigError)."""
    out_dir = Path(out_root) / "paper"
    results: dict[str, ReportResult] = {}
    missing: dict[str, str] = {}
    for fig in FIGURES:
        try:
            results[fig.experiment] = build_report(fig.experiment, tracking_uri, out_dir, cache_dir=cache_dir,
                                                   profile=profile, seed=seed, log_artifacts=log_artifacts,
                                                   client=client)
        except ConfigError as exc:
            missing[fig.experiment] = str(exc)
    if not results:
        raise ConfigError(f"paper: none of the experiments {', '.join(f.experiment for f in FIGURES)} has runs "
                          f"of profile '{profile or 'the latest'}' in {tracking_uri} ({'; '.join(missing.values())})")
    claims: list[Claim] = []
    for experiment, make in (("agents", figure2_claims), ("noise", figure4_claims), ("tasks", figure5_claims)):
        if experiment in results:
            result = results[experiment]
            returns = auc_table(result.data, metric=EVAL_RETURN, n_resamples=BOOTSTRAP_RESAMPLES, seed=seed)
            judge = Judge({SUCCESS_AUC: result.auc.per_run, RETURN_AUC: returns.per_run}, seed)
            claims += make(result.data, judge)
    first = next(iter(results.values()))
    client = client or MlflowClient(tracking_uri)
    notes = {e: profile_note(client, tracking_uri, r) for e, r in results.items()}
    readme = out_dir / "README.md"
    readme.write_text(render_readme(results, claims, profile=profile or first.data.profile, tracking_uri=tracking_uri,
                                    notes=notes, missing=missing))
    return readme
