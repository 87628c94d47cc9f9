"""Typed run configuration: one dataclass per concern, one documented field each.

A `RunConfig` round-trips to a flat ``{"section.field": value}`` dict (MLflow params,
``--set key=value``) and to YAML (``--config FILE``).  Every way in goes through
`RunConfig.from_flat`, so unknown keys, wrong types and impossible values are rejected
in one place with a `ConfigError` naming the key.

One module on purpose (about 430 lines, most of them field documentation): every field a
user can set is defined and explained once, here, and `dqt train --list-config` prints it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dqt.core.names import did_you_mean

LR_SCHEDULES = ("constant", "linear", "log-curve", "linear-log-n", "linear-n")
TD_LOSSES = ("mse", "huber")
MODES = ("sync", "async")
REPLAY_SAMPLING = ("uniform", "return-weighted")
HEAD_REDUCTIONS = ("min", "mean")
DEVICES = ("auto", "cpu", "cuda")
BUDGETS = ("total", "per-agent")
GOALS = ("fresh", "mt1")
SUCCESS_CONVENTIONS = ("last-step", "any-step")
PRECISIONS = ("auto", "fp32", "bf16")
SEED_KEY = "trainer.seed"  # the one field a configuration's hash leaves out
VERSION_TAG = "dqt.version"  # every run's tag naming the toolkit version that made it (0.2.0 on)


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names the key."""


_NO_LEGACY = object()


def doc(default: Any, text: str, legacy: Any = _NO_LEGACY) -> Any:
    """A dataclass field with its one-line documentation attached.

    `legacy`: for a field added after runs were first recorded, the value under which a run
    behaves as runs from before the field existed. At that value the field stays out of the
    configuration's hash (`config_hash`), so adding a field keeps every finished point finished;
    at any other value the hash differs, so runs that behave differently never merge.
    """
    meta = {"doc": text} if legacy is _NO_LEGACY else {"doc": text, "legacy": legacy}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _checker(where: str) -> Callable[[bool, str, str], None]:
    """``need(ok, key, what)``: raise ``ConfigError("{where}{key} {what}")`` unless `ok`."""
    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"{where}{key} {what}")
    return need


@dataclass
class ModelConfig:
    """The Q-Transformer network."""

    embed_dim: int = doc(128, "Transformer width (QT-TDM Table III).")
    num_layers: int = doc(2, "Transformer blocks (QT-TDM Table III).")
    num_heads: int = doc(8, "Attention heads (QT-TDM Table III).")
    num_bins: int = doc(256, "K: bins per action dimension; bin 0 is -1, bin K-1 is +1.")
    dropout: float = doc(0.1, "Embedding, attention and residual dropout (QT-TDM Table III).")
    num_q_heads: int = doc(2, "Q heads; targets use their minimum (QT-TDM). 1 disables the second head.")
    zero_init_q_out: bool = doc(True, "Start the Q output layer at zero (the peers' codes): every bin starts at "
                                      "Q = 0, the pessimistic minimum return, instead of small random values.")

    def validate(self, where: str = "") -> None:
        need = _checker(where)
        need(self.num_heads >= 1, "model.num_heads", "must be >= 1")
        need(self.embed_dim > 0 and self.embed_dim % self.num_heads == 0, "model.embed_dim",
             f"must be a positive multiple of model.num_heads ({self.embed_dim} vs {self.num_heads})")
        need(self.num_layers >= 1, "model.num_layers", "must be >= 1")
        need(self.num_bins >= 2, "model.num_bins", "must be >= 2 (bin 0 = -1, bin K-1 = +1)")
        need(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        need(self.num_q_heads in (1, 2), "model.num_q_heads", "must be 1 or 2")


@dataclass
class LearnerConfig:
    """The learner: optimiser, TD targets and loss, replay buffer, update rate."""

    lr: float = doc(3e-4, "Base Adam learning rate (QT-TDM Table IV).")
    lr_schedule: str = doc("linear", f"Multiplier on lr over training, one of {LR_SCHEDULES} (DQT 4.2).")
    adam_eps: float = doc(1e-5, "Adam epsilon.")
    weight_decay: float = doc(1e-6, "Adam weight decay (QT-TDM Table IV).")
    grad_clip: float = doc(20.0, "Max global gradient norm (QT-TDM Table IV).")
    batch_size: int = doc(512, "Transitions per update (QT-TDM Table IV).")
    batch_per_agent: bool = doc(False, "Use batch_size x num_agents per update, as the DQT code's server did "
                                       "(its figure-2 set-up; sweeps/agents.yaml profile paper).")
    lr_divided_by_agents: bool = doc(False, "Use lr / num_agents as the base LR, as the DQT code's trainer did "
                                            "(`lr /= num_agents`; its figure-2 set-up).", legacy=False)
    gamma: float = doc(0.98, "Discount between time steps; none between action dims (QT eq. 1).")
    n_step: int = doc(3, "n of the n-step return across time steps (QT 4.3).")
    mc_lower_bound: bool = doc(False, "Targets are max(target, Monte-Carlo return-to-go) (QT 4.3).")
    conservative_weight: float = doc(0.0, "eta: weight of the push of untaken bins toward 0 (QT eq. 2).")
    td_loss: str = doc("huber", f"TD error penalty, one of {TD_LOSSES}; huber is smooth-L1 (QT-TDM).")
    target_tau: float = doc(0.005, "EMA coefficient of the target network (DQT eq. 10).")
    target_update_every: int = doc(10, "Learner updates between EMA target updates (QT-TDM Table IV).")
    replay_capacity: int = doc(1_000_000, "Transitions (decisions) kept in the replay buffer.")
    replay_sampling: str = doc("uniform", f"One of {REPLAY_SAMPLING}: uniform over transitions, or an episode "
                                          "drawn with probability proportional to its return, then a uniform "
                                          "step inside it (both peers' codes).")
    replay_return_floor: float = doc(1e-4, "return-weighted: an episode's weight is max(its training return, "
                                           "this floor), so zero-return episodes are still drawn (peers: 1e-4).")
    updates_per_step: float = doc(1.0, "Update-to-data ratio: learner updates per decision (env.action_repeat "
                                       "env steps) across agents; 1 = QT-TDM's one update per agent step.")
    warmup_decisions: int = doc(2000, "Decisions of uniform random actions before learning, on the budget's clock "
                                      "(trainer.budget); the peers' seed_steps = 2000 decisions = 4000 env steps "
                                      "under action repeat 2.")
    precision: str = doc("auto", f"Forward and loss precision, one of {PRECISIONS}: bf16 runs the networks under "
                                 "bf16 autocast; weights, gradients and Adam stay fp32 either way. auto = bf16 on "
                                 "a CPU with native bf16 (AVX-512 BF16 or AMX) when batch x num_bins >= 65,536 "
                                 "(the paper-size learner: +20-27 % updates/s measured, `make bench`), fp32 "
                                 "elsewhere (the small quick-profile learner is no faster in bf16; CUDA unmeasured). "
                                 "On CUDA, fp32 matmuls may use TF32.")
    compile: bool = doc(True, "On CUDA: compile the loss with torch.compile(mode='reduce-overhead') (CUDA graphs) "
                              "and step a capturable fused Adam with a device LR. Ignored on CPU, which runs eager.")

    def validate(self, where: str = "") -> None:
        need = _checker(where)
        need(self.lr > 0, "learner.lr", "must be > 0")
        need(self.lr_schedule in LR_SCHEDULES, "learner.lr_schedule",
             f"must be one of {', '.join(LR_SCHEDULES)} (got '{self.lr_schedule}')")
        need(self.batch_size >= 1, "learner.batch_size", "must be >= 1")
        need(0.0 < self.gamma <= 1.0, "learner.gamma", "must be in (0, 1]")
        need(self.n_step >= 1, "learner.n_step", "must be >= 1")
        need(self.conservative_weight >= 0, "learner.conservative_weight", "must be >= 0")
        need(self.td_loss in TD_LOSSES, "learner.td_loss", f"must be one of {', '.join(TD_LOSSES)}")
        need(0.0 < self.target_tau <= 1.0, "learner.target_tau", "must be in (0, 1]")
        need(self.target_update_every >= 1, "learner.target_update_every", "must be >= 1")
        need(self.replay_capacity >= 1, "learner.replay_capacity", "must be >= 1")
        need(self.replay_sampling in REPLAY_SAMPLING, "learner.replay_sampling",
             f"must be one of {', '.join(REPLAY_SAMPLING)} (got '{self.replay_sampling}')")
        need(self.replay_return_floor > 0 and math.isfinite(self.replay_return_floor), "learner.replay_return_floor",
             "must be > 0")
        need(self.updates_per_step >= 0, "learner.updates_per_step", "must be >= 0")
        need(self.warmup_decisions >= 0, "learner.warmup_decisions", "must be >= 0")
        need(self.grad_clip > 0, "learner.grad_clip", "must be > 0")
        need(self.precision in PRECISIONS, "learner.precision",
             f"must be one of {', '.join(PRECISIONS)} (got '{self.precision}')")


@dataclass
class ExplorationConfig:
    """How agents explore: epsilon-greedy over the action bins."""

    eps_max: float = doc(1.0, "Epsilon at the start of decay (DQT eq. 2).")
    eps_min: float = doc(0.01, "Epsilon floor (DQT eq. 2).")
    decay_fraction: float = doc(0.5, "T_decay as a fraction of trainer.train_steps (the DQT code: 50%; "
                                     "QT-TDM: 30%).")
    dim_redraw_prob: float = doc(0.0, "After the epsilon coin, each action dim is independently redrawn "
                                      "uniformly with this probability (the peers' acting: 0.1).")
    greedy_heads: str = doc("min", f"How the greedy policy (acting and evaluation) combines the Q heads, one of "
                                   f"{HEAD_REDUCTIONS}: min = the targets' pessimistic value, mean = the peers'.")

    def validate(self, where: str = "") -> None:
        need = _checker(where)
        need(0.0 <= self.eps_min <= self.eps_max <= 1.0, "exploration.eps_min",
             "and exploration.eps_max must satisfy 0 <= eps_min <= eps_max <= 1")
        need(0.0 < self.decay_fraction <= 1.0, "exploration.decay_fraction", "must be in (0, 1]")
        need(0.0 <= self.dim_redraw_prob <= 1.0, "exploration.dim_redraw_prob", "must be in [0, 1]")
        need(self.greedy_heads in HEAD_REDUCTIONS, "exploration.greedy_heads",
             f"must be one of {', '.join(HEAD_REDUCTIONS)} (got '{self.greedy_heads}')")


@dataclass
class NoiseConfig:
    """Noise added to training rewards, and the robust estimator that sees it."""

    kind: str = doc("gaussian", "Reward noise distribution: a registered noise kind (dqt.core.noise.NOISE_KINDS; built "
                                "in: gaussian, student-t).")
    mean: float = doc(0.0, "mu: mean of the noise added to every training reward (DQT eq. 12).")
    std: float = doc(0.0, "sigma: standard deviation of that noise (a true std; 0 disables noise).")
    df: float = doc(3.0, "Degrees of freedom of student-t noise (scaled so its std is `std`).")
    robust: str = doc("none", "Estimator over `samples` noisy draws (DQT eq. 15): none, or a registered one "
                              "(dqt.core.noise.ESTIMATORS; built in: median, mean, trimmed-mean).")
    samples: int = doc(100, "M: noisy reward draws the robust estimator sees (DQT eq. 14).")
    trim_fraction: float = doc(0.1, "Fraction cut from each tail by the trimmed-mean estimator.")
    before_reward_scale: bool = doc(True, "Draw the noise (and take the robust estimate) on a decision's unscaled "
                                          "sum of env rewards, then apply env.reward_scale, as the DQT code did, so "
                                          "mu and sigma mean the paper's; false adds them to the scaled reward "
                                          "(twice as strong under the 0.5 scale).", legacy=False)

    def validate(self, where: str = "") -> None:
        need = _checker(where)
        from dqt.core.noise import (  # the registries (their plugins may import this module)
            NOISE_KINDS,
            robust_names,
        )

        need(self.kind in NOISE_KINDS, "noise.kind",
             f"must be a registered noise kind, one of {', '.join(NOISE_KINDS.names())} (got '{self.kind}')")
        need(math.isfinite(self.mean), "noise.mean", "must be finite")
        need(self.std >= 0 and math.isfinite(self.std), "noise.std", f"must be >= 0 (got {self.std})")
        need(self.df > 2, "noise.df", "must be > 2 so the student-t noise has a finite std")
        need(self.robust in robust_names(), "noise.robust",
             f"must be one of {', '.join(robust_names())} (got '{self.robust}')")
        need(self.samples >= 1, "noise.samples", "must be >= 1")
        need(0.0 <= self.trim_fraction < 0.5, "noise.trim_fraction", "must be in [0, 0.5)")


@dataclass
class EnvConfig:
    """The environment protocol: episode length, action repeat, reward scale."""

    episode_length: int = doc(200, "Env steps per episode before the time-limit truncation (bootstrapped); "
                                   "0 = the task's own (MetaWorld 500, toy-reach 30). Paper protocol: 200.")
    action_repeat: int = doc(2, "Env steps per decision: each chosen action is repeated this many times "
                                "(paper protocol, QT-TDM Table I: 2; MetaWorld native: 1).")
    reward_scale: float = doc(0.5, "A decision's reward = reward_scale x the sum of its env rewards (paper "
                                   "protocol: 0.5, the mean of the two; native: 1).")
    goals: str = doc("fresh", f"One of {GOALS}: fresh = every reset draws a new goal and object position (the "
                              "peers' _freeze_rand_vec=False); mt1 = the 50 fixed goals of MetaWorld's MT1 "
                              "benchmark of trainer.seed. toy-reach always draws fresh goals.", legacy="mt1")

    def validate(self, where: str = "") -> None:
        need = _checker(where)
        need(self.episode_length >= 0, "env.episode_length", "must be >= 0 (0 = the task's own length)")
        need(self.action_repeat >= 1, "env.action_repeat", "must be >= 1")
        need(self.episode_length % self.action_repeat == 0, "env.episode_length",
             f"must be a multiple of env.action_repeat ({self.episode_length} vs {self.action_repeat})")
        need(self.reward_scale > 0 and math.isfinite(self.reward_scale), "env.reward_scale", "must be > 0")
        need(self.goals in GOALS, "env.goals", f"must be one of {', '.join(GOALS)} (got '{self.goals}')")


@dataclass
class TrainerConfig:
    """The run: task, agents, length, devices, checkpoints, weight publishing."""

    task: str = doc("door-unlock", "MetaWorld v3 task id (with or without -v3 / mw- prefix) or toy-reach.")
    num_agents: int = doc(1, "Agent processes exploring in parallel (DQT n).")
    envs_per_agent: int = doc(1, "Envs each agent steps in lockstep with one batched decode (1 = the paper).")
    train_steps: int = doc(300_000, "The run's budget in env steps, a multiple of env.action_repeat: all agents' "
                                    "together (budget total), or each agent's (budget per-agent).")
    budget: str = doc("total", f"One of {BUDGETS}: total = train_steps is shared by all agents (the fair "
                               "comparison; metrics' x-axis = total env steps); per-agent = each agent runs "
                               "train_steps, as in the DQT code's figure 2, and warm-up, epsilon, updates and "
                               "evals count one agent's steps (total env steps / num_agents).", legacy="total")
    mode: str = doc("sync", f"One of {MODES}: sync = paper (weights after each episode); async = never wait.")
    device: str = doc("auto", f"Learner device, one of {DEVICES}; auto picks cuda when present.")
    seed: int = doc(0, "Base seed: picks the MT1 benchmark's 50 goals (shared by every lane and the evaluator) "
                       "and every random stream of the run.")
    torch_threads: int = doc(1, "Torch intra-op threads per agent process.")
    checkpoint_every: int = doc(25_000, "Env steps between checkpoints (also written at the end); 0 = only at the end.")
    checkpoint_replay: bool = doc(True, "Save the replay buffer in each checkpoint, so --resume trains on the same "
                                        "data (~330 bytes a decision with MetaWorld: ~50 MB at 300k env steps).")
    max_update_backlog: int = doc(1000, "async: agents get no new episode slot while the learner owes more than "
                                        "this many updates, so the policy never trails the data far; 0 = no bound.")
    max_agent_restarts: int = doc(3, "Times a dead agent is restarted before the run fails.")
    publish_every_updates: int = doc(50, "async: publish the weights to the agents after this many learner updates "
                                         "or publish_every_ms, whichever comes first (sync publishes each episode).")
    publish_every_ms: float = doc(100.0, "async: the most time between two publishes while the learner trains (ms).")

    def validate(self, where: str = "") -> None:
        need = _checker(where)
        need(self.num_agents >= 1, "trainer.num_agents", "must be >= 1")
        need(self.envs_per_agent >= 1, "trainer.envs_per_agent", "must be >= 1")
        need(self.train_steps >= 1, "trainer.train_steps", "must be >= 1")
        need(self.mode in MODES, "trainer.mode", f"must be one of {', '.join(MODES)}")
        need(self.budget in BUDGETS, "trainer.budget", f"must be one of {', '.join(BUDGETS)} (got '{self.budget}')")
        need(self.device in DEVICES, "trainer.device", f"must be one of {', '.join(DEVICES)}")
        need(self.torch_threads >= 1, "trainer.torch_threads", "must be >= 1")
        need(self.checkpoint_every >= 0, "trainer.checkpoint_every", "must be >= 0")
        need(self.max_update_backlog >= 0, "trainer.max_update_backlog", "must be >= 0")
        need(self.max_agent_restarts >= 0, "trainer.max_agent_restarts", "must be >= 0")


@dataclass
class EvalConfig:
    """Greedy, noise-free evaluation."""

    every: int = doc(10_000, "Env steps between evaluations, on the budget's clock (trainer.budget).")
    episodes: int = doc(10, "Greedy, noise-free episodes per evaluation.")
    success: str = doc("last-step", f"Which success eval/success_rate (AUC, figures, searches) reports, one of "
                                    f"{SUCCESS_CONVENTIONS}: last-step = info['success'] at the episode's last env "
                                    "step (the DQT and QT-TDM code); any-step = at any step (MetaWorld's "
                                    "evaluation.py). Both are always logged as eval/success_last_step and "
                                    "eval/success_any_step.", legacy="any-step")
    stop_on_success: bool = doc(False, "End each eval episode at its first success (MetaWorld's evaluation.py); "
                                       "false runs it to the time limit, as the peers did, so eval/return is "
                                       "the full episode's.", legacy=True)
    dim_redraw_prob: float = doc(0.0, "Each greedy action dim redrawn uniformly with this probability during "
                                      "evaluation (the peers' eval kept their acting's 0.1; 0 = greedy).",
                                 legacy=0.0)

    def validate(self, where: str = "") -> None:
        need = _checker(where)
        need(self.every >= 1, "eval.every", "must be >= 1")
        need(self.episodes >= 1, "eval.episodes", "must be >= 1")
        need(self.success in SUCCESS_CONVENTIONS, "eval.success",
             f"must be one of {', '.join(SUCCESS_CONVENTIONS)} (got '{self.success}')")
        need(0.0 <= self.dim_redraw_prob <= 1.0, "eval.dim_redraw_prob", "must be in [0, 1]")


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "learner": LearnerConfig,
    "exploration": ExplorationConfig,
    "noise": NoiseConfig,
    "env": EnvConfig,
    "trainer": TrainerConfig,
    "eval": EvalConfig,
}


@dataclass
class RunConfig:
    """Everything that determines a run; its hash identifies a sweep point."""

    model: ModelConfig = field(default_factory=ModelConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # ---- flat dict -------------------------------------------------------------------
    def to_flat(self) -> dict[str, Any]:
        return {
            f"{name}.{f.name}": getattr(getattr(self, name), f.name)
            for name in SECTIONS
            for f in dataclasses.fields(SECTIONS[name])
        }

    @classmethod
    def from_flat(cls, flat: dict[str, Any], base: RunConfig | None = None, where: str = "") -> RunConfig:
        """Apply ``{"section.field": value}`` over `base` (defaults), checking each key and value."""
        cfg = dataclasses.replace(base) if base is not None else cls()
        sections = {name: dataclasses.replace(getattr(cfg, name)) for name in SECTIONS}
        for key, value in flat.items():
            section, _, name = str(key).partition(".")
            if section not in SECTIONS or not name or name not in _field_types(SECTIONS[section]):
                raise ConfigError(f"{where}unknown config key '{key}'{did_you_mean(str(key), field_docs())}")
            setattr(sections[section], name, coerce(value, _field_types(SECTIONS[section])[name], f"{where}{key}"))
        cfg = cls(**sections)
        cfg.validate(where)
        return cfg

    # ---- nested dict / YAML -----------------------------------------------------------
    def to_nested(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    @classmethod
    def from_nested(cls, nested: dict[str, Any], base: RunConfig | None = None, where: str = "") -> RunConfig:
        return cls.from_flat(flatten(nested, where), base=base, where=where)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_nested(), sort_keys=False)

    @classmethod
    def from_yaml(cls, path: str | Path, base: RunConfig | None = None) -> RunConfig:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config file must be a mapping of sections")
        return cls.from_nested(data, base=base, where=f"{path}: ")

    # ---- identity ---------------------------------------------------------------------
    def config_hash(self) -> str:
        """Stable 12-hex id of the configuration without its seed: the seeds of one
        configuration share it, so (config_hash, seed) identifies a sweep point."""
        return config_hash(self.to_flat())

    # ---- values -----------------------------------------------------------------------
    def validate(self, where: str = "") -> None:
        """Each section's own rules, then the rules that span sections."""
        for name in SECTIONS:
            getattr(self, name).validate(where)
        need = _checker(where)
        tr, en = self.trainer, self.env
        need(tr.train_steps % en.action_repeat == 0, "trainer.train_steps",
             f"must be a multiple of env.action_repeat ({tr.train_steps} vs {en.action_repeat}): a decision "
             "always costs action_repeat env steps")
        warmup = self.learner.warmup_decisions * en.action_repeat
        need(tr.train_steps > warmup, "trainer.train_steps",
             f"must exceed the warm-up (learner.warmup_decisions {self.learner.warmup_decisions} x "
             f"env.action_repeat {en.action_repeat} = {warmup} env steps): the run would never learn")

    # ---- the budget's clock -----------------------------------------------------------
    @property
    def clock_divisor(self) -> int:
        """Total env steps per step of the budget's clock: num_agents under budget per-agent, else 1."""
        return clock_divisor(self.to_flat())

    @property
    def total_env_steps(self) -> int:
        """Env steps of all agents over the whole run (the x-axis of its metrics ends here)."""
        return self.trainer.train_steps * self.clock_divisor


# Fields that no longer exist, with the one value every run had: hashed as if still there, so
# removing a field keeps every finished point finished (the counterpart of `doc`'s legacy).
REMOVED_FIELDS: dict[str, Any] = {
    "learner.debug_nan_at_update": 0,  # a test hook, now a test's own wrapper (tests/conftest.py)
}


def config_hash(flat: Mapping[str, Any]) -> str:
    """12-hex id of a flat ``{"section.field": value}`` config (or a run's MLflow params) without
    its `SEED_KEY`, and without each field at its `legacy_values` value (a run there behaves as
    one from before the field existed), with each of `REMOVED_FIELDS` at its old value; the one
    definition behind `RunConfig.config_hash` and the analysis."""
    legacy = legacy_values()
    kept = {k: v for k, v in {**REMOVED_FIELDS, **flat}.items()
            if k != SEED_KEY and not (k in legacy and str(v) == str(legacy[k]))}
    blob = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def recorded_config_hash(tags: Mapping[str, str], params: Mapping[str, str]) -> str:
    """The point hash of a recorded run (its MLflow tags and params) under this version's rule.

    A run of 0.2.0 or later (tag `VERSION_TAG`) carries it as its ``config_hash`` tag: the rule
    has not changed since.  Runs before 0.2.0 hashed every field that existed then, defaults
    included, so their tag is recomputed from their params, each typed by the current schema.  A
    run that cannot be this version's configuration keeps its tag: it records a field this version
    does not know (unless removed at its one old value) or lacks a field that has no legacy value.
    """
    tag = tags.get("config_hash", "")
    if tags.get(VERSION_TAG) or not params:
        return tag
    legacy = legacy_values()
    flat: dict[str, Any] = {}
    for name, section in SECTIONS.items():
        for key, typ in _field_types(section).items():
            dotted = f"{name}.{key}"
            if dotted not in params:
                if dotted not in legacy:
                    return tag
                continue
            try:
                flat[dotted] = coerce(params[dotted], typ, dotted)
            except ConfigError:
                return tag
    for dotted, value in params.items():
        if dotted not in flat and not (dotted in REMOVED_FIELDS and str(value) == str(REMOVED_FIELDS[dotted])):
            return tag
    return config_hash(flat)


@functools.cache
def legacy_values() -> dict[str, Any]:
    """``{"section.field": legacy value}`` of the fields added after runs were first recorded (`doc`)."""
    return {f"{name}.{f.name}": f.metadata["legacy"]
            for name, section in SECTIONS.items() for f in dataclasses.fields(section) if "legacy" in f.metadata}


def clock_divisor(flat: Mapping[str, Any]) -> int:
    """Total env steps per step of the budget's clock, for a flat config or a run's MLflow params
    (strings; runs logged before `trainer.budget` existed shared one total budget)."""
    if str(flat.get("trainer.budget", "total")) != "per-agent":
        return 1
    return int(float(flat.get("trainer.num_agents", 1)))


def flatten(nested: dict[str, Any], where: str = "") -> dict[str, Any]:
    """``{"learner": {"lr": 1}}`` -> ``{"learner.lr": 1}``; dotted keys pass through."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            if key not in SECTIONS:
                raise ConfigError(f"{where}unknown config section '{key}'{did_you_mean(str(key), SECTIONS)}")
            for sub, v in value.items():
                if isinstance(v, dict):
                    raise ConfigError(f"{where}unknown config section '{key}.{sub}'")
                flat[f"{key}.{sub}"] = v
        else:
            flat[str(key)] = value
    return flat


def field_docs() -> dict[str, str]:
    """``{"section.field": "documentation"}`` for every config field (for --help)."""
    return {
        f"{name}.{f.name}": f.metadata.get("doc", "")
        for name, section in SECTIONS.items()
        for f in dataclasses.fields(section)
    }


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["learner.lr=1e-3", ...]`` -> ``{"learner.lr": "1e-3"}`` (values coerced later)."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set '{item}' must look like section.field=value")
        out[key.strip()] = value.strip()
    return out


# ---- type coercion --------------------------------------------------------------------
_TYPE_CACHE: dict[type, dict[str, Any]] = {}


def _field_types(section: type) -> dict[str, Any]:
    if section not in _TYPE_CACHE:
        _TYPE_CACHE[section] = typing.get_type_hints(section)
    return _TYPE_CACHE[section]


def coerce(value: Any, typ: Any, key: str) -> Any:
    """Turn `value` (possibly a string from the command line) into `typ`, or raise ConfigError."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return coerce(value, args[0], key)
    if isinstance(value, str) and typ is not str:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"{key} expects {typ.__name__}, got '{value}'") from None
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} expects true or false, got {value!r}")
    if typ in (int, float) and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" (no dot) as a string; researchers write it anyway
            value = float(value) if typ is float else int(float(value))
        except ValueError:
            pass
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise ConfigError(f"{key} expects an integer, got {value!r}")
        return int(value)
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} expects a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key} expects a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {typ}")
