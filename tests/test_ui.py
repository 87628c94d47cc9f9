"""`dqt ui` (dqt/ui.py): its command line, what it refuses, and the real MLflow server over a
store holding a logged run and a tiny grid sweep, read through the REST API the UI itself
reads: experiments open as model-training experiments, a sweep's parent run shows results.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import fake_train as fake
import pytest
from conftest import REPO, empty_store

from dqt.core.config import ConfigError
from dqt.core.tracking import EXPERIMENT_KIND_TAG, TRAINING_KIND, RunTracker, artifact_root_for, ensure_store
from dqt.ui import serve_ui, ui_command


def test_ui_command_serves_sqlite_artifacts(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/m.db"
    cmd = ui_command(uri, port=5055)
    assert cmd[1:4] == ["-m", "mlflow", "server"]
    assert cmd[cmd.index("--backend-store-uri") + 1] == uri
    assert cmd[cmd.index("--artifacts-destination") + 1] == artifact_root_for(uri)
    assert "--default-artifact-root" not in ui_command("postgresql://u@h/db")


def test_serve_ui_refuses_servers_and_busy_ports(store: str) -> None:
    with pytest.raises(ConfigError, match="already an MLflow server"):
        serve_ui("http://127.0.0.1:5000")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match=f"cannot serve the UI on 127.0.0.1:{busy.getsockname()[1]}"):
            serve_ui(store, port=busy.getsockname()[1])


def test_core_does_not_import_the_ui() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys, dqt.core.tracking, dqt.core.running.trainer; "
                          "print('dqt.ui' in sys.modules)"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


# ---- the real server ------------------------------------------------------------------------
SPEC = """name: demo
base: {trainer: {task: toy-reach, train_steps: 300}, learner: {warmup_decisions: 50}, eval: {every: 100}}
grid: {learner.lr: [1.0e-4, 5.0e-4]}
seeds: 1
profiles: {quick: {}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`dqt ui` running on a store; `get` and `post` call its REST API."""

    def __init__(self, base: str, uri: str, run: RunTracker, sweep_parent: str) -> None:
        self.base, self.uri, self.run, self.sweep_parent = base, uri, run, sweep_parent

    def get(self, path: str, **query: str) -> dict:
        url = f"{self.base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        return json.loads(urllib.request.urlopen(url, timeout=10).read())

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(f"{self.base}{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(request, timeout=10).read())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """A store with one logged run and a finished two-configuration sweep (stand-in trainer),
    served by `dqt ui` as a user starts it; stopped by SIGTERM at the end, as a supervisor would."""
    from dqt.sweeps.expand import expand
    from dqt.sweeps.runner import SweepOptions, run_sweep
    from dqt.sweeps.spec import load_spec

    root = tmp_path_factory.mktemp("ui")
    uri = ensure_store(empty_store(tmp_path_factory, root))
    run = RunTracker(uri, "ui")
    run.log_metrics({"eval/success_rate": 0.5}, step=10)
    run.log_text("hello", "config.yaml")
    run.end()
    (root / "demo.yaml").write_text(SPEC)
    spec = load_spec(root / "demo.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAKE_TRAIN_LOG", str(root / "starts.jsonl"))
        result = run_sweep(spec, expand(spec), SweepOptions(tracking_uri=uri, train_cmd=fake.command(), jobs=2,
                                                            stream=io.StringIO(), workdir=root / "work"))
    assert result.exit_code == 0 and result.parent_run_id

    port = _free_port()
    start = time.monotonic()
    out = root / "ui.out"
    proc = subprocess.Popen([sys.executable, "-m", "dqt.cli", "ui", "--tracking-uri", uri, "--port", str(port)],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=out.open("w"), stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            assert proc.poll() is None, "dqt ui exited early"
            assert time.monotonic() - start < 60, "MLflow UI not up after 60 s"
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2).read()
                break
            except OSError:
                time.sleep(0.25)
        print(f"UI up in {time.monotonic() - start:.1f} s")
        served = Served(base, uri, run, result.parent_run_id)
        served.printed = out.read_text()
        yield served
    finally:
        proc.send_signal(signal.SIGTERM)  # Ctrl-C takes the same path
        rc = proc.wait(timeout=30)
    assert rc == 0
    with socket.socket() as s:  # the server's whole process group is gone: port free
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


@pytest.mark.slow
def test_the_ui_lists_a_logged_run_and_opens_a_sweep_on_its_runs_and_results(served: Served) -> None:
    # (one test: the served store takes ~15 s to build, and parallel test workers would each build it)
    runs = served.post("/api/2.0/mlflow/runs/search", {"experiment_ids": [served.run.experiment_id]})["runs"]
    assert [r["info"]["run_id"] for r in runs] == [served.run.run_id]
    artifact = urllib.request.urlopen(
        f"{served.base}/get-artifact?path=config.yaml&run_uuid={served.run.run_id}", timeout=10).read()
    assert artifact == b"hello"  # the server reads the absolute artifact folder

    for name in ("demo", "ui"):  # a sweep's experiment and a `dqt train` experiment
        experiment = served.get("/api/2.0/mlflow/experiments/get-by-name", experiment_name=name)["experiment"]
        tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
        assert tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND == "custom_model_development", name
    demo = served.get("/api/2.0/mlflow/experiments/get-by-name", experiment_name="demo")["experiment"]
    runs = served.post("/api/2.0/mlflow/runs/search", {"experiment_ids": [demo["experiment_id"]]})["runs"]
    parents = [r for r in runs if r["info"]["run_id"] == served.sweep_parent]
    (parent,) = parents
    tags = {t["key"]: t["value"] for t in parent["data"]["tags"]}
    metrics = {m["key"]: m["value"] for m in parent["data"]["metrics"]}
    # results: the stand-in's success curve rises linearly to 1000 lr, so its AUC is 500 lr
    assert metrics == pytest.approx({"success_auc/lr:0.0001": 0.05, "success_auc/lr:0.0005": 0.25,
                                     "success_auc/best": 0.25})
    # bookkeeping: tags, not metrics
    assert {k: v for k, v in tags.items() if k.startswith("dqt.points_")} == {
        "dqt.points_total": "2", "dqt.points_finished": "2", "dqt.points_failed": "0",
        "dqt.points_already_finished": "0", "dqt.points_unfinished": "0"}
    assert tags["best.config"] == "lr=0.0005" and tags["dqt.mode"] == "grid"
    assert parent["info"]["status"] == "FINISHED"
    children = sorted(r["info"]["run_name"] for r in runs if r["info"]["run_id"] != served.sweep_parent)
    assert children == ["lr=0.0001 seed=0", "lr=0.0005 seed=0"]  # names say the configuration
    configs = sorted({t["key"]: t["value"] for t in r["data"]["tags"]}["dqt.config"]
                     for r in runs if r["info"]["run_id"] != served.sweep_parent)
    assert configs == ["lr=0.0001", "lr=0.0005"]  # what the view groups seeds by

    # the printed URL opens the saved view: the quick profile's points, grouped by configuration
    (line,) = [x for x in served.printed.splitlines() if "viewStateShareKey" in x]
    assert line.split()[:3] == ["demo[quick]", "2", "points"]
    url = line.split()[-1]
    assert url == f"{served.base}/#/experiments/{demo['experiment_id']}/runs?viewStateShareKey=dqt-quick&compareRunsMode=CHART"
    view = json.loads({t["key"]: t["value"] for t in demo["tags"]}["mlflow.sharedViewState.dqt-quick"])
    assert view["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "dqt.config"}]
    filtered = served.post("/api/2.0/mlflow/runs/search", {"experiment_ids": [demo["experiment_id"]],
                                                            "filter": view["searchFilter"]})["runs"]
    assert sorted(r["info"]["run_name"] for r in filtered) == children  # its filter keeps the points alone


def test_a_view_per_sweep_and_profile_and_points_from_before_the_config_tag_group_by_their_run_name(
        tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from dqt.sweeps.ui_view import publish_views

    client = MlflowClient(ensure_store(f"sqlite:///{tmp_path}/m.db"))
    exp = client.create_experiment("noise")
    made = {}
    for profile, name, tags in (("cpu", "std=10 robust=none seed=2", {}),  # logged before dqt.config existed
                                ("cpu", "std=10 robust=none seed=0", {"dqt.config": "std=10 robust=none"}),
                                ("quick", "std=1 seed=0", {"dqt.config": "std=1"}),
                                ("cpu", "noise[cpu] sweep", {"dqt.role": "parent"})):
        run = client.create_run(exp, run_name=name, tags={"dqt.role": "point", "profile": profile, **tags})
        made[name] = run.info.run_id
    views = publish_views(client)
    assert [(v.experiment, v.profile, v.points, v.key) for v in views] == [
        ("noise", "cpu", 2, "dqt-cpu"), ("noise", "quick", 1, "dqt-quick")]
    assert client.get_run(made["std=10 robust=none seed=2"]).data.tags["dqt.config"] == "std=10 robust=none"
    assert "dqt.config" not in client.get_run(made["noise[cpu] sweep"]).data.tags
    state = json.loads(client.get_experiment(exp).tags["mlflow.sharedViewState.dqt-cpu"])
    assert state["searchFilter"] == "tags.profile = 'cpu' and tags.`dqt.role` = 'point'"
    assert views[0].url("http://h:1/") == f"http://h:1/#/experiments/{exp}/runs?viewStateShareKey=dqt-cpu&compareRunsMode=CHART"
