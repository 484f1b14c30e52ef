"""Distances between particle sets (notes section 3, items 3 and 4): W2 identities, sign split,
sliced W2 in 1-D and its |t|^2/D translation law, one normalisation for all three."""
import itertools

import numpy as np

import pytest
import torch

from algorithms.shallow.distances import (frobenius, optimal_assignment, random_projections,
                                          sliced_wasserstein2, wasserstein2)

F64 = torch.float64


def _brute_force_w2(V, W, signs):
    """min over sign-preserving permutations of (1/m) sum |v_j - w_sigma(j)|^2, by enumeration."""
    m = V.shape[0]
    cost = ((V.numpy()[:, None, :] - W.numpy()[None, :, :]) ** 2).sum(-1)  # (m, m)
    pos = (signs >= 0).numpy()
    perms = np.array(list(itertools.permutations(range(m))))  # (m!, m)
    perms = perms[(pos[perms] == pos[None, :]).all(axis=1)]  # sign-preserving only
    return float(cost[np.arange(m)[None, :], perms].sum(axis=1).min()) / m


def test_w2_zero_on_itself_and_permutation_invariant():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(9, 3, generator=g, dtype=F64)
    signs = torch.tensor([1, 1, -1, 1, -1, -1, 1, 1, -1], dtype=F64)
    assert float(wasserstein2(X, X, signs)) == 0.0
    perm = torch.tensor([3, 0, 5, 1, 4, 2, 7, 6, 8])  # maps + to + and - to -
    assert bool((signs[perm] == signs).all())
    assert float(wasserstein2(X, X[perm], signs)) < 1e-14
    assert float(frobenius(X, X[perm])) > 0.1  # Frobenius is not permutation invariant


def test_w2_translation_and_brute_force():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(7, 2, generator=g, dtype=F64)
    signs = torch.tensor([1, -1, 1, 1, -1, 1, -1], dtype=F64)
    t = torch.tensor([0.7, -1.2], dtype=F64)
    torch.testing.assert_close(wasserstein2(W + t, W, signs), (t ** 2).sum(), rtol=1e-12, atol=1e-12)
    V = torch.randn(7, 2, generator=g, dtype=F64)
    assert float(wasserstein2(V, W, signs)) == pytest.approx(_brute_force_w2(V, W, signs), rel=1e-12)
    assert float(wasserstein2(V, W, None)) == pytest.approx(_brute_force_w2(V, W, torch.ones(7)), rel=1e-12)


def test_sign_split_blocks_mass_exchange():
    # the positive particle takes the negative one's spot and vice versa
    W = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=F64)
    V = W.flip(0)
    signs = torch.tensor([1.0, -1.0])
    assert float(wasserstein2(V, W, None)) == 0.0  # without the split the swap is free
    torch.testing.assert_close(wasserstein2(V, W, signs), torch.tensor(1.0, dtype=F64))
    torch.testing.assert_close(wasserstein2(V, W, signs), frobenius(V, W))
    assert float(sliced_wasserstein2(V, W, signs, n_projections=64)) > 0.1


def test_w2_gradient_through_fixed_assignment():
    g = torch.Generator().manual_seed(2)
    W = torch.randn(6, 3, generator=g, dtype=F64)
    signs = torch.tensor([1, 1, 1, -1, -1, -1], dtype=F64)
    V = torch.randn(6, 3, generator=g, dtype=F64, requires_grad=True)
    sigma = optimal_assignment(V, W, signs)
    wasserstein2(V, W, signs).backward()
    torch.testing.assert_close(V.grad, (2.0 / 6) * (V.detach() - W[sigma]))


def test_sliced_equals_exact_in_1d():
    g = torch.Generator().manual_seed(3)
    V, W = torch.randn(11, 1, generator=g, dtype=F64), torch.randn(11, 1, generator=g, dtype=F64)
    signs = torch.where(torch.rand(11, generator=g) < 0.5, -1.0, 1.0)
    exact = wasserstein2(V, W, signs)
    for L in (1, 3, 50):
        torch.testing.assert_close(sliced_wasserstein2(V, W, signs, n_projections=L, generator=g), exact,
                                   rtol=1e-12, atol=1e-14)


def test_sliced_translation_law():
    g = torch.Generator().manual_seed(4)
    D = 5
    W = torch.randn(8, D, generator=g, dtype=F64)
    t = torch.randn(D, generator=g, dtype=F64)
    theta = random_projections(20000, D, g)
    # exact for any fixed projections: a translation shifts every projected particle by theta.t
    sw = sliced_wasserstein2(W + t, W, None, projections=theta)
    torch.testing.assert_close(sw, ((theta @ t) ** 2).mean(), rtol=1e-10, atol=0)
    # and E_theta (theta.t)^2 = |t|^2 / D (Monte-Carlo, 20k directions: ~0.8% standard error)
    assert float(sw) == pytest.approx(float((t ** 2).sum()) / D, rel=0.04)


def test_sliced_is_differentiable_and_normalised_like_w2():
    g = torch.Generator().manual_seed(5)
    W = torch.randn(5, 2, generator=g, dtype=F64)
    theta = random_projections(7, 2, g)
    V = (W + 0.3 * torch.randn(5, 2, generator=g, dtype=F64)).requires_grad_(True)
    signs = torch.tensor([1.0, -1, 1, -1, 1])
    assert torch.autograd.gradcheck(lambda v: sliced_wasserstein2(v, W, signs, projections=theta), (V,))
    # same normalisation: a common 1-D displacement gives the same number in all three
    W1 = torch.randn(6, 1, generator=g, dtype=F64).sort(0).values
    V1 = W1 + 0.01
    vals = [frobenius(V1, W1), wasserstein2(V1, W1), sliced_wasserstein2(V1, W1, n_projections=3, generator=g)]
    for v in vals[1:]:
        torch.testing.assert_close(v, vals[0])


def test_distance_validation():
    with pytest.raises(ValueError):
        wasserstein2(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError):
        sliced_wasserstein2(torch.zeros(3, 2), torch.zeros(3, 2), projections=torch.ones(4, 3))
    with pytest.raises(ValueError):
        frobenius(torch.zeros(3), torch.zeros(3))


def test_sliced_numpy_path_matches_the_torch_expression():
    """The CPU autograd Function against the device path's torch expression (run here on CPU)."""
    from algorithms.shallow.distances import _sorted_matching

    g = torch.Generator().manual_seed(6)
    W = torch.randn(30, 3, generator=g, dtype=F64, requires_grad=True)
    V = torch.randn(30, 3, generator=g, dtype=F64, requires_grad=True)
    signs = torch.where(torch.rand(30, generator=g) < 0.4, -1.0, 1.0)
    theta = random_projections(9, 3, g)
    ours = sliced_wasserstein2(V, W, signs, projections=theta)
    gV, gW = torch.autograd.grad(ours, (V, W))
    pv, pw = theta @ V.T, theta @ W.T
    match = _sorted_matching(pv.detach(), pw.detach(), signs)
    expr = ((pv - torch.take_along_dim(pw, match, dim=1)) ** 2).sum() / (30 * 9)
    eV, eW = torch.autograd.grad(expr, (V, W))
    torch.testing.assert_close(ours, expr)
    torch.testing.assert_close(gV, eV)
    torch.testing.assert_close(gW, eW)


@pytest.mark.parametrize("grad_v, grad_w", [(True, False), (False, True), (False, False)])
@pytest.mark.parametrize("one_group", [False, True])
def test_sliced_numpy_path_sorts_by_value_where_no_gradient_is_needed(grad_v, grad_w, one_group):
    """A set without requires_grad is sorted by value only: the value and the other set's gradient
    are those of the torch expression, with one sign group or two."""
    from algorithms.shallow.distances import _sorted_matching

    g = torch.Generator().manual_seed(7)
    W = torch.randn(40, 3, generator=g, dtype=F64).requires_grad_(grad_w)
    V = torch.randn(40, 3, generator=g, dtype=F64).requires_grad_(grad_v)
    signs = None if one_group else torch.where(torch.rand(40, generator=g) < 0.5, -1.0, 1.0)
    theta = random_projections(11, 3, g)
    ours = sliced_wasserstein2(V, W, signs, projections=theta)
    pv, pw = theta @ V.T, theta @ W.T
    match = _sorted_matching(pv.detach(), pw.detach(), signs)
    expr = ((pv - torch.take_along_dim(pw, match, dim=1)) ** 2).sum() / (40 * 11)
    torch.testing.assert_close(ours.detach(), expr.detach())
    wrt = [t for t in (V, W) if t.requires_grad]
    if wrt:
        for a, b in zip(torch.autograd.grad(ours, wrt), torch.autograd.grad(expr, wrt)):
            torch.testing.assert_close(a, b)
    else:
        assert not ours.requires_grad
