"""PostgreSQL and `mlflow server`, started and stopped by the tests that need them.

Both run from a temporary directory on loopback ports, with nothing left behind: `stop`
ends each server and the processes it started.  PostgreSQL refuses to run as root, so as
root its programs run as the ``postgres`` user (the machine image has PostgreSQL 15).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def separate_pid_namespace() -> list[str]:
    """A prefix that runs a command in its own PID namespace (a second container on the same
    host name, or another host), where a PID of the other worker means nothing; [] where that is
    not allowed (needs root and `unshare`)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return []
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    return ["unshare", "--pid", "--fork", "--mount-proc"] if probe.returncode == 0 else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin(name: str) -> str | None:
    """A PostgreSQL program on PATH or in Debian's versioned folder."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _as_postgres() -> list[str]:
    """Root cannot run PostgreSQL: run its programs as the `postgres` user."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster; `url(db)` is what a client passes on."""

    data: Path
    port: int
    max_connections: int = 200

    @classmethod
    def start(cls, databases: tuple[str, ...], max_connections: int = 200) -> Postgres:
        """Start a cluster holding `databases`; `max_connections` is the server's connection cap
        (a load benchmark with hundreds of workers needs more than the tests' 200)."""
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError("PostgreSQL (initdb, pg_ctl) is not installed")
        # Its own folder in /tmp: pytest's tmp folders are closed to the postgres user.
        root = Path(tempfile.mkdtemp(prefix="dqt-pg-"))
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        pg = cls(root / "data", free_port(), max_connections)
        run = _as_postgres()
        _run([*run, initdb, "-D", str(pg.data), "-A", "trust", "-U", "postgres", "--no-sync"])
        opts = (f"-p {pg.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c max_connections={max_connections}")
        _run([*run, pg_ctl, "-D", str(pg.data), "-o", opts, "-l", str(root / "server.log"), "-w", "start"])
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            for db in databases:
                conn.execute(f"CREATE DATABASE {db}")
        return pg

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def restart(self, down_s: float) -> None:
        """Stop the server at once (every connection drops), stay down `down_s`, start it again."""
        pg_ctl, run, root = pg_bin("pg_ctl"), _as_postgres(), self.data.parent
        _run([*run, pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        time.sleep(down_s)
        opts = (f"-p {self.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c max_connections={self.max_connections}")
        _run([*run, pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(root / "server.log"), "-w", "start"])

    def stop(self) -> None:
        subprocess.run([*_as_postgres(), pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(self.data.parent, ignore_errors=True)


def _run(cmd: list[str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}: {(out.stderr or out.stdout)[-1500:]}")


@dataclass
class MlflowServer:
    """`mlflow server` on a PostgreSQL backend store, serving artifacts from a folder."""

    proc: subprocess.Popen
    url: str

    @classmethod
    def start(cls, backend: str, artifacts: Path, log: Path, timeout_s: float = 120.0,
              port: int | None = None, extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> MlflowServer:
        port = port or free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
                                     "--artifacts-destination", str(artifacts), "--host", "127.0.0.1",
                                     "--port", str(port), "--workers", "1", *extra],
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, **(env or {})})
        server = cls(proc, f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{server.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return server
            except OSError:
                time.sleep(0.5)
        server.stop()
        raise RuntimeError(f"mlflow server not up after {timeout_s:.0f} s: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its uvicorn workers
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
