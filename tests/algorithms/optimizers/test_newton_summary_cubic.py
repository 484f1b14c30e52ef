"""nesterov_lrs: closed forms, multistart global minimisation, hard case, degenerate inputs,
invariances; the trivial partition is an exact line search and the finest one is Newton."""
from __future__ import annotations

import math
from decimal import Decimal, getcontext

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from algorithms.optimizers import compute_Hg, nesterov_lrs, partition
from algorithms.optimizers.newton_summary.cubic import cubic_model
from tests.algorithms.optimizers._newton_summary_helpers import DT, Poly


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


# -- global minimiser on wide scales, near the hard case, g = 0 --------------------------------

def _multistart_min(H, g, o3, lam, scale, rng, starts=12, value_scale=1.0):
    """Independent oracle: Newton-type minimisation (scipy trust-exact, analytic gradient and
    Hessian of T) from many random starts, in eta = scale * u so that u is O(1), with T divided
    by ``value_scale`` so that the gradient tolerance is relative."""
    d2 = np.abs(o3) ** (2 / 3)
    c = lam / 2

    def parts(u):
        eta = scale * u
        r = math.sqrt(float(d2 @ (eta * eta)))
        T = -g @ eta + 0.5 * eta @ H @ eta + lam / 6 * r ** 3
        grad = -g + H @ eta + c * r * d2 * eta
        hess = H + c * r * np.diag(d2) + (c / r * np.outer(d2 * eta, d2 * eta) if r > 0 else 0)
        return T / value_scale, grad * scale / value_scale, hess * np.outer(scale, scale) / value_scale

    best = math.inf
    for k in range(starts):
        u0 = rng.standard_normal(len(g)) * (3.0 if k else 0.0) + (0 if k else 1e-3)
        res = minimize(lambda u: parts(u)[0], u0, jac=lambda u: parts(u)[1],
                       hess=lambda u: parts(u)[2], method="trust-exact", options=dict(gtol=1e-14))
        best = min(best, res.fun)
    return best * value_scale


def _wide_problem(rng):
    """|eta| ~ 10^e with e uniform in [-6, 9]; the cubic term comparable to the quadratic one
    within a factor 100 either way, so both regimes and the indefinite ones occur."""
    S = int(rng.integers(2, 6))
    A = rng.standard_normal((S, S))
    h_scale, e = 10.0 ** rng.uniform(-3, 3), rng.uniform(-6, 9)
    H = (A + A.T) * h_scale
    g = rng.standard_normal(S) * h_scale * 10.0 ** e
    d = rng.uniform(0.2, 1.2, S) * 10.0 ** rng.uniform(-2, 1)
    lam = h_scale / (d.mean() ** 3 * 10.0 ** e) * 10.0 ** rng.uniform(-2, 2)
    return H, g, d ** 3 * rng.choice([-1, 1], S), lam


def _near_hard_problem(rng, tiny):
    """Indefinite H whose most negative eigenvector is almost orthogonal to g (|b_min| ~ tiny |g|)
    with |w| < x0: the root of the secular equation sits just right of the pole."""
    S = int(rng.integers(2, 5))
    Q, _ = np.linalg.qr(rng.standard_normal((S, S)))
    ev = np.sort(rng.uniform(0.5, 2.0, S))
    ev[0] = -rng.uniform(1.0, 3.0)
    s = 10.0 ** rng.uniform(-3, 5)
    coef = rng.standard_normal(S) * 0.05
    coef[0] = tiny
    return Q @ np.diag(ev * s) @ Q.T, Q @ (coef * s), np.ones(S), 1.0


@pytest.mark.parametrize("seed", range(60))
def test_wide_scale_random_problems_are_solved_to_1e9(seed):
    """|eta| from ~1e-6 to ~1e9: the returned T is the multistart minimum to 1e-9 relative, and
    the solver never rejects its own answer."""
    rng = np.random.default_rng(1000 + seed)
    H, g, o3, lam = _wide_problem(rng)
    eta, info = nesterov_lrs(H, g, o3, lam)
    assert eta is not None and info["status"] in ("easy", "hard"), info
    eta = eta.numpy()
    T = cubic_model(H, g, o3, lam, eta)
    best = _multistart_min(H, g, o3, lam, np.full(len(g), np.abs(eta).max()), rng, value_scale=abs(T))
    assert T <= best + 1e-9 * abs(best)
    assert T >= best - 1e-9 * abs(best)  # T is a real model value, not below the true minimum
    assert info["residual"] <= 1e-13


def test_wide_scale_problems_span_the_eta_range():
    sizes = []
    for seed in range(60):
        H, g, o3, lam = _wide_problem(np.random.default_rng(1000 + seed))
        sizes.append(np.abs(nesterov_lrs(H, g, o3, lam)[0].numpy()).max())
    assert min(sizes) < 1e-5 and max(sizes) > 1e8


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("tiny", [1e-6, 1e-10, 1e-14])
def test_near_hard_case_is_accurate(seed, tiny):
    rng = np.random.default_rng(seed)
    H, g, o3, lam = _near_hard_problem(rng, tiny)
    eta, info = nesterov_lrs(H, g, o3, lam)
    assert eta is not None, info
    eta = eta.numpy()
    T = cubic_model(H, g, o3, lam, eta)
    best = _multistart_min(H, g, o3, lam, np.full(len(g), np.abs(eta).max()), rng, value_scale=abs(T))
    assert abs(T - best) <= 1e-9 * abs(best)
    assert info["r"] >= info["x0"] and info["residual"] <= 1e-13


def test_zero_gradient_with_negative_curvature_follows_it():
    """g = 0, H indefinite: eta = 0 is a saddle; the minimiser is x0 along the most negative
    curvature direction (either sign; the largest entry is made positive)."""
    rng = np.random.default_rng(3)
    A = rng.standard_normal((3, 3))
    H = A + A.T
    o3 = rng.uniform(0.2, 1.2, 3) ** 3
    eta, info = nesterov_lrs(H, np.zeros(3), o3, 1.0)
    assert info["status"] == "hard"
    eta = eta.numpy()
    T = cubic_model(H, np.zeros(3), o3, 1.0, eta)
    best = _multistart_min(H, np.zeros(3), o3, 1.0, np.ones(3), rng)
    assert T < 0 and abs(T - best) <= 1e-10 * abs(best)
    assert eta[np.argmax(np.abs(eta))] > 0
    # the closed form: r = x0, T = -(c/6) x0^3 with c = lambda/2 (stationarity: y = x0 q_min)
    np.testing.assert_allclose(T, -(0.5 / 6) * info["x0"] ** 3, rtol=1e-12)
    h, d = -1.5, 0.8  # S = 1: eta = -2h / (lambda d^3)
    eta, info = _s1(h, 0.0, d, 2.0)
    assert info["status"] == "hard"
    np.testing.assert_allclose(eta.numpy(), [-2 * h / (2.0 * d ** 3)], rtol=1e-15)


@pytest.mark.parametrize("h,g,d,lam", [
    (1e8, 1e-3, 1.0, 1.0),      # h^2 >> 2 lam d^3 g: the textbook form cancels to 0
    (2.0, -3.0, 1.0, 1.0),      # g < 0: eta < 0
    (0.0, 2.0, 0.5, 3.0),       # h = 0: eta = sqrt(2 g / (lam d^3))
    (-5e6, 1e-9, 1e-2, 1e-3),   # strongly indefinite, tiny gradient
])
def test_s1_closed_form_is_exact_at_every_scale(h, g, d, lam):
    eta, info = _s1(h, g, d, lam)
    e = float(eta)
    # the positive root of (lam d^3/2) x^2 + h x - |g| = 0 in 60-digit decimal arithmetic
    getcontext().prec = 60
    H, G, A = Decimal(h), Decimal(abs(g)), Decimal(lam) * Decimal(d) ** 3
    exact = (-H + (H * H + 2 * A * G).sqrt()) / A
    assert abs(Decimal(abs(e)) - exact) <= Decimal(1e-14) * exact
    assert np.sign(e) == np.sign(g) and info["status"] == "easy"
    assert info["r"] == pytest.approx(d * abs(e), rel=1e-15)
