"""Optuna mode: search the spec's `search.space`; the objective is the eval success AUC.

Each trial is one configuration (base + the sampled values) trained once per seed of the
spec, each seed a child run of the sweep's parent run like any grid point; its value is the
mean over seeds of the area under the run's `search.metric` curve (default
``eval/success_rate``) over env steps, normalised by the step range (DQT figure 5): the
same `analysis.auc.budget_auc` the reports use (`sweeps.parent.success_auc`).

The study ``search/<name>/<profile>`` lives in the same Optuna storage as the claim queue
(next to the MLflow store by default), so rerunning the command continues the study until
`n_trials` trials COMPLETE, and workers on other hosts pointed at the same storage share it.
"""

from __future__ import annotations

import shutil
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from core.config import ConfigError, RunConfig
from core.tracking import resolve_tracking_uri
from sweeps.claims import (
    HeartbeatThread,
    StorageClock,
    default_storage,
    ensure_study,
    open_storage,
    reap_stale,
    study_name,
)
from sweeps.expand import Point, config_name, run_name
from sweeps.launch import EXIT_OK, Job, Launcher, SweepProgress, exit_code, run_jobs
from sweeps.liveness import Owner, claim_alive
from sweeps.parent import SweepParent, result_key, results_prefix, success_auc
from sweeps.runner import SweepOptions, end_dead_parents
from sweeps.spec import SEED_KEY, SearchParam, Spec
from sweeps.store import Store, point_status


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
    import optuna
    from optuna.trial import TrialState

    assert spec.search is not None
    opts = opts or SweepOptions()
    stream = opts.stream or sys.stderr
    search = spec.search
    uri = resolve_tracking_uri(opts.tracking_uri)
    storage_url = opts.storage or default_storage(uri)
    storage = open_storage(storage_url)
    clock = StorageClock(storage_url)  # heartbeats and their age on the storage's own clock
    name = study_name("search", spec)
    # Helpers on other hosts draw their own seed; with one shared seed they would all
    # propose the same first trials. constant_liar keeps parallel trials apart.
    sampler = optuna.samplers.TPESampler(seed=None if opts.worker else search.sampler_seed, constant_liar=True)
    study = ensure_study(storage, name, direction=search.direction, sampler=sampler)
    study_id = storage.get_study_id_from_name(name)
    owner = Owner.of(worker=opts.worker_id)
    store = Store(uri, spec.name)
    end_dead_parents(store, spec, stream)
    base = RunConfig.from_flat(spec.base, where=f"{spec.path}: base: ")
    result = SearchResult()
    progress = SweepProgress(spec.label, search.n_trials * len(spec.seeds), jobs=opts.jobs, stream=stream)
    workdir = opts.make_workdir(f"dqt-search-{spec.name}-")
    jobs: deque[Job] = deque()
    live: dict[int, _Trial] = {}

    keys = [p.key for p in search.space]
    parent = SweepParent(store, spec, owner, "search", tags={"optuna.study": name},
                         params={"n_trials": search.n_trials, "direction": search.direction,
                                 "metric": search.metric, "jobs": opts.jobs})

    def budget_left() -> bool:
        now = clock()
        reap_stale(storage, study_id, opts.stale_after_s, now)
        counted = [t for t in storage.get_all_trials(study_id, deepcopy=False,
                                                     states=(TrialState.COMPLETE, TrialState.RUNNING))
                   if t.state == TrialState.COMPLETE
                   or claim_alive(t.user_attrs, t.datetime_start, opts.stale_after_s, now)]
        # Failed trials do not use the budget, but a space that always fails must end too.
        return len(counted) < search.n_trials and result.failed < search.n_trials

    def next_job() -> Job | None:
        while not jobs and budget_left():
            _ask()
        return jobs.popleft() if jobs else None

    def _ask() -> None:
        trial = study.ask()
        trial.set_user_attr("owner", owner.token)
        trial.set_user_attr("heartbeat", clock())
        values = suggest(trial, search.space, base)
        try:
            config = RunConfig.from_flat(values, base=base, where=f"{spec.path}: search trial {trial.number}: ")
        except ConfigError as exc:  # e.g. a sampled pair that breaks a cross-field rule
            trial.set_user_attr("error", str(exc))
            _tell(trial, None)
            return
        points = []
        for seed in spec.seeds:
            seeded = RunConfig.from_flat({SEED_KEY: seed}, base=config)
            points.append(Point(seeded, seeded.config_hash(), seed, tuple(values.items())))
        state = _Trial(trial, values, points, pending=len(points))
        trial.set_user_attr("config_hash", points[0].config_hash)
        live[trial.number] = state
        for point in points:
            runs = store.point_runs(point.key)
            if point_status(runs) == "FINISHED":  # same configuration and seed ran before: reuse it
                state.run_ids[point.seed] = next(r.run_id for r in runs if r.status == "FINISHED")
                state.pending -= 1
                continue
            jobs.append(_job(state, point, store.resumable(runs)))
        if state.pending == 0:
            _finish(state)

    def _job(state: _Trial, point: Point, resume: str | None) -> Job:
        def on_exit(code: int, seconds: float) -> None:  # noqa: ARG001
            state.pending -= 1
            state.failed |= code != EXIT_OK
            if state.pending == 0:
                _finish(state)

        return Job(point=point, name=f"trial {state.trial.number} {run_name(point, keys)}",
                   tags={"sweep": spec.name, "profile": spec.profile or "", "dqt.role": "point",
                         "dqt.worker": owner.token, "optuna.study": name, "optuna.trial": str(state.trial.number)},
                   resume=resume, on_exit=on_exit)

    def _finish(state: _Trial) -> None:
        live.pop(state.trial.number, None)
        if state.failed:
            _tell(state.trial, None)
            return
        aucs = []
        for point in state.points:
            run_id = state.run_ids.get(point.seed) or store.finished_run(point.key)
            history = store.metric_history(run_id, search.metric) if run_id else []
            if not history:
                state.trial.set_user_attr("error", f"no {search.metric} in run {run_id}")
                _tell(state.trial, None)
                return
            state.run_ids[point.seed] = run_id
            aucs.append(success_auc(history, point.config.total_env_steps))
        state.trial.set_user_attr("run_ids", [state.run_ids[p.seed] for p in state.points])
        state.trial.set_user_attr("aucs", aucs)
        value = sum(aucs) / len(aucs)
        result.trial_values[state.trial.number] = (config_name(state.points[0], keys), value)
        _tell(state.trial, value)

    def _tell(trial: Any, value: float | None) -> None:
        if value is None:
            study.tell(trial, state=TrialState.FAIL)
            result.failed += 1
        else:
            study.tell(trial, value)
            result.completed += 1

    def heartbeat() -> None:
        now = clock()
        for state in list(live.values()):
            state.trial.set_user_attr("heartbeat", now)

    launcher = Launcher(spec.name, uri, workdir, parent, opts.train_cmd)
    beats = HeartbeatThread(heartbeat, opts.heartbeat_s, log=lambda line: print(f"{spec.label}: {line}", file=stream))
    beats.start()
    try:
        result.interrupted = run_jobs(next_job, launcher, opts.jobs, progress, opts.grace_s)
    finally:
        beats.stop()
        progress.close()
        for state in list(live.values()):  # interrupted (or our own error): these trials did not finish
            _tell(state.trial, None)
    best_tags, best_params = _record_best(study, result, search.direction, stream)
    result.parent_run_id = parent.run_id
    prefix = results_prefix(search.metric)
    results = {result_key(prefix, config): value for config, value in result.trial_values.values()}
    steps = {result_key(prefix, config): number for number, (config, _) in sorted(result.trial_values.items())}
    if result.best_value is not None:
        results[f"{prefix}/best"] = result.best_value
    parent.end(interrupted=result.interrupted, failed=bool(result.failed), results=results, steps=steps,
               tags=best_tags, params=best_params,
               counts={"trials_completed": result.completed, "trials_failed": result.failed})
    if not result.failed and not opts.keep_logs and opts.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif result.failed:
        print(f"  logs and trial configs kept in {workdir}", file=stream)
    return result


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
