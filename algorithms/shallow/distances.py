r"""Distances between two sets of neurons (particles), split by output sign.

A two-layer ReLU network with first-layer rows ``W`` (m, D) (D = d + 1 with the bias column) and
output weights ``a`` (m,) is read as the signed measure

.. math::  \mu_W = \frac{1}{m}\sum_j \operatorname{sign}(a_j)\,\delta_{w_j},

i.e. a pair of non-negative measures :math:`\mu^+` (neurons with :math:`a_j \ge 0`, sign(0) = +)
and :math:`\mu^-` that are transported separately (mass never moves between the two; Chizat &
Bach 2018). Particle j of ``V`` and particle j of ``W`` share the same output weight, so one
``signs`` vector serves both sets.

**One normalisation for all three distances** (this is the convention of the prox point step
``F(V) + dist(V, W) / (2 gamma)``):

.. math::

    \mathrm{frob}(V, W) &= \frac{1}{m}\sum_j \|v_j - w_j\|^2 \\
    \mathrm{W_2}(V, W)  &= \frac{1}{m}\min_{\sigma \in S^+ \times S^-}\sum_j \|v_j - w_{\sigma(j)}\|^2
                         = \sum_{s=\pm} \frac{m_s}{m} W_2^2(\mu_V^s, \mu_W^s) \\
    \mathrm{SW_2}(V, W) &= \frac{1}{m}\sum_{s=\pm}\frac{1}{L}\sum_{l=1}^{L}
                           \min_{\sigma_l}\sum_{j\in s} (\theta_l\cdot v_j - \theta_l\cdot w_{\sigma_l(j)})^2
                         = \sum_{s=\pm} \frac{m_s}{m} SW_2^2(\mu_V^s, \mu_W^s)

with :math:`\theta_l` uniform on the unit sphere :math:`S^{D-1}` and :math:`\sigma` ranging over
sign-preserving permutations. All three are *squared* distances between probability measures with
mass 1/m per particle, so they coincide when the optimal coupling is the identity (W2 = Frobenius)
and, in one dimension, sliced = exact (theta = +-1). For a translation ``V = W + t``:
``frob = W2 = |t|^2`` and ``E_theta SW2 = |t|^2 / D``, so the sliced prox with ``gamma`` moves like
the W2 prox with ``D * gamma`` for small displacements.

Gradients: ``frobenius`` and ``sliced_wasserstein2`` are ordinary torch expressions (``torch.sort``
values are differentiable, so the sliced gradient pulls each projected particle toward its
sorted partner). ``wasserstein2`` solves the assignment on detached values with
:func:`scipy.optimize.linear_sum_assignment` and evaluates the cost in torch through that fixed
assignment, which gives a (sub)gradient of the exact distance (Danskin).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "frobenius", "wasserstein2", "sliced_wasserstein2", "optimal_assignment", "sign_groups",
    "random_projections", "DISTANCES",
]


def _check_pair(V: torch.Tensor, W: torch.Tensor, signs: torch.Tensor | None) -> None:
    if V.dim() != 2 or W.dim() != 2:
        raise ValueError(f"particle sets must be (m, D) matrices, got shapes {tuple(V.shape)} and {tuple(W.shape)}")
    if V.shape != W.shape:
        raise ValueError(f"particle sets must have the same shape (equal-size uniform sets), got "
                         f"{tuple(V.shape)} and {tuple(W.shape)}")
    if V.shape[0] == 0:
        raise ValueError("particle sets must not be empty")
    if signs is not None and (signs.dim() != 1 or signs.shape[0] != V.shape[0]):
        raise ValueError(f"signs must have shape ({V.shape[0]},), got {tuple(signs.shape)}")


def sign_groups(signs: torch.Tensor | None, m: int, device=None) -> list[torch.Tensor]:
    """Index tensors of the non-empty sign groups: ``signs >= 0`` (sign(0) counts as +) and ``< 0``.

    ``signs=None`` puts every particle in one group."""
    if signs is None:
        return [torch.arange(m, device=device)]
    positive = signs >= 0
    groups = [torch.nonzero(positive).flatten(), torch.nonzero(~positive).flatten()]
    return [g for g in groups if g.numel() > 0]


def frobenius(V: torch.Tensor, W: torch.Tensor, signs: torch.Tensor | None = None) -> torch.Tensor:
    r"""Mean squared particle displacement with the identity coupling, ``(1/m) ||V - W||_F^2``.

    ``V, W`` : (m, D). ``signs`` is accepted for a uniform signature and ignored (the identity
    coupling never mixes signs). Returns a 0-d tensor, differentiable in ``V`` and ``W``.
    """
    _check_pair(V, W, signs)
    return ((V - W) ** 2).sum() / V.shape[0]


def optimal_assignment(V: torch.Tensor, W: torch.Tensor, signs: torch.Tensor | None = None) -> torch.Tensor:
    r"""Sign-preserving permutation ``sigma`` (m,) minimising :math:`\sum_j \|v_j - w_{\sigma(j)}\|^2`.

    Solved per sign group by :func:`scipy.optimize.linear_sum_assignment` on the float64 cost
    matrix of squared distances (memory (m_s, m_s) per group; time roughly cubic in m_s).
    """
    from scipy.optimize import linear_sum_assignment  # imported on first use: 0.7 s of scipy

    _check_pair(V, W, signs)
    m = V.shape[0]
    Vn = V.detach().to("cpu", torch.float64).numpy()
    Wn = W.detach().to("cpu", torch.float64).numpy()
    sigma = np.arange(m)
    for group in sign_groups(signs.detach().cpu() if signs is not None else None, m):
        idx = group.numpy()
        Vg, Wg = Vn[idx], Wn[idx]
        # |v|^2 + |w|^2 - 2 v.w: one matmul instead of an (m, m, D) broadcast.
        cost = (Vg ** 2).sum(1)[:, None] + (Wg ** 2).sum(1)[None, :] - 2.0 * Vg @ Wg.T
        rows, cols = linear_sum_assignment(cost)
        sigma[idx[rows]] = idx[cols]
    return torch.as_tensor(sigma, device=V.device)


def wasserstein2(V: torch.Tensor, W: torch.Tensor, signs: torch.Tensor | None = None,
                 assignment: torch.Tensor | None = None) -> torch.Tensor:
    r"""Exact squared W2 between the uniform particle measures, split by sign (module docstring).

    ``V, W`` : (m, D); ``signs`` : (m,) output weights or their signs (None: one group).
    ``assignment`` : a precomputed :func:`optimal_assignment` (m,) to reuse; otherwise solved here.
    Returns the 0-d tensor :math:`\frac1m\sum_j \|v_j - w_{\sigma(j)}\|^2`, differentiable in
    ``V`` and ``W`` through the fixed optimal ``sigma`` (a subgradient where the optimum is not unique).
    """
    _check_pair(V, W, signs)
    if assignment is None:
        assignment = optimal_assignment(V, W, signs)
    # index_select: much faster than advanced indexing (and its backward) on CPU
    return ((V - W.index_select(0, assignment.to(V.device))) ** 2).sum() / V.shape[0]


def random_projections(n_projections: int, dim: int, generator: torch.Generator | None = None,
                       dtype=torch.float64, device=None) -> torch.Tensor:
    """(L, D) directions uniform on the unit sphere (normalised Gaussians); in 1-D they are +-1."""
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}")
    theta = torch.randn(n_projections, dim, generator=generator, dtype=dtype, device=device)
    return theta / theta.norm(dim=1, keepdim=True)


def sliced_wasserstein2(V: torch.Tensor, W: torch.Tensor, signs: torch.Tensor | None = None,
                        projections: torch.Tensor | None = None, n_projections: int = 128,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Squared sliced W2 between the uniform particle measures, split by sign (module docstring).

    ``V, W`` : (m, D). ``projections`` : (L, D) unit directions, fixed by the caller for a whole
    outer step so the inner objective is one deterministic function; if None, ``n_projections``
    are drawn from ``generator``. Cost O(L m log m): project to (L, m), argsort each direction per
    sign group (the 1-D optimal coupling is the sorted one), and average the squared differences
    of matched projections. Differentiable in torch in ``V`` and ``W`` (through the fixed
    matching, like :func:`wasserstein2`; ties make it a subgradient).
    """
    _check_pair(V, W, signs)
    m, dim = V.shape
    if projections is None:
        projections = random_projections(n_projections, dim, generator, V.dtype, V.device)
    if projections.dim() != 2 or projections.shape[1] != dim:
        raise ValueError(f"projections must be (L, {dim}), got {tuple(projections.shape)}")
    projections = projections.to(V.dtype)
    if not V.is_cuda:
        groups = tuple(g.numpy() for g in sign_groups(signs.detach().cpu() if signs is not None else None, m))
        return _SlicedW2CPU.apply(V, W, projections.detach().cpu(), groups)
    pv, pw = projections @ V.T, projections @ W.T  # (L, m)
    match = _sorted_matching(pv.detach(), pw.detach(), signs)
    # pv is compared with its 1-D optimal partner in every direction; the matching is constant (as
    # in wasserstein2), so no sort enters autograd
    total = ((pv - torch.take_along_dim(pw, match, dim=1)) ** 2).sum()
    return total / (m * projections.shape[0])


class _SlicedW2CPU(torch.autograd.Function):
    """CPU path of :func:`sliced_wasserstein2` in numpy, one sign group at a time: project the
    group's particles, (L, m_s) = theta (L, D) @ V_s^T, sort every direction of both sets, and
    difference the sorted values, d (L, m_s). The gradient in V, 2/(mL) diff_V^T theta (m_s, D),
    is formed here from d scattered back to particle order; a set that needs no gradient is sorted
    by value only (``np.sort``, about 2.5x faster than ``np.argsort``). Same value and gradient as
    the torch expression, without torch's slow CPU sort / gather kernels; flat indices instead of
    ``take_along_axis`` / ``put_along_axis``, whose index broadcasting cost as much as the sorts
    at m = 10000."""

    @staticmethod
    def forward(ctx, V, W, theta, groups):
        th = theta.numpy().astype(np.float64)
        Vn = V.detach().cpu().numpy().astype(np.float64)
        Wn = W.detach().cpu().numpy().astype(np.float64)
        (m, dim), L = Vn.shape, th.shape[0]
        need_v, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_v = np.zeros((m, dim)) if need_v else None
        grad_w = np.zeros((m, dim)) if need_w else None
        total = 0.0
        for g in groups:
            whole = len(g) == m
            pv = th @ (Vn if whole else Vn[g]).T  # (L, m_s)
            pw = th @ (Wn if whole else Wn[g]).T
            flat_v, sorted_v = _flat_order(pv) if need_v else (None, np.sort(pv, axis=1))
            flat_w, sorted_w = _flat_order(pw) if need_w else (None, np.sort(pw, axis=1))
            d = sorted_v - sorted_w  # introsort: any order of ties is an optimal matching
            total += float(np.einsum("ij,ij->", d, d))
            for flat, sign, grad in ((flat_v, 1.0, grad_v), (flat_w, -1.0, grad_w)):
                if flat is not None:
                    in_order = np.empty_like(d)
                    in_order.ravel()[flat] = d if sign > 0 else -d
                    grad[slice(None) if whole else g] = in_order.T @ th
        ctx.scale = 2.0 / (m * L)
        ctx.grads = (grad_v, grad_w)
        ctx.like = V
        return V.new_tensor(total / (m * L))

    @staticmethod
    def backward(ctx, grad_out):
        g = float(grad_out) * ctx.scale
        like = ctx.like
        return (*(torch.from_numpy(g * grad).to(like.device, like.dtype) if grad is not None else None
                  for grad in ctx.grads), None, None)


def _flat_order(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``p`` (L, n): the flat indices into ``p`` of its values in ascending order, and
    those values (L, n)."""
    L, n = p.shape
    flat = np.argsort(p, axis=1)
    flat += (np.arange(L) * n)[:, None]
    return flat, p.ravel()[flat]


def _sorted_matching(pv: torch.Tensor, pw: torch.Tensor, signs: torch.Tensor | None) -> torch.Tensor:
    """(L, m) int64: per direction, the index of the W particle matched to each V particle by the
    monotone (sorted) coupling within each sign group (numpy argsort on CPU, torch on GPU)."""
    L, m = pv.shape
    groups = sign_groups(signs.detach().cpu() if signs is not None else None, m)
    if pv.is_cuda:
        match = torch.empty((L, m), dtype=torch.int64, device=pv.device)
        for group in groups:
            g = group.to(pv.device)
            ov = g[torch.argsort(pv.index_select(1, g), dim=1)]
            ow = g[torch.argsort(pw.index_select(1, g), dim=1)]
            match.scatter_(1, ov, ow)
        return match
    pvn, pwn = pv.cpu().numpy(), pw.cpu().numpy()
    match = np.empty((L, m), dtype=np.int64)
    for group in groups:
        g = group.numpy()
        ov = g[np.argsort(pvn[:, g], axis=1)]  # introsort: any order of ties is an optimal matching
        ow = g[np.argsort(pwn[:, g], axis=1)]
        np.put_along_axis(match, ov, ow, axis=1)
    return torch.from_numpy(match).to(pv.device)


DISTANCES = {"frobenius": frobenius, "wasserstein2": wasserstein2, "sliced_wasserstein2": sliced_wasserstein2}
