"""The learner: one Q-Transformer update per call, EMA target network, LR schedule.

One update (QT eq. 1-2, DQT eq. 8-10):
  1. targets from the target network under no_grad, in eval mode (no dropout noise in
     the targets): the full sequence on (s_t, a_t) for dims 2..N (skipped when N = 1)
     and the one-token ``first_dim`` on s_{t+n'} for the bootstrap;
  2. online forward with teacher forcing on the taken bins, TD + eta * conservative;
  3. a global grad-norm clip, the finiteness guard, Adam step, LR-schedule step;
  4. every `target_update_every` updates, theta_t <- tau theta + (1 - tau) theta_t.

No host sync per update: on a GPU one device round trip costs about as much as the whole
update, so nothing an update computes is read on the host. Its metrics are summed on the
device and read once per log window (`window_metrics`). A non-finite loss (or gradient)
sets a sticky device flag instead of raising: the flag is fused Adam's ``found_inf``, so
that step and every later one leave weights and optimizer state as they were after the
last finite update, and the next `window_metrics` (or `state_dict`) raises
FloatingPointError naming the first bad update and the window's update range. Where no
fused Adam exists the guard falls back to a host check per update.

Precision (`learner.precision`, auto: `resolve_precision`): bf16 autocast around the forward
passes, loss terms in fp32, fp32 master weights. CUDA also allows TF32 matmuls. Graph mode (`learner.compile`,
CUDA only): the loss (both networks' forwards and backward) is compiled with
``mode="reduce-overhead"``, i.e. replayed as CUDA graphs, and Adam is fused and capturable
with its LR a device tensor the schedule fills in place. The CPU path is always eager.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from dqt.core.config import RunConfig
from dqt.core.learning.loss import per_dim_targets, qt_loss
from dqt.core.learning.model import QTransformer
from dqt.core.learning.replay import Batch
from dqt.core.learning.schedules import lr_multiplier

METRIC_KEYS = ("loss/td", "loss/conservative", "q/mean", "opt/lr")
_FAULTS = {1: "loss", 2: "gradient"}


@torch.no_grad()
def ema_update(target: torch.nn.Module, online: torch.nn.Module, tau: float) -> None:
    """DQT eq. 10: theta_t <- tau * theta + (1 - tau) * theta_t, in place, all parameters.

    ``lerp(t, o, tau) = t + tau (o - t)``, which is the same convex combination in one
    fused multi-tensor kernel. Buffers (none are learnt here) are copied as they are.
    """
    t_params = [p for p in target.parameters()]
    o_params = [p for p in online.parameters()]
    torch._foreach_lerp_(t_params, o_params, tau)
    for tb, ob in zip(target.buffers(), online.buffers(), strict=True):
        tb.copy_(ob)


def _adam(params: list[torch.nn.Parameter], lr: float, eps: float, weight_decay: float,
          capturable: bool = False) -> torch.optim.Adam:
    """Adam with the fused kernel where the device has one (CPU and CUDA: ~10x faster step
    than the multi-tensor path on this 0.6M-parameter model, and the only path that honours
    ``found_inf``), else the foreach path. Capturable: step counts and the LR live on the
    device, so a graph can replay the step; the LR is then a tensor the schedule fills."""
    try:
        lr_arg = torch.tensor(lr, dtype=torch.float32, device=params[0].device) if capturable else lr
        return torch.optim.Adam(params, lr=lr_arg, eps=eps, weight_decay=weight_decay, fused=True,
                                capturable=capturable)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=lr, eps=eps, weight_decay=weight_decay, foreach=True)


def _graph_mode(device: torch.device, compile_flag: bool) -> bool:
    """CUDA graphs pay off only where launch overhead dominates; on CPU they do not exist."""
    return device.type == "cuda" and compile_flag


def _compile(fn: Callable) -> Callable:
    return torch.compile(fn, mode="reduce-overhead")


# auto precision: bf16 where it was measured faster (module docstring of benchmarks/bench_learner.py)
AUTO_BF16_MIN_BATCH_BINS = 65_536


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), from /proc/cpuinfo (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str, device: torch.device, batch_size: int, num_bins: int) -> str:
    """``learner.precision`` as it runs: auto is bf16 on a CPU with native bf16 for a learner of
    at least `AUTO_BF16_MIN_BATCH_BINS` batch x bins (the paper's 512 x 256 gained 20-27 %; the
    quick profiles' 128 x 64 lost 2-13 %), else fp32."""
    if precision != "auto":
        return precision
    big = batch_size * num_bins >= AUTO_BF16_MIN_BATCH_BINS
    return "bf16" if device.type == "cpu" and big and cpu_has_native_bf16() else "fp32"


def allow_tf32() -> None:
    """TF32 matmuls on CUDA (Ampere and later): ~1e-3 relative error, far below the TD noise."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # the API that replaces allow_tf32
        matmul.fp32_precision = "tf32"
    else:
        matmul.allow_tf32 = True


class Learner:
    """Owns the online Q-Transformer, its EMA target, Adam and the LR schedule.

    Args:
        obs_dim: observation size (MetaWorld: 39).
        action_dims: N action dims (MetaWorld: 4).
        cfg: the run config; `model` sizes the network, `learner` the update, `trainer` the
            publish clock.
        device: where the networks live and the update runs.
        total_updates: T of the LR schedule (learner updates over the whole run).
        num_agents: n of the LR schedule (DQT 4.2).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dims: int,
        cfg: RunConfig,
        device: torch.device | str = "cpu",
        total_updates: int = 1,
        num_agents: int = 1,
    ) -> None:
        self.cfg = cfg
        self.lcfg = cfg.learner
        self.device = torch.device(device)
        self.action_dims = action_dims
        self.total_updates = max(int(total_updates), 1)
        self.num_agents = int(num_agents)
        batch = self.lcfg.batch_size * (self.num_agents if self.lcfg.batch_per_agent else 1)
        self.precision = resolve_precision(self.lcfg.precision, self.device, batch, cfg.model.num_bins)
        self.bf16 = self.precision == "bf16"
        self.graphs = _graph_mode(self.device, self.lcfg.compile)
        if self.device.type == "cuda":
            allow_tf32()
        self.model = QTransformer(obs_dim, action_dims, cfg.model).to(self.device)
        self.model.train()
        self.target = copy.deepcopy(self.model)
        self.target.requires_grad_(False)
        self.target.eval()  # deterministic targets: no dropout in the target network
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        # the DQT code's trainer divided the base LR by the agent count (its figure-2 set-up)
        self.base_lr = self.lcfg.lr / (self.num_agents if self.lcfg.lr_divided_by_agents else 1)
        self.optimizer = _adam(self._params, self.base_lr, self.lcfg.adam_eps, self.lcfg.weight_decay,
                               capturable=self.graphs)
        self.fused = bool(self.optimizer.defaults.get("fused"))
        schedule, T, n = self.lcfg.lr_schedule, self.total_updates, self.num_agents
        self._multiplier = lambda t: lr_multiplier(schedule, t, T, n)
        self.scheduler = LambdaLR(self.optimizer, self._multiplier)
        self._loss = _compile(self._loss_terms) if self.graphs else self._loss_terms
        self._compiled_once = False
        self.updates = 0
        # device-side window state: metric sums and the first fault (update, kind; -1 = none)
        self._sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        self._fault = torch.tensor([-1, 0], dtype=torch.int64, device=self.device)
        self._found_inf = torch.zeros((), dtype=torch.float32, device=self.device)
        if self.fused:
            self.optimizer.found_inf = self._found_inf  # read by the fused step: skip while set
        self._lr_sum = 0.0  # the LR is known on the host: no need to ship it through the device
        self._window_start = 0
        self._latest: dict[str, float] = {}
        self._published_updates = 0
        self._published_at = time.monotonic()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    @torch.no_grad()
    def targets(self, batch: Batch) -> torch.Tensor:
        """Per-dim Bellman targets y [B, N] from the target network (QT eq. 1, DQT eq. 9)."""
        with self._autocast():
            q_boot = self.target.first_dim(batch.next_obs)  # [Ht, B, K]: one token, not N
            # dims 2..N need the sequence on s_t; with N = 1 nothing happens inside the step
            q_seq = self.target(batch.obs, batch.bins) if self.action_dims > 1 else None
        mc = batch.mc_return if self.lcfg.mc_lower_bound else None
        # the Bellman arithmetic in fp32: bf16 keeps ~3 digits, too few for r + gamma^n Q
        return per_dim_targets(None if q_seq is None else q_seq.float(), q_boot.float(), batch.ret,
                               batch.discount, mc)

    def compute_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(total loss with graph, detached [td, conservative, q_mean] metrics tensor)."""
        lc = self.lcfg
        y = self.targets(batch)
        with self._autocast():
            q = self.model(batch.obs, batch.bins)  # [H, B, N, K]
        parts = qt_loss(q.float(), batch.bins, y, lc.td_loss, lc.conservative_weight)
        metrics = torch.stack([parts.td.detach(), parts.conservative.detach(), parts.q_taken.detach().mean()])
        return parts.total, metrics

    def _loss_terms(self, obs, bins, ret, discount, next_obs, mc_return) -> tuple[torch.Tensor, torch.Tensor]:
        # plain tensors in: what torch.compile guards on
        return self.compute_loss(Batch(obs, bins, ret, discount, next_obs, mc_return))

    def _run_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        args = (batch.obs, batch.bins, batch.ret, batch.discount, batch.next_obs, batch.mc_return)
        if not self.graphs:
            return self._loss(*args)
        torch.compiler.cudagraph_mark_step_begin()  # last update's graph outputs are consumed
        if self._compiled_once:
            return self._loss(*args)
        try:
            out = self._loss(*args)
        except Exception as exc:  # noqa: BLE001 - a compiler failure must not cost the run
            warnings.warn(f"learner.compile: compiling the loss failed ({type(exc).__name__}: {exc}); "
                          "the learner runs eager", RuntimeWarning, stacklevel=2)
            self._loss = self._loss_terms
            out = self._loss(*args)
        self._compiled_once = True
        return out

    def lr(self) -> float:
        """The learning rate of the next update (host arithmetic, mirrors the scheduler)."""
        return self.base_lr * self._multiplier(self.scheduler.last_epoch)

    def update(self, batch: Batch) -> None:
        """One gradient step on `batch`, queued on the device without waiting for it.

        Its metrics are read by `window_metrics`; a non-finite loss or gradient leaves the
        weights untouched and is reported there (module docstring).
        """
        if batch.obs.device != self.device:
            batch = batch.to(self.device, non_blocking=True)
        lr = self.lr()
        loss, metrics = self._run_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self._params, self.lcfg.grad_clip, foreach=True)
        self._guard(loss.detach(), norm)
        self.optimizer.step()
        self.scheduler.step()
        self._sums.add_(metrics)
        self._lr_sum += lr
        self.updates += 1
        if self.updates % self.lcfg.target_update_every == 0:
            ema_update(self.target, self.model, self.lcfg.target_tau)

    def _guard(self, loss: torch.Tensor, norm: torch.Tensor) -> None:
        """Raise the device flag on the first non-finite loss or gradient (kept for good)."""
        kind = torch.where(torch.isfinite(loss), torch.where(torch.isfinite(norm), 0, 2), 1)
        first = (self._fault[0] < 0) & (kind > 0)
        self._fault.copy_(torch.where(first, torch.stack([torch.full_like(kind, self.updates), kind]), self._fault))
        self._found_inf.copy_(self._fault[0] >= 0)
        if not self.fused:  # nothing would skip the step: check on the host, before it
            step, code = self._fault.tolist()
            if step >= 0:
                raise FloatingPointError(f"non-finite {_FAULTS[code]} at update {step}")

    def window_metrics(self, repeat_latest: bool = False) -> dict[str, float]:
        """Means of METRIC_KEYS over the updates since the last call: the one host read of a
        log window. With no update since then: {} (or, with `repeat_latest`, the last means).

        Raises FloatingPointError when an update of the run had a non-finite loss or gradient,
        naming it and this window's update range.
        """
        n = self.updates - self._window_start
        if n == 0:
            return dict(self._latest) if repeat_latest else {}
        *sums, step, code = torch.cat([self._sums, self._fault.to(torch.float64)]).tolist()
        if step >= 0:
            raise FloatingPointError(self._fault_message(int(step), int(code)))
        self._latest = {"loss/td": sums[0] / n, "loss/conservative": sums[1] / n, "q/mean": sums[2] / n,
                        "opt/lr": self._lr_sum / n}
        self._sums.zero_()
        self._lr_sum = 0.0
        self._window_start = self.updates
        return dict(self._latest)

    def _fault_message(self, step: int, code: int) -> str:
        return (f"non-finite {_FAULTS[code]} at update {step} (log window of updates "
                f"{self._window_start}-{self.updates - 1}; no update from it on changed the weights)")

    def check_finite(self) -> None:
        """Raise FloatingPointError if any update so far was non-finite (one host read)."""
        step, code = self._fault.tolist()
        if step >= 0:
            raise FloatingPointError(self._fault_message(step, code))

    def publish_due(self, force: bool = False) -> bool:
        """Whether the agents should get the weights now: `trainer.publish_every_updates`
        updates or `trainer.publish_every_ms` since the last publish, whichever comes first.

        A publish copies the weights to the host, a device sync, so it is rationed. True
        restarts the clock: call it only where a True is acted on.
        """
        tr = self.cfg.trainer
        now = time.monotonic()
        fresh = self.updates - self._published_updates
        due = force or (fresh > 0 and (fresh >= tr.publish_every_updates
                                       or (now - self._published_at) * 1e3 >= tr.publish_every_ms))
        if due:
            self._published_updates, self._published_at = self.updates, now
        return due

    # ---- checkpoint / resume ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A snapshot of everything needed to resume the update stream exactly.

        Refused (FloatingPointError) after a non-finite update: such a run must not leave a
        checkpoint that looks resumable. Deep-copied: torch's state dicts alias the live
        tensors, so an in-memory checkpoint would otherwise keep changing as training goes
        on. A device LR is stored as a float, so the checkpoint loads on any device.
        """
        self.check_finite()
        state = copy.deepcopy({
            "model": self.model.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "updates": self.updates,
        })
        for group in state["optimizer"]["param_groups"]:
            for key in ("lr", "initial_lr"):
                if isinstance(group.get(key), torch.Tensor):
                    group[key] = float(group[key])
        state["scheduler"]["base_lrs"] = [float(v) for v in state["scheduler"]["base_lrs"]]
        state["scheduler"]["_last_lr"] = [float(v) for v in state["scheduler"].get("_last_lr", [])]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict` snapshot (never shares tensors with `state`)."""
        self.model.load_state_dict(state["model"])
        self.target.load_state_dict(state["target"])
        # Adam's load keeps the given tensors when dtype/device match: copy to avoid aliasing
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        if self.graphs:  # the checkpoint holds float LRs; a capturable step wants device ones
            for group in self.optimizer.param_groups:
                for key in ("lr", "initial_lr"):
                    if key in group and not isinstance(group[key], torch.Tensor):
                        group[key] = torch.tensor(group[key], dtype=torch.float32, device=self.device)
        if self.fused:
            self.optimizer.found_inf = self._found_inf
        self.scheduler.load_state_dict(state["scheduler"])
        self.updates = int(state["updates"])
        self._sums.zero_()
        self._fault.copy_(torch.tensor([-1, 0]))
        self._found_inf.zero_()
        self._lr_sum, self._window_start, self._latest = 0.0, self.updates, {}
        self._published_updates = self.updates
