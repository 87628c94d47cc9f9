"""Typed configs: round trips (flat dict, YAML), validation with one-line errors, stable hashes."""

import dataclasses
import os
import subprocess
import sys

import pytest
from conftest import REPO

from dqt.core.config import (
    SECTIONS,
    ConfigError,
    ModelConfig,
    RunConfig,
    config_hash,
    field_docs,
    flatten,
    parse_set,
)
from dqt.core.names import closest, did_you_mean


def custom() -> RunConfig:
    return RunConfig.from_flat({"learner.lr": 1e-4, "noise.std": 2.5, "noise.robust": "median",
                                "trainer.num_agents": 7, "learner.mc_lower_bound": True, "trainer.task": "hammer"})


def test_flat_round_trip_is_exact():
    cfg = custom()
    flat = cfg.to_flat()
    assert flat["learner.lr"] == 1e-4 and flat["trainer.num_agents"] == 7
    assert RunConfig.from_flat(flat) == cfg
    # MLflow stores params as strings: they come back as the same typed config
    assert RunConfig.from_flat({k: str(v) for k, v in flat.items()}) == cfg


def test_yaml_round_trip_is_exact(tmp_path):
    cfg = custom()
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert RunConfig.from_yaml(path) == cfg
    assert RunConfig.from_nested(cfg.to_nested()) == cfg


def test_every_field_is_documented_once():
    docs = field_docs()
    assert set(docs) == set(RunConfig().to_flat())
    assert all(text.strip() for text in docs.values())
    assert len(docs) == sum(len(dataclasses.fields(s)) for s in SECTIONS.values())


def test_values_are_coerced_and_checked():
    cfg = RunConfig.from_flat(parse_set(["learner.lr=1e-3", "trainer.train_steps=3e5", "learner.mc_lower_bound=true"]))
    assert cfg.learner.lr == 1e-3 and cfg.trainer.train_steps == 300_000 and cfg.learner.mc_lower_bound is True
    with pytest.raises(ConfigError, match="learner.batch_size expects an integer, got 1.5"):
        RunConfig.from_flat({"learner.batch_size": 1.5})
    with pytest.raises(ConfigError, match="learner.mc_lower_bound expects true or false"):
        RunConfig.from_flat({"learner.mc_lower_bound": "maybe"})


@pytest.mark.parametrize("flat,message", [
    ({"noise.sdt": 1}, "unknown config key 'noise.sdt' (did you mean 'noise.std'?)"),
    ({"nosie.std": 1}, "unknown config key 'nosie.std'"),
    ({"noise.std": -1}, "noise.std must be >= 0 (got -1.0)"),
    ({"learner.lr_schedule": "cosine"}, "learner.lr_schedule must be one of"),
    ({"model.embed_dim": 100}, "model.embed_dim must be a positive multiple of model.num_heads"),
    ({"exploration.eps_min": 0.5, "exploration.eps_max": 0.1}, "eps_min <= eps_max"),
    ({"trainer.mode": "lockstep"}, "trainer.mode must be one of sync, async"),
    ({"model.num_heads": 0}, "model.num_heads must be >= 1"),
    ({"learner.precision": "fp16"}, "learner.precision must be one of auto, fp32, bf16 (got 'fp16')"),
    ({"trainer.train_steps": 1001, "learner.warmup_decisions": 0}, "trainer.train_steps must be a multiple of "
                                                                "env.action_repeat (1001 vs 2)"),
    ({"trainer.train_steps": 100}, "trainer.train_steps must exceed the warm-up (learner.warmup_decisions 2000 x "
                                   "env.action_repeat 2 = 4000 env steps)"),
    ({"trainer.budget": "each"}, "trainer.budget must be one of total, per-agent (got 'each')"),
    ({"env.goals": "fixed"}, "env.goals must be one of fresh, mt1 (got 'fixed')"),
    ({"eval.success": "final"}, "eval.success must be one of last-step, any-step (got 'final')"),
    ({"eval.dim_redraw_prob": 1.5}, "eval.dim_redraw_prob must be in [0, 1]"),
])
def test_bad_values_name_the_key(flat, message):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_flat(flat, where="spec.yaml: ")
    assert str(err.value).startswith("spec.yaml: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_each_section_validates_its_own_fields():
    ModelConfig().validate()
    with pytest.raises(ConfigError, match=r"^x: model.dropout must be in \[0, 1\)$"):
        ModelConfig(dropout=1.0).validate("x: ")
    for name in SECTIONS:  # the defaults pass every section's rules
        getattr(RunConfig(), name).validate()


def test_did_you_mean():
    assert did_you_mean("noise.sdt", field_docs()) == " (did you mean 'noise.std'?)"
    assert did_you_mean("zzz", ["noise.std"]) == ""
    assert did_you_mean("door-unlok", {"door-unlock": "door-unlock-v3"}, shown={"door-unlock": "door-unlock-v3"}) == (
        " (did you mean 'door-unlock-v3'?)")
    assert closest("sqlit", ["sqlite", "http"]) == "sqlite" and closest("x", []) is None


def test_nested_unknown_section_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config section 'lerner' \(did you mean 'learner'\?\)"):
        flatten({"lerner": {"lr": 1}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("learner: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        RunConfig.from_yaml(bad)


def test_config_hash_is_stable_and_ignores_only_the_seed():
    a = custom()
    seeded = RunConfig.from_flat({"trainer.seed": 5}, base=a)
    other = RunConfig.from_flat({"noise.std": 2.0}, base=a)
    assert a.config_hash() == seeded.config_hash()  # seeds of one configuration share the hash
    assert a.config_hash() != other.config_hash()
    assert len(a.config_hash()) == 12
    # the same in another Python process (another hash seed): sweeps match points across runs
    code = "from dqt.core.config import RunConfig; print(RunConfig.from_flat({'noise.std': 2.5}).config_hash())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == RunConfig.from_flat({"noise.std": 2.5}).config_hash()


def test_one_config_hash_for_configs_and_run_params():
    """One hash for RunConfig and for a run's MLflow params (the analysis' fallback id), seed left out."""
    cfg = custom()
    params = {k: str(v) for k, v in cfg.to_flat().items()}
    assert config_hash(cfg.to_flat()) == cfg.config_hash()
    assert config_hash(params) == config_hash({**params, "trainer.seed": "9"})


# The fields a configuration's hash covered when `legacy` values were introduced (2026-12-05).
# A field added since must declare the value that reproduces the behaviour from before it
# existed (`doc(..., legacy=...)`), or every finished point of every store would run again.
HASHED_FIELDS_2026_12_05 = frozenset({
    "model.embed_dim", "model.num_layers", "model.num_heads", "model.num_bins", "model.dropout",
    "model.num_q_heads", "model.zero_init_q_out", "learner.lr", "learner.lr_schedule", "learner.adam_eps",
    "learner.weight_decay", "learner.grad_clip", "learner.batch_size", "learner.batch_per_agent", "learner.gamma",
    "learner.n_step", "learner.mc_lower_bound", "learner.conservative_weight", "learner.td_loss",
    "learner.target_tau", "learner.target_update_every", "learner.replay_capacity", "learner.replay_sampling",
    "learner.replay_return_floor", "learner.updates_per_step", "learner.warmup_decisions",
    "learner.precision", "learner.compile", "exploration.eps_max",
    "exploration.eps_min", "exploration.decay_fraction", "exploration.dim_redraw_prob", "exploration.greedy_heads",
    "noise.kind", "noise.mean", "noise.std", "noise.df", "noise.robust", "noise.samples", "noise.trim_fraction",
    "env.episode_length", "env.action_repeat", "env.reward_scale", "trainer.task", "trainer.num_agents",
    "trainer.envs_per_agent", "trainer.train_steps", "trainer.mode", "trainer.device", "trainer.seed",
    "trainer.torch_threads", "trainer.checkpoint_every", "trainer.checkpoint_replay", "trainer.max_update_backlog",
    "trainer.max_agent_restarts", "trainer.publish_every_updates", "trainer.publish_every_ms", "eval.every",
    "eval.episodes",
})


def test_every_field_added_since_hashing_began_declares_its_legacy_value():
    from dqt.core.config import legacy_values

    added = set(RunConfig().to_flat()) - HASHED_FIELDS_2026_12_05
    assert added <= set(legacy_values()), f"new fields without a legacy value: {sorted(added - set(legacy_values()))}"


def test_a_field_at_its_legacy_value_keeps_the_hash_of_runs_from_before_it_existed():
    from dqt.core.config import config_hash, legacy_values

    flat = RunConfig.from_flat({"trainer.task": "toy-reach"}).to_flat()
    legacy = legacy_values()
    before = {k: v for k, v in flat.items() if k not in legacy}  # a run recorded before those fields
    at_legacy = {**flat, **legacy}
    assert config_hash(at_legacy) == config_hash(before)
    # MLflow hands params back as strings: the same rule holds for them
    assert config_hash({k: str(v) for k, v in at_legacy.items()}) == config_hash({k: str(v) for k, v in before.items()})
    # a field away from its legacy value behaves differently, so its runs never merge with older ones
    for key, value in legacy.items():
        other = {"env.goals": "fresh", "trainer.budget": "per-agent", "eval.success": "last-step",
                 "eval.dim_redraw_prob": 0.1}.get(key, not value if isinstance(value, bool) else None)
        assert config_hash({**at_legacy, key: other}) != config_hash(before), key
    # and a changed default is a changed value: hashes differ, nothing merges silently
    assert config_hash({**at_legacy, "exploration.decay_fraction": 0.3}) != config_hash(at_legacy)


def test_a_removed_field_keeps_the_hash_of_runs_that_had_it():
    from dqt.core.config import REMOVED_FIELDS, config_hash

    flat = RunConfig.from_flat({"trainer.task": "toy-reach"}).to_flat()
    assert not set(REMOVED_FIELDS) & set(flat)
    assert config_hash(flat) == config_hash({**flat, **REMOVED_FIELDS})  # what an older run's params hold


def test_a_run_from_before_0_2_0_counts_under_the_hash_its_params_get_now():
    """Before 0.2.0 a run's tag hashed every field that existed, defaults included; its params,
    typed by today's schema, give the hash it has now."""
    import hashlib
    import json

    from dqt.core.config import REMOVED_FIELDS, VERSION_TAG, legacy_values, recorded_config_hash

    def hash_every_field(flat: dict) -> str:  # the rule before 0.2.0
        blob = json.dumps({k: v for k, v in flat.items() if k != "trainer.seed"}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    legacy = legacy_values()
    cfg = RunConfig.from_flat(legacy, base=custom())  # today's config of what the old runs did
    # a run of 0.1.x: the fields with legacy values at those values, a field removed since at its one value
    typed = {**cfg.to_flat(), **REMOVED_FIELDS}
    params = {k: str(v) for k, v in typed.items()}
    tags = {"config_hash": hash_every_field(typed), "seed": str(cfg.trainer.seed)}
    assert tags["config_hash"] != cfg.config_hash()  # why a tag query alone cannot find it
    assert recorded_config_hash(tags, params) == cfg.config_hash()
    # a run from before the fields with legacy values existed
    older = {k: v for k, v in params.items() if k not in legacy}
    assert recorded_config_hash({**tags, "config_hash": "0123456789ab"}, older) == cfg.config_hash()
    # another value, another configuration; today's defaults of the added fields are not what it ran
    assert recorded_config_hash(tags, {**params, "learner.lr": "0.002"}) != cfg.config_hash()
    assert recorded_config_hash(tags, params) != custom().config_hash()
    # from 0.2.0 on the tag is the hash
    assert recorded_config_hash({**tags, VERSION_TAG: "0.2.0"}, params) == tags["config_hash"]
    # runs that cannot be this version's configuration keep their tag
    no_legacy = next(k for k in params if k not in legacy and k not in REMOVED_FIELDS and k != "trainer.seed")
    for other in ({k: v for k, v in params.items() if k != no_legacy},  # lacks a field without a legacy value
                  {**params, "learner.flux": "1"},  # a field this version does not know
                  {**params, "learner.debug_nan_at_update": "5"},  # a removed field away from its one value
                  {**params, "learner.lr": "fast"}):  # a value today's type refuses
        assert recorded_config_hash(tags, other) == tags["config_hash"]
