"""Convex reformulation: the note's n = 8 sinus case, lower bound, exact balanced recovery, patterns,
teacher recovery, solver handling."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from algorithms.shallow import convex
from algorithms.shallow.convex import (ConvexReLUProblem, all_patterns_1d, convex_objective, gate_patterns,
                                       pattern_set, prune, recover, unique_patterns)
from algorithms.shallow.data import teacher
from algorithms.shallow.model import TwoLayerReLU, add_bias, objective
from algorithms.shallow.workbench_algorithms import ReLUConvex
from workbench.problem import DataSplit, Problem
from workbench.registry import load_all

load_all()  # every family registers itself

F64 = torch.float64
BETA = 1e-3
NOTE_OPTIMUM = 0.0116497  # notes section 3 item 2 (CLARABEL, all 15 patterns)


@pytest.fixture(scope="module")
def note_case():
    """n = 8 points of linspace(-1, 1), y = sin 3x, beta = 1e-3, all patterns."""
    x = torch.linspace(-1, 1, 8, dtype=F64)[:, None]
    y = torch.sin(3 * x[:, 0])
    X = add_bias(x).numpy()
    P = all_patterns_1d(X)
    result = ConvexReLUProblem(X, P).solve(y.numpy(), BETA)
    return x, y, X, P, result


def _f(W, a, X, y, beta):
    return objective(torch.as_tensor(W), torch.as_tensor(a), torch.as_tensor(X), torch.as_tensor(y), beta).item()


def test_note_sinus_optimum(note_case):
    _, y, X, P, result = note_case
    assert P.shape == (15, 8)
    # the 15 patterns are exactly what 5000 Gaussian gates find
    sampled = pattern_set(X, 5000, torch.Generator().manual_seed(0))
    assert {p.tobytes() for p in sampled} == {p.tobytes() for p in P}
    assert result.success and result.status == "optimal"
    assert abs(result.value - NOTE_OPTIMUM) < 5e-8


def test_balanced_recovery_is_exact_and_respects_patterns(note_case):
    _, y, X, P, result = note_case
    V, U = prune(result.V, result.U)
    W, a, block = recover(V, U)
    cvx = convex_objective(V, U, X, P, y.numpy(), BETA)
    assert abs(cvx - result.value) < 1e-6
    assert abs(_f(W, a, X, y.numpy(), BETA) - cvx) < 1e-9
    # balanced: |w_j| = |a_j|
    np.testing.assert_allclose(np.linalg.norm(W, axis=1), np.abs(a), rtol=1e-12)
    # each neuron's ReLU pattern is its block's D_k wherever the pre-activation is not ~0
    pre = X @ W.T  # (n, m)
    clear = np.abs(pre) > 1e-7 * np.linalg.norm(W, axis=1)
    actual = (pre > 0).T
    used = P[block]
    assert np.all(actual[clear.T] == used[clear.T])
    # and the relu output equals D_k X w (cone constraints hold)
    np.testing.assert_allclose(np.maximum(pre, 0), pre * used.T, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_convex_optimum_is_a_lower_bound_for_any_network(seed):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.rand(15, 2, generator=g, dtype=F64) - 1
    y = torch.randn(15, generator=g, dtype=F64)
    X = add_bias(x).numpy()
    for scale in (0.3, 1.0, 3.0):
        W = scale * torch.randn(6, 3, generator=g, dtype=F64)
        a = scale * torch.randn(6, generator=g, dtype=F64)
        P = pattern_set(X, 20, g, network_W=W.numpy())
        result = ConvexReLUProblem(X, P).solve(y.numpy(), 0.05)
        assert result.success
        assert result.value <= _f(W, a, X, y.numpy(), 0.05) + 1e-7


def test_gd_ends_at_or_above_convex_optimum(note_case):
    x, y, X, _, result = note_case
    torch.manual_seed(0)
    model = TwoLayerReLU(0.5 * torch.randn(30, 2, dtype=F64), 0.5 * torch.randn(30, dtype=F64))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    Xt = add_bias(x)
    for _ in range(1500):
        opt.zero_grad()
        loss = objective(model.W, model.a, Xt, y, BETA)
        loss.backward()
        opt.step()
    final = objective(model.W, model.a, Xt, y, BETA).item()
    assert final < 0.2  # GD did make progress ...
    assert final >= result.value - 1e-9  # ... but never below the global optimum


def test_pattern_utilities():
    X = np.array([[-1.0, 1.0], [0.0, 1.0], [2.0, 1.0]])
    P = all_patterns_1d(X)
    assert P.shape == (5, 3) and P.any(axis=1).all()
    dup = unique_patterns(P, P[::-1], np.zeros((2, 3), dtype=bool))
    np.testing.assert_array_equal(dup, P)
    W = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, -5.0]])  # a duplicate and an all-zero neuron
    assert gate_patterns(X, W).tolist() == [[False, False, True], [False, False, True], [False] * 3]
    assert pattern_set(X, 0, network_W=W).shape == (1, 3)
    with pytest.raises(ValueError):
        pattern_set(X, 0)


def test_teacher_recovered_with_k_blocks_1d_exact():
    x, y, Wt, at = teacher(40, 1, seed=1, k=3, return_teacher=True)
    X = add_bias(x).numpy()
    result = ConvexReLUProblem(X, all_patterns_1d(X)).solve(y.numpy(), 1e-5)
    assert result.success
    norms = np.concatenate([np.linalg.norm(result.V, axis=1), np.linalg.norm(result.U, axis=1)])
    big = np.sort(norms[norms > 0.05 * norms.max()])
    assert len(big) == 3
    # block norm |v_k| = |a_j| |w_j| of the planted neuron (a neuron with few active points may leave
    # a small part of its mass to a neighbouring pattern, hence 5%)
    np.testing.assert_allclose(big, np.sort((at.abs() * Wt.norm(dim=1)).numpy()), rtol=0.05)


def test_teacher_recovered_2d_when_its_patterns_are_available():
    x, y, Wt, at = teacher(40, 2, seed=2, k=2, return_teacher=True)
    X = add_bias(x).numpy()
    P = pattern_set(X, 100, torch.Generator().manual_seed(0), network_W=Wt.numpy())
    result = ConvexReLUProblem(X, P).solve(y.numpy(), 1e-5)
    norms = np.concatenate([np.linalg.norm(result.V, axis=1), np.linalg.norm(result.U, axis=1)])
    big = np.sort(norms[norms > 0.05 * norms.max()])
    assert len(big) == 2
    np.testing.assert_allclose(big, np.sort((at.abs() * Wt.norm(dim=1)).numpy()), rtol=0.03)


def test_parameters_reused_for_a_regularisation_path(note_case):
    _, y, X, P, _ = note_case
    prob = ConvexReLUProblem(X, P)
    path = [prob.solve(y.numpy(), b).value for b in (1e-2, BETA)]
    assert abs(path[1] - NOTE_OPTIMUM) < 5e-8
    assert abs(path[0] - ConvexReLUProblem(X, P).solve(y.numpy(), 1e-2).value) < 1e-8
    assert path[0] > path[1]


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
def test_solver_selection_and_failure_is_reported():
    with pytest.raises(ValueError, match="installed solvers: .*CLARABEL"):
        convex.check_solver("NO_SUCH_SOLVER")
    assert convex.check_solver("clarabel") == "CLARABEL"
    x = torch.linspace(-1, 1, 8, dtype=F64)[:, None]
    y = torch.sin(3 * x[:, 0])
    X = add_bias(x).numpy()
    with pytest.warns(RuntimeWarning, match="failed"):
        bad = ConvexReLUProblem(X, all_patterns_1d(X)).solve(y.numpy(), BETA, max_iter=1)
    assert not bad.success and bad.V is None and np.isnan(bad.value)


def _problem(x, y, model):
    split = DataSplit(x, y, x[:0], y[:0], task="regression", n_outputs=1)
    return Problem(split, lambda: model, torch.device("cpu"), F64)


def test_relu_convex_algorithm_installs_recovered_network(note_case):
    x, y, _, _, result = note_case
    model = TwoLayerReLU(torch.randn(5, 2, dtype=F64), torch.ones(5, dtype=F64))
    algo = ReLUConvex(_problem(x, y, model), model, beta=BETA)
    m = algo.step(x, y)
    assert m["solve_ok"] == 1.0 and m["n_patterns"] == 15
    assert abs(float(m["objective"]) - NOTE_OPTIMUM) < 5e-8
    assert model.width == int(m["n_active"]) and model.width > 0
    state = algo.state_dict()
    assert algo.snapshot()["status"] == "optimal" and algo.snapshot()["W"].shape == (model.width, 2)
    assert algo.converged  # max_solves = 1: the runner ends the run after this step
    info = algo.info()
    assert info["data_x"].shape == (8, 1)
    fresh = TwoLayerReLU(torch.randn(3, 2, dtype=F64), torch.ones(3, dtype=F64))
    algo2 = ReLUConvex(_problem(x, y, fresh), fresh, beta=BETA)
    assert not algo2.converged
    algo2.load_state_dict(state)
    assert algo2.converged
    torch.testing.assert_close(fresh(x), model(x))


def test_relu_convex_failed_solve_keeps_network():
    x = torch.linspace(-1, 1, 8, dtype=F64)[:, None]
    y = torch.sin(3 * x[:, 0])
    W0, a0 = torch.randn(4, 2, dtype=F64), torch.ones(4, dtype=F64)
    model = TwoLayerReLU(W0, a0)
    algo = ReLUConvex(_problem(x, y, model), model, beta=BETA, solver_options={"max_iter": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = algo.step(x, y)
    assert m["solve_ok"] == 0.0 and np.isnan(m["convex_objective"])
    assert algo.snapshot()["status"] == "user_limit"
    torch.testing.assert_close(model.W.detach(), W0)
    assert torch.isfinite(m["train_loss"])


def test_relu_convex_sampled_steps_never_increase_objective():
    x, y = teacher(30, 2, seed=3, k=2)
    model = TwoLayerReLU(0.1 * torch.randn(4, 3, dtype=F64), torch.ones(4, dtype=F64))
    torch.manual_seed(0)
    algo = ReLUConvex(_problem(x, y, model), model, beta=1e-3, n_gates=30, max_solves=None)
    values = [algo.step(x, y)["convex_objective"] for _ in range(3)]
    assert all(b <= a + 1e-7 for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("case", ["note", "teacher2d"])
def test_gram_and_residual_formulations_agree(case, note_case):
    if case == "note":
        _, y, X, P, _ = note_case
        y = y.numpy()
    else:
        x, yt = teacher(60, 2, seed=4, k=2)
        X, y = add_bias(x).numpy(), yt.numpy()
        P = pattern_set(X, 15, torch.Generator().manual_seed(1))
    res = ConvexReLUProblem(X, P, "residual").solve(y, BETA)
    gram = ConvexReLUProblem(X, P, "gram").solve(y, BETA)
    assert res.extras["formulation"] == "residual" and gram.extras["formulation"] == "gram"
    assert abs(gram.value - res.value) < 1e-7 * max(1e-3, res.value)
    with pytest.raises(ValueError):
        ConvexReLUProblem(X, P, "dense")
