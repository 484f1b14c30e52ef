"""Growth statistics, Delta, TINY and GradMax against closed forms (notes list (d), items 1-4, 7-10)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from algorithms.growth import (GrowingMLP, ReLUDerivativeOneAtZero, gradmax_added_parameters,
                               gradmax_normalize, optimal_delta, tiny_added_parameters)

DT = torch.float64


def collect(model, batches, loss_fn, loss_reduction="sum"):
    model.init_computation()
    for x, y in batches:
        model.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        model.update_computation(loss_reduction=loss_reduction)


def sq_sum(out, y):
    return ((out - y) ** 2).sum()


def half_sq_sum(out, y):
    return 0.5 * ((out - y) ** 2).sum()


# -- (1) closed-form statistics and Delta ------------------------------------------------------
@pytest.mark.parametrize("repeats", [1, 3])
def test_closed_form_statistics_and_delta(repeats):
    c, a = 5, 3.0
    model = GrowingMLP(c, c, c, 1, activation=nn.Identity(), use_bias=False, dtype=DT)
    with torch.no_grad():
        model.layers[0].weight.copy_(torch.eye(c, dtype=DT))  # b = x
        model.layers[1].weight.zero_()                          # the layer under study: W = 0
    X = a * torch.eye(c, dtype=DT)
    collect(model, [(X, X)] * repeats, sq_sum)
    stats = model.statistics(0)
    torch.testing.assert_close(stats.S, a * a * torch.eye(c, dtype=DT) / c)
    torch.testing.assert_close(stats.M, -2 * a * a * torch.eye(c, dtype=DT) / c)
    delta, d_delta = optimal_delta(stats.S, stats.M)
    torch.testing.assert_close(delta, -2 * torch.eye(c, dtype=DT))
    assert d_delta == pytest.approx(36.0, rel=1e-12)
    assert stats.n_samples == repeats * c


# -- (2) one TINY step learns a linear target exactly ---------------------------------------------
def test_one_tiny_step_learns_linear_target():
    model = GrowingMLP(5, 5, 5, 1, activation=nn.Identity(), use_bias=False, dtype=DT)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.zero_()
    X = torch.eye(5, dtype=DT)
    collect(model, [(X, X)], half_sq_sum)
    model.compute_optimal_updates(maximum_added_neurons=5, use_projection=False, compute_delta=False)
    p = model.proposals[0]
    torch.testing.assert_close(p.singular_values, torch.full((5,), 1 / math.sqrt(5), dtype=DT))
    torch.testing.assert_close(p.omega @ p.alpha, torch.eye(5, dtype=DT))
    model.dummy_select_update()
    model.set_scaling_factor(1.0)
    model.apply_change()
    with torch.no_grad():
        torch.testing.assert_close(model(X), X)


# -- (3) zero bottleneck ----------------------------------------------------------------------------
def test_zero_bottleneck_linear_net():
    torch.manual_seed(0)
    model = GrowingMLP(5, 7, 3, 1, activation=nn.Identity(), use_bias=False, dtype=DT)
    X = torch.eye(5, dtype=DT)
    collect(model, [(X, torch.zeros(5, 7, dtype=DT))], half_sq_sum)
    model.compute_optimal_updates(statistical_threshold=1e-3)
    p = model.proposals[0]
    torch.testing.assert_close(p.delta, model.layers[1].weight.detach())
    assert p.n.abs().max() < 1e-12
    assert p.singular_values.abs().max() < 1e-7


# -- (4) exact reconstruction -------------------------------------------------------------------------
def test_exact_reconstruction_with_covariance():
    X = torch.diag(torch.arange(1.0, 6.0, dtype=DT))
    Y = 4 * torch.eye(5, dtype=DT)
    alpha, omega, lam = tiny_added_parameters(X.T @ X, X.T @ Y, statistical_threshold=0.0)
    assert lam.shape == (5,)
    torch.testing.assert_close(X @ alpha.T @ omega.T, Y)


def test_reconstruction_identity_metric_and_ignored_singular_values():
    X = torch.diag(torch.arange(1.0, 6.0, dtype=DT))
    Y = 4 * torch.eye(5, dtype=DT)
    alpha, omega, _ = tiny_added_parameters(None, X.T @ Y, maximum_added_neurons=2)
    R = X @ alpha.T @ omega.T
    torch.testing.assert_close(R[:3], torch.zeros(3, 5, dtype=DT))
    torch.testing.assert_close(R[:, :3], torch.zeros(5, 3, dtype=DT))
    torch.testing.assert_close(R[3:], (Y * X * X)[3:])
    alpha, omega, _ = tiny_added_parameters(X.T @ X, X.T @ Y, statistical_threshold=0.0,
                                            ignore_singular_values=True)
    R = X @ alpha.T @ omega.T
    assert torch.equal(R.abs() > 1e-10, Y != 0)


# -- (7) GradMax ------------------------------------------------------------------------------------------
def _gradmax_setup(activation, seed=0, n=300):
    torch.manual_seed(seed)
    model = GrowingMLP(6, 4, 3, 1, activation=activation, dtype=DT)
    X, Y = torch.randn(n, 6, dtype=DT), torch.randn(n, 4, dtype=DT)
    return model, X, Y


def _new_incoming_grad(model, X, Y, h):
    """Mean-loss gradient w.r.t. the new neurons' incoming weights and biases (k, r)."""
    model.zero_grad()
    loss = sq_sum(model(X), Y) / X.shape[0]
    loss.backward()
    w, b = model.layers[0].weight.grad, model.layers[0].bias.grad
    return torch.cat([w[h:], b[h:, None]], dim=1)


def test_gradmax_preserves_function_and_maximises_gradient_norm():
    model, X, Y = _gradmax_setup(ReLUDerivativeOneAtZero())
    collect(model, [(X, Y)], sq_sum)
    M2 = model.statistics(0).M2.clone()
    model.compute_optimal_updates(maximum_added_neurons=2, initialization_method="gradmax", gradmax_scale=None)
    model.select_update(0)
    with torch.no_grad():
        base = model(X)
        for gamma in (0.0, 0.5, 1.0, 3.0):  # (i) unchanged function for every amplitude
            model.set_scaling_factor(gamma)
            torch.testing.assert_close(model.extended_forward(X), base)
    p = model.proposals[0]
    torch.testing.assert_close(p.omega.T @ p.omega, torch.eye(2, dtype=DT))
    s = torch.linalg.svdvals(M2)
    model.set_scaling_factor(1.0)
    model.apply_change()
    grad = _new_incoming_grad(model, X, Y, h=3)
    # (ii) ||grad||^2 = sigma'(0)^2 sum of the top-k squared singular values of M2
    assert float(grad.pow(2).sum()) == pytest.approx(float((s[:2] ** 2).sum()), rel=1e-10)
    assert p.gradient_norm_squared == pytest.approx(float((s[:2] ** 2).sum()), rel=1e-10)
    # (iii) any other orthonormal omega gives a smaller value (Ky Fan)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        Q, _ = torch.linalg.qr(torch.randn(4, 2, generator=g, dtype=DT))
        assert float((Q.T @ M2.T).pow(2).sum()) <= float((s[:2] ** 2).sum()) + 1e-12


def test_gradmax_relu_derivative_at_zero():
    grads = {}
    for name, act in (("relu", nn.ReLU()), ("relu1", ReLUDerivativeOneAtZero())):
        model, X, Y = _gradmax_setup(act)
        collect(model, [(X, Y)], sq_sum)
        model.compute_optimal_updates(maximum_added_neurons=1, initialization_method="gradmax")
        model.select_update(0)
        model.set_scaling_factor(1.0)
        model.apply_change()
        grads[name] = _new_incoming_grad(model, X, Y, h=3)
    assert torch.count_nonzero(grads["relu"]) == 0  # (iv) nn.ReLU: the new neurons never train
    assert grads["relu1"].abs().max() > 1e-3


def test_gradmax_norm_rule():
    model, X, Y = _gradmax_setup(nn.Tanh())
    collect(model, [(X, Y)], sq_sum)
    model.compute_optimal_updates(maximum_added_neurons=2, initialization_method="gradmax", gradmax_scale=0.7)
    p = model.proposals[0]
    mean_norm = model.layers[1].weight.detach().norm(dim=0).mean()
    torch.testing.assert_close(p.omega.norm(dim=0), torch.full((2,), 0.7 * float(mean_norm), dtype=DT))
    assert p.first_order_improvement == 0.0 and p.predicted_decrease() == 0.0
    with pytest.raises(ValueError, match="scale"):
        gradmax_normalize(p.omega, model.layers[1].weight, 0.0)


def test_gradmax_solver_shapes_and_values():
    M2 = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=DT)
    alpha, omega, s = gradmax_added_parameters(M2, statistical_threshold=0.0)
    assert alpha.shape == (3, 7) and omega.shape == (3, 3) and torch.count_nonzero(alpha) == 0
    torch.testing.assert_close(s, torch.linalg.svdvals(M2))


# -- (8) batch-size invariance, counted once per forward ----------------------------------------------
def test_batch_size_invariance_and_single_count():
    torch.manual_seed(0)
    model = GrowingMLP(4, 3, 5, 2, activation=nn.Tanh(), dtype=DT)
    X, Y = torch.randn(40, 4, dtype=DT), torch.randn(40, 3, dtype=DT)

    def summary(batches, reduction="sum", double_update=False):
        model.init_computation()
        for x, y in batches:
            model.zero_grad()
            loss = sq_sum(model(x), y)
            (loss / x.shape[0] if reduction == "mean" else loss).backward()
            model.update_computation(loss_reduction=reduction)
            if double_update:
                model.update_computation(loss_reduction=reduction)  # same forward: ignored
        props = model.compute_optimal_updates(maximum_added_neurons=3)
        out = []
        for i in (0, 1):
            st = model.statistics(i)
            out += [st.S, st.M, st.S2, st.M2, st.P, props[i].delta, props[i].singular_values,
                    torch.tensor(props[i].d_delta)]
        return out

    once = summary([(X, Y)])
    for other in (summary([(X, Y), (X, Y)]), summary([(torch.cat([X, X]), torch.cat([Y, Y]))]),
                  summary([(X[:15], Y[:15]), (X[15:], Y[15:])]), summary([(X, Y)], reduction="mean"),
                  summary([(X, Y)], double_update=True)):
        for a, b in zip(once, other, strict=True):
            torch.testing.assert_close(a, b)


# -- (9) scale invariance (natural gradient) ----------------------------------------------------------
def test_scale_invariance_of_the_natural_gradient():
    def run(c):
        torch.manual_seed(3)
        model = GrowingMLP(4, 3, 4, 3, activation=nn.Identity(), use_bias=False, dtype=DT)
        with torch.no_grad():
            model.layers[0].weight.mul_(c)
            model.layers[3].weight.div_(c)
        torch.manual_seed(4)
        X, Y = torch.randn(50, 4, dtype=DT), torch.randn(50, 3, dtype=DT)
        model.set_growing_layers(index=1)
        collect(model, [(X, Y)], sq_sum)
        st = model.statistics(1)
        tiny = model.compute_optimal_updates(maximum_added_neurons=2)[1]
        nocov = tiny_added_parameters(None, -st.M2, maximum_added_neurons=2)[2]
        return st.S, st.M, st.M2, st.S2, tiny.delta, tiny.singular_values, nocov

    c = 2.0
    base, scaled = run(1.0), run(c)
    for a, b, power in zip(base, scaled, (2, 0, 0, 2, -2, -1, 0), strict=True):
        torch.testing.assert_close(b, a * c ** power)


# -- (10) thresholds and sub-selection ----------------------------------------------------------------
def test_statistical_threshold_and_cap():
    N = torch.zeros(6, 4, dtype=DT)
    N[0, 0], N[1, 1], N[2, 2] = 3.0, 1e-2, 1e-4
    assert tiny_added_parameters(None, N, statistical_threshold=1e-3)[2].shape == (2,)
    assert tiny_added_parameters(None, N, statistical_threshold=10.0)[2].shape == (1,)  # at least one
    assert tiny_added_parameters(None, N, statistical_threshold=0.0)[2].shape == (4,)   # k <= min(r, q)
    assert tiny_added_parameters(None, N, statistical_threshold=0.0, maximum_added_neurons=3)[2].shape == (3,)
    with pytest.raises(ValueError, match="maximum_added_neurons"):
        tiny_added_parameters(None, N, maximum_added_neurons=0)


def test_sub_select_and_scaling_of_extensions():
    torch.manual_seed(0)
    model = GrowingMLP(6, 5, 3, 1, activation=nn.Tanh(), dtype=DT)
    X, Y = torch.randn(100, 6, dtype=DT), torch.randn(100, 5, dtype=DT)
    collect(model, [(X, Y)], sq_sum)
    model.compute_optimal_updates(statistical_threshold=0.0)
    p = model.proposals[0]
    assert p.n_neurons == 5
    lam, fo_new = p.singular_values.clone(), p.new_neurons_improvement
    p.scale_extensions(2.0, 3.0)
    torch.testing.assert_close(p.singular_values, lam * math.sqrt(6.0))
    assert p.new_neurons_improvement == pytest.approx(6.0 * fo_new, rel=1e-10)
    p.sub_select(2)
    assert p.singular_values.shape == (2,) and p.alpha.shape == (2, 7) and p.omega.shape == (5, 2)
    model.select_update(0)
    model.set_scaling_factor(0.5)
    model.apply_change()
    assert model.layers[1].in_features == 5 and model.layers[0].out_features == 5
    assert model.layers[1].weight.shape == (5, 5) and model.layers[0].bias.shape == (5,)
    gm = model.__class__(6, 5, 3, 1, activation=nn.Tanh(), dtype=DT)
    collect(gm, [(X, Y)], sq_sum)
    q = gm.compute_optimal_updates(statistical_threshold=0.0, initialization_method="gradmax", gradmax_scale=None)[0]
    s = q.singular_values.clone()
    q.scale_extensions(2.0, 3.0)
    torch.testing.assert_close(q.singular_values, 6.0 * s)


def test_gradmax_collects_only_m2_with_the_same_result():
    results = []
    for method in ("tiny", "gradmax"):
        model, X, Y = _gradmax_setup(nn.Tanh())
        model.init_computation(initialization_method=method)
        sq_sum(model(X), Y).backward()
        model.update_computation()
        p = model.compute_optimal_updates(maximum_added_neurons=2, initialization_method="gradmax")[0]
        results.append((model.statistics(0).M2, p.omega, p.singular_values))
        if method == "gradmax":
            with pytest.raises(RuntimeError, match="only M2"):
                model.compute_optimal_updates(initialization_method="tiny")
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("ignore", [False, True])
def test_cholesky_route_equals_eigh_and_ridge_handles_singular_s2(ignore):
    g = torch.Generator().manual_seed(0)
    C = torch.randn(500, 8, generator=g, dtype=DT)
    V = torch.randn(500, 3, generator=g, dtype=DT)
    S2, N = C.T @ C / 500, C.T @ V / 500
    kw = dict(statistical_threshold=0.0, ignore_singular_values=ignore)
    ra, ro, rl = tiny_added_parameters(S2, N, whitening="eigh", **kw)
    ca, co, cl = tiny_added_parameters(S2, N, whitening="cholesky", **kw)
    torch.testing.assert_close(cl, rl)
    torch.testing.assert_close(co @ ca, ro @ ra)  # the map is unique (distinct singular values)
    torch.testing.assert_close(ca.abs(), ra.abs())  # each neuron up to a sign
    torch.testing.assert_close(co.abs(), ro.abs())
    # singular S2: a constant column duplicates another direction (like MNIST's constant pixels)
    Cs = torch.cat([C, 2 * C[:, :1]], dim=1)
    S2s, Ns = Cs.T @ Cs / 500, Cs.T @ V / 500
    ea, eo, el = tiny_added_parameters(S2s, Ns, whitening="eigh", **kw)
    aa, ao, al = tiny_added_parameters(S2s, Ns, whitening="auto", **kw)  # falls back to eigh
    torch.testing.assert_close(ao @ aa, eo @ ea)
    xa, xo, xl = tiny_added_parameters(S2s, Ns, whitening="ridge", **kw)
    torch.testing.assert_close(Cs @ xa.T @ xo.T, Cs @ ea.T @ eo.T, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(xl, el, rtol=1e-4, atol=1e-6)


def test_statistics_over_many_batches_equal_one_big_batch():
    torch.manual_seed(0)
    model = GrowingMLP(4, 3, 5, 1, activation=nn.Tanh(), dtype=DT)
    X, Y = torch.randn(100, 4, dtype=DT), torch.randn(100, 3, dtype=DT)
    collect(model, [(X[i:i + 5], Y[i:i + 5]) for i in range(0, 100, 5)], sq_sum)  # 20 batches: flushes
    many = [model.statistics(0).S.clone(), model.statistics(0).M2.clone(), model.statistics(0).P.clone()]
    collect(model, [(X, Y)], sq_sum)
    one = [model.statistics(0).S, model.statistics(0).M2, model.statistics(0).P]
    for a, b in zip(many, one, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("r", [7, 300])  # 300: S2 accumulated by upper blocks and mirrored
def test_statistics_equal_their_definitions(r):
    from algorithms.growth.statistics import GrowthStatistics

    g = torch.Generator().manual_seed(3)
    p, q = 6, 4
    stats = GrowthStatistics(r, p, q)
    cs, bs, gs = [], [], []
    for n in (9, 17, 30):  # batches of different sizes, in float32 as a model's activations are
        c, b, gr = (torch.randn(n, k, generator=g) for k in (r, p, q))
        stats.update(c, b, gr)
        cs.append(c.double()), bs.append(b.double()), gs.append(gr.double())
    c, b, gr = torch.cat(cs), torch.cat(bs), torch.cat(gs)
    n = c.shape[0]
    for got, want in ((stats.S2, c.T @ c / n), (stats.P, c.T @ b / n), (stats.M2, c.T @ gr / n),
                      (stats.S, b.T @ b / n), (stats.M, b.T @ gr / n)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)  # float32 products, float64 sums
    torch.testing.assert_close(stats.S2, stats.S2.T, rtol=1e-6, atol=1e-7)  # a symmetric matrix, mirrored blocks too
