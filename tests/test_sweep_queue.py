"""The claim queue: workers sharing one Optuna storage claim every point exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from dqt.core.config import RunConfig
from dqt.sweeps.claims import ClaimQueue, StorageClock
from dqt.sweeps.expand import Point
from dqt.sweeps.liveness import Owner, claim_alive

ROOT = Path(__file__).resolve().parents[1]
STUDY = "sweep/test/quick"


def points(n: int) -> list[Point]:
    config = RunConfig()
    return [Point(config, config.config_hash(), seed) for seed in range(n)]


WORKER = f"""
import json, sys, time
from pathlib import Path
from dqt.sweeps.claims import ClaimQueue
storage, go, wanted = sys.argv[1], Path(sys.argv[2]), {{tuple(k) for k in json.loads(sys.argv[3])}}
queue = ClaimQueue(storage, "{STUDY}")
while not go.exists():  # start both workers' claiming at the same moment
    time.sleep(0.01)
got = []
while (claim := queue.claim(wanted)) is not None:
    got.append(claim.key)
    queue.finish(claim, ok=True)
print(json.dumps(got))
"""


def test_two_workers_claim_disjoint_sets_covering_all_points(tmp_path):
    storage = str(tmp_path / "optuna.journal")
    pts = points(40)
    ClaimQueue(storage, STUDY).sync(pts, finished=set())
    go = tmp_path / "go"
    keys = json.dumps([list(p.key) for p in pts])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, storage, str(go), keys], stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    time.sleep(1.5)  # both imported and waiting
    go.touch()
    got = [[tuple(k) for k in json.loads(p.communicate(timeout=120)[0])] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    a, b = set(got[0]), set(got[1])
    assert len(got[0]) == len(a) and len(got[1]) == len(b)  # no worker got a point twice
    assert not a & b  # no point went to both
    assert a | b == {p.key for p in pts}  # every point went to one


def test_sync_is_idempotent_and_skips_finished_points(tmp_path):
    queue = ClaimQueue(str(tmp_path / "q.journal"), STUDY)
    pts = points(5)
    assert queue.sync(pts, finished={pts[0].key}) == 4
    assert queue.sync(pts, finished={pts[0].key}) == 0  # already waiting
    claim = queue.claim({p.key for p in pts})
    assert claim is not None
    assert queue.sync(pts, finished=set()) == 1  # only the finished one is new; the claim is live
    assert queue.finish(claim, ok=False)  # a failed point is offered again at once (1 failure <= 3)
    assert queue.sync(pts, finished=set()) == 0


def test_failures_past_the_cap_are_given_up_and_hand_backs_are_no_failures(tmp_path):
    queue = ClaimQueue(str(tmp_path / "q.journal"), STUDY, max_retries=1)
    pts = points(2)
    queue.sync(pts, finished=set())
    mine = {pts[0].key}
    queue.release(queue.claim(mine), "preempted")  # handed back: offered again, no failure
    assert queue.failures() == {} and queue.claim(mine) is not None
    claim = queue.claim({pts[1].key})
    assert queue.finish(claim, ok=False) is True  # failure 1 <= 1: offered again
    assert queue.finish(queue.claim({pts[1].key}), ok=False) is False  # failure 2 > 1: given up
    assert queue.claim({pts[1].key}) is None
    assert queue.given_up({p.key for p in pts}) == {pts[1].key: 2}
    assert queue.sync(pts, finished=set()) == 0  # not offered again, whoever syncs
    assert ClaimQueue(str(tmp_path / "q.journal"), STUDY, max_retries=2).sync(pts, finished=set()) == 1


def test_a_finished_points_offer_markers_are_deleted(tmp_path):
    queue = ClaimQueue(str(tmp_path / "q.journal"), STUDY)
    pts = points(2)
    queue.sync(pts, finished=set())

    def markers():
        return sorted(s.study_name for s in queue.storage.get_all_studies() if ":offer:" in s.study_name)

    assert len(markers()) == 2
    done = queue.claim({pts[0].key})
    queue.finish(done, ok=True)
    assert markers() == [f"{STUDY}:offer:{pts[1].config_hash}:1:0"]
    assert queue.sync(pts, finished={pts[0].key}) == 0  # nothing offered twice afterwards


def test_claims_only_points_of_the_current_spec(tmp_path):
    queue = ClaimQueue(str(tmp_path / "q.journal"), STUDY)
    pts = points(3)
    queue.sync(pts, finished=set())
    claim = queue.claim({pts[2].key})
    assert claim is not None and claim.key == pts[2].key
    assert queue.claim({pts[2].key}) is None


def test_a_claim_of_a_dead_worker_is_reaped_and_offered_again(tmp_path):
    storage = str(tmp_path / "q.journal")
    pts = points(2)
    ClaimQueue(storage, STUDY).sync(pts, finished=set())
    # a worker claims one point and dies without closing the claim (as after SIGKILL)
    code = ("import sys; from dqt.sweeps.claims import ClaimQueue; q = ClaimQueue(sys.argv[1], sys.argv[2]); "
            f"c = q.claim({{('{pts[0].config_hash}', 0)}}); print(c.key[1])")
    out = subprocess.run([sys.executable, "-c", code, storage, STUDY], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert out.stdout.strip() == "0"
    queue = ClaimQueue(storage, STUDY)
    assert queue.sync(pts, finished=set()) == 1  # reaped: its owner pid is gone
    assert queue.claim({pts[0].key}) is not None


def test_claim_liveness_trusts_neither_hostnames_nor_pids():
    me = Owner.of()
    now = time.time()
    assert me.alive() is True
    assert claim_alive({"owner": me.token}, None, 1, now) is True
    # Inside this PID namespace the OS answers at once, whatever the heartbeat says.
    dead = replace(me, pid=2**22 + 7)  # beyond pid_max on Linux: never a live process
    assert dead.alive() is False
    assert claim_alive({"owner": dead.token, "heartbeat": now}, None, 600, now) is False
    # Same hostname, another container (PID namespace): its pid means nothing here, whether
    # or not a process of that number exists here; only the heartbeat (storage clock) decides.
    for pid in (me.pid, 2**22 + 7):
        twin = replace(me, worker="other", pid=pid, space="another-boot/4026532175")
        assert twin.host == me.host and twin.alive() is None
        assert claim_alive({"owner": twin.token, "heartbeat": now - 10}, None, 600, now) is True
        assert claim_alive({"owner": twin.token, "heartbeat": now - 700}, None, 600, now) is False
    # A claim whose worker died but whose `dqt train` child runs on is alive.
    assert claim_alive({"owner": dead.token, "child": me.token}, None, 600, now) is True
    # Written by an older version (host|pid|started): no namespace known, so the heartbeat decides.
    old = Owner.parse(f"{me.host}|{2**22 + 7}|1")
    assert old is not None and old.alive() is None
    assert claim_alive({"owner": old.token, "heartbeat": now}, None, 600, now) is True


def test_a_claim_keeps_its_own_grace_and_a_hung_live_worker_loses_it():
    me = Owner.of()
    now = time.time()
    twin = replace(me, worker="other", space="another-boot/4026532175")  # heartbeat alone decides
    # a reaper started with a shorter grace period cannot take a claim made with a longer one
    assert claim_alive({"owner": twin.token, "heartbeat": now - 100, "stale_after": 600}, None, 30, now) is True
    assert claim_alive({"owner": twin.token, "heartbeat": now - 700, "stale_after": 600}, None, 3600, now) is False
    # the OS says the worker lives; its heartbeat thread would keep the beat fresh, so a beat three
    # grace periods old means a hung process: dead after all
    assert claim_alive({"owner": me.token, "heartbeat": now - 2 * 60, "stale_after": 60}, None, 60, now) is True
    assert claim_alive({"owner": me.token, "heartbeat": now - 4 * 60, "stale_after": 60}, None, 60, now) is False


def test_heartbeats_come_from_a_thread_that_a_blocked_main_loop_and_a_failing_beat_do_not_stop(tmp_path):
    from dqt.sweeps.claims import HeartbeatThread

    queue = ClaimQueue(str(tmp_path / "q.journal"), STUDY, stale_after_s=3.0)
    queue.sync(points(1), finished=set())
    claim = queue.claim({points(1)[0].key})
    first = queue.storage.get_trial(claim.trial_id).user_attrs["heartbeat"]
    assert queue.storage.get_trial(claim.trial_id).user_attrs["stale_after"] == 3.0
    calls, logged = [], []

    def beat():
        calls.append(1)
        if len(calls) == 2:  # a database blip in the middle
            raise OSError("connection reset by peer")
        queue.heartbeat([claim])

    thread = HeartbeatThread(beat, 0.2, log=logged.append)
    thread.start()
    time.sleep(2.0)  # the main loop stuck for ten heartbeats
    thread.stop()
    thread.join(timeout=5)
    assert len(calls) >= 5 and len(logged) == 1 and "connection reset" in logged[0]
    assert queue.storage.get_trial(claim.trial_id).user_attrs["heartbeat"] > first + 1.0


def test_transient_storage_errors_are_retried_and_a_reaped_claim_is_reported_lost(tmp_path, monkeypatch):
    import sqlalchemy.exc

    queue = ClaimQueue(str(tmp_path / "q.journal"), STUDY)
    pts = points(1)
    queue.sync(pts, finished=set())
    real, fails = queue.storage.get_all_trials, []

    def flaky(*args, **kwargs):
        if len(fails) < 2:
            fails.append(1)
            raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("server closed the connection"))
        return real(*args, **kwargs)

    monkeypatch.setattr(queue.storage, "get_all_trials", flaky)
    claim = queue.claim({pts[0].key})  # two dropped connections, then it goes through
    assert claim is not None and len(fails) == 2
    assert queue.heartbeat([claim]) == []
    from optuna.trial import TrialState

    queue.storage.set_trial_state_values(claim.trial_id, TrialState.FAIL)  # a peer reaped it
    assert queue.heartbeat([claim]) == [claim]


def test_the_storage_clock_is_the_storages(tmp_path):
    # journal: the file system's time; RDB: the database's. Here both are this machine's clock.
    for url in (str(tmp_path / "q.journal"), f"sqlite:///{tmp_path / 'q.db'}"):
        if url.startswith("sqlite"):
            ClaimQueue(url, STUDY)  # creates the schema
        assert abs(StorageClock(url)() - time.time()) < 2.0, url


SYNC = f"""
import sys, time
from pathlib import Path
from dqt.core.config import RunConfig
from dqt.sweeps.claims import ClaimQueue
from dqt.sweeps.expand import Point
config = RunConfig()
pts = [Point(config, config.config_hash(), seed) for seed in range(int(sys.argv[3]))]
queue = ClaimQueue(sys.argv[1], "{STUDY}")
while not Path(sys.argv[2]).exists():
    time.sleep(0.005)
print(queue.sync(pts, finished=set()))
"""


def test_concurrent_syncs_offer_each_point_once(tmp_path):
    storage, go, n = str(tmp_path / "optuna.journal"), tmp_path / "go", 12
    ClaimQueue(storage, STUDY)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", SYNC, storage, str(go), str(n)], stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(3)]
    time.sleep(2.0)  # all imported and waiting
    go.touch()
    added = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert sum(added) == n, added  # every point offered by exactly one of the three
    queue = ClaimQueue(storage, STUDY)
    keys = [queue._key(t) for t in queue._trials()]
    assert len(keys) == len(set(keys)) == n


@pytest.mark.parametrize("kind", ["journal", "rdb"])
def test_a_dead_claim_is_offered_again_once_however_many_reap_it(tmp_path, kind):
    """On a journal, and on RDB storage (where the held claims are read by state in SQL)."""
    storage = str(tmp_path / "q.journal") if kind == "journal" else f"sqlite:///{tmp_path / 'q.db'}"
    pts = points(3)
    first = ClaimQueue(storage, STUDY, stale_after_s=5)
    first.sync(pts, finished=set())
    claim = first.claim({pts[0].key})
    first.finish(first.claim({pts[1].key}), ok=True)
    peer = ClaimQueue(storage, STUDY, stale_after_s=5, worker="peer")
    assert peer.held_elsewhere({p.key for p in pts}) == {pts[0].key}  # live: this process holds it
    # its worker is in another container and has stopped beating
    gone = replace(Owner.of(), worker="gone", pid=1, space="another-boot/1")
    first.storage.set_trial_user_attr(claim.trial_id, "owner", gone.token)
    first.storage.set_trial_user_attr(claim.trial_id, "heartbeat", first.clock() - 60)
    assert peer.held_elsewhere({p.key for p in pts}) == set()
    reapers = [ClaimQueue(storage, STUDY, stale_after_s=5, worker=f"w{i}") for i in range(3)]
    assert sum(q.reap() for q in reapers) == 1
    assert sum(q.sync(pts, finished={pts[1].key}) for q in reapers) == 0  # already waiting again
    states = sorted(t.state.name for t in first._trials() if first._key(t) == pts[0].key)
    assert states == ["FAIL", "WAITING"]
    assert reapers[0].claim({pts[0].key}) is not None


@pytest.mark.parametrize("url, shown", [
    ("postgresql://dqt:s3cret@db.example:5432/optuna", "postgresql://dqt:***@db.example:5432/optuna"),
    ("postgresql+psycopg://dqt:p%40ss@db/optuna", "postgresql+psycopg://dqt:***@db/optuna"),
    ("postgresql://dqt@db/optuna", "postgresql://dqt@db/optuna"),  # no password: the libpq way (~/.pgpass)
    ("mysql://root:pw@127.0.0.1/q", "mysql://root:***@127.0.0.1/q"),
    ("/shared/optuna.journal", "/shared/optuna.journal"),
])
def test_a_storage_password_is_never_shown(url, shown):
    from dqt.sweeps.claims import redact

    assert redact(url) == shown


def test_the_storage_url_comes_from_the_environment_so_ps_does_not_show_it(monkeypatch):
    import argparse

    from dqt.sweeps import cli

    monkeypatch.setenv("DQT_STORAGE", "postgresql://dqt:s3cret@db/optuna")
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    assert parser.parse_args(["sweep", "x.yaml"]).storage == "postgresql://dqt:s3cret@db/optuna"
