"""Sweep spec validation: every broken spec is one ConfigError line naming the file and the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dqt.core.config import ConfigError
from dqt.sweeps.spec import load_spec

GOOD = """\
name: demo
base:
  trainer: {task: toy-reach, train_steps: 300}
  learner: {warmup_decisions: 50}
grid:
  noise.std: [0, 1]
seeds: 2
profiles:
  quick: {seeds: 1}
  paper: {base: {trainer: {train_steps: 600}}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


BROKEN = [
    # (case, spec text, profile, words the message must contain)
    ("unknown top-level key", GOOD + "gird: {}\n", None, ["unknown key 'gird'", "did you mean 'grid'"]),
    ("unknown base section", GOOD.replace("trainer: {task", "trainr: {task"), None,
     ["base", "unknown config section 'trainr'"]),
    ("unknown nested key", GOOD.replace("train_steps: 300}", "train_step: 300}"), None,
     ["base", "trainer.train_step", "did you mean 'trainer.train_steps'"]),
    ("unknown grid key", GOOD.replace("noise.std: [0, 1]", "noise.sdt: [0, 1]"), None,
     ["grid", "unknown config key 'noise.sdt'", "did you mean 'noise.std'"]),
    ("unknown key in profile", GOOD.replace("quick: {seeds: 1}", "quick: {sedes: 1}"), None,
     ["profiles.quick", "unknown key 'sedes'", "did you mean 'seeds'"]),
    ("unknown key in profile base", GOOD.replace("{train_steps: 600}", "{train_stepz: 600}"), "quick",
     ["profiles.paper.base", "trainer.train_stepz"]),
    ("wrong type", GOOD.replace("train_steps: 300}", "train_steps: lots}"), None,
     ["base", "trainer.train_steps", "integer"]),
    ("wrong type in grid", GOOD.replace("[0, 1]", "[0, big]"), None, ["grid", "noise.std", "number"]),
    ("grid values not a list", GOOD.replace("[0, 1]", "1"), None, ["grid", "noise.std", "list"]),
    ("negative std", GOOD.replace("[0, 1]", "[0, -1]"), None, ["grid", "noise.std", ">= 0"]),
    ("negative std in base", GOOD.replace("train_steps: 300}", "train_steps: 300}\n  noise: {std: -2}"), None,
     ["base", "noise.std", ">= 0"]),
    ("empty grid", GOOD.replace("grid:\n  noise.std: [0, 1]", "grid: {}"), None, ["grid", "empty"]),
    ("empty grid values", GOOD.replace("[0, 1]", "[]"), None, ["grid", "noise.std", "empty"]),
    ("empty grids list", GOOD.replace("grid:\n  noise.std: [0, 1]", "grids: []"), None, ["grids", "empty"]),
    ("grid and grids", GOOD + "grids: [{noise.mean: [1]}]\n", None, ["grid", "grids", "not both"]),
    ("unknown task in base", GOOD.replace("toy-reach", "door-unlok"), None,
     ["base", "trainer.task", "unknown task 'door-unlok'", "door-unlock"]),
    ("unknown task in grid", GOOD.replace("noise.std: [0, 1]", "trainer.task: [toy-reach, hamer]"), None,
     ["grid", "trainer.task", "unknown task 'hamer'"]),
    ("unknown lr schedule", GOOD.replace("noise.std: [0, 1]", "learner.lr_schedule: [linear, cosine]"), None,
     ["learner.lr_schedule", "cosine", "linear-log-n"]),
    ("unknown profile", GOOD, "fast", ["unknown profile 'fast'", "quick, paper"]),
    ("malformed YAML", "name: demo\ngrid: [unclosed\n", None, ["not valid YAML"]),
    ("not a mapping", "- just\n- a list\n", None, ["mapping"]),
    ("bad name", GOOD.replace("name: demo", "name: 'two words'"), None, ["name"]),
    ("seeds zero", GOOD.replace("seeds: 2", "seeds: 0"), None, ["seeds", ">= 1"]),
    ("seeds repeat", GOOD.replace("seeds: 2", "seeds: [1, 1]"), None, ["seeds", "repeat"]),
    ("seed in grid", GOOD.replace("noise.std: [0, 1]", "trainer.seed: [0, 1]"), None, ["grid", "seeds"]),
    ("section in grid", GOOD.replace("noise.std: [0, 1]", "noise: [0, 1]"), None, ["grid", "dotted key"]),
    ("search unknown key", GOOD.replace("grid:\n  noise.std: [0, 1]\n", "")
     + "search: {space: {learner.lr: {low: 0.1, high: 1}}, n_trial: 3}\n", None,
     ["search", "unknown key 'n_trial'", "n_trials"]),
    ("search bad range", GOOD.replace("grid:\n  noise.std: [0, 1]\n", "")
     + "search: {space: {learner.lr: {low: 0, high: 1, log: true}}, n_trials: 3}\n", None,
     ["search.space", "learner.lr", "low > 0"]),
    ("search unknown key in space", GOOD.replace("grid:\n  noise.std: [0, 1]\n", "")
     + "search: {space: {learner.lrr: {low: 0.1, high: 1}}, n_trials: 3}\n", None,
     ["search.space", "unknown config key 'learner.lrr'"]),
    ("search with grid", GOOD + "search: {space: {learner.lr: {low: 0.1, high: 1}}, n_trials: 3}\n", None,
     ["search", "not both"]),
]


@pytest.mark.parametrize("case,text,profile,words", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_spec_is_one_line_naming_file_and_key(tmp_path, case, text, profile, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_spec(path, profile)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message, message
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read sweep spec"):
        load_spec(tmp_path / "nope.yaml")


def test_quick_is_the_default_profile_and_profiles_override(tmp_path):
    path = write(tmp_path, GOOD)
    quick = load_spec(path)
    assert quick.profile == "quick" and quick.seeds == (0,)
    assert quick.base["trainer.train_steps"] == 300
    paper = load_spec(path, "paper")
    assert paper.seeds == (0, 1)
    # the profile changes one field; the base's other fields stay
    assert paper.base["trainer.train_steps"] == 600 and paper.base["trainer.task"] == "toy-reach"
    assert paper.profiles == ("quick", "paper")


def test_profile_grid_replaces_the_spec_grids(tmp_path):
    text = GOOD.replace("quick: {seeds: 1}", "quick: {grid: {noise.mean: [1, 2, 3]}}")
    spec = load_spec(write(tmp_path, text))
    assert spec.grids == ({"noise.mean": (1.0, 2.0, 3.0)},)


def test_spec_without_profiles_runs_as_written(tmp_path):
    text = "name: plain\nbase: {trainer: {task: toy-reach}}\nseeds: [3, 5]\n"
    spec = load_spec(write(tmp_path, text))
    assert spec.profile is None and spec.seeds == (3, 5) and spec.grids == ()


def test_task_aliases_are_canonical(tmp_path):
    text = GOOD.replace("noise.std: [0, 1]", "trainer.task: [mw-door-unlock, door-unlock-v3]")
    spec = load_spec(write(tmp_path, text))
    assert spec.grids[0]["trainer.task"] == ("door-unlock-v3", "door-unlock-v3")


def test_search_block_is_parsed(tmp_path):
    text = GOOD.replace("grid:\n  noise.std: [0, 1]\n", "") + textwrap.dedent("""\
        search:
          space:
            learner.lr: {low: 1.0e-5, high: 1.0e-3, log: true}
            learner.n_step: {choices: [1, 3]}
          n_trials: 4
        """)
    search = load_spec(write(tmp_path, text)).search
    assert search is not None and search.n_trials == 4 and search.direction == "maximize"
    lr, n_step = search.space
    assert (lr.key, lr.low, lr.high, lr.log) == ("learner.lr", 1e-5, 1e-3, True)
    assert n_step.choices == (1, 3)


# ---- duplicate keys, every profile checked, grids errors name their index -------------------
BROKEN_MORE = [
    # (case, spec text, profile, words the message must contain)
    ("duplicate grid key", GOOD.replace("  noise.std: [0, 1]\n", "  noise.std: [0, 1]\n  noise.std: [5]\n"), None,
     ["line 7", "duplicate key 'noise.std'", "line 6"]),
    ("duplicate top-level base", GOOD.replace("grid:\n", "base: {trainer: {task: toy-reach}}\ngrid:\n"), None,
     ["line 5", "duplicate key 'base'", "line 2"]),
    ("duplicate key in a flow mapping", GOOD.replace("quick: {seeds: 1}", "quick: {seeds: 1, seeds: 2}"), None,
     ["line 9", "duplicate key 'seeds'"]),
    ("duplicate field in a section", GOOD.replace("{task: toy-reach, train_steps: 300}",
                                                  "{task: toy-reach, train_steps: 300, task: reach}"), None,
     ["line 3", "duplicate key 'task'"]),
    ("field given as section and dotted key", GOOD.replace("  learner: {warmup_decisions: 50}\n",
                                                           "  learner: {warmup_decisions: 50}\n  learner.warmup_decisions: 25\n"),
     None, ["base", "learner.warmup_decisions", "twice"]),
    ("impossible value in a profile not run", GOOD.replace("{train_steps: 600}}", "{train_steps: 600}, noise: {std: -5}}"),
     "quick", ["profiles.paper", "noise.std", ">= 0"]),
    ("impossible grid value in a profile not run",
     GOOD.replace("paper: {base", "paper: {grids: [{noise.mean: [0]}, {noise.std: [1, -5]}], base"), "quick",
     ["profiles.paper.grids[1]: noise.std", ">= 0"]),
    ("spec grid impossible only under a profile not run",
     GOOD.replace("noise.std: [0, 1]", "learner.warmup_decisions: [50, 200]").replace("train_steps: 300}", "train_steps: 500}")
     .replace("{train_steps: 600}", "{train_steps: 300}"),
     "quick", ["profiles.paper: grid: ", "learner.warmup_decisions"]),
    ("impossible value in the default profile's sibling", GOOD.replace("quick: {seeds: 1}", "quick: {seeds: 0}"),
     "paper", ["profiles.quick.seeds", ">= 1"]),
    ("grids error names the index", GOOD.replace("grid:\n  noise.std: [0, 1]", "grids: [{noise.std: [0]}, {noise.std: [1, -5]}]"),
     None, ["grids[1]: noise.std must be >= 0"]),
    ("grids combination names the index",
     GOOD.replace("grid:\n  noise.std: [0, 1]",
                  "grids: [{noise.std: [0]}, {trainer.train_steps: [300, 90], learner.warmup_decisions: [40, 50]}]")
     .replace("{warmup_decisions: 50}", "{warmup_decisions: 25}"),
     None, ["grids[1]: point {trainer.train_steps=90, learner.warmup_decisions=50}", "trainer.train_steps"]),
]


@pytest.mark.parametrize("case,text,profile,words", BROKEN_MORE, ids=[b[0] for b in BROKEN_MORE])
def test_more_broken_specs_are_one_line(tmp_path, case, text, profile, words):
    test_broken_spec_is_one_line_naming_file_and_key(tmp_path, case, text, profile, words)


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    text = """\
        name: demo
        base:
          trainer: {task: toy-reach, train_steps: 300}
          learner: &learner {warmup_decisions: 50, batch_size: 32}
        profiles:
          quick: {base: {learner: {<<: *learner, batch_size: 64}}}
        """
    spec = load_spec(write(tmp_path, text))
    assert spec.base["learner.batch_size"] == 64 and spec.base["learner.warmup_decisions"] == 50


def test_every_profile_of_a_shipped_spec_loads():
    for path in sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.yaml")):
        spec = load_spec(path)
        for profile in spec.profiles:
            assert load_spec(path, profile).profile == profile


def test_duplicate_key_fails_the_cli_with_one_line(tmp_path):
    from conftest import run_dqt

    path = write(tmp_path, GOOD.replace("  noise.std: [0, 1]\n", "  noise.std: [0, 1]\n  noise.std: [5]\n"))
    proc = run_dqt("sweep", str(path), "--dry-run", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                   cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"dqt: error: {path}: line 7: duplicate key 'noise.std' "
                                   "(first given on line 6; give each key once)")
    assert "Traceback" not in proc.stderr and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("flags,words", [
    (["--heartbeat", "-1"], "--heartbeat must be a number of seconds > 0, got '-1'"),
    (["--stale-after", "nan"], "--stale-after must be a number of seconds > 0, got 'nan'"),
    (["--heartbeat", "10", "--stale-after", "20"], "--stale-after (20 s) must be at least 3 heartbeats"),
    (["--worker-id", "a|b"], "--worker-id must be a non-empty name without '|', got 'a|b'"),
])
def test_bad_worker_flags_fail_with_one_line_before_anything_is_written(tmp_path, flags, words):
    from conftest import run_dqt

    path = write(tmp_path, GOOD)
    proc = run_dqt("sweep", str(path), *flags, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path)
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "optuna.journal").exists()
