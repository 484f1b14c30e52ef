"""relu_gd: both train modes, the objective's weight decay, optimizer lookup, dtype, resume,
snapshots and indicators."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.shallow import indicators
from algorithms.shallow.data import sinus
from algorithms.shallow.model import TwoLayerReLU, add_bias, gradients, objective
from algorithms.shallow.workbench_algorithms import ReLUGD
from workbench.algorithm import torch_optimizer_class
from workbench.problem import DataSplit, Problem
from workbench.registry import load_all

load_all()  # every family registers itself

F64 = torch.float64


def _setup(train_output=True, dtype=F64, m=8, seed=0):
    x, y = sinus(12, 1, 0)
    x, y = x.to(dtype), y.to(dtype)
    g = torch.Generator().manual_seed(seed)
    model = TwoLayerReLU(torch.randn(m, 2, generator=g, dtype=F64),
                         torch.where(torch.arange(m) < m // 2, 1.0, -1.0).to(F64), train_output).to(dtype)
    split = DataSplit(x, y, x[:0], y[:0], task="regression", n_outputs=1)
    return x, y, model, Problem(split, lambda: model, torch.device("cpu"), dtype)


@pytest.mark.parametrize("train_output", [True, False])
def test_one_sgd_step_is_the_closed_form_gradient_step(train_output):
    x, y, model, problem = _setup(train_output)
    W0, a0 = model.W.detach().clone(), model.a.detach().clone()
    beta, lr = 0.1, 0.03
    algo = ReLUGD(problem, model, lr=lr, beta=beta)
    m = algo.step(x, y)
    gW, ga = gradients(W0, a0, add_bias(x), y, beta)
    torch.testing.assert_close(model.W.detach(), W0 - lr * gW)
    torch.testing.assert_close(model.a.detach(), a0 - lr * ga if train_output else a0)
    torch.testing.assert_close(m["train_loss"], objective(W0, a0, add_bias(x), y))
    torch.testing.assert_close(m["objective"], objective(W0, a0, add_bias(x), y, beta))


@pytest.mark.parametrize("train_output", [True, False])
def test_gd_decreases_objective_in_both_modes(train_output):
    x, y, model, problem = _setup(train_output)
    algo = ReLUGD(problem, model, optimizer="adam", lr=1e-2, beta=1e-3)
    start = algo.evaluate()["full_objective"]
    a0 = model.a.detach().clone()
    for _ in range(300):
        algo.step(x, y)
    assert algo.evaluate()["full_objective"] < 0.5 * start
    assert torch.equal(model.a.detach(), a0) != train_output  # a moves iff it is trained


def test_float32_honoured_and_snapshot():
    x, y, model, problem = _setup(dtype=torch.float32)
    algo = ReLUGD(problem, model)
    algo.step(x, y)
    assert model.W.dtype == torch.float32
    snap = algo.snapshot()
    assert snap["W"].shape == (8, 2) and snap["a"].shape == (8,) and snap["W"].dtype == np.float32


def test_state_dict_resume_is_exact():
    x, y, model, problem = _setup()
    algo = ReLUGD(problem, model, optimizer="sgd", lr=0.05, optimizer_args={"momentum": 0.9})
    for _ in range(5):
        algo.step(x, y)
    state = {k: (v.copy() if isinstance(v, dict) else v) for k, v in algo.state_dict().items()}
    import copy

    state = copy.deepcopy(state)
    for _ in range(5):
        algo.step(x, y)
    x2, y2, model2, problem2 = _setup(seed=9)
    algo2 = ReLUGD(problem2, model2, optimizer="sgd", lr=0.05, optimizer_args={"momentum": 0.9})
    algo2.load_state_dict(state)
    for _ in range(5):
        algo2.step(x, y)
    torch.testing.assert_close(model2.W, model.W)


def test_validation_and_optimizer_lookup():
    with pytest.raises(ValueError, match=r"optimizer must name a torch.optim class, got 'nope'; valid: .*AdamW"):
        torch_optimizer_class("nope")
    assert torch_optimizer_class("AdamW") is torch.optim.AdamW and torch_optimizer_class("sgd") is torch.optim.SGD
    for bad, message in ((dict(lr=-1.0), r"lr must be > 0, got -1.0"), (dict(beta=-1.0), r"beta must be >= 0, got -1.0"),
                         (dict(optimizer="nope"), r"optimizer must name a torch.optim class, got 'nope'"),
                         (dict(optimizer_args=dict(momentum=-0.5)), r"momentum")):
        with pytest.raises(ValueError, match=message):
            ReLUGD.check_params(ReLUGD.resolve_params(bad))
    with pytest.raises(ValueError, match="relu_gd needs model='two_layer_relu', got Linear"):
        ReLUGD.check_model(torch.nn.Linear(1, 1), ReLUGD.resolve_params({}))


def test_convex_reference_recorded():
    x, y, model, problem = _setup()
    algo = ReLUGD(problem, model, beta=1e-3, convex_reference=True)
    info = algo.info()
    assert info["convex_status"] == "optimal" and info["convex_patterns"] == 2 * 12 - 1
    assert info["convex_optimum"] <= algo.evaluate()["full_objective"]
    assert info["data_y"].shape == (12,)


def test_indicators():
    W = np.array([[2.0, -1.0], [0.0, 1.0], [-1.0, -1.0]])
    a = np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(indicators.kinks(W)[[0, 2]], [0.5, -1.0])
    assert np.isinf(indicators.kinks(W)[1])
    np.testing.assert_allclose(indicators.slopes(W, a), [1.0, 2.0, 3.0])
    X = add_bias(torch.tensor([[-2.0], [0.0], [1.0]], dtype=F64)).numpy()
    pats = indicators.distinct_patterns(W, X)
    assert {tuple(p) for p in pats} == {(False, False, True), (True, True, True), (True, False, False)}
    y = np.array([0.0, 1.0, 2.0])
    s = indicators.summary(W, a, X, y, beta=0.1, optimum=0.5)
    manual = objective(torch.tensor(W), torch.tensor(a), torch.tensor(X), torch.tensor(y), 0.1).item()
    assert abs(s["objective"] - manual) < 1e-12 and s["n_patterns"] == 3
    assert abs(s["gap"] - (manual - 0.5)) < 1e-12
    assert indicators.gap(1.01, 1.0)[1] == pytest.approx(0.01)
