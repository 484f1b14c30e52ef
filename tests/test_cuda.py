"""Every CUDA path of the workbench against the CPU result of the same computation.

Marked ``cuda`` (``pytest -m cuda``); skipped where torch sees no CUDA GPU, so the normal suite and
CI (no GPU) are unchanged. ``bench/gpu_check.sh`` runs them on a GPU machine with the benchmarks.

Tolerances: float64 paths agree with the CPU to 1e-10 relative (the same arithmetic, other kernels
and summation orders); float32 paths to 1e-5; sorting / argsort ties are not an issue because the
compared quantities (sliced W2 values and gradients) do not depend on how ties are broken.
"Stays on the device": results and parameters are checked to be CUDA tensors, and the runner's
step loop is run under ``torch.cuda.set_sync_debug_mode("warn")``, counting the synchronising
calls: DESIGN.md allows one per metrics row (the loss ``.item()``) and per evaluation, nothing per step.
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU (torch.cuda.is_available() is False)")]

F64, F32 = torch.float64, torch.float32
CUDA = torch.device("cuda")


def _close(gpu, cpu, rtol, atol=0.0):
    assert gpu.is_cuda, "the GPU result fell back to the CPU"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=rtol, atol=atol)


# -- optimizers ------------------------------------------------------------------------------------
def _trajectory(name, device, dtype, steps=25, seed=0):
    """``steps`` of the workbench algorithm ``name`` (its real step: problem loss, backward, the
    optimizer it builds) on a fixed batch; returns the parameters and the optimizer."""
    from workbench.problem import DataSplit, Problem
    from workbench.registry import ALGORITHMS, load_all

    load_all()
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(device, dtype)
    g = torch.Generator().manual_seed(seed + 1)
    x, y = torch.randn(64, 12, generator=g, dtype=dtype).to(device), torch.randint(0, 3, (64,), generator=g).to(device)
    split = DataSplit(x, y, x[:0], y[:0], task="classification", n_outputs=3)
    algo = ALGORITHMS[name](Problem(split, lambda: model, torch.device(device), dtype), model, lr=1e-2)
    for _ in range(steps):
        algo.step(x, y)
    return [p.detach() for p in model.parameters()], algo.optimizer


@pytest.mark.parametrize("name", ["adamw", "persistent_sgd", "adema", "sgd"])
def test_optimizers_on_the_gpu_match_the_cpu(name):
    gpu, opt = _trajectory(name, "cuda", F64)
    cpu, _ = _trajectory(name, "cpu", F64)
    for a, b in zip(gpu, cpu, strict=True):
        _close(a, b, rtol=1e-10, atol=1e-12)
    if name == "adamw":
        assert opt.defaults.get("fused") is True, "AdamW on CUDA should use the fused kernel"
    for state in opt.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.numel() > 1:
                assert value.is_cuda


# -- shallow ReLU: sliced W2 and JKO ----------------------------------------------------------------
def test_sliced_w2_torch_sort_path_matches_the_numpy_path():
    from algorithms.shallow.distances import random_projections, sliced_wasserstein2

    g = torch.Generator().manual_seed(0)
    m, d = 10_000, 3
    V, W = torch.randn(m, d, generator=g, dtype=F64), torch.randn(m, d, generator=g, dtype=F64)
    signs = torch.where(torch.rand(m, generator=g) < 0.5, -1.0, 1.0).to(F64)
    theta = random_projections(32, d, torch.Generator().manual_seed(1), F64)
    Vc = V.clone().requires_grad_()
    cpu = sliced_wasserstein2(Vc, W, signs, projections=theta)
    cpu.backward()
    Vg = V.to(CUDA).requires_grad_()
    gpu = sliced_wasserstein2(Vg, W.to(CUDA), signs.to(CUDA), projections=theta.to(CUDA))
    gpu.backward()
    _close(gpu.detach(), cpu.detach(), rtol=1e-10)
    _close(Vg.grad, Vc.grad, rtol=1e-9, atol=1e-15)


def test_jko_step_on_the_gpu_matches_the_cpu():
    from algorithms.shallow.jko import cost_matrix, jko_step, log_kernel
    from algorithms.shallow.jko_prox import QuadraticEnergy, make_prox

    g = torch.Generator().manual_seed(0)
    N, n = 400, 9
    grid = torch.randn(N, 2, generator=g, dtype=F64)
    signs = torch.where(torch.rand(N, generator=g) < 0.5, -1.0, 1.0).to(F64)
    X = torch.stack([torch.linspace(-1, 1, n, dtype=F64), torch.ones(n, dtype=F64)], dim=1)
    q = torch.rand(N, generator=g, dtype=F64) + 0.1
    q = q / q.sum()
    results = {}
    for device in ("cpu", "cuda"):
        energy = QuadraticEnergy.from_network(grid.to(device), signs.to(device), X.to(device),
                                              torch.sin(3 * X[:, 0]).to(device), 1e-3)
        logK = log_kernel(cost_matrix(grid.to(device)), 0.05)
        results[device] = jko_step(q.to(device), logK, make_prox("torch", energy, 0.5), tol=1e-12)
    assert results["cuda"].converged and results["cpu"].converged
    _close(results["cuda"].p, results["cpu"].p, rtol=1e-8, atol=1e-14)
    assert float(results["cuda"].p.sum()) == pytest.approx(1.0, rel=1e-12)


# -- NewtonSummary -----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["reverse", "compiled"])
def test_newton_summary_summaries_on_the_gpu_match_the_cpu(backend):
    from algorithms.optimizers import compute_Hg, partition
    from tests.algorithms.optimizers._newton_summary_helpers import batch, ce_loss, tanh_mlp

    if backend == "compiled":
        pytest.importorskip("triton")
    out = {}
    for device in ("cpu", "cuda"):
        model = tanh_mlp().to(device)
        x, y = batch()
        x, y = x.to(device), y.to(device)
        groups, _ = partition.canonical(model)
        g = torch.Generator().manual_seed(3)
        u = [torch.randn(p.shape, generator=g, dtype=F64).to(device) for p in model.parameters()]
        out[device] = compute_Hg(groups, ce_loss(model), x, y, u, model=model,
                                 backend=backend if device == "cuda" else "reverse")
    for a, b in zip(out["cuda"], out["cpu"], strict=True):
        _close(a, b, rtol=1e-9, atol=1e-12)


# -- growth statistics --------------------------------------------------------------------------------
def test_growth_statistics_and_proposal_on_the_gpu_match_the_cpu():
    from algorithms.growth import GrowingMLP

    stats, outputs = {}, {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = GrowingMLP(7, 3, [5, 4], 2, activation=nn.Tanh(), dtype=F64).to(device)
        g = torch.Generator().manual_seed(1)
        X = torch.randn(300, 7, generator=g, dtype=F64).to(device)
        Y = torch.sin(2 * X[:, :3])
        model.init_computation()
        for i in range(0, 300, 50):
            model.zero_grad()
            ((model(X[i:i + 50]) - Y[i:i + 50]) ** 2).sum().backward()
            model.update_computation()
        s = model.statistics(0)
        stats[device] = [s.S, s.M, s.S2, s.M2, s.P]
        model.compute_optimal_updates(maximum_added_neurons=2)
        model.select_update(0)
        model.set_scaling_factor(0.5)
        model.apply_change()
        with torch.no_grad():
            outputs[device] = model(X)
    for a, b in zip(stats["cuda"], stats["cpu"], strict=True):
        _close(a, b, rtol=1e-10, atol=1e-13)
    _close(outputs["cuda"], outputs["cpu"], rtol=1e-9, atol=1e-12)


# -- the runner on the GPU ------------------------------------------------------------------------------
def _config(tiny_config, **changes):
    config = copy.deepcopy(tiny_config)
    config.update(device="cuda", threads=1, epochs=3, log_every=6, seeds=[0],
                  runs=[dict(algorithm="adamw", lr=1e-2), dict(algorithm="persistent_sgd", lr=0.05, decay=0.9)])
    config.update(changes)
    return config


def test_device_auto_chooses_cuda_and_datasets_live_there(tiny_config):
    from workbench.problem import build_problem, resolve_device

    assert resolve_device("auto").type == "cuda"
    problem = build_problem(_config(tiny_config, device="auto"))
    data = problem.data
    assert all(t.is_cuda for t in (data.x_train, data.y_train, data.x_test, data.y_test))
    assert next(problem.build_model().parameters()).is_cuda


def test_a_gpu_run_matches_the_cpu_run_and_names_the_gpu(tiny_config):
    from workbench import record
    from workbench.runner import Experiment

    runs = {}
    for device in ("cuda", "cpu"):
        experiment = Experiment.create(_config(tiny_config, device=device))
        assert experiment.run() == 0
        runs[device] = record.load_history(experiment.run_dir)
    env = runs["cuda"]["environment"]
    assert env["device"].startswith("cuda") and env["device_name"] == torch.cuda.get_device_name(0)
    assert {r["where"]["device"] for r in runs["cuda"]["runs"]} == {"cuda:0"} or \
        {r["where"]["device"] for r in runs["cuda"]["runs"]} == {"cuda"}
    for a, b in zip(runs["cuda"]["runs"], runs["cpu"]["runs"], strict=True):
        for key in ("train_loss", "test_loss", "test_acc"):
            np.testing.assert_allclose(a["metrics"][key], b["metrics"][key], rtol=1e-9, atol=1e-12,
                                       equal_nan=True, err_msg=key)


@pytest.mark.parametrize("first, then", [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_checkpoint_moves_between_gpu_and_cpu(tiny_config, first, then):
    """Stopped on one device, resumed on the other (``--resume RUN_DIR device=...``): the run
    finishes, and its numbers are those of an uninterrupted run to float64 rounding."""
    from workbench import record
    from workbench.runner import Experiment, Hooks

    reference = Experiment.create(_config(tiny_config, device=first))
    assert reference.run() == 0
    count = {"n": 0}

    def stop_once(state):
        count["n"] += 1
        return count["n"] == 8

    interrupted = Experiment.create(_config(tiny_config, device=first), hooks=Hooks(should_stop=stop_once))
    assert interrupted.run() == 130
    resumed = Experiment.resume(interrupted.run_dir, execution={"device": then})
    assert resumed.run() == 0
    got, want = record.load_history(interrupted.run_dir), record.load_history(reference.run_dir)
    assert got["runs"][0]["where"]["device"].startswith(then)
    for a, b in zip(got["runs"], want["runs"], strict=True):
        np.testing.assert_allclose(a["metrics"]["train_loss"], b["metrics"]["train_loss"], rtol=1e-9, atol=1e-12)


class _Sink:
    """A channel that drops every message (the step loop's own synchronisations are counted)."""

    flush_every = 3600.0

    def send(self, messages):
        pass

    def stop_requested(self):
        return False


def _synchronising_calls(train):
    """``train()``'s result and the CUDA synchronisations it made (sync debug mode's warnings)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = train()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return result, [w for w in caught if "synchroniz" in str(w.message).lower()]


def test_the_step_loop_does_not_synchronise_per_step(tiny_config):
    """The permutation moves to the GPU once per epoch and the loss stays on the device between
    rows: the synchronising calls of 3 epochs of 24 steps (one row per epoch) are counted."""
    from workbench.registry import ALGORITHMS
    from workbench.problem import build_problem
    from workbench.training import train_run

    config = _config(tiny_config, batch_size=4, log_every=1000, epochs=3, runs=[dict(algorithm="sgd", lr=0.1)])
    problem = build_problem(config)
    spec = {"index": 0, "algorithm": "sgd", "label": "sgd", "seed": 0,
            "params": ALGORITHMS["sgd"].resolve_params({"lr": 0.1})}

    status, syncs = _synchronising_calls(lambda: train_run(problem, config, spec, _Sink()))
    assert status == "finished"
    epochs, steps = 3, 72
    rows, evaluations = 1 + epochs, 1 + epochs  # step 0 and every epoch end, each with an evaluation
    # allowed: the permutation's copy per epoch, the loss sum per row, loss and accuracy per evaluation
    allowed = epochs + rows + 2 * evaluations + 2
    assert len(syncs) <= allowed, [str(w.message)[:100] for w in syncs[:5]]
    assert allowed < steps / 3


# -- stacked training ------------------------------------------------------------------------------
def test_a_stack_on_the_gpu_matches_its_separate_runs_on_the_cpu(tiny_config):
    """stack=True on the GPU (the MLP's batched matmuls, each member's fused AdamW / foreach
    PersistentSGD step on its slice) against separate runs on the CPU, float64."""
    from workbench import record
    from workbench.runner import Experiment

    runs = [dict(algorithm="adamw", lr=1e-2), dict(algorithm="adamw", lr=3e-3),
            dict(algorithm="persistent_sgd", lr=0.02, decay=0.9)]
    histories = {}
    for device, stack in (("cuda", True), ("cpu", False)):
        experiment = Experiment.create(_config(tiny_config, device=device, stack=stack, runs=runs, seeds=[0, 1]))
        assert experiment.run() == 0
        histories[device] = record.load_history(experiment.run_dir)
    assert all(len(r["where"]["stack"]["runs"]) in (2, 4) for r in histories["cuda"]["runs"])
    for a, b in zip(histories["cuda"]["runs"], histories["cpu"]["runs"], strict=True):
        for key in ("train_loss", "test_loss", "test_acc"):
            np.testing.assert_allclose(a["metrics"][key], b["metrics"][key], rtol=1e-9, atol=1e-12,
                                       equal_nan=True, err_msg=key)


def test_the_stacked_step_loop_does_not_synchronise_per_step(tiny_config):
    """A stack of 4 AdamW runs, 3 epochs of 24 steps: synchronising calls per row and evaluation of
    each member only, none per step."""
    from workbench.plan import plan_runs
    from workbench.problem import build_problem
    from workbench.config import Config
    from workbench.stacked_training import train_unit

    config = _config(tiny_config, batch_size=4, log_every=1000, epochs=3, seeds=[0, 1],
                     runs=[dict(algorithm="adamw", lr=1e-2), dict(algorithm="adamw", lr=1e-3)])
    problem = build_problem(config)
    plan = plan_runs(Config.of(config))

    statuses, syncs = _synchronising_calls(lambda: train_unit(problem, config, [(spec, None) for spec in plan], _Sink()))
    assert statuses == ["finished"] * 4
    members, epochs, steps = 4, 3, 72
    rows = evaluations = 1 + epochs
    allowed = members * (epochs + rows + 2 * evaluations + 2)  # as a separate run's, per member
    assert len(syncs) <= allowed and allowed < members * steps / 3, [str(w.message)[:100] for w in syncs[:5]]
