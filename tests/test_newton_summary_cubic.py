"""nesterov_lrs: closed forms, multistart global minimisation, hard case, degenerate inputs,
invariances; the trivial partition is an exact line search and the finest one is Newton."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from algorithms.optimizers import compute_Hg, nesterov_lrs, partition
from algorithms.optimizers.newton_summary.cubic import cubic_model
from tests._newton_summary_helpers import DT, Poly


def _s1(h, g, d, lam):
    return nesterov_lrs(np.array([[h]]), np.array([g]), np.array([d ** 3]), lam)


@pytest.mark.parametrize("h,g,d,lam,expected,x0", [
    (2.0, 3.0, 1.0, 1.0, 1.1622776602, 0.0),
    (-1.0, 1.0, 1.0, 1.0, 2.7320508076, 2.0),
    (-1.0, 0.1, 1.0, 1.0, 2.0954451150, 2.0),
])
def test_s1_closed_forms(h, g, d, lam, expected, x0):
    eta, info = _s1(h, g, d, lam)
    closed = (-h + math.sqrt(h * h + 2 * lam * d ** 3 * g)) / (lam * d ** 3)
    assert info["status"] == "easy"
    np.testing.assert_allclose(eta.numpy(), [closed], rtol=1e-12)
    np.testing.assert_allclose(eta.numpy(), [expected], rtol=1e-9)
    np.testing.assert_allclose(info["x0"], x0, atol=1e-14)
    assert info["r"] >= info["x0"]


def test_s1_spurious_roots_are_rejected():
    H, g, o3 = np.array([[-1.0]]), np.array([0.1]), np.array([1.0])
    # the fixed-point equation eta (h + |eta|/2) = g has three roots; only the largest |eta| is global
    roots = [2.0954451150, -0.1055728090, -1.8944271910]
    for r in roots:
        np.testing.assert_allclose(r * (-1 + abs(r) / 2), 0.1, atol=1e-9)
    T = [cubic_model(H, g, o3, 1.0, [r]) for r in roots]
    np.testing.assert_allclose(T, [-0.87151, 0.00518, -0.47185], atol=1e-5)
    eta, info = nesterov_lrs(H, g, o3, 1.0)
    np.testing.assert_allclose(eta.numpy(), [roots[0]], rtol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_random_s4_global_minimum_against_multistart(seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((4, 4))
    H = A + A.T
    g = rng.standard_normal(4)
    o3 = rng.uniform(0.2, 1.2, 4) ** 3 * rng.choice([-1, 1], 4)
    eta, info = nesterov_lrs(H, g, o3, 1.0)
    assert info["status"] == "easy"
    d = np.abs(o3) ** (1 / 3)
    M = H + 0.5 * info["r"] * np.diag(d * d)
    np.testing.assert_allclose(M @ eta.numpy(), g, atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(d * eta.numpy()), info["r"], rtol=1e-10)
    assert info["r"] >= info["x0"] and np.linalg.eigvalsh(M)[0] >= -1e-10
    best = min(minimize(lambda e: cubic_model(H, g, o3, 1.0, e), rng.standard_normal(4) * 3,
                        method="BFGS", options=dict(gtol=1e-12)).fun for _ in range(30))
    T = cubic_model(H, g, o3, 1.0, eta)
    assert T <= best + 1e-10 * abs(best)
    np.testing.assert_allclose(T, best, rtol=1e-8)


def test_hard_case():
    H, g, o3 = np.diag([-1.0, 2.0]), np.array([0.0, 1.0]), np.array([1.0, 1.0])
    eta, info = nesterov_lrs(H, g, o3, 1.0)
    assert info["status"] == "hard"
    np.testing.assert_allclose(info["x0"], 2.0)
    np.testing.assert_allclose(info["r"], 2.0)
    np.testing.assert_allclose(np.abs(eta.numpy()), [1.9720265944, 1 / 3], rtol=1e-9)
    np.testing.assert_allclose(cubic_model(H, g, o3, 1.0, eta), -5 / 6, rtol=1e-12)
    best = minimize(lambda e: cubic_model(H, g, o3, 1.0, e), [1.0, 0.0], method="BFGS").fun
    assert cubic_model(H, g, o3, 1.0, eta) <= best + 1e-9


def test_degenerate_inputs():
    H = np.array([[2.0, 0.5], [0.5, 1.0]])
    g = np.array([1.0, -1.0])
    eta, info = nesterov_lrs(H, g, np.zeros(2), 1.0)  # D = 0, H > 0: Newton
    assert info["status"] == "newton"
    np.testing.assert_allclose(eta.numpy(), np.linalg.solve(H, g), rtol=1e-12)
    eta, info = nesterov_lrs(H, g, np.ones(2), 0.0)  # lambda_int = 0: Newton
    np.testing.assert_allclose(eta.numpy(), np.linalg.solve(H, g), rtol=1e-12)
    eta, info = nesterov_lrs(H, np.zeros(2), np.ones(2), 1.0)  # g = 0
    assert info["status"] == "zero_gradient" and torch.count_nonzero(eta) == 0
    eta, info = nesterov_lrs(np.diag([-1.0, 2.0]), g, np.array([0.0, 1.0]), 1.0)  # H_ZZ not PD
    assert eta is None and info["status"] == "unbounded"
    eta, info = nesterov_lrs(np.diag([1.0, -2.0]), g, np.zeros(2), 1.0)  # D = 0, H indefinite
    assert eta is None and info["status"] == "unbounded"
    eta, info = nesterov_lrs(np.diag([1.0, np.nan]), g, np.ones(2), 1.0)
    assert eta is None and info["status"] == "failed"
    with pytest.raises(ValueError):
        nesterov_lrs(H, g, np.ones(3), 1.0)
    with pytest.raises(ValueError):
        nesterov_lrs(H, g, np.ones(2), -1.0)


def test_partial_zero_d_matches_multistart():
    """Some d_s = 0 (e.g. a last linear layer under MSE): eta_Z eliminated exactly."""
    rng = np.random.default_rng(7)
    A = rng.standard_normal((4, 4))
    H = A + A.T
    H[:2, :2] = np.array([[3.0, 0.4], [0.4, 2.0]])  # H_ZZ > 0 for Z = {0, 1}
    g = rng.standard_normal(4)
    o3 = np.array([0.0, 0.0, 0.8, -1.1])
    eta, info = nesterov_lrs(H, g, o3, 2.0)
    assert info["status"] in ("easy", "hard")
    best = min(minimize(lambda e: cubic_model(H, g, o3, 2.0, e), rng.standard_normal(4) * 3,
                        method="BFGS", options=dict(gtol=1e-12)).fun for _ in range(30))
    np.testing.assert_allclose(cubic_model(H, g, o3, 2.0, eta), best, rtol=1e-8)


def test_diagonal_rescaling_invariance():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((4, 4))
    H, g, o3 = A + A.T, rng.standard_normal(4), rng.uniform(0.2, 1.2, 4) ** 3
    a2 = np.array([4.0, 0.25, 9.0, 1.5])
    eta, info = nesterov_lrs(H, g, o3, 1.0)
    eta2, info2 = nesterov_lrs(a2[:, None] * H * a2[None, :], a2 * g, a2 ** 3 * o3, 1.0)
    np.testing.assert_allclose(a2 * eta2.numpy(), eta.numpy(), rtol=1e-9)
    np.testing.assert_allclose(info2["r"], info["r"], rtol=1e-10)
    # also when the scale makes every d tiny: the relative threshold keeps the cubic regime
    eta3, info3 = nesterov_lrs(1e-12 * H, 1e-12 * g, 1e-18 * o3, 1.0)
    assert info3["status"] == info["status"]


def test_trivial_partition_is_exact_line_search():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).to(DT)
    x, y = torch.randn(10, 3, dtype=DT), torch.randn(10, 2, dtype=DT)
    loss = lambda xb, yb: ((model(xb) - yb) ** 2).sum(1).mean()
    pg, _ = partition.trivial(model)
    u = [torch.randn_like(p) for p in model.parameters()]
    H, g, o3 = compute_Hg(pg, loss, x, y, u, model=model)
    eta, info = nesterov_lrs(H, g, o3, 1.0)  # quadratic: D = 0 -> Newton = g.u / u.H.u
    assert info["status"] == "newton"
    np.testing.assert_allclose(eta.numpy(), (g / H[0]).numpy(), rtol=1e-12)
    with torch.no_grad():
        for p, ui in zip(model.parameters(), u):
            p.sub_(eta.item() * ui)
    _, g_after, _ = compute_Hg(pg, loss, x, y, u, model=model)
    assert abs(g_after.item()) <= 1e-12 * abs(g.item())  # directional derivative 0 along u


def test_finest_partition_is_the_newton_step():
    model = Poly(D=3)
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(12, 3, generator=gen, dtype=DT), torch.randn(12, generator=gen, dtype=DT)
    loss = lambda xb, yb: ((model(xb) - yb) ** 2).mean()
    pg, _ = partition.canonical(model)  # every scalar its own subset
    u = [torch.tensor(v, dtype=DT) for v in (0.7, -1.3, 2.1)]
    H, g, _ = compute_Hg(pg, loss, x, y, u, model=model)
    eta = np.linalg.solve(H.numpy(), g.numpy())
    c = torch.stack([p.detach() for p in model.parameters()])

    def L(cv):
        return ((sum(x[:, d] * cv[d] ** (d + 2) for d in range(3)) - y) ** 2).mean()
    Hc = torch.autograd.functional.hessian(L, c).numpy()
    gc = torch.autograd.functional.jacobian(L, c).numpy()
    np.testing.assert_allclose(np.array([0.7, -1.3, 2.1]) * eta, np.linalg.solve(Hc, gc), rtol=1e-10)
