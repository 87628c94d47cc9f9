"""End-to-end tests of `dqt train`: real agent processes, a real SQLite MLflow store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, SLOW_LEARNER, TINY_TOY, alive, children_of, dqt_command, run_dqt
from mlflow.tracking import MlflowClient

from dqt.core.config import RunConfig

METRICS = [
    "eval/success_rate", "eval/return", "train/episode_return", "train/success", "loss/td", "loss/conservative",
    "q/mean", "opt/lr", "explore/epsilon", "perf/env_steps_per_s", "perf/updates_per_s", "perf/policy_lag",
    "time/wall_s",
]


def only_run(uri: str, experiment: str = "dqt"):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def read_artifact_json(client: MlflowClient, run_id: str, path: str) -> dict:
    local = client.download_artifacts(run_id, path)
    return json.loads(Path(local).read_text())


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_train_end_to_end(store, mode):
    out = run_dqt("train", *TINY_TOY, "--num-agents", "2", "--mode", mode, "--tracking-uri", store, "--quiet")
    assert out.returncode == 0, out.stderr
    client, run = only_run(store)
    assert run.info.status == "FINISHED"
    # params: the complete resolved config
    expected = {k: str(v) for k, v in RunConfig.from_flat({
        "trainer.task": "toy-reach", "trainer.mode": mode, "trainer.num_agents": 2}).to_flat().items()}
    assert set(run.data.params) == set(expected)
    assert run.data.params["trainer.mode"] == mode and run.data.params["model.num_bins"] == "11"
    for tag in ("config_hash", "seed", "git_commit", "device"):
        assert run.data.tags.get(tag), tag
    assert run.data.tags["device"] == "cpu"
    assert "agent_restarts" not in run.data.tags  # agents that finish are not mistaken for dead ones
    for key in METRICS:
        history = client.get_metric_history(run.info.run_id, key)
        assert history, f"metric {key} missing"
        steps = [m.step for m in history]
        assert steps == sorted(steps), f"{key} steps go backwards"
    evals = [m.step for m in client.get_metric_history(run.info.run_id, "eval/success_rate")]
    assert evals[0] == 0 and evals[-1] == 600, evals  # the curve spans the whole budget
    last_train = client.get_metric_history(run.info.run_id, "train/episode_return")[-1].step
    assert last_train == 600
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "checkpoint", "agents.json"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == ["checkpoint/checkpoint.pt"]
    saved = RunConfig.from_yaml(client.download_artifacts(run.info.run_id, "config.yaml"))
    assert saved.trainer.mode == mode and saved.trainer.num_agents == 2


@pytest.mark.slow
@pytest.mark.serial  # two agents must start close enough to overlap: run alone
def test_agents_run_in_parallel_processes(store):
    # each env step takes >= 10 ms (tests/plugins/dqt_slow_env.py): an agent's 1,500 steps outlast
    # the other's start on any machine (on the plain toy task they took ~0.3 s and once did not)
    tiny = [a if a != "toy-reach" else "toy-slow" for a in TINY_TOY]
    out = run_dqt("train", *tiny, "--train-steps", "3000", "--num-agents", "2", "--mode", "async",
                  "--tracking-uri", store, "--quiet",
                  env={"PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests' / 'plugins'}", "DQT_PLUGINS": "dqt_slow_env"})
    assert out.returncode == 0, out.stderr
    client, run = only_run(store)
    agents = read_artifact_json(client, run.info.run_id, "agents.json")
    assert set(agents) == {"0", "1"}
    pids = [a["pids"][0] for a in agents.values()]
    assert len(set(pids)) == 2 and os.getpid() not in pids
    assert sum(a["env_steps"] for a in agents.values()) == 3000
    # Truly at once: some episode of agent 0 overlaps in time with some episode of agent 1.
    a0, a1 = agents["0"]["intervals"], agents["1"]["intervals"]
    overlap = sum(max(0.0, min(e0, e1) - max(s0, s1)) for s0, e0, _ in a0 for s1, e1, _ in a1)
    assert sum(n for a in agents.values() for _, _, n in a["intervals"]) == 3000
    assert overlap > 0.0


def first_episode_return(store: str, seed: int) -> float:
    """The first episode's return of a `dqt train --seed SEED` run.  The trainer runs in this
    process (its agent and evaluator still in their own): the seed must reach the spawned agent,
    and the ~7 s of imports a new `dqt` process pays would be most of this test's time."""
    from dqt.cli import build_parser, resolve_train_config
    from dqt.core.running.trainer import TrackingOptions, train

    args = build_parser().parse_args(["train", *TINY_TOY, "--train-steps", "200", "--num-agents", "1",
                                      "--seed", str(seed)])
    result = train(resolve_train_config(args), TrackingOptions(uri=store, experiment=f"seed{seed}-{time.time_ns()}"),
                   progress=False)
    assert result.status == "FINISHED", result.reason
    return MlflowClient(store).get_metric_history(result.run_id, "train/episode_return")[0].value


@pytest.mark.slow
def test_seeds_are_honest(store):
    a, b, c = first_episode_return(store, 3), first_episode_return(store, 3), first_episode_return(store, 4)
    assert a == b
    assert a != c


@pytest.mark.slow
def test_metaworld_door_unlock_short_run(store):
    out = run_dqt("train", "--task", "mw-door-unlock", "--num-agents", "2", "--train-steps", "1200",
                  "--eval-every", "1200", "--eval-episodes", "1", "--set", "learner.batch_size=32",
                  "--set", "learner.warmup_decisions=200", "--set", "learner.updates_per_step=0.02",
                  "--tracking-uri", store, "--quiet", timeout=400)
    assert out.returncode == 0, out.stderr
    client, run = only_run(store)
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.task"] == "door-unlock-v3"
    evals = client.get_metric_history(run.info.run_id, "eval/success_rate")
    assert [m.step for m in evals] == [0, 1200]
    assert client.get_metric_history(run.info.run_id, "eval/return")
    assert client.get_metric_history(run.info.run_id, "loss/td")


@pytest.mark.slow
@pytest.mark.serial  # a wall-clock bound or a race between processes: run alone
def test_sigint_stops_every_process_and_marks_run_killed(store):
    # Started as `dqt train &` from a script starts it: SIGINT inherited ignored, where Python installs
    # no KeyboardInterrupt handler of its own; the trainer must still stop on `kill -INT`.
    proc = subprocess.Popen(dqt_command("train", *TINY_TOY, "--train-steps", "10000000", "--num-agents", "2",
                                        "--tracking-uri", store, "--quiet"), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    client = MlflowClient(store)
    deadline = time.monotonic() + 120
    run = None
    while time.monotonic() < deadline:  # wait until agents are stepping and metrics flow
        exp = client.get_experiment_by_name("dqt")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if runs and client.get_metric_history(runs[0].info.run_id, "train/episode_return"):
            run = runs[0]
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)
    assert run is not None, "the run never started"
    kids = children_of(proc.pid)
    assert len(kids) >= 3  # two agents and the evaluator (plus multiprocessing's helpers)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 130
    time.sleep(0.5)
    assert not [k for k in kids if alive(k)], "processes of the run survived Ctrl-C"
    assert client.get_run(run.info.run_id).info.status == "KILLED"


@pytest.mark.slow
def test_agents_with_several_envs_finish_without_spurious_restarts(store):
    # Regression: an agent that finished was once mistaken for a dead one (the learner's slot
    # hand-back to its closed pipe failed) and "restarted" until the run FAILED.
    out = run_dqt("train", *TINY_TOY, "--train-steps", "4000", "--num-agents", "2", "--mode", "async",
                  "--set", "trainer.envs_per_agent=8", "--tracking-uri", store, "--quiet")
    assert out.returncode == 0, out.stderr
    client, run = only_run(store)
    assert run.info.status == "FINISHED" and "agent_restarts" not in run.data.tags
    agents = read_artifact_json(client, run.info.run_id, "agents.json")
    assert sum(a["env_steps"] for a in agents.values()) == 4000


@pytest.mark.slow
def test_a_child_that_cannot_start_fails_the_run_with_its_own_reason(store):
    # Regression: when the evaluator's start() raised, shutdown tried to join the never-started
    # process, an AssertionError replaced the real reason and the learner hung.
    script = ("import sys, dqt.core.running.agent_pool as p; p.eval_main = lambda *a: None; "  # spawn cannot pickle a lambda
              "from dqt.cli import entry; sys.argv[0] = 'dqt'; entry()")
    out = subprocess.run([sys.executable, "-c", script, "train", *TINY_TOY, "--num-agents", "2",
                          "--tracking-uri", store, "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    client, run = only_run(store)
    assert run.info.status == "FAILED"
    reason = run.data.tags["dqt.failure_reason"]
    assert "pickle" in reason.lower() and "AssertionError" not in reason, reason


@pytest.mark.slow
def test_async_backlog_is_bounded_and_learning_is_logged_to_the_end(store):
    """Agents outrun a learner owing 2 updates a decision: unbounded, the owed updates pile up into
    the end of the run; with trainer.max_update_backlog they stay near the bound while the run goes
    on, and the run still makes every update the ratio promises."""
    steps = 1200
    common = [*TINY_TOY, "--train-steps", str(steps), "--num-agents", "2", "--mode", "async",
              "--set", "learner.updates_per_step=2",
              "--set", "env.episode_length=20",  # 10-decision episodes: little in flight beyond the bound
              "--tracking-uri", store, "--quiet"]
    peaks = {}
    for bound in (0, 40):
        out = subprocess.run([sys.executable, "-c", SLOW_LEARNER, "train", *common,
                              "--set", f"trainer.max_update_backlog={bound}", "--experiment", f"b{bound}"],
                             cwd=REPO, capture_output=True, text=True, timeout=400)
        assert out.returncode == 0, out.stderr[-2000:]
        client, run = only_run(store, f"b{bound}")
        backlog = client.get_metric_history(run.info.run_id, "perf/update_backlog")
        peaks[bound] = max(m.value for m in backlog)
        if bound:
            # 2 agents x 4 slots x 10 decisions x 2 updates may arrive between two checks
            assert peaks[bound] <= 40 + 2 * 4 * 10 * 2, peaks
            td_steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss/td")]
            assert max(s for s in td_steps if s < steps) >= 2 * steps // 3  # training was logged through the run
            lag = client.get_metric_history(run.info.run_id, "perf/policy_lag")
            assert lag and max(m.value for m in lag) <= peaks[bound] + 4 * 10 * 2
    print(peaks)
    # ~2,200 updates at >= 3 ms take >= 6.6 s; 1,200 toy env steps take the agents a second or two
    assert peaks[0] > 2 * peaks[40], peaks
