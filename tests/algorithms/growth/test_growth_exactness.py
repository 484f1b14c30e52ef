"""Growth edge cases found side by side with the reference: the committed network does not depend
on the whitening route (one sign convention), GradMax's predicted gradient norm is what autograd
measures for every activation, and TINY's first-order prediction is exact exactly where the
activation is differentiable at 0 (flagged and warned elsewhere)."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from algorithms.growth import GrowingMLP, orient_neurons
from algorithms.growth.activations import at_zero
from workbench.models import ACTIVATIONS
from workbench.registry import load_for

DT = torch.float64
load_for({"models": ["growing_mlp"]})  # the growth family adds "relu1" to the activation names
ZERO_AT_ZERO = sorted(name for name in ACTIVATIONS if at_zero(ACTIVATIONS[name]()).value == 0.0)


def sq_sum(out, y):
    return ((out - y) ** 2).sum()


def _collect(model, X, Y):
    model.init_computation()
    model.zero_grad()
    sq_sum(model(X), Y).backward()
    model.update_computation()


def _layers_with_data(activation, seed, n=400, widths=(5, 4)):
    torch.manual_seed(seed)
    model = GrowingMLP(7, 3, list(widths), len(widths), activation=ACTIVATIONS[activation](), dtype=DT)
    X = torch.randn(n, 7, dtype=DT)
    Y = torch.sin(2 * X[:, :3]) + X[:, 3:4] * X[:, 4:5]
    return model, X, Y


def test_activation_facts_at_zero_are_autograds():
    facts = {name: at_zero(ACTIVATIONS[name]()) for name in ACTIVATIONS}
    selu = torch.nn.SELU()
    assert facts["selu"].derivative == pytest.approx(1.0507009873554805 * 1.6732632423543772, rel=1e-15)
    assert facts["selu"].right == pytest.approx(1.0507009873554805, rel=1e-15)
    assert facts["relu"].derivative == 0.0 and facts["relu"].right == 1.0 and facts["relu"].left == 0.0
    assert facts["relu1"].derivative == 1.0
    assert facts["gelu"].derivative == 0.5 and facts["silu"].derivative == 0.5
    assert facts["sigmoid"].value == 0.5 and facts["sigmoid"].derivative == 0.25
    assert {n for n, f in facts.items() if not f.smooth} == {"relu", "relu1", "selu"}
    x = torch.zeros(1, dtype=DT, requires_grad=True)
    (grad,) = torch.autograd.grad(selu(x).sum(), x)
    assert facts["selu"].derivative == float(grad)


def test_orient_neurons_fixes_the_sign_of_each_pair():
    g = torch.Generator().manual_seed(0)
    alpha, omega = torch.randn(3, 5, generator=g, dtype=DT), torch.randn(4, 3, generator=g, dtype=DT)
    a, o = orient_neurons(alpha, omega)
    torch.testing.assert_close(o @ a, omega @ alpha, rtol=0, atol=0)
    top = o.abs().argmax(dim=0)
    assert bool((o[top, torch.arange(3)] > 0).all())
    flipped = orient_neurons(-alpha, -omega)
    assert torch.equal(flipped[0], a) and torch.equal(flipped[1], o)


@pytest.mark.parametrize("activation", ["selu", "relu", "relu1"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("layer", [0, 1])
def test_every_whitening_route_commits_the_same_network(activation, seed, layer):
    model, X, Y = _layers_with_data(activation, seed)
    _collect(model, X, Y)
    outputs = {}
    for route in ("auto", "cholesky", "eigh", "ridge"):
        m = copy.deepcopy(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the kink warning, tested below
            m.compute_optimal_updates(maximum_added_neurons=3, statistical_threshold=0.0, whitening=route)
        m.select_update(layer)
        m.set_scaling_factor(1.0)
        m.apply_change()
        with torch.no_grad():
            outputs[route] = m(X)
    for route, out in outputs.items():
        torch.testing.assert_close(out, outputs["eigh"], rtol=1e-10, atol=1e-10, msg=route)


def test_singular_s2_auto_commits_what_eigh_commits():
    """A duplicated input column makes S2 singular: "auto" falls back to the pseudo-inverse route."""
    model, X, Y = _layers_with_data("selu", 5)
    X = torch.cat([X[:, :6], 2 * X[:, :1]], dim=1)
    _collect(model, X, Y)
    out = {}
    for route in ("auto", "eigh"):
        with torch.no_grad():
            out[route] = _committed(model, route)(X)
    torch.testing.assert_close(out["auto"], out["eigh"], rtol=1e-10, atol=1e-10)


def _committed(model, route):
    """A copy of ``model`` with the first 2-neuron proposal of ``route`` committed at scale 1."""
    m = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m.compute_optimal_updates(maximum_added_neurons=2, statistical_threshold=0.0, whitening=route)
    m.select_update(0)
    m.set_scaling_factor(1.0)
    m.apply_change()
    return m


@pytest.mark.parametrize("activation", ZERO_AT_ZERO)
def test_gradmax_predicted_gradient_norm_is_autograds(activation):
    assert "sigmoid" not in ZERO_AT_ZERO and len(ZERO_AT_ZERO) == len(ACTIVATIONS) - 1
    model, X, Y = _layers_with_data(activation, 1, widths=(3,))
    _collect(model, X, Y)
    model.compute_optimal_updates(maximum_added_neurons=2, initialization_method="gradmax")
    model.select_update(0)
    predicted = model.proposals[0].gradient_norm_squared
    model.set_scaling_factor(1.0)
    model.apply_change()
    model.zero_grad()
    (sq_sum(model(X), Y) / X.shape[0]).backward()
    w, b = model.layers[0].weight.grad, model.layers[0].bias.grad
    measured = float(torch.cat([w[3:], b[3:, None]], dim=1).pow(2).sum())
    assert predicted == pytest.approx(measured, rel=1e-10, abs=1e-300)
    if activation == "relu":
        assert measured == 0.0  # torch's ReLU'(0) = 0: zero-initialised neurons never train


@pytest.mark.parametrize("activation", ZERO_AT_ZERO)
def test_first_order_improvement_is_exact_where_flagged(activation):
    """D against finite differences at gamma = 1e-4: exact (1e-5) for activations differentiable
    at 0; at a kink the proposal says it is not, and the model warns once."""
    model, X, Y = _layers_with_data(activation, 2, n=2000, widths=(4,))
    _collect(model, X, Y)
    smooth = at_zero(model.activation).smooth
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compute_optimal_updates(maximum_added_neurons=2)
        model.compute_optimal_updates(maximum_added_neurons=2)
    kink_warnings = [w for w in caught if "kink at 0" in str(w.message)]
    assert len(kink_warnings) == (0 if smooth else 1)
    model.select_update(0)
    p = model.proposals[0]
    assert p.first_order_exact is smooth
    with torch.no_grad():
        L0 = float(sq_sum(model(X), Y)) / len(X)
        gamma = 1e-4
        model.set_scaling_factor(gamma)
        D_num = (L0 - float(sq_sum(model.extended_forward(X), Y)) / len(X)) / gamma ** 2
    if smooth:
        assert D_num == pytest.approx(p.first_order_improvement, rel=1e-5)
    else:
        assert D_num != pytest.approx(p.first_order_improvement, rel=1e-5)


@pytest.mark.parametrize("constant, n", [(0, 300), (4, 300), (4, 9), (9, 300)])
def test_pinv_solve_equals_the_eigh_pseudo_inverse(constant, n):
    """S2^+ N by deflating constant inputs equals the eigh route's S^{-1/2} S^{-1/2} N (float64),
    also when the samples are fewer than the inputs (a rank-deficient S2 beyond the constants)."""
    from algorithms.growth.linalg import pinv_solve_psd, sqrt_inverse_psd

    g = torch.Generator().manual_seed(constant + n)
    C = torch.randn(n, 12, generator=g, dtype=DT)
    C[:, :constant] = torch.linspace(-1, 2, max(constant, 1), dtype=DT)[:constant]  # constant inputs
    C = torch.cat([C, torch.ones(n, 1, dtype=DT)], dim=1)  # the ones column last, as with_ones does
    S2 = C.T @ C / n
    N = C.T @ torch.randn(n, 3, generator=g, dtype=DT) / n  # in the range of S2, as TINY's N is
    half = sqrt_inverse_psd(S2, 1e-6)
    torch.testing.assert_close(pinv_solve_psd(S2, N, 1e-6), half @ (half @ N), rtol=1e-10, atol=1e-12)


def test_constant_inputs_and_few_samples_auto_commits_what_eigh_commits():
    """MNIST's case: constant border pixels and fewer samples than inputs make S2 singular; the
    committed weights (not only the outputs on the data) equal the eigh route's."""
    torch.manual_seed(3)
    model = GrowingMLP(12, 3, [4], 1, activation=nn.SELU(), dtype=DT)
    X = torch.randn(10, 12, dtype=DT)
    X[:, :5] = -0.4242  # a normalised zero pixel
    Y = torch.sin(X[:, :3])
    _collect(model, X, Y)
    weights = {route: [p.detach().clone() for p in _committed(model, route).parameters()]
               for route in ("auto", "eigh")}
    for a, b in zip(weights["auto"], weights["eigh"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_statistics_track_exactly_constant_inputs():
    from algorithms.growth.statistics import GrowthStatistics

    stats = GrowthStatistics(r=5, p=2, q=1)
    assert stats.constant_inputs is None
    c = torch.randn(6, 5, dtype=DT)
    c[:, 1] = 0.25                      # constant throughout
    c[:, 2] = -1.5                      # constant in the first batch only
    c[:, 4] = 1.0                       # the bias column
    b, g = torch.randn(6, 2, dtype=DT), torch.randn(6, 1, dtype=DT)
    stats.update(c, b, g)
    assert stats.constant_inputs.tolist() == [False, True, True, False, True]
    c2 = c.clone()
    c2[3, 2] = -1.5 + 1e-12
    stats.update(c2, b, g)
    assert stats.constant_inputs.tolist() == [False, True, False, False, True]
    assert GrowthStatistics(r=5, p=2, q=1, m2_only=True).constant_inputs is None


def test_float32_statistics_deflate_the_constant_inputs_they_mark():
    """float32 sums over 1024 samples leave E[c_i^2] - E[c_i]^2 ~ 1e-6 E[c_i^2] for a constant
    pixel, too much to read constancy off S2; the tracked mask deflates the pixels all the same,
    so the solve W = S2^+ N is orthogonal to their null directions e_i - c_i e_bias, exactly, and
    solves S2 W = N on the rest: the residual is N's part along those null directions, which float32
    rounding of the sums put there, within gamma_n = n u (n = 1024 terms, u = 2^-24: the worst-case
    bound of a float32 sum, whatever order the CPU's kernels add in) of max |N|. Those two facts fix
    W. The unmasked truncated eigendecomposition is not a reference here: the constant pixels'
    eigenvalues lie at ~1e-6 of the largest, at the threshold, so which of them it keeps depends on
    the rounding of the CPU's SIMD kernels (it differed by 0.07 max |W| on one Xeon)."""
    from algorithms.growth.linalg import pinv_solve_psd

    torch.manual_seed(0)
    model = GrowingMLP(20, 3, [6], 1, activation=nn.SELU())
    X = torch.rand(1024, 20)
    X[:, :5] = -0.42421296  # MNIST's normalised zero pixel
    model.init_computation()
    model.zero_grad()
    sq_sum(model(X), torch.sin(X[:, 5:8])).backward()
    model.update_computation()
    stats = model.statistics(0)
    mask = stats.constant_inputs
    assert mask.tolist() == [True] * 5 + [False] * 15 + [True]
    S2, N = stats.S2, -stats.M2
    W = pinv_solve_psd(S2, N, 1e-6, mask)
    nulls = torch.eye(21, dtype=DT)[:5] - (S2[:5, -1] / S2[-1, -1])[:, None] * torch.eye(21, dtype=DT)[-1]
    assert float((nulls @ W).abs().max()) <= 1e-12 * float(W.abs().max())
    gamma_n = 1024 * 2.0 ** -24
    assert float((S2 @ W - N).abs().max()) <= gamma_n * float(N.abs().max())
