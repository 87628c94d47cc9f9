"""The toolkit installs like a library: one import package `dqt`, a wheel that runs outside the
clone, the shipped specs found by name, and torch only as a lower bound in the metadata."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import REPO


def test_the_metadata_pins_nothing_a_researchers_gpu_build_would_fight():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    torch = next(d for d in project["dependencies"] if d.startswith("torch"))
    assert "==" not in torch and ">=" in torch
    assert "torch==2.13.0" in (REPO / "Makefile").read_text()  # the two commands keep the build machines' pin


@pytest.mark.slow  # builds a wheel and a venv: ~30 s
def test_a_wheel_installed_outside_the_clone_runs_a_shipped_spec_and_a_toy_run(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("dqt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"dqt"}  # no generic top-level core, sweeps or analysis in site-packages
    assert {"dqt/core/config.py", "dqt/sweeps/noise.yaml", "dqt/analysis/report.py"} <= set(names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the dependencies (torch, mlflow, metaworld, ...) from this test's environment, not the clone
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    where = subprocess.run([str(py), "-c", "import dqt.core.config as c; print(c.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(site)), where  # the wheel's copy, not the clone's
    dqt = str(venv / "bin" / "dqt")
    out = subprocess.run([dqt, "sweep", "noise", "--dry-run", "--tracking-uri", f"sqlite:///{work / 'm.db'}"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "noise[quick]: 3 configurations x 1 seeds = 3 runs" in out.stdout, out.stderr
    out = subprocess.run([dqt, "train", "--task", "toy-reach", "--train-steps", "300", "--eval-every", "300",
                          "--eval-episodes", "1", "--set", "model.embed_dim=32", "--set", "model.num_heads=2",
                          "--set", "learner.warmup_decisions=20", "--quiet"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "FINISHED" in out.stdout, out.stderr[-2000:]
    assert (work / "mlflow.db").is_file()  # outside a clone the store goes to the working directory
