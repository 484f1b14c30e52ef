"""Entropic JKO on a fixed grid and its KL prox solvers (notes section 3, items 7 to 9)."""
import copy
import math
import warnings

import pytest
import torch

from algorithms.shallow.jko import cost_matrix, jko_step, log_kernel, plan
from algorithms.shallow.workbench_algorithms import ReLUJKO
from algorithms.shallow.workbench_data import relu_grid
from algorithms.shallow.jko_prox import QuadraticEnergy, kl_divergence, make_prox
from workbench.problem import DataSplit, Problem

F64 = torch.float64
SOLVERS = ("torch", "scipy", "cvxpy")


def _bump(N=30):
    x = torch.linspace(0, 1, N, dtype=F64)
    q = torch.exp(-((x - 0.3) ** 2) / (2 * 0.1 ** 2))
    return x, q / q.sum()


class _Identity:
    """The prox of F = 0."""

    def __call__(self, z):
        return z


def _network_energy(N=24, n=7, beta=1e-3, seed=0):
    g = torch.Generator().manual_seed(seed)
    grid = torch.randn(N, 2, generator=g, dtype=F64)
    signs = torch.where(torch.rand(N, generator=g) < 0.5, -1.0, 1.0).to(F64)
    X = torch.stack([torch.linspace(-1, 1, n, dtype=F64), torch.ones(n, dtype=F64)], dim=1)
    return QuadraticEnergy.from_network(grid, signs, X, torch.sin(3 * X[:, 0]), beta), g


def test_jko_mass_conservation_and_marginals():
    x, q = _bump()
    logK = log_kernel(cost_matrix(x[:, None]), 0.05)
    prox = make_prox("torch", QuadraticEnergy(V=x ** 2), 0.5 / 0.05)
    r = jko_step(q, logK, prox, tol=1e-12)
    assert r.converged and r.status == "converged"
    assert bool((r.p >= 0).all())
    assert abs(float(r.p.sum()) - 1.0) < 1e-12
    pi = plan(r, logK)
    torch.testing.assert_close(pi.sum(1), r.p, rtol=0, atol=1e-12)
    torch.testing.assert_close(pi.sum(0), q, rtol=0, atol=1e-12)
    assert r.residual_p <= 1e-12 and r.residual_q <= 1e-12
    # the mean moves toward the minimum of V = x^2
    assert float((x * q).sum()) == pytest.approx(0.30, abs=5e-3)
    assert 0.15 < float((x * r.p).sum()) < 0.25


def test_jko_matches_direct_convex_solve():
    """Oracle: min_pi KL(pi | K) + lam F(pi 1) s.t. pi^T 1 = q, solved as one cvxpy program."""
    cp = pytest.importorskip("cvxpy")
    import numpy as np

    N, eps, tau = 8, 0.1, 0.05
    energy, g = _network_energy(N=N, n=5, beta=0.0, seed=1)
    grid = torch.randn(N, 1, generator=g, dtype=F64)
    q = torch.rand(N, generator=g, dtype=F64) + 0.1
    logK = log_kernel(cost_matrix(grid), eps)
    lam = tau / eps
    r = jko_step(q, logK, make_prox("torch", energy, lam), tol=1e-12)
    Pi = cp.Variable((N, N), nonneg=True)
    A, y = energy.A.numpy(), energy.y.numpy()
    p = cp.sum(Pi, axis=1)
    obj = (-cp.sum(cp.entr(Pi)) - cp.sum(cp.multiply(logK.numpy(), Pi)) - cp.sum(Pi)
           + lam / energy.n * cp.sum_squares(A @ p - y))
    cp.Problem(cp.Minimize(obj), [cp.sum(Pi, axis=0) == q.numpy()]).solve(solver="CLARABEL")
    np.testing.assert_allclose(r.p.numpy(), Pi.value.sum(1), rtol=1e-5, atol=1e-7)


def test_zero_energy_is_entropic_diffusion():
    x, q = _bump()
    for eps in (0.05, 0.01):
        logK = log_kernel(cost_matrix(x[:, None]), eps)
        K = torch.exp(logK)
        r = jko_step(q, logK, _Identity(), tol=1e-14)
        torch.testing.assert_close(r.p, K @ (q / K.sum(1)), rtol=0, atol=1e-15)
    # as epsilon -> 0 the kernel tends to the identity and the step to q
    r = jko_step(q, log_kernel(cost_matrix(x[:, None]), 1e-5), _Identity(), tol=1e-14)
    torch.testing.assert_close(r.p, q, rtol=0, atol=1e-14)


def test_small_epsilon_does_not_underflow():
    x, q = _bump()
    eps = 1e-4
    logK = log_kernel(cost_matrix(x[:, None]), eps)
    assert float(torch.exp(logK).min()) == 0.0  # a dense kernel would underflow
    r = jko_step(q, logK, make_prox("torch", QuadraticEnergy(V=x ** 2), 0.5 / eps), tol=1e-10)
    assert r.converged
    assert bool(torch.isfinite(r.p).all())
    assert abs(float(r.p.sum()) - 1.0) < 1e-12


@pytest.mark.parametrize("flushing_before", [False, True])
def test_a_step_flushes_subnormals_and_restores_the_mode_it_found(flushing_before):
    """Inside a JKO step subnormal results are flushed to zero (x86 computes them some 100x
    slower); the step leaves the mode it found behind (off: torch's default; on: a workbench run
    with flush_denormal=True), also when it raises."""
    from algorithms.shallow.jko import flushed_subnormals

    tiny = torch.tensor([1e-310], dtype=F64)
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush subnormal numbers")
    before = 0.0 if flushing_before else 1e-310
    torch.set_flush_denormal(flushing_before)
    try:
        with flushed_subnormals():
            assert float(tiny * 1.0) == 0.0
        assert float(tiny * 1.0) == before
        x, q = _bump()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # 5 iterations do not reach tol
            jko_step(q, log_kernel(cost_matrix(x[:, None]), 1e-4), _Identity(), max_iter=5, tol=1e-300)
        assert float(tiny * 1.0) == before
        with pytest.raises(ValueError, match="finite"):
            jko_step(q * math.nan, log_kernel(cost_matrix(x[:, None]), 1e-2), _Identity())
        assert float(tiny * 1.0) == before
    finally:
        torch.set_flush_denormal(False)


def test_kernel_floor_is_explicit():
    C = cost_matrix(torch.linspace(0, 1, 5, dtype=F64)[:, None])
    assert float(log_kernel(C, 1e-3).min()) < math.log(1e-6)
    assert float(log_kernel(C, 1e-3, kernel_floor=1e-6).min()) == pytest.approx(math.log(1e-6))
    with pytest.raises(ValueError):
        log_kernel(C, 0.0)


def test_nonconvergence_warns():
    x, q = _bump()
    logK = log_kernel(cost_matrix(x[:, None]), 0.05)
    energy, _ = _network_energy(N=30)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        r = jko_step(q, logK, make_prox("torch", energy, 1.0), max_iter=2, tol=1e-14)
    assert not r.converged and r.status == "max_iter"


@pytest.mark.parametrize("lam", [0.5, 20.0])
def test_prox_solvers_agree(lam):
    energy, g = _network_energy()
    z = torch.rand(energy.N, generator=g, dtype=F64) / energy.N
    z[3] = 0.0  # an empty grid point must stay empty
    out = {}
    for name in SOLVERS:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every solver must converge without complaint
            out[name] = make_prox(name, energy, lam)(z)
        assert float(out[name][3]) == 0.0
    ref = out["torch"]
    # the fixed point p = z exp(-lam grad F(p)) characterises the prox
    torch.testing.assert_close(ref, z * torch.exp(-lam * energy.grad(ref)), rtol=1e-10, atol=1e-16)
    for name in ("scipy", "cvxpy"):
        assert float((out[name] - ref).norm() / ref.norm()) < 1e-5, name
    # the prox is the minimiser: a random positive perturbation never does better
    solver = make_prox("torch", energy, lam)
    best = float(solver.objective(ref, z))
    for _ in range(5):
        other = ref * torch.exp(0.01 * torch.randn(energy.N, generator=g, dtype=F64))
        assert float(solver.objective(other, z)) > best


@pytest.mark.parametrize("name", SOLVERS)
def test_prox_linear_energy_closed_form(name):
    g = torch.Generator().manual_seed(7)
    N, lam = 20, 3.0
    V = torch.rand(N, generator=g, dtype=F64) * 2 - 0.5
    z = torch.rand(N, generator=g, dtype=F64) + 0.05
    p = make_prox(name, QuadraticEnergy(V=V), lam)(z)
    expected = z * torch.exp(-lam * V)
    assert float((p - expected).norm() / expected.norm()) < 1e-5


def test_kl_divergence_convention():
    p, z = torch.tensor([0.0, 1.0, 2.0], dtype=F64), torch.tensor([1.0, 1.0, 0.5], dtype=F64)
    assert float(kl_divergence(p, z)) == pytest.approx(0 - 0 + 1 + 0 + (2 * math.log(4) - 2 + 0.5))
    with pytest.raises(ValueError):
        QuadraticEnergy()


def _jko_problem():
    x = torch.linspace(-1, 1, 9, dtype=F64)[:, None]
    data = DataSplit(x, torch.abs(x[:, 0]) - 0.3, x[:0], x[:0, 0], "regression", 1)
    return Problem(data, build_model=None, device=torch.device("cpu"), dtype=F64), x, data.y_train


def test_relu_jko_algorithm_conserves_mass_and_resumes():
    problem, x, y = _jko_problem()
    model = relu_grid((1,), 1, kind="circle", n=24, signs="both", mass=2.0)
    params = dict(tau=0.05, epsilon=0.05, prox_solver="torch", tol=1e-11, check_every=1)
    algo = ReLUJKO(problem, copy.deepcopy(model), **params)
    first = algo.step(x, y)
    assert first["total_mass"] == pytest.approx(2.0, abs=1e-10)
    state = copy.deepcopy(algo.state_dict())
    second = algo.step(x, y)
    assert float(second["train_loss"]) < float(first["train_loss"])
    assert second["total_mass"] == pytest.approx(2.0, abs=1e-10)
    torch.testing.assert_close(algo.model.a, algo.signs * algo.p)
    snap = algo.snapshot()
    assert snap["p"].shape == (48,) and (snap["p"] >= 0).all()
    info = algo.info()
    assert info["grid_kind"] == "circle" and info["grid"].shape == (48, 2)
    resumed = ReLUJKO(problem, copy.deepcopy(model), **params)
    resumed.load_state_dict(state)
    again = resumed.step(x, y)
    torch.testing.assert_close(resumed.p, algo.p, rtol=0, atol=1e-14)
    assert float(again["train_loss"]) == pytest.approx(float(second["train_loss"]), rel=1e-12)


@pytest.mark.parametrize("solver", ["scipy", "cvxpy"])
def test_relu_jko_solvers_give_the_same_step(solver):
    problem, x, y = _jko_problem()
    model = relu_grid((1,), 1, kind="plane", n=4, signs="both")
    ref = ReLUJKO(problem, copy.deepcopy(model), tau=0.1, epsilon=0.1, tol=1e-9)
    other = ReLUJKO(problem, copy.deepcopy(model), tau=0.1, epsilon=0.1, tol=1e-9, prox_solver=solver)
    ref.step(x, y)
    other.step(x, y)
    assert float((other.p - ref.p).norm() / ref.p.norm()) < 1e-5


def test_relu_jko_rejects_bad_parameters_and_models():
    with pytest.raises(ValueError, match="prox_solver must be one of 'torch', 'scipy', 'cvxpy', got 'ecos'"):
        ReLUJKO.check_params(ReLUJKO.resolve_params({"prox_solver": "ecos"}))
    with pytest.raises(ValueError, match="epsilon must be > 0, got -1.0"):
        ReLUJKO.check_params(ReLUJKO.resolve_params({"epsilon": -1.0}))
    params = ReLUJKO.resolve_params({})
    with pytest.raises(ValueError, match="relu_jko needs a two-layer ReLU model"):
        ReLUJKO.check_model(torch.nn.Linear(1, 1), params)
    empty = relu_grid((1,), 1, n=8)
    with torch.no_grad():
        empty.a.zero_()
    with pytest.raises(ValueError, match="zero total mass"):
        ReLUJKO.check_model(empty, params)
    ReLUJKO.check_model(relu_grid((1,), 1, n=8), params)


def test_log_matvec_matches_logsumexp_even_when_the_kernel_underflows():
    from algorithms.shallow.jko import log_matvec

    g = torch.Generator().manual_seed(11)
    grid = torch.rand(40, 2, generator=g, dtype=F64)
    for eps in (0.1, 1e-4):
        logK = log_kernel(cost_matrix(grid), eps)
        v = 300 * torch.randn(40, generator=g, dtype=F64)  # a wide range of log-scalings
        v[5] = -math.inf
        expected = torch.logsumexp(logK + v[None, :], dim=1)
        torch.testing.assert_close(log_matvec(logK, torch.exp(logK), v), expected, rtol=1e-13, atol=1e-12)


def _grid_problem(N=60, seed=3, zeros=False):
    g = torch.Generator().manual_seed(seed)
    grid = torch.rand(N, 2, generator=g, dtype=F64)
    q = torch.exp(-((grid - 0.5) ** 2).sum(1) / 0.05)
    if zeros:
        q[::7] = 0.0  # empty grid points stay empty
    V = ((grid - 0.2) ** 2).sum(1)
    return grid, q / q.sum(), V


@pytest.mark.parametrize("eps", [0.05, 1e-2, 1e-3, 1e-4])
@pytest.mark.parametrize("warm", [False, True])
@pytest.mark.parametrize("zeros", [False, True])
def test_stabilised_scalings_agree_with_the_exact_log_domain(eps, warm, zeros):
    """The fast path (dense products on an absorbed kernel, with its switches to the log domain)
    reaches the fixed point of the exact log-domain iteration, wherever the dense kernel underflows."""
    from algorithms.shallow.jko import _log_domain_step

    grid, q, V = _grid_problem(zeros=zeros)
    logK = log_kernel(cost_matrix(grid), eps)
    lam = 0.1 / eps
    g0 = None
    if warm:  # the previous step's potentials, as ReLUJKO passes them
        g0 = _log_domain_step(q, logK, make_prox("torch", QuadraticEnergy(V=V), lam), tol=1e-12, max_iter=20000).g
    fast = jko_step(q, logK, make_prox("torch", QuadraticEnergy(V=V), lam), tol=1e-12, max_iter=20000, g0=g0)
    exact = _log_domain_step(q, logK, make_prox("torch", QuadraticEnergy(V=V), lam), tol=1e-12, max_iter=20000, g0=g0)
    assert fast.converged and exact.converged and fast.iterations <= 20000
    torch.testing.assert_close(fast.p, exact.p, rtol=1e-9, atol=1e-13)
    assert abs(float(fast.p.sum()) - 1.0) < 1e-12  # mass conservation
    pi = plan(fast, logK)
    torch.testing.assert_close(pi.sum(0), q, rtol=1e-9, atol=1e-14)  # columns sum to q
    torch.testing.assert_close(pi.sum(1), fast.p, rtol=1e-9, atol=1e-14)
    if zeros:
        assert bool((fast.p[q == 0] >= 0).all())


def test_small_epsilon_absorbs_into_the_kernel_and_stays_exact(monkeypatch):
    import algorithms.shallow.jko as jko

    built, switches = [], []
    real_absorbed, real_log = jko._absorbed_kernel, jko._log_domain_step
    monkeypatch.setattr(jko, "_absorbed_kernel", lambda *a: built.append(1) or real_absorbed(*a))
    monkeypatch.setattr(jko, "_log_domain_step", lambda *a, **k: switches.append(k["max_iter"]) or real_log(*a, **k))
    grid, q, V = _grid_problem()
    logK = log_kernel(cost_matrix(grid), 1e-4)
    r = jko_step(q, logK, make_prox("torch", QuadraticEnergy(V=V), 1e3), tol=1e-12, max_iter=20000)
    assert r.converged and bool(torch.isfinite(r.p).all())
    assert switches == [jko.LOG_WARMUP], "one exact warm-up iteration, then the fast path"
    assert built, "scalings outside the safe range were absorbed into the kernel"


def test_the_iteration_budget_counts_every_iteration():
    grid, q, V = _grid_problem()
    logK = log_kernel(cost_matrix(grid), 1e-4)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        r = jko_step(q, logK, make_prox("torch", QuadraticEnergy(V=V), 1e3), tol=1e-300, max_iter=37)
    assert r.iterations == 37 and not r.converged and bool(torch.isfinite(r.p).all())
