"""Learner without per-update host syncs: window metrics, the device NaN flag, bf16, graph mode, publish clock.

CPU tests run everywhere; the CUDA ones run only where a GPU is present.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dqt.core.learning.learner as learner_mod
from dqt.core.config import RunConfig
from dqt.core.learning.learner import METRIC_KEYS, Learner
from dqt.core.learning.replay import Batch, ReplayBuffer

OBS_DIM, N_DIMS, K = 5, 3, 16
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cfg(**over) -> RunConfig:
    flat = {"model.embed_dim": 32, "model.num_layers": 2, "model.num_heads": 4, "model.num_bins": K,
            "model.dropout": 0.0, "model.zero_init_q_out": False, "learner.lr_schedule": "linear",
            "learner.conservative_weight": 0.5, "learner.target_update_every": 2}
    flat.update(over)
    return RunConfig.from_flat(flat)


def batch(seed: int = 0, size: int = 64, device: str = "cpu") -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(obs=torch.randn(size, OBS_DIM, generator=g), bins=torch.randint(0, K, (size, N_DIMS), generator=g),
                 ret=torch.rand(size, generator=g), discount=torch.full((size,), 0.9),
                 next_obs=torch.randn(size, OBS_DIM, generator=g), mc_return=torch.rand(size, generator=g)).to(device)


def learner(device: str = "cpu", seed: int = 0, **over) -> Learner:
    torch.manual_seed(seed)
    return Learner(OBS_DIM, N_DIMS, cfg(**over), device=device, total_updates=20)


def params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def same(a: list[torch.Tensor], b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# ---- metrics once per window ------------------------------------------------------------
def test_window_metrics_are_the_means_of_the_window_updates():
    each, once = learner(), learner()
    per_update = []
    for i in range(3):
        each.update(batch(i))
        per_update.append(each.window_metrics())
        once.update(batch(i))
    window = once.window_metrics()
    assert set(window) == set(METRIC_KEYS) and all(isinstance(v, float) for v in window.values())
    for key in METRIC_KEYS:
        assert window[key] == pytest.approx(np.mean([m[key] for m in per_update]), rel=1e-6)
    assert once.window_metrics() == {}  # nothing new since the read
    assert once.window_metrics(repeat_latest=True) == window  # the final point repeats the last means


def test_cpu_learner_runs_eager_with_a_host_lr_even_with_compile_on():
    lrn = learner(**{"learner.compile": True})
    assert not lrn.graphs and lrn.fused
    assert lrn._loss == lrn._loss_terms  # no torch.compile on CPU
    assert isinstance(lrn.optimizer.param_groups[0]["lr"], float)


# ---- non-finite updates: a device flag, read per window -------------------------------
def test_inf_reward_fails_the_window_naming_the_update_and_the_window_range():
    lrn = learner()
    for i in range(2):
        lrn.update(batch(i))
    lrn.window_metrics()  # this window (updates 0-1) was clean
    lrn.update(batch(2))
    kept = params(lrn.model)
    poisoned = batch(3)
    poisoned.ret[5] = float("inf")
    lrn.update(poisoned)  # update 3: queued, nothing raised, no host sync
    lrn.update(batch(4))  # and every later step is skipped by the same flag
    with pytest.raises(FloatingPointError, match=r"non-finite loss at update 3 \(log window of updates 2-4;"):
        lrn.window_metrics()
    assert same(kept, lrn.model.parameters())  # Adam's found_inf skipped the bad step and the ones after
    with pytest.raises(FloatingPointError, match="non-finite loss at update 3"):
        lrn.state_dict()


def test_non_finite_gradient_with_a_finite_loss_is_caught_too():
    lrn = learner()
    lrn.update(batch(0))
    kept = params(lrn.model)
    hook = lrn.model.pos_emb.register_hook(lambda g: g * float("nan"))
    lrn.update(batch(1))
    hook.remove()
    with pytest.raises(FloatingPointError, match=r"non-finite gradient at update 1 \(log window of updates 0-1;"):
        lrn.window_metrics()
    assert same(kept, lrn.model.parameters())


def test_a_monkeypatched_nan_loss_is_caught(monkeypatch):
    lrn = learner()
    real = lrn.compute_loss

    def nan_at_second(b):
        loss, metrics = real(b)
        return (loss * float("nan") if lrn.updates == 1 else loss), metrics

    monkeypatch.setattr(lrn, "_loss", lambda *t: nan_at_second(Batch(*t)))
    for i in range(3):
        lrn.update(batch(i))
    with pytest.raises(FloatingPointError, match=r"non-finite loss at update 1 \(log window of updates 0-2;"):
        lrn.window_metrics()


def test_without_fused_adam_the_guard_checks_each_update_on_the_host(monkeypatch):
    monkeypatch.setattr(learner_mod, "_adam", lambda p, lr, eps, wd, capturable=False:
                        torch.optim.Adam(p, lr=lr, eps=eps, weight_decay=wd, foreach=True))
    lrn = learner()
    assert not lrn.fused
    lrn.update(batch(0))
    kept = params(lrn.model)
    bad = batch(1)
    bad.ret[0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite loss at update 1"):
        lrn.update(bad)
    assert same(kept, lrn.model.parameters())


# ---- precision --------------------------------------------------------------------------
BF16_RTOL = 1e-2  # measured ~2e-4 on this model; bf16 keeps 8 mantissa bits (~4e-3 per rounding)


def test_bf16_loss_matches_fp32_within_tolerance():
    """Loss of one update on a fixed batch, and of the next update on it (after a bf16 gradient step)."""
    losses = {}
    for precision in ("fp32", "bf16"):
        lrn = learner(**{"learner.precision": precision, "learner.lr": 1e-3})
        b = batch(0)
        first = lrn.compute_loss(b)[0].item()
        lrn.update(b)
        lrn.window_metrics()
        second = lrn.compute_loss(b)[0].item()
        losses[precision] = (first, second)
        assert all(p.dtype == torch.float32 for p in lrn.model.parameters())  # fp32 master weights
        assert all(v.dtype == torch.float32 for s in lrn.optimizer.state.values() for k, v in s.items()
                   if k != "step")
    for fp32, bf16 in zip(losses["fp32"], losses["bf16"], strict=True):
        assert bf16 == pytest.approx(fp32, rel=BF16_RTOL)
    assert losses["bf16"][0] != losses["fp32"][0]  # autocast really ran the forward in bf16


@pytest.mark.parametrize("native, device, batch_size, bins, expected", [
    (True, "cpu", 512, 256, "bf16"),    # the paper-size learner on a bf16 CPU: measured 20-27 % faster
    (True, "cpu", 128, 64, "fp32"),     # the quick profiles' learner: bf16 measured slower
    (True, "cpu", 256, 256, "bf16"),    # 65,536: the threshold itself
    (False, "cpu", 512, 256, "fp32"),   # no native bf16: autocast would emulate it
    (True, "cuda", 512, 256, "fp32"),   # unmeasured on a GPU: TF32 stays the default
])
def test_auto_precision_is_bf16_only_where_it_was_measured_faster(monkeypatch, native, device, batch_size, bins,
                                                                 expected):
    monkeypatch.setattr(learner_mod, "cpu_has_native_bf16", lambda: native)
    assert learner_mod.resolve_precision("auto", torch.device(device), batch_size, bins) == expected
    assert learner_mod.resolve_precision("fp32", torch.device(device), batch_size, bins) == "fp32"
    assert learner_mod.resolve_precision("bf16", torch.device(device), 8, 4) == "bf16"


def test_auto_precision_counts_the_batch_of_every_agent(monkeypatch):
    """Figure 2's batch of n x 128 crosses the threshold at n = 8 (8 x 128 x 64 = 65,536)."""
    monkeypatch.setattr(learner_mod, "cpu_has_native_bf16", lambda: True)
    small = {"learner.batch_size": 128, "model.num_bins": 64, "learner.batch_per_agent": True}
    assert learner(**small).precision == "fp32"
    cfg = RunConfig.from_flat({**small, "model.embed_dim": 32, "model.num_heads": 2, "model.num_layers": 1})
    assert Learner(39, 4, cfg, num_agents=8).precision == "bf16"


# ---- graph mode, exercised on CPU with a CPU backend ----------------------------------
def graph_learner(monkeypatch, compile_fn=lambda fn: fn, **over) -> Learner:
    monkeypatch.setattr(learner_mod, "_graph_mode", lambda device, flag: True)
    monkeypatch.setattr(learner_mod, "_compile", compile_fn)
    lrn = learner(**over)
    monkeypatch.setattr(learner_mod, "_graph_mode", lambda device, flag: False)
    return lrn


def test_capturable_adam_takes_its_lr_from_a_device_tensor_the_schedule_fills(monkeypatch):
    lrn = graph_learner(monkeypatch, **{"learner.lr": 1e-3})
    eager = learner(**{"learner.lr": 1e-3})
    lr = lrn.optimizer.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and lrn.optimizer.defaults["capturable"]
    for i in range(3):
        lrn.update(batch(i))
        eager.update(batch(i))
    assert lrn.optimizer.param_groups[0]["lr"] is lr  # filled in place, never replaced
    assert lr.item() == pytest.approx(1e-3 * (1 - 3 / 20))
    assert lrn.window_metrics() == pytest.approx(eager.window_metrics(), rel=1e-5)
    for a, b in zip(lrn.model.parameters(), eager.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # checkpoints hold float LRs and move between graph and eager learners both ways
    state = lrn.state_dict()
    assert isinstance(state["optimizer"]["param_groups"][0]["lr"], float)
    back = graph_learner(monkeypatch, **{"learner.lr": 1e-3})
    back.load_state_dict(eager.state_dict())
    assert isinstance(back.optimizer.param_groups[0]["lr"], torch.Tensor)
    b = batch(9)
    back.update(b)
    eager.update(b)
    assert back.window_metrics() == pytest.approx(eager.window_metrics(), rel=1e-5)


@pytest.mark.slow
def test_compiled_loss_traces_as_one_graph_and_matches_eager(monkeypatch):
    """The loss torch.compile gets on CUDA, traced here by a CPU backend: no graph break
    (fullgraph), same losses and weights as eager. ~10 s of tracing."""
    lrn = graph_learner(monkeypatch, lambda fn: torch.compile(fn, backend="aot_eager", fullgraph=True))
    eager = learner()
    for i in range(3):
        lrn.update(batch(i))
        eager.update(batch(i))
        assert lrn.window_metrics() == pytest.approx(eager.window_metrics(), rel=1e-5)
    for a, b in zip(lrn.model.parameters(), eager.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ---- weights to the agents: every K updates or T ms -----------------------------------
def test_publish_due_after_k_updates_or_t_ms_whichever_first(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(learner_mod.time, "monotonic", lambda: clock[0])
    lrn = learner(**{"trainer.publish_every_updates": 3, "trainer.publish_every_ms": 50.0})
    assert not lrn.publish_due()  # nothing new to publish
    b = batch(0)
    lrn.update(b)
    lrn.update(b)
    assert not lrn.publish_due()  # 2 updates, 0 ms
    lrn.update(b)
    assert lrn.publish_due()  # K = 3 updates
    assert not lrn.publish_due()  # the clock restarted
    lrn.update(b)
    clock[0] += 0.049
    assert not lrn.publish_due()
    clock[0] += 0.002
    assert lrn.publish_due()  # T = 50 ms with 1 new update
    clock[0] += 1.0
    assert not lrn.publish_due()  # time alone publishes nothing
    assert lrn.publish_due(force=True)  # sync mode: every episode


# ---- CUDA (run where a GPU is present) ----------------------------------------------------
@cuda
def test_cuda_graph_learner_trains_and_matches_eager_within_tolerance():
    graphs = learner("cuda", **{"learner.compile": True})
    eager = learner("cuda", **{"learner.compile": False})
    assert graphs.graphs and graphs.fused and not eager.graphs
    assert graphs.optimizer.param_groups[0]["lr"].device.type == "cuda"
    for i in range(12):  # past cudagraph warm-up and recording into replays
        graphs.update(batch(i % 4, device="cuda"))
        eager.update(batch(i % 4, device="cuda"))
    g, e = graphs.window_metrics(), eager.window_metrics()
    assert all(np.isfinite(v) for v in g.values())
    assert g["loss/td"] == pytest.approx(e["loss/td"], rel=5e-2)  # TF32 and kernel choice differ
    assert g["opt/lr"] == pytest.approx(e["opt/lr"])


@cuda
def test_cuda_nan_is_found_by_the_window_not_by_the_update():
    lrn = learner("cuda")
    lrn.update(batch(0, device="cuda"))
    kept = params(lrn.model)
    bad = batch(1, device="cuda")
    bad.ret[0] = float("nan")
    lrn.update(bad)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at update 1 \(log window of updates 0-1;"):
        lrn.window_metrics()
    assert same(kept, lrn.model.parameters())


@cuda
def test_cuda_bf16_matches_fp32_within_tolerance():
    out = {}
    for precision in ("fp32", "bf16"):
        lrn = learner("cuda", **{"learner.precision": precision, "learner.compile": False})
        out[precision] = lrn.compute_loss(batch(0, device="cuda"))[0].item()
    assert out["bf16"] == pytest.approx(out["fp32"], rel=BF16_RTOL)


@cuda
def test_cuda_learner_trains_from_cuda_replay():
    buf = ReplayBuffer(1000, OBS_DIM, N_DIMS, gamma=0.9, n_step=3, device="cuda")
    rng = np.random.default_rng(0)
    for _ in range(4):
        buf.add_episode(rng.standard_normal((51, OBS_DIM)), rng.integers(0, K, (50, N_DIMS)), rng.random(50), False)
    lrn = learner("cuda")
    for _ in range(5):
        b = buf.sample(64, rng)
        assert b.obs.device.type == "cuda"
        lrn.update(b)
    assert np.isfinite(lrn.window_metrics()["loss/td"])


@cuda
@pytest.mark.parametrize("compile_flag", [False, True])
def test_cuda_sample_and_update_never_wait_for_the_device(compile_flag):
    """The claim itself: with CUDA's sync debug mode set to raise, a stretch of the trainer's
    per-update path (replay draw and gather, update, episode arrival) runs through."""
    buf = ReplayBuffer(5000, OBS_DIM, N_DIMS, gamma=0.9, n_step=3, sampling="return-weighted", device="cuda")
    rng = np.random.default_rng(0)

    def episode():
        buf.add_episode(rng.standard_normal((51, OBS_DIM)), rng.integers(0, K, (50, N_DIMS)), rng.random(50), False)

    for _ in range(3):
        episode()
    lrn = learner("cuda", **{"learner.compile": compile_flag})
    for _ in range(10):  # compilation and graph recording may sync: they happen once, here
        lrn.update(buf.sample(64, rng))
    lrn.window_metrics()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(20):
            if i % 10 == 0:
                episode()
            lrn.update(buf.sample(64, rng))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert np.isfinite(lrn.window_metrics()["loss/td"])
