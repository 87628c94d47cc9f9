"""Optuna mode: search the spec's `search.space`; the objective is the eval success AUC.

Each trial is one configuration (base + the sampled values) trained once per seed of the
spec, each seed a child run of the sweep's parent run like any grid point; its value is the
mean over seeds of the area under the run's `search.metric` curve (default
``eval/success_rate``) over env steps, normalised by the step range (DQT figure 5): the
same `analysis.auc.budget_auc` the reports use (`sweeps.parent.success_auc`).

The study ``search/<name>/<profile>/<spec hash>`` lives in the same Optuna storage as the claim queue
(next to the MLflow store by default), so rerunning the command continues the study until
`n_trials` trials COMPLETE, and workers on other hosts pointed at the same storage share it.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from dqt.core.config import ConfigError, RunConfig
from dqt.core.tracking import resolve_tracking_uri
from dqt.sweeps.claims import (
    HeartbeatThread,
    StorageClock,
    default_storage,
    ensure_study,
    open_storage,
    reap_stale,
    study_name,
)
from dqt.sweeps.expand import Point, config_name, run_name
from dqt.sweeps.launch import EXIT_OK, Job, Launcher, SweepProgress, exit_code, run_jobs
from dqt.sweeps.liveness import Owner, claim_alive
from dqt.sweeps.parent import SweepParent, result_key, results_prefix, success_auc
from dqt.sweeps.runner import SweepOptions, end_dead_parents, point_tags
from dqt.sweeps.spec import SEED_KEY, SearchParam, Spec
from dqt.sweeps.store import Store, point_status


def suggest(trial: Any, space: Sequence[SearchParam], base: RunConfig) -> dict[str, Any]:
    """The trial's values for `space`: choices are categorical; a range is an int or float
    range after the config field's type (``learner.n_step`` int, ``learner.lr`` float)."""
    flat = base.to_flat()
    values: dict[str, Any] = {}
    for p in space:
        if p.choices is not None:
            values[p.key] = trial.suggest_categorical(p.key, list(p.choices))
        elif isinstance(flat[p.key], int) and not isinstance(flat[p.key], bool):
            values[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        else:
            values[p.key] = trial.suggest_float(p.key, p.low, p.high, log=p.log, step=p.step)
    return values


@dataclass
class _Trial:
    """A running trial: its seeds' points and how they ended."""

    trial: Any
    values: dict[str, Any]
    points: list[Point]
    pending: int
    failed: bool = False
    run_ids: dict[int, str] = field(default_factory=dict)


@dataclass
class SearchResult:
    completed: int = 0
    failed: int = 0
    interrupted: bool = False
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    parent_run_id: str | None = None
    trial_values: dict[int, tuple[str, float]] = field(default_factory=dict)  # trial -> (configuration, value)

    @property
    def exit_code(self) -> int:
        return exit_code(self.interrupted, bool(self.failed))


def run_search(spec: Spec, opts: SweepOptions | None = None) -> SearchResult:
    """Run trials until the study holds `search.n_trials` COMPLETE (or live) trials."""
    return _Search(spec, opts or SweepOptions()).run()


class _Search:
    """One worker of a search: asks the study for trials, runs each trial's seeds as points,
    tells the study each trial's AUC, and ends the sweep's parent run with the results."""

    def __init__(self, spec: Spec, opts: SweepOptions):
        import optuna

        assert spec.search is not None
        self.spec, self.opts, self.search = spec, opts, spec.search
        self.stream = opts.stream or sys.stderr
        uri = resolve_tracking_uri(opts.tracking_uri)
        storage_url = opts.storage or default_storage(uri)
        self.storage = open_storage(storage_url)
        self.clock = StorageClock(storage_url)  # heartbeats and their age on the storage's own clock
        self.name = study_name("search", spec)
        # Helpers on other hosts draw their own seed; with one shared seed they would all
        # propose the same first trials. constant_liar keeps parallel trials apart.
        sampler = optuna.samplers.TPESampler(seed=None if opts.worker else self.search.sampler_seed,
                                             constant_liar=True)
        self.study = ensure_study(self.storage, self.name, direction=self.search.direction, sampler=sampler)
        self.study_id = self.storage.get_study_id_from_name(self.name)
        self.owner = Owner.of(worker=opts.worker_id)
        self.store = Store(uri, spec.name)
        end_dead_parents(self.store, spec, self.stream)
        self.base = RunConfig.from_flat(spec.base, where=f"{spec.path}: base: ")
        self.result = SearchResult()
        self.progress = SweepProgress(spec.label, self.search.n_trials * len(spec.seeds), jobs=opts.jobs,
                                      stream=self.stream)
        self.workdir = opts.make_workdir(f"dqt-search-{spec.name}-")
        self.jobs: deque[Job] = deque()
        self.live: dict[int, _Trial] = {}
        self.keys = [p.key for p in self.search.space]
        self.parent = SweepParent(self.store, spec, self.owner, "search", tags={"optuna.study": self.name},
                                  params={"n_trials": self.search.n_trials, "direction": self.search.direction,
                                          "metric": self.search.metric, "jobs": opts.jobs})

    # ---- the loop ---------------------------------------------------------------------
    def run(self) -> SearchResult:
        launcher = Launcher(self.spec.name, self.store.uri, self.workdir, self.parent, self.opts.train_cmd)
        beats = HeartbeatThread(self.heartbeat, self.opts.heartbeat_s,
                                log=lambda line: print(f"{self.spec.label}: {line}", file=self.stream))
        beats.start()
        try:
            self.result.interrupted = run_jobs(self.next_job, launcher, self.opts.jobs, self.progress,
                                               self.opts.grace_s)
        finally:
            beats.stop()
            self.progress.close()
            for state in list(self.live.values()):  # interrupted (or our own error): these trials did not finish
                self.tell(state.trial, None)
        self.end_parent()
        self.opts.clean_up(self.workdir, kept_because="trial configs" if self.result.failed else None,
                           stream=self.stream)
        return self.result

    def budget_left(self) -> bool:
        from optuna.trial import TrialState

        now = self.clock()
        reap_stale(self.storage, self.study_id, self.opts.stale_after_s, now)
        counted = [t for t in self.storage.get_all_trials(self.study_id, deepcopy=False,
                                                          states=(TrialState.COMPLETE, TrialState.RUNNING))
                   if t.state == TrialState.COMPLETE
                   or claim_alive(t.user_attrs, t.datetime_start, self.opts.stale_after_s, now)]
        # Failed trials do not use the budget, but a space that always fails must end too.
        return len(counted) < self.search.n_trials and self.result.failed < self.search.n_trials

    def next_job(self) -> Job | None:
        while not self.jobs and self.budget_left():
            self.ask()
        return self.jobs.popleft() if self.jobs else None

    def heartbeat(self) -> None:
        now = self.clock()
        for state in list(self.live.values()):
            state.trial.set_user_attr("heartbeat", now)

    # ---- one trial --------------------------------------------------------------------
    def ask(self) -> None:
        """A new trial: its configuration, then a job per seed not already FINISHED in the store."""
        trial = self.study.ask()
        trial.set_user_attr("owner", self.owner.token)
        trial.set_user_attr("stale_after", self.opts.stale_after_s)
        trial.set_user_attr("heartbeat", self.clock())
        values = suggest(trial, self.search.space, self.base)
        try:
            config = RunConfig.from_flat(values, base=self.base,
                                         where=f"{self.spec.path}: search trial {trial.number}: ")
        except ConfigError as exc:  # e.g. a sampled pair that breaks a cross-field rule
            trial.set_user_attr("error", str(exc))
            self.tell(trial, None)
            return
        points = []
        for seed in self.spec.seeds:
            seeded = RunConfig.from_flat({SEED_KEY: seed}, base=config)
            points.append(Point(seeded, seeded.config_hash(), seed, tuple(values.items())))
        state = _Trial(trial, values, points, pending=len(points))
        trial.set_user_attr("config_hash", points[0].config_hash)
        self.live[trial.number] = state
        for point in points:
            runs = self.store.point_runs(point.key)
            if point_status(runs) == "FINISHED":  # same configuration and seed ran before: reuse it
                state.run_ids[point.seed] = next(r.run_id for r in runs if r.status == "FINISHED")
                state.pending -= 1
                continue
            self.jobs.append(self.job(state, point, self.store.resumable(runs)))
        if state.pending == 0:
            self.finish(state)

    def job(self, state: _Trial, point: Point, resume: str | None) -> Job:
        def on_exit(code: int, seconds: float) -> None:  # noqa: ARG001
            state.pending -= 1
            state.failed |= code != EXIT_OK
            if state.pending == 0:
                self.finish(state)

        return Job(point=point, name=f"trial {state.trial.number} {run_name(point, self.keys)}",
                   tags=point_tags(self.spec, self.owner, point, self.keys, **{"optuna.study": self.name,
                                                             "optuna.trial": str(state.trial.number)}),
                   resume=resume, on_exit=on_exit)

    def finish(self, state: _Trial) -> None:
        """Every seed of the trial ended: tell the study the mean AUC, or FAIL."""
        self.live.pop(state.trial.number, None)
        if state.failed:
            self.tell(state.trial, None)
            return
        aucs = []
        for point in state.points:
            run_id = state.run_ids.get(point.seed) or self.store.finished_run(point.key)
            history = self.store.metric_history(run_id, self.search.metric) if run_id else []
            if not history:
                state.trial.set_user_attr("error", f"no {self.search.metric} in run {run_id}")
                self.tell(state.trial, None)
                return
            state.run_ids[point.seed] = run_id
            aucs.append(success_auc(history, point.config.total_env_steps))
        state.trial.set_user_attr("run_ids", [state.run_ids[p.seed] for p in state.points])
        state.trial.set_user_attr("aucs", aucs)
        value = sum(aucs) / len(aucs)
        self.result.trial_values[state.trial.number] = (config_name(state.points[0], self.keys), value)
        self.tell(state.trial, value)

    def tell(self, trial: Any, value: float | None) -> None:
        from optuna.trial import TrialState

        if value is None:
            self.study.tell(trial, state=TrialState.FAIL)
            self.result.failed += 1
        else:
            self.study.tell(trial, value)
            self.result.completed += 1

    # ---- the end ----------------------------------------------------------------------
    def end_parent(self) -> None:
        """Results on the parent run: each trial's AUC at its trial number, the best one's params."""
        result, search = self.result, self.search
        best_tags, best_params = _record_best(self.study, result, search.direction, self.stream)
        result.parent_run_id = self.parent.run_id
        prefix = results_prefix(search.metric)
        results = {result_key(prefix, config): value for config, value in result.trial_values.values()}
        steps = {result_key(prefix, config): number for number, (config, _) in sorted(result.trial_values.items())}
        if result.best_value is not None:
            results[f"{prefix}/best"] = result.best_value
        self.parent.end(interrupted=result.interrupted, failed=bool(result.failed), results=results, steps=steps,
                        tags=best_tags, params=best_params,
                        counts={"trials_completed": result.completed, "trials_failed": result.failed})


def _record_best(study: Any, result: SearchResult, direction: str,
                 stream: TextIO) -> tuple[dict[str, str], dict[str, Any]]:
    """Print the best trial of the whole study; its tags and params for the parent run."""
    try:
        best = study.best_trial
    except ValueError:  # no COMPLETE trial yet
        print(f"{study.study_name}: no completed trial yet", file=stream)
        return {}, {}
    result.best_value, result.best_params = best.value, dict(best.params)
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
    print(f"{study.study_name}: best {direction[:3]} AUC {best.value:.4f} (trial {best.number}): {shown}",
          file=sys.stdout)
    tags = {"best.trial": str(best.number), "best.value": f"{best.value:.6g}",
            "best.config_hash": str(best.user_attrs.get("config_hash", "")),
            "best.run_ids": ",".join(best.user_attrs.get("run_ids", []))}
    return tags, {f"best.{key}": value for key, value in best.params.items()}


def describe(spec: Spec, storage: str | None, tracking_uri: str | None, out: TextIO) -> None:
    """The dry run of a search spec: its space, budget and how far the study got."""
    assert spec.search is not None
    search = spec.search
    print(f"{spec.label}: Optuna search, {search.n_trials} trials x {len(spec.seeds)} seeds, "
          f"{search.direction} AUC of {search.metric} (experiment '{spec.name}', nothing run)", file=out)
    for p in search.space:
        what = f"choices {list(p.choices)}" if p.choices is not None else (
            f"[{p.low}, {p.high}]" + (" log" if p.log else "") + (f" step {p.step}" if p.step else ""))
        print(f"  {p.key}: {what}", file=out)
    path = storage or _existing_default_storage(tracking_uri)
    if path is None:
        print("  study: not started", file=out)
        return
    import optuna

    name = study_name("search", spec)
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(path))
    except KeyError:
        print("  study: not started", file=out)
        return
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
    print(f"  study {name}: {counts or 'no trials'}", file=out)


def _existing_default_storage(tracking_uri: str | None) -> str | None:
    try:
        path = default_storage(resolve_tracking_uri(tracking_uri))
    except ConfigError:
        return None
    return path if Path(path).exists() else None
