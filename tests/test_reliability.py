"""Faults lose nothing: real SIGKILLs, real Ctrl-C, real NaNs, real concurrent writers."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    HOLD_RUN,
    POISON_RUN,
    REPO,
    SLOW_LEARNER,
    TINY_TOY,
    alive,
    children_of,
    dqt_command,
    run_dqt,
)
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

LONG = ["--train-steps", "4000", "--set", "trainer.checkpoint_every=500"]


def start_train(store: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(dqt_command("train", *TINY_TOY, *extra, "--tracking-uri", store, "--quiet"), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(pred, proc: subprocess.Popen, timeout: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"dqt train exited ({proc.returncode}) before {what}: {err[-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def the_run(client: MlflowClient):
    exp = client.get_experiment_by_name("dqt")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return runs[0] if runs else None


def steps_of(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def stepping_agent_pid(client: MlflowClient, agent: int = 0, not_pid: int | None = None):
    """The agent's pid once the run has logged an episode (so the agent is mid-run)."""
    run = the_run(client)
    if not run or not client.get_metric_history(run.info.run_id, "train/episode_return"):
        return None
    pid = client.get_run(run.info.run_id).data.tags.get(f"pid.agent{agent}")
    return int(pid) if pid and int(pid) != not_pid and alive(int(pid)) else None


@pytest.mark.serial  # races a running process (a kill or Ctrl-C mid-run): run alone
def test_sigkill_one_agent_run_still_finishes_with_restart_recorded(store):
    # A budget the agents cannot finish before the kill lands (metrics show up seconds late).
    proc = start_train(store, *LONG, "--train-steps", "30000", "--num-agents", "2")
    client = MlflowClient(store)
    victim = wait_for(lambda: stepping_agent_pid(client), proc, what="agent 0 stepping")
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    run = client.get_run(the_run(client).info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["agent_restarts"] == "1"
    assert int(run.data.tags["pid.agent0"]) != victim
    assert [m.value for m in client.get_metric_history(run.info.run_id, "perf/agent_restarts")] == [1.0]
    # The steps the dead agent took but never delivered went back to its quota: exact budget.
    assert steps_of(client, run.info.run_id, "train/episode_return")[-1] == 30000


@pytest.mark.serial  # races a running process (a kill or Ctrl-C mid-run): run alone
def test_agent_killed_past_the_restart_limit_fails_cleanly(store):
    proc = start_train(store, *LONG, "--train-steps", "10000000", "--num-agents", "2",
                       "--set", "trainer.max_agent_restarts=1")
    client = MlflowClient(store)
    first = wait_for(lambda: stepping_agent_pid(client), proc, what="agent 0 stepping")
    kids = children_of(proc.pid)
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: stepping_agent_pid(client, not_pid=first), proc, what="agent 0 restarted")
    kids |= children_of(proc.pid)
    os.kill(second, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err[-2000:]
    run = client.get_run(the_run(client).info.run_id)
    assert run.info.status == "FAILED"
    assert "restart limit (1)" in run.data.tags["dqt.failure_reason"]
    time.sleep(0.5)
    assert not [k for k in kids if alive(k)], "processes of the failed run survived"


@pytest.mark.serial  # a wall-clock bound or a race between processes: run alone
def test_sigint_then_resume_gives_one_duplicate_free_history(store):
    proc = start_train(store, *LONG, "--train-steps", "30000", "--num-agents", "2", "--mode", "sync")
    client = MlflowClient(store)
    wait_for(lambda: stepping_agent_pid(client) and stepping_agent_pid(client, agent=1), proc, what="agents stepping")
    time.sleep(2.0)
    kids = children_of(proc.pid)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 5.0 and proc.returncode == 130
    time.sleep(0.3)
    assert not [k for k in kids if alive(k)], "processes of the run survived Ctrl-C"
    run_id = the_run(client).info.run_id
    assert client.get_run(run_id).info.status == "KILLED"
    assert [a.path for a in client.list_artifacts(run_id, "checkpoint")] == ["checkpoint/checkpoint.pt"]
    before = steps_of(client, run_id, "train/episode_return")
    assert 0 < before[-1] < 30000

    out = run_dqt("train", "--resume", run_id, "--tracking-uri", store, "--quiet", timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1  # the same run continued
    for key in ("train/episode_return", "eval/success_rate", "time/wall_s", "loss/td"):
        steps = steps_of(client, run_id, key)
        assert steps == sorted(set(steps)), f"{key}: duplicated or unordered steps after resume"
    after = steps_of(client, run_id, "train/episode_return")
    assert after[: len(before)] == before and after[-1] == 30000
    assert steps_of(client, run_id, "eval/success_rate")[-1] == 30000


@pytest.mark.serial  # races a running process (a kill or Ctrl-C mid-run): run alone
def test_learner_sigkill_takes_every_agent_down_and_leaves_a_checkpoint(store):
    proc = start_train(store, *LONG, "--train-steps", "10000000", "--num-agents", "2")
    client = MlflowClient(store)
    run_id = wait_for(lambda: (r := the_run(client)) and client.list_artifacts(r.info.run_id, "checkpoint")
                      and r.info.run_id, proc, what="a periodic checkpoint")
    kids = children_of(proc.pid)
    assert len(kids) >= 3
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    deadline = time.monotonic() + 5.0
    while [k for k in kids if alive(k)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [k for k in kids if alive(k)], "agents outlived their learner"
    local = client.download_artifacts(run_id, "checkpoint/checkpoint.pt")
    assert Path(local).stat().st_size > 0


def test_nan_loss_fails_the_run_with_its_reason(store):
    out = subprocess.run([sys.executable, "-c", POISON_RUN, "train", *TINY_TOY, "--tracking-uri", store, "--quiet"],
                         cwd=REPO, capture_output=True, text=True, timeout=240, env={**os.environ, "POISON_AT": "5"})
    assert out.returncode == 1
    run = the_run(MlflowClient(store))
    assert run.info.status == "FAILED"
    reason = run.data.tags["dqt.failure_reason"]
    assert "non-finite loss at update 5" in reason and "env step" in reason, reason
    assert "log window of updates" in reason, reason  # found once per window, not per update


def store_digest(uri: str) -> str:
    path = Path(uri.removeprefix("sqlite:///"))
    return hashlib.sha256(path.read_bytes()).hexdigest()


BAD_INPUTS = [
    (["train", "--bogus"], "unrecognized arguments"),
    (["train", "--set", "noise.sdt=1"], "unknown config key 'noise.sdt'"),
    (["train", "--set", "noise.std=-1"], "noise.std must be >= 0"),
    (["train", "--num-agents", "two"], "trainer.num_agents expects an integer"),
    (["train", "--task", "door-unlok"], "unknown task 'door-unlok'"),
    (["train", "--lr-schedule", "cosine"], "learner.lr_schedule must be one of"),
    (["train", "--robust", "mode"], "noise.robust must be one of"),
    (["train", "--set", "learner.lr"], "--set 'learner.lr' must look like"),
    (["train", "--tag", "novalue"], "--tag 'novalue' must look like key=value"),
    (["train", "--config", "/nonexistent/x.yaml"], "cannot read config file"),
    (["train", "--resume", "0123456789abcdef"], "--resume 0123456789abcdef"),
    (["sweep", "/nonexistent/spec.yaml"], "spec.yaml"),
    (["figures", "no-such-experiment"], "no-such-experiment"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_the_store_is_untouched(store, args, message):
    before = store_digest(store)
    out = run_dqt(*args, "--tracking-uri", store, timeout=120)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dqt: error:"), out.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in out.stderr
    assert store_digest(store) == before


def test_bad_config_file_and_bad_tracking_uri(store, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learner:\n  lr: 1e-3\n  batch: 64\n")
    before = store_digest(store)
    out = run_dqt("train", "--config", str(bad), "--tracking-uri", store)
    assert out.returncode == 2 and "bad.yaml: unknown config key 'learner.batch'" in out.stderr
    assert store_digest(store) == before
    for uri in ("sqlite:/x.db", "sqlit:///x.db", "http//host"):
        out = run_dqt("train", "--tracking-uri", uri)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert f"tracking URI '{uri}'" in out.stderr


@pytest.mark.serial  # races a running process (a kill or Ctrl-C mid-run): run alone
def test_resume_continues_epsilon_warmup_updates_and_replay_as_if_never_stopped(store, tmp_path):
    """An interrupted-and-resumed run and an uninterrupted one follow the same epsilon curve and
    end with the same env steps and learner updates. Epsilon decays over the whole budget, so a
    resume that restarted the clock (2,000 random steps, epsilon back to 1) is caught. The run
    holds still from 1,500 env steps until its SIGINT (`HOLD_RUN`): it cannot finish first."""
    budget, decay = 6000, ["--set", "exploration.decay_fraction=1.0", "--set", "trainer.checkpoint_every=300"]
    client = MlflowClient(store)

    def eps_deviation(run_id: str) -> float:
        # DQT eq. 2 at the logged step; an episode (60 env steps) of slack either way
        points = client.get_metric_history(run_id, "explore/epsilon")
        assert points
        return max(abs(m.value - max(0.01, 1 - m.step / budget)) for m in points if m.step > 200)

    def final_updates(run_id: str) -> int:
        import torch

        path = client.download_artifacts(run_id, "checkpoint/checkpoint.pt")
        return int(torch.load(path, weights_only=False)["learner"]["updates"])

    marker = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_RUN, "train", *TINY_TOY, "--train-steps", str(budget), *decay,
                             "--experiment", "resumed", "--tracking-uri", store, "--quiet"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HOLD_AT": "1500", "HOLD_MARKER": str(marker)})
    wait_for(marker.exists, proc, timeout=180, what="1,500 env steps")
    (run,) = client.search_runs([client.get_experiment_by_name("resumed").experiment_id])
    run_id = run.info.run_id
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    ckpt = client.download_artifacts(run_id, "checkpoint/checkpoint.pt")
    import torch

    saved = torch.load(ckpt, weights_only=False)
    assert 1500 <= saved["env_steps"] < budget and len(saved["replay"]["arrays"]["obs"]) == saved["env_steps"] // 2
    # the uninterrupted run beside the resume: nothing races a signal any more
    straight_proc = start_train(store, "--train-steps", str(budget), *decay, "--experiment", "straight")
    out = run_dqt("train", "--resume", run_id, "--tracking-uri", store, "--quiet", timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    _, err = straight_proc.communicate(timeout=300)
    assert straight_proc.returncode == 0, err[-2000:]
    (straight,) = client.search_runs([client.get_experiment_by_name("straight").experiment_id])
    straight_id = straight.info.run_id

    assert eps_deviation(straight_id) < 0.04
    assert eps_deviation(run_id) < 0.04, "epsilon restarted after --resume"
    total = 0.25 * (budget - 100) / 2  # updates_per_step per decision x decisions after the warm-up
    assert final_updates(run_id) == final_updates(straight_id) == int(total)
    for rid in (run_id, straight_id):
        episodes = client.get_metric_history(rid, "train/episode_return")
        assert len(episodes) * 60 == budget and max(m.step for m in episodes) == budget


def test_an_async_run_stopped_while_working_off_its_backlog_resumes_and_makes_every_update(store, tmp_path):
    """Async agents finish the budget long before a slow learner: stopped while it works off the
    owed updates, the run keeps a checkpoint with fewer updates than promised, and its resume
    makes the rest (it used to end FINISHED with them skipped)."""
    import torch

    budget, ratio = 1200, 4
    total = ratio * (budget - 100) // 2  # updates per decision x decisions after the warm-up (repeat 2)
    client = MlflowClient(store)
    # The learner touches `all_in` once it has taken in the last episode: an exited agent is not
    # enough (its last episodes may still be in the pipe when the machine is busy).
    all_in = tmp_path / "all-in"
    marker = ("import os, pathlib, dqt.core.running.learner_loop as ll; take = ll.LearnerLoop.take_episode; "
              "ll.LearnerLoop.take_episode = lambda self, m: (take(self, m), self.env_steps >= "
              "self.cfg.trainer.train_steps and pathlib.Path(os.environ['ALL_IN']).touch())[0]; ")
    proc = subprocess.Popen([sys.executable, "-c", marker + SLOW_LEARNER, "train", *TINY_TOY,
                             "--train-steps", str(budget), "--mode", "async", "--set", f"learner.updates_per_step={ratio}",
                             "--set", "trainer.max_update_backlog=0", "--tracking-uri", store, "--quiet"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "ALL_IN": str(all_in)})
    run_id = wait_for(lambda: (r := the_run(client)) and r.info.run_id, proc, what="the run")
    # >= 3 ms x 2,200 updates: the learner is still working off the backlog when the budget is in
    wait_for(all_in.exists, proc, timeout=180, what="the learner to take in the whole budget")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130 and client.get_run(run_id).info.status == "KILLED"

    def saved() -> dict:
        return torch.load(client.download_artifacts(run_id, "checkpoint/checkpoint.pt"), weights_only=False)

    stopped = saved()
    assert stopped["env_steps"] == budget and 0 < stopped["learner"]["updates"] < total, stopped["learner"]["updates"]
    out = run_dqt("train", "--resume", run_id, "--tracking-uri", store, "--quiet", timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert saved()["learner"]["updates"] == total  # every owed update made
    assert steps_of(client, run_id, "eval/success_rate")[-1] == budget


def test_a_refused_resume_leaves_the_run_as_it_was(store):
    """--resume with a config that differs from the run's is refused (exit 2, one line) before the
    run is reopened: it stays KILLED with its history, and a plain --resume still works."""
    endless = [*LONG, "--train-steps", "4000000"]  # still running whenever the SIGINT comes
    proc = start_train(store, *endless)
    client = MlflowClient(store)
    wait_for(lambda: stepping_agent_pid(client), proc, what="an agent stepping")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    run_id = the_run(client).info.run_id
    before = client.get_run(run_id)
    assert before.info.status == "KILLED"
    out = run_dqt("train", "--resume", run_id, *TINY_TOY, *endless, "--set", "learner.lr=0.1", "--tracking-uri", store)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "learner.lr: 0.0003 -> 0.1" in lines[0], out.stderr
    after = client.get_run(run_id)
    assert after.info.status == "KILLED" and after.info.end_time == before.info.end_time
    assert after.data.metrics == before.data.metrics


# A run that asks for an evaluation at HOLD_AT env steps, takes no result from then on, writes a
# periodic checkpoint at its next episode, writes HOLD_MARKER and holds still: SIGKILLed there, the
# evaluation was asked for before the checkpoint and never logged, and the metrics of the last
# seconds sat in the write buffer.
HOLD_WITH_PENDING_EVAL = (
    "import os, pathlib, time, dqt.core.running.learner_loop as ll\n"
    "take, collect = ll.LearnerLoop.take_episode, ll.LearnerLoop.collect_evals\n"
    "def hold(self, msg):\n"
    "    take(self, msg)\n"
    "    asked = getattr(self, 'asked', None)\n"
    "    if asked is None and self.env_steps >= int(os.environ['HOLD_AT']):\n"
    "        self.maybe_request_eval(force=True)\n"
    "        self.asked = self.env_steps\n"
    "    elif asked is not None and self.env_steps > asked:\n"
    "        self.save_checkpoint(final=False)\n"
    "        pathlib.Path(os.environ['HOLD_MARKER']).write_text(str(asked))\n"
    "        while True: time.sleep(1)\n"
    "def collect_before_asking(self, block):\n"
    "    if getattr(self, 'asked', None) is None:\n"
    "        collect(self, block)\n"
    "ll.LearnerLoop.take_episode, ll.LearnerLoop.collect_evals = hold, collect_before_asking\n"
    "import sys; from dqt.cli import entry; sys.argv[0] = 'dqt'; entry()")


def test_a_run_sigkilled_after_a_checkpoint_resumes_with_every_eval_and_episode_once(store, tmp_path):
    """SIGKILL right after a periodic checkpoint (a machine gone): what the run logged up to the
    checkpoint is in the store (the checkpoint waits for the metric writes), and an evaluation
    asked for before it but never logged is asked again on resume with the weights of its step.
    The resumed run's history then holds every eval interval and every episode exactly once."""
    budget = 3000
    marker = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_WITH_PENDING_EVAL, "train", *TINY_TOY, "--train-steps",
                             str(budget), "--tracking-uri", store, "--quiet"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HOLD_AT": "1500", "HOLD_MARKER": str(marker)})
    wait_for(lambda: marker.exists() and marker.read_text(), proc, timeout=180, what="the checkpoint after 1,500 steps")
    asked = int(marker.read_text())
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    client = MlflowClient(store)
    run_id = the_run(client).info.run_id
    assert asked not in steps_of(client, run_id, "eval/success_rate")  # asked for, never logged
    out = run_dqt("train", "--resume", run_id, "--tracking-uri", store, "--quiet", timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert steps_of(client, run_id, "eval/success_rate") == list(range(0, budget + 1, 300))
    assert steps_of(client, run_id, "train/episode_return") == list(range(60, budget + 1, 60))
