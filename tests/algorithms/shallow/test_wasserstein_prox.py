"""Proximal point steps (notes section 3, items 5 and 6): the two-particle toy, the small-gamma
implicit-Euler limit, and the relu_prox algorithm's record and exact resume."""
import copy

import pytest
import torch

from algorithms.shallow.distances import wasserstein2
from algorithms.shallow.model import TwoLayerReLU, add_bias, gradients
from algorithms.shallow.prox import ProxPoint
from algorithms.shallow.workbench_algorithms import ReLUProx
from workbench.problem import DataSplit, Problem

F64 = torch.float64


def _toy(distance, gamma_notes):
    """f(x, y) = (x - 4)^2 / 2 from (0, 1) with the notes' weight 1/(2 gamma) on the *summed* squared
    displacement; our dist averages over m = 2 particles, so our gamma is gamma_notes / 2."""
    V = torch.nn.Parameter(torch.tensor([[0.0], [1.0]], dtype=F64))
    prox = ProxPoint(V, lambda: 0.5 * (V[0, 0] - 4.0) ** 2, distance=distance, gamma=gamma_notes / 2,
                     inner_steps=200, inner_optimizer=torch.optim.SGD, inner_lr=0.5 / (1 + 1 / gamma_notes), n_projections=3,
                     generator=torch.Generator().manual_seed(0))
    out = prox.step()
    return V.detach().flatten(), out


@pytest.mark.parametrize("gamma", [0.2, 0.3, 0.5, 2.0])
def test_two_particle_toy(gamma):
    frob, _ = _toy("frobenius", gamma)
    torch.testing.assert_close(frob, torch.tensor([4 * gamma / (1 + gamma), 1.0], dtype=F64))
    expected_w2 = ([4 * gamma / (1 + gamma), 1.0] if gamma < 1 / 3 else [1 + 3 * gamma / (1 + gamma), 0.0])
    for distance in ("wasserstein2", "sliced_wasserstein2"):  # sliced = exact in 1-D
        w2, out = _toy(distance, gamma)
        torch.testing.assert_close(w2, torch.tensor(expected_w2, dtype=F64))
        assert float(out["grad_norm"]) < 1e-10


def test_two_particle_toy_values_at_half_and_global_swap():
    frob, _ = _toy("frobenius", 0.5)
    w2, _ = _toy("wasserstein2", 0.5)
    torch.testing.assert_close(frob, torch.tensor([4 / 3, 1.0], dtype=F64))
    torch.testing.assert_close(w2, torch.tensor([2.0, 0.0], dtype=F64))
    # the exact-assignment prox objective prefers the swap for every gamma (4.5/(1+g) < 8/(1+g) ... )
    W0 = torch.tensor([[0.0], [1.0]], dtype=F64)
    for gamma in (0.1, 0.2, 0.5, 2.0):
        obj = lambda V: 0.5 * (V[0, 0] - 4) ** 2 + wasserstein2(V, W0) / (2 * gamma / 2)  # noqa: E731
        no_swap = torch.tensor([[4 * gamma / (1 + gamma)], [1.0]], dtype=F64)
        swap = torch.tensor([[1 + 3 * gamma / (1 + gamma)], [0.0]], dtype=F64)
        assert float(obj(swap)) < float(obj(no_swap))


def _network(seed=0, m=6, n=10):
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(-1, 1, n, dtype=F64)[:, None]
    y = torch.sin(3 * x[:, 0])
    W = torch.randn(m, 2, generator=g, dtype=F64)
    a = torch.tensor([1.0, -1.0] * (m // 2), dtype=F64)
    return x, y, W, a


@pytest.mark.parametrize("distance", ["frobenius", "wasserstein2"])
def test_small_gamma_is_implicit_euler(distance):
    x, y, W0, a = _network()
    X = add_bias(x)
    m = W0.shape[0]
    errors = []
    for gamma in (2e-4, 1e-4):
        eta = gamma * m
        V = torch.nn.Parameter(W0.clone())
        objective = lambda: ((torch.relu(X @ V.T) @ a - y) ** 2).mean()  # noqa: E731
        prox = ProxPoint(V, objective, signs=a, distance=distance, gamma=gamma, inner_steps=60,
                         inner_optimizer=torch.optim.SGD, inner_lr=eta)
        prox.step()
        gV, _ = gradients(V.detach(), a, X, y)
        # optimality: V = W - gamma m grad F(V)
        torch.testing.assert_close(V.detach(), W0 - eta * gV, rtol=0, atol=1e-13)
        gW, _ = gradients(W0, a, X, y)
        errors.append(float((V.detach() - (W0 - eta * gW)).abs().max()))
    # explicit and implicit Euler differ by O(eta^2)
    assert 3.0 < errors[0] / errors[1] < 5.0


def _problem(x, y):
    data = DataSplit(x, y, x[:0], y[:0], "regression", 1)
    return Problem(data, build_model=None, device=torch.device("cpu"), dtype=F64)


def test_relu_prox_metrics_snapshot_and_resume():
    x, y, W, a = _network(1, m=8, n=12)
    problem = _problem(x, y)
    model = TwoLayerReLU(W, a)
    params = dict(distance="sliced_wasserstein2", gamma=0.05, inner_steps=15, inner_lr=0.02,
                  reset_inner_state=False, n_projections=16)
    torch.manual_seed(3)
    algo = ReLUProx(problem, copy.deepcopy(model), **params)
    m0 = algo.step(x, y)
    for key in ("train_loss", "prox_objective", "prox_distance", "inner_steps", "inner_grad_norm", "inner_lr"):
        assert key in m0
    assert m0["inner_steps"] == 15.0
    snap = algo.snapshot()
    assert snap["W"].shape == (8, 2) and snap["inner_objective"].shape == (16,) and snap["inner_of_step"] == 1
    torch.testing.assert_close(model.a, algo.model.a)  # output weights stay fixed
    state = copy.deepcopy(algo.state_dict())
    m1 = algo.step(x, y)
    torch.manual_seed(99)
    resumed = ReLUProx(problem, copy.deepcopy(model), **params)
    resumed.load_state_dict(state)
    r1 = resumed.step(x, y)
    torch.testing.assert_close(resumed.model.W, algo.model.W, rtol=0, atol=0)
    assert float(r1["train_loss"]) == float(m1["train_loss"])
    assert float(m1["train_loss"]) < float(m0["train_loss"])


def test_relu_prox_rejects_bad_parameters():
    x, y, W, a = _network()
    with pytest.raises(ValueError, match="distance"):
        ReLUProx(_problem(x, y), TwoLayerReLU(W, a), distance="wasser")
    with pytest.raises(ValueError, match="gamma"):
        ReLUProx(_problem(x, y), TwoLayerReLU(W, a), gamma=0.0)
