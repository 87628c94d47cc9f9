"""`dqt ui`: the MLflow UI/server on the tracking store, stopped cleanly by Ctrl-C or SIGTERM.

The CLI's, not the trainer's: `core` never imports this module.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from dqt.core.config import ConfigError
from dqt.core.tracking import artifact_root_for, ensure_store


def ui_command(uri: str, host: str = "127.0.0.1", port: int = 5000, workers: int = 1,
               allowed_hosts: str | None = None) -> list[str]:
    """The ``mlflow server`` command line `serve_ui` runs (`uri` already resolved).

    For SQLite stores the artifact root goes both to ``--default-artifact-root`` (experiments
    created in the UI) and ``--artifacts-destination`` (proxied uploads); runs logged by
    `RunTracker` carry absolute ``file://`` artifact URIs the server reads directly.  MLflow 3
    checks the Host header: localhost and private addresses pass by default; a public name
    needs `allowed_hosts`."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--host", host, "--port", str(port), "--workers", str(workers)]
    root = artifact_root_for(uri)
    if root:
        cmd += ["--default-artifact-root", root, "--artifacts-destination", root]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    return cmd


def serve_ui(uri: str | None, host: str = "127.0.0.1", port: int = 5000, *, workers: int = 1,
             allowed_hosts: str | None = None) -> int:
    """Run the MLflow UI/server on the tracking store until Ctrl-C (or SIGTERM).

    Returns the server's exit code, 0 when stopped by Ctrl-C/SIGTERM.  A bad URI, a server URI
    (it has its own UI) or a busy port raises `ConfigError` before anything starts.  One worker
    by default: the build machines have 2 cores, and the UI serves one person.
    """
    resolved = ensure_store(uri)  # server workers would otherwise race to create a new schema
    if resolved.lower().startswith(("http://", "https://")):
        raise ConfigError(f"tracking URI '{resolved}' is already an MLflow server: open it in a browser")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot serve the UI on {host}:{port}: {exc.strerror}; pick another --port") from None
    # Own process group: we decide when it stops, and can stop the uvicorn grandchildren too.
    # MLflow's job runner (GenAI scorers, trace roll-ups) is a second heavy process the training
    # UI never uses; users who want it set the variable themselves.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    proc = subprocess.Popen(ui_command(resolved, host, port, workers, allowed_hosts),
                            env=env, start_new_session=True)
    base = f"http://{host}:{port}"
    print(f"MLflow UI on {base} (store {resolved}); Ctrl-C stops it", flush=True)
    for line in sweep_view_lines(resolved, base):
        print(line, flush=True)
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_term(_signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt
        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _stop_group(proc)
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def sweep_view_lines(uri: str, base: str) -> list[str]:
    """One line per sweep and profile in the store: the URL of its points as curves grouped by
    configuration (`dqt.sweeps.ui_view`); nothing when the sweeps package is absent."""
    try:
        from mlflow import MlflowClient

        from dqt.sweeps.ui_view import publish_views
    except ImportError:
        return []
    views = publish_views(MlflowClient(uri))
    if not views:
        return []
    width = max(len(f"{v.experiment}[{v.profile}]") for v in views)
    return ["sweeps, their points grouped by configuration (mean over seeds, min-max band):"] + [
        f"  {f'{v.experiment}[{v.profile}]':<{width}}  {v.points:>4} points  {v.url(base)}" for v in views]


def _stop_group(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group (MLflow forwards it to uvicorn), SIGKILL after `grace_s`."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            # The group may outlive its leader (a worker still shutting down): give it the grace.
            end = time.monotonic() + wait_s
            while time.monotonic() < end:
                os.killpg(proc.pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
