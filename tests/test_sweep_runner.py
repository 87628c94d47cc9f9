"""The sweep runner against a stand-in `dqt train` (tests/fake_train.py).

Covers the MLflow contract (parent and child runs), skipping FINISHED points, re-running
failed ones, resuming a run with a checkpoint, and Ctrl-C / SIGTERM leaving no process behind.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import fake_train as fake
import pytest
from conftest import alive

from dqt.core.tracking import ensure_store
from dqt.sweeps.expand import expand
from dqt.sweeps.runner import SweepOptions, run_sweep
from dqt.sweeps.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def make_spec(tmp_path: Path, means: list[float], seeds: int = 1) -> Path:
    path = tmp_path / "demo.yaml"
    path.write_text(f"name: demo\nbase: {{trainer: {{task: toy-reach, train_steps: 300}}, learner: {{warmup_decisions: 50}}, eval: {{every: 100}}}}\n"
                    f"grid: {{noise.mean: {means}}}\nseeds: {seeds}\nprofiles: {{quick: {{}}, paper: {{}}}}\n")
    return path


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A fresh store and a log of every stand-in trainer start."""
    log = tmp_path / "starts.jsonl"
    log.touch()
    monkeypatch.setenv("FAKE_TRAIN_LOG", str(log))
    uri = ensure_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return {"uri": uri, "log": log, "work": tmp_path / "work"}


def starts(log: Path) -> list[dict]:
    return [e for e in events(log) if "hash" in e]


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def options(env: dict, **kw) -> SweepOptions:
    return SweepOptions(tracking_uri=env["uri"], train_cmd=fake.command(), stream=io.StringIO(), grace_s=10,
                        workdir=env["work"], **kw)


def runs_of(uri: str, experiment: str = "demo") -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id])


def test_sweep_runs_points_as_children_and_retries_failures_up_to_the_cap(tmp_path, env):
    spec = load_spec(make_spec(tmp_path, [0, 13, 5]))
    points = expand(spec)
    opts = options(env, jobs=2, max_retries=1)
    result = run_sweep(spec, points, opts)
    assert result.exit_code == 1
    # the failing point ran twice (once, then one retry), the others once
    assert [p.config.noise.mean for p, _, _ in result.failed] == [13.0, 13.0]
    assert {p.config.noise.mean for p in result.finished} == {0.0, 5.0}
    assert [(p.config.noise.mean, why.split(" (")[0]) for p, why in result.unfinished] == \
        [(13.0, "gave up after 2 failures")]
    report = opts.stream.getvalue()
    assert "demo[quick]: 3 points: 2 finished now, 0 already finished, 2 failed attempt(s), 1 NOT FINISHED" in report
    assert "FAILED" in report and "mean=13 seed=0" in report
    assert "NOT FINISHED " + points[1].config_hash in report and "--max-retries 1" in report

    runs = runs_of(env["uri"])
    parents = [r for r in runs if r.data.tags.get("dqt.role") == "parent"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FAILED"
    assert parent.data.tags["sweep"] == "demo" and parent.data.tags["profile"] == "quick"
    # bookkeeping in tags; metrics are results: the AUC of each configuration whose seeds finished
    assert parent.data.tags["dqt.points_failed"] == "2" and parent.data.tags["dqt.points_total"] == "3"
    assert parent.data.tags["dqt.points_unfinished"] == "1"
    assert set(parent.data.metrics) == {"success_auc/mean:0", "success_auc/mean:5", "success_auc/best"}
    # the same results as a table the MLflow UI shows (and sorts), best first
    from mlflow import MlflowClient

    table = Path(MlflowClient(env["uri"]).download_artifacts(parent.info.run_id, "results/success_auc.csv",
                                                             str(tmp_path))).read_text().splitlines()
    assert table[0] == "configuration,config_hash,success_auc" and len(table) == 3
    assert [float(line.rsplit(",", 1)[1]) for line in table[1:]] == sorted(
        (parent.data.metrics["success_auc/mean:0"], parent.data.metrics["success_auc/mean:5"]), reverse=True)
    children = [r for r in runs if r.data.tags.get("dqt.role") == "point"]
    assert len(children) == 4
    for run in children:
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["sweep"] == "demo" and tags["profile"] == "quick" and tags["seed"] == "0"
        assert tags["config_hash"] in {p.config_hash for p in points}

    # the cap holds across invocations: the given-up point is not run again, and named again
    first = len(starts(env["log"]))
    again = run_sweep(spec, points, options(env, jobs=2, max_retries=1))
    assert again.exit_code == 1 and again.already == 2 and len(starts(env["log"])) == first
    assert [p.key for p, _ in again.unfinished] == [points[1].key]
    # a larger cap tries it once more
    more = run_sweep(spec, points, options(env, jobs=2, max_retries=2))
    assert more.exit_code == 1 and [s["hash"] for s in starts(env["log"])[first:]] == [points[1].config_hash]


def test_finished_points_of_another_toolkit_version_count_as_done_and_are_named(tmp_path, env):
    from mlflow import MlflowClient

    spec = load_spec(make_spec(tmp_path, [0, 5, 7]))
    points = expand(spec)
    assert run_sweep(spec, points, options(env)).exit_code == 0
    client = MlflowClient(env["uri"])
    older, oldest = [r for r in runs_of(env["uri"]) if r.data.tags.get("dqt.role") == "point"][:2]
    client.set_tag(older.info.run_id, "dqt.version", "0.1.0")
    # made before 0.2.0: no version tag, and a tag hashed by the old rule (every field, defaults included)
    client.delete_tag(oldest.info.run_id, "dqt.version")
    client.set_tag(oldest.info.run_id, "config_hash", "0123456789ab")
    again = options(env)
    result = run_sweep(spec, points, again)
    assert result.exit_code == 0 and result.already == 3 and len(starts(env["log"])) == 3
    from dqt.core.version import toolkit_version

    assert (f"finished points made by another toolkit version count as done (1 by 0.1.0, 1 by before 0.2.0; "
            f"this is {toolkit_version()})") in again.stream.getvalue()
    # the analysis groups it by the same rule
    from dqt.analysis.load import run_row

    assert run_row(client.get_run(oldest.info.run_id))["config_hash"] == oldest.data.tags["config_hash"]


def test_a_crashed_run_with_a_checkpoint_is_resumed_by_the_retry(tmp_path, env):
    spec = load_spec(make_spec(tmp_path, [77]))
    points = expand(spec)
    first = run_sweep(spec, points, options(env, max_retries=0))
    assert first.exit_code == 1  # the stand-in SIGKILLed itself half way, and no retry was allowed
    (run,) = [r for r in runs_of(env["uri"]) if r.data.tags.get("dqt.role") == "point"]
    assert run.info.status == "RUNNING"  # what a crash leaves behind

    second = run_sweep(spec, points, options(env, max_retries=1))  # one retry: it resumes the checkpoint
    assert second.exit_code == 0 and second.failed == [] and second.unfinished == []
    assert [s["resume"] for s in starts(env["log"])] == [None, run.info.run_id]
    (after,) = [r for r in runs_of(env["uri"]) if r.data.tags.get("dqt.role") == "point"]
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"


def test_within_one_sweep_the_retry_resumes_a_crashed_runs_checkpoint(tmp_path, env):
    spec = load_spec(make_spec(tmp_path, [77]))
    result = run_sweep(spec, expand(spec), options(env))
    assert result.exit_code == 0 and len(result.failed) == 1 and result.unfinished == []
    first, retry = starts(env["log"])
    assert first["resume"] is None and retry["resume"] is not None


def test_stale_running_run_without_checkpoint_is_killed_and_rerun(tmp_path, env):
    from mlflow import MlflowClient

    spec = load_spec(make_spec(tmp_path, [0]))
    (point,) = expand(spec)
    client = MlflowClient(env["uri"])
    exp = client.create_experiment("demo")
    orphan = client.create_run(exp, tags={"config_hash": point.config_hash, "seed": "0"})  # left RUNNING
    assert run_sweep(spec, [point], options(env)).exit_code == 0
    assert client.get_run(orphan.info.run_id).info.status == "KILLED"
    assert starts(env["log"])[0]["resume"] is None
    statuses = sorted(r.info.status for r in runs_of(env["uri"]) if "config_hash" in r.data.tags)
    assert statuses == ["FINISHED", "KILLED"]


def test_parents_of_dead_sweeps_are_killed_by_the_next_sweep(tmp_path, env):
    from mlflow import MlflowClient

    from dqt.sweeps.liveness import HOST, Owner

    spec = load_spec(make_spec(tmp_path, [0]))
    client = MlflowClient(env["uri"])
    exp = client.create_experiment("demo")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a real process that has exited: its pid is not alive
    parent = {"dqt.role": "parent", "sweep": "demo", "profile": "quick"}

    def left_running(**tags: str) -> str:
        return client.create_run(exp, tags={**parent, **tags}).info.run_id

    dead = left_running(**{"dqt.worker": Owner.of(gone.pid).token})
    # host + pid alone (older tags) cannot tell: that pid may belong to another container
    dead_old_tags = left_running(**{"dqt.host": HOST, "dqt.pid": str(gone.pid)})
    live = left_running(**{"dqt.worker": Owner.of().token})  # this process: a sweep still at work
    other_host = left_running(**{"dqt.worker": f"elsewhere|{gone.pid}|1"})
    # same hostname, another PID namespace (a second container): its pid means nothing here
    twin = left_running(**{"dqt.worker": replace(Owner.of(gone.pid), space="other-boot/1").token})
    other_profile = left_running(**{"dqt.worker": Owner.of(gone.pid).token, "profile": "paper"})
    untagged = left_running()

    opts = options(env)
    assert run_sweep(spec, expand(spec), opts).exit_code == 0
    status = {rid: client.get_run(rid).info.status
              for rid in (dead, dead_old_tags, live, other_host, twin, other_profile, untagged)}
    assert status == {dead: "KILLED", dead_old_tags: "RUNNING", live: "RUNNING", other_host: "RUNNING",
                      twin: "RUNNING", other_profile: "RUNNING", untagged: "RUNNING"}
    assert f"{HOST}:{gone.pid} gone" in client.get_run(dead).data.tags["dqt.failure_reason"]
    assert "1 parent run(s) of dead sweeps marked KILLED" in opts.stream.getvalue()
    (new,) = [r for r in runs_of(env["uri"]) if r.data.tags.get("dqt.role") == "parent"
              and r.info.run_id not in status]
    assert new.info.status == "FINISHED"
    assert new.data.tags["dqt.host"] == HOST and new.data.tags["dqt.pid"] == str(os.getpid())


SWEEP = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import fake_train as fake
from dqt.sweeps.expand import expand
from dqt.sweeps.runner import SweepOptions, run_sweep
from dqt.sweeps.spec import load_spec
spec = load_spec(sys.argv[1])
opts = SweepOptions(jobs=2, tracking_uri=sys.argv[2], train_cmd=fake.command(), grace_s=10,
                    workdir=Path(sys.argv[4]), worker_id=sys.argv[5], poll_s=0.5,
                    heartbeat_s=float(sys.argv[6]) if len(sys.argv) > 6 else 60.0)
sys.exit(run_sweep(spec, expand(spec), opts).exit_code)
"""


@pytest.mark.slow  # a sweep subprocess with two stand-in trainers, stopped by a signal: ~15 s each
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopping_the_sweep_stops_every_point(tmp_path, env, sig):
    spec_path = make_spec(tmp_path, [99], seeds=2)  # two points that run until stopped
    sweep = subprocess.Popen([sys.executable, "-c", SWEEP, str(spec_path), env["uri"], str(ROOT / "tests"),
                              str(env["work"]), "a"],
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while sum("waiting" in e for e in events(env["log"])) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    sweep.send_signal(sig)
    _, err = sweep.communicate(timeout=60)
    assert sweep.returncode == 130, err
    pids = [s["pid"] for s in starts(env["log"])]
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)
    runs = runs_of(env["uri"])
    assert sorted(r.info.status for r in runs if r.data.tags.get("dqt.role") == "point") == ["KILLED", "KILLED"]
    assert [r.info.status for r in runs if r.data.tags.get("dqt.role") == "parent"] == ["KILLED"]
    assert "interrupted" in err


@pytest.mark.slow  # two sweep subprocesses and three stand-in trainers: ~20 s
def test_a_sigtermed_workers_point_is_handed_back_and_resumed_by_another_worker(tmp_path, env):
    """Slurm preempts a worker with SIGTERM: its run stops with a checkpoint, the claim goes back
    to the queue at once, and the worker still running takes the point over, resumes that run
    and finishes it; the preempted worker exits 130, the other 0, one FINISHED run per point."""
    spec_path = make_spec(tmp_path, [55])  # runs until stopped; resumed, it finishes

    def worker(name: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", SWEEP, str(spec_path), env["uri"], str(ROOT / "tests"),
                                 str(tmp_path / f"work-{name}"), name],
                                env={**os.environ, "PYTHONPATH": str(ROOT)},
                                stderr=(tmp_path / f"{name}.err").open("w"), text=True)

    def err(name: str) -> str:
        return (tmp_path / f"{name}.err").read_text()

    a = worker("a")
    deadline = time.monotonic() + 120
    while not any("waiting" in e for e in events(env["log"])) and time.monotonic() < deadline:
        assert a.poll() is None, err("a")
        time.sleep(0.2)
    b = worker("b")  # finds the point claimed by a live worker, says so, and waits
    while "watching the queue" not in err("b") and time.monotonic() < deadline:
        assert b.poll() is None, err("b")
        time.sleep(0.2)
    assert "nothing left to claim; 1 point(s) running on other workers, watching the queue" in err("b")
    a.send_signal(signal.SIGTERM)
    assert a.wait(timeout=60) == 130, err("a")
    assert b.wait(timeout=120) == 0, err("b")
    assert "1 handed back" in err("a") and "1 finished now" in err("b")
    first, resumed = starts(env["log"])
    points = [r for r in runs_of(env["uri"]) if r.data.tags.get("dqt.role") == "point"]
    assert len(points) == 1 and points[0].info.status == "FINISHED"
    assert first["resume"] is None and resumed["resume"] == points[0].info.run_id
    assert first["tags"]["dqt.worker"].startswith("a|") and resumed["tags"]["dqt.worker"].startswith("b|")


@pytest.mark.slow  # a sweep subprocess and two stand-in trainers: ~15 s
@pytest.mark.parametrize("heartbeat_s", ["0.5", "600"], ids=["heartbeat-notices", "main-loop-claims-first"])
def test_a_run_whose_claim_a_peer_reaped_stops_and_leaves_the_point_to_the_queue(tmp_path, env, heartbeat_s):
    """A worker cut off from the queue longer than the grace period is judged dead by its peers,
    which reap its claim and offer the point again. When its heartbeat finds the claim gone, it
    stops that run at once (SIGKILL: no checkpoint or status written over a peer that may be
    resuming the run) instead of racing the next claimer; here it claims the re-offered point
    itself and resumes it from the run's periodic checkpoint. If instead (a heartbeat too slow
    to notice) its main loop claims the point again while its old run still runs, nobody else
    holds it: the old run stops with a checkpoint (SIGTERM) and is resumed. Never two runs of
    one point at once."""
    from optuna.trial import TrialState

    from dqt.sweeps.claims import ClaimQueue, default_storage

    spec_path = make_spec(tmp_path, [55])
    sweep = subprocess.Popen([sys.executable, "-c", SWEEP, str(spec_path), env["uri"], str(ROOT / "tests"),
                              str(env["work"]), "a", heartbeat_s],
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any("waiting" in e for e in events(env["log"])) and time.monotonic() < deadline:
        assert sweep.poll() is None, sweep.communicate()[1]
        time.sleep(0.2)
    queue = ClaimQueue(default_storage(env["uri"]), "sweep/demo/quick")
    (held,) = queue.storage.get_all_trials(queue.study_id, states=(TrialState.RUNNING,))
    tid = queue.storage.get_trial_id_from_study_id_trial_number(queue.study_id, held.number)
    queue.storage.set_trial_user_attr(tid, "reaped_by", "a peer")  # what `reap_stale` does to a dead claim
    queue.storage.set_trial_state_values(tid, TrialState.FAIL)
    queue.sync(expand(load_spec(spec_path)), finished=set())  # ... and offers the point again
    try:
        _, err = sweep.communicate(timeout=120)
    finally:
        if sweep.poll() is None:  # (a failure: leave no sweep behind; its trainers die with it)
            sweep.kill()
    assert sweep.returncode == 0, err
    # With a 600-s heartbeat only the main loop can notice: its run stops with a checkpoint. With
    # a 0.5-s one either may notice first (`test_a_reaped_claims_run_is_killed_...` pins the other)
    hows = ["with a checkpoint"] if heartbeat_s == "600" else ["at once, writing nothing more", "with a checkpoint"]
    assert any(f"was reaped by another worker (this one was judged dead); stopping its run {how}" in err
               for how in hows), err
    assert "LOST" in err and "1 finished now" in err
    first, resumed = starts(env["log"])
    (run,) = [r for r in runs_of(env["uri"]) if r.data.tags.get("dqt.role") == "point"]
    assert first["resume"] is None and resumed["resume"] == run.info.run_id and run.info.status == "FINISHED"


def test_a_reaped_claims_run_is_killed_outright_unless_this_worker_claimed_it_again(tmp_path):
    """The heartbeat finds a claim reaped: the peer may be resuming that very run, so ours gets
    SIGKILL (a SIGTERM would write a checkpoint and an end status over it). Only when this
    worker's own main loop claimed the point again does its run stop with SIGTERM (a checkpoint)."""
    import threading

    from dqt.sweeps.claims import Claim
    from dqt.sweeps.runner import _GridSweep

    # a `dqt train` stand-in in its own process group that, like the trainer, outlives SIGTERM a while
    code = "import signal, time; signal.signal(signal.SIGTERM, lambda *_: None); print(flush=True); time.sleep(60)"
    for sig, dies in ((None, True), (signal.SIGTERM, False)):
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
        child.stdout.readline()  # its handler is in place
        worker = object.__new__(_GridSweep)  # only what on_lost reads
        worker.lock, worker.lost, worker.stream = threading.Lock(), set(), io.StringIO()
        worker.spec = load_spec(make_spec(tmp_path, [0]))
        claim = Claim(trial_id=7, number=3, key=("abc", 0))
        worker.active = {7: (claim, child.pid)}
        worker.on_lost(claim) if sig is None else worker.on_lost(claim, sig)
        try:
            if dies:
                assert child.wait(timeout=10) == -signal.SIGKILL
            else:
                with pytest.raises(subprocess.TimeoutExpired):  # still checkpointing, as it should
                    child.wait(timeout=1)
        finally:
            child.kill()
            child.wait()
        assert worker.lost == {7}
        how = "at once, writing nothing more" if dies else "with a checkpoint"
        assert f"claim 3 was reaped by another worker (this one was judged dead); stopping its run {how}" in \
            worker.stream.getvalue()


def test_resume_is_refused_while_the_points_claim_is_live_on_a_worker(tmp_path, env):
    """`dqt train --resume RUN` of a point a live sweep worker is running would run it twice:
    refused (exit 2, one line naming the claim and its worker); once the worker has handed
    the claim back (SIGTERM), the same check lets the resume through."""
    from dqt.cli import refuse_a_run_claimed_elsewhere

    spec_path = make_spec(tmp_path, [55])
    sweep = subprocess.Popen([sys.executable, "-c", SWEEP, str(spec_path), env["uri"], str(ROOT / "tests"),
                              str(env["work"]), "a", "0.5"],
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any("waiting" in e for e in events(env["log"])) and time.monotonic() < deadline:
        assert sweep.poll() is None, sweep.communicate()[1]
        time.sleep(0.2)
    (run,) = [r for r in runs_of(env["uri"]) if r.data.tags.get("dqt.role") == "point"]
    out = subprocess.run([sys.executable, "-m", "dqt.cli", "train", "--tracking-uri", env["uri"],
                          "--resume", run.info.run_id], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert f"--resume {run.info.run_id}" in line and "sweep/demo/quick#0" in line and "live sweep worker" in line
    sweep.send_signal(signal.SIGTERM)
    sweep.communicate(timeout=120)
    refuse_a_run_claimed_elsewhere(env["uri"], run.info.run_id, None)  # handed back: no one runs it now
