"""Expansion: shipped specs have the paper's run counts, hashes are stable, unions de-duplicate."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dqt.core.config import ConfigError
from dqt.sweeps.expand import expand, grid_combinations, run_name, varied_keys
from dqt.sweeps.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "sweeps"


@pytest.mark.parametrize("name,profile,runs,configs", [
    ("noise", "paper", 114, 19),   # (1 noise-free + (4 stds + 5 means) x {none, median}) x 6 seeds
    ("agents", "paper", 96, 16),   # {1,4,7,11} agents x 4 LR schedules x 6 seeds
    ("tasks", "paper", 48, 8),     # 4 tasks x {none, median} (noise mu 0, std 1) x 6 seeds
    ("search", "paper", 1, 1),     # the base point; the trials come from the search space
    ("noise", "quick", 3, 3),
    ("agents", "quick", 4, 4),
    ("tasks", "quick", 4, 4),
    ("search", "quick", 1, 1),
])
def test_shipped_specs_expand_to_the_paper_counts(name, profile, runs, configs):
    points = expand(load_spec(SPECS / f"{name}.yaml", profile))
    assert len(points) == runs
    assert len({p.config_hash for p in points}) == configs
    assert len({p.key for p in points}) == runs


def test_noise_paper_grid_is_the_papers():
    points = expand(load_spec(SPECS / "noise.yaml", "paper"))
    cfgs = {(p.config.noise.mean, p.config.noise.std, p.config.noise.robust) for p in points}
    fixed_mean = {(0.0, s, r) for s in (0.1, 1.0, 5.0, 10.0) for r in ("none", "median")}
    fixed_std = {(m, 1.0, r) for m in (1.0, 10.0, 14.0, 18.0, 20.0) for r in ("none", "median")}
    assert cfgs == fixed_mean | fixed_std | {(0.0, 0.0, "none")}  # + the noise-free reference
    assert {p.seed for p in points} == set(range(6))
    assert {p.config.trainer.task for p in points} == {"door-unlock-v3"}
    assert {p.config.trainer.train_steps for p in points} == {300_000}


def test_quick_profiles_stay_small_and_on_metaworld():
    # The quick profiles were timed on a 2-core CPU machine (README, docs/SWEEPS.md); growing
    # them past this breaks the 15-minute promise of `make sweep-*`.
    for name in ("noise", "agents", "tasks", "search"):
        spec = load_spec(SPECS / f"{name}.yaml", "quick")
        points = expand(spec)
        runs = spec.search.n_trials * len(spec.seeds) if spec.search else len(points)
        assert runs * max(p.config.trainer.train_steps for p in points) <= 90_000
        for p in points:
            assert p.config.trainer.task.endswith("-v3")  # the real MetaWorld task
            assert p.config.trainer.num_agents <= 2  # 2 cores
            assert p.config.eval.episodes <= 10


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


OVERLAP = """\
name: overlap
base: {trainer: {task: toy-reach, train_steps: 300}, learner: {warmup_decisions: 50}}
grids:
  - {noise.mean: [0], noise.std: [1, 5]}
  - {noise.std: [1], noise.mean: [0, 10]}   # (0, 1) again, keys in the other order
seeds: 2
"""


def test_union_of_grids_deduplicates_points(tmp_path):
    spec = load_spec(write(tmp_path, OVERLAP))
    assert len(grid_combinations(spec.grids)) == 4
    points = expand(spec)
    assert len(points) == 3 * 2  # (0,1), (0,5), (10,1) x 2 seeds
    assert len({p.key for p in points}) == len(points)


def test_seeds_share_the_config_hash(tmp_path):
    points = expand(load_spec(write(tmp_path, OVERLAP)))
    by_hash: dict[str, set[int]] = {}
    for p in points:
        by_hash.setdefault(p.config_hash, set()).add(p.seed)
        assert p.config.trainer.seed == p.seed
        assert p.config.config_hash() == p.config_hash
    assert all(seeds == {0, 1} for seeds in by_hash.values())


def test_point_order_and_spelling_do_not_change_hashes(tmp_path):
    a = expand(load_spec(write(tmp_path, OVERLAP)))
    shuffled = OVERLAP.replace("noise.std: [1, 5]", "noise.std: [5.0, 1]").replace("seeds: 2", "seeds: [1, 0]")
    b = expand(load_spec(write(tmp_path, shuffled)))
    assert {p.key for p in a} == {p.key for p in b}


def test_hashes_are_stable_across_processes():
    code = ("from dqt.sweeps.spec import load_spec; from dqt.sweeps.expand import expand; "
            "print(sorted(p.key for p in expand(load_spec('sweeps/noise.yaml', 'paper'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"})
    here = sorted(p.key for p in expand(load_spec(SPECS / "noise.yaml", "paper")))
    assert out.stdout.strip() == str(here)


def test_every_point_is_validated_before_anything_runs(tmp_path):
    # each value is fine alone; together they break a cross-field rule of RunConfig
    text = """\
    name: bad
    base: {trainer: {task: toy-reach}}
    grid: {exploration.eps_min: [0.01, 0.5], exploration.eps_max: [1.0, 0.4]}
    """
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:  # load_spec builds every configuration of every profile
        load_spec(path)
    assert str(err.value).startswith(
        f"{path}: grid: point {{exploration.eps_min=0.5, exploration.eps_max=0.4}}: exploration.eps_min")


def test_varied_keys_and_run_names():
    points = expand(load_spec(SPECS / "noise.yaml", "paper"))
    keys = varied_keys(points)
    assert keys == ["noise.mean", "noise.std", "noise.robust"]
    assert run_name(points[0], keys) == "mean=0 std=0 robust=none seed=0"
