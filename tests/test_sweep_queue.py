"""The claim queue: workers sharing one Optuna storage claim every point exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from core.config import RunConfig
from sweeps.claims import ClaimQueue, Owner, claim_alive
from sweeps.expand import Point

ROOT = Path(__file__).resolve().parents[1]
STUDY = "sweep/test/quick"


def points(n: int) -> list[Point]:
    config = RunConfig()
    return [Point(config, config.config_hash(), seed) for seed in range(n)]


WORKER = f"""
import json, sys, time
from pathlib import Path
from sweeps.claims import ClaimQueue
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
    queue.finish(claim, ok=False)
    assert queue.sync(pts, finished=set()) == 1  # a failed point is offered again


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
    code = ("import sys; from sweeps.claims import ClaimQueue; q = ClaimQueue(sys.argv[1], sys.argv[2]); "
            f"c = q.claim({{('{pts[0].config_hash}', 0)}}); print(c.key[1])")
    out = subprocess.run([sys.executable, "-c", code, storage, STUDY], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert out.stdout.strip() == "0"
    queue = ClaimQueue(storage, STUDY)
    assert queue.sync(pts, finished=set()) == 1  # reaped: its owner pid is gone
    assert queue.claim({pts[0].key}) is not None


def test_claim_liveness():
    me = Owner.of()
    assert me.alive() is True
    assert claim_alive({"owner": me.token}, None, stale_after_s=1) is True
    dead = Owner(me.host, 2**22 + 7, "1")  # beyond pid_max on Linux: never a live process
    assert claim_alive({"owner": dead.token, "heartbeat": time.time()}, None, 600) is False
    other = Owner("some-other-host", 1, "1")
    assert other.alive() is None  # unknowable from here: the heartbeat decides
    assert claim_alive({"owner": other.token, "heartbeat": time.time()}, None, 600) is True
    assert claim_alive({"owner": other.token, "heartbeat": time.time() - 700}, None, 600) is False
