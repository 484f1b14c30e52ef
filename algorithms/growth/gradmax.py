"""GradMax: function-preserving neurons with maximal gradient (Evci et al., ICLR 2022).

New incoming weights alpha = 0, so with sigma(0) = 0 the network function is unchanged for every
amplitude. At alpha = 0 the gradient of the mean loss with respect to alpha is

.. math:: \\nabla_\\alpha L = \\sigma'(0)\\, \\Omega^T E[g c^T] = \\sigma'(0)\\, \\Omega^T M_2^T,

whose squared Frobenius norm over Omega with orthonormal columns is maximal (Ky Fan) for the top-k
right singular vectors of M2 (r, q): ||grad||^2 = sigma'(0)^2 sum_{i<=k} s_i^2, with sigma'(0) the
derivative autograd uses at exactly 0 (see :mod:`algorithms.growth.activations`). Each column's
sign follows :func:`~algorithms.growth.tiny.orient_neurons`. The magnitude is then
fixed by the norm rule: each new outgoing column gets ``scale`` times the mean norm of the existing
neurons' outgoing columns. A loss line search cannot choose the amplitude (every gamma gives the
same loss), so it is never used for GradMax.
"""
from __future__ import annotations

import warnings

import torch

from algorithms.growth.tiny import orient_neurons, select_neurons


def gradmax_added_parameters(M2: torch.Tensor, statistical_threshold: float = 1e-3,
                             maximum_added_neurons: int | None = None):
    """alpha = 0 (k, r), omega = V_k (q, k) with orthonormal columns, singular values s_k of M2."""
    M2 = M2.double()
    _, s, Vh = torch.linalg.svd(-M2, full_matrices=False)
    k = select_neurons(s, statistical_threshold, maximum_added_neurons)
    alpha = torch.zeros(k, M2.shape[0], dtype=torch.float64, device=M2.device)
    alpha, omega = orient_neurons(alpha, Vh[:k].T.contiguous())  # the sign convention of TINY
    return alpha, omega, s[:k]


def mean_outgoing_norm(consumer_weight: torch.Tensor) -> float:
    """Mean over existing neurons j of ||W2[:, j]|| (consumer weight (q, h), bias excluded)."""
    return float(consumer_weight.detach().double().norm(dim=0).mean()) if consumer_weight.shape[1] else 0.0


def gradmax_normalize(omega: torch.Tensor, consumer_weight: torch.Tensor, scale: float) -> torch.Tensor:
    """Rescale each column of omega (q, k) to norm ``scale * mean_outgoing_norm(W2)``."""
    if scale <= 0:
        raise ValueError(f"gradmax scale must be > 0, got {scale}")
    target = scale * mean_outgoing_norm(consumer_weight)
    if target == 0.0:
        warnings.warn("existing outgoing weights are all zero; new neurons get unit-norm outgoing "
                      "weights times the scale", RuntimeWarning, stacklevel=2)
        target = scale
    norms = omega.norm(dim=0).clamp_min(torch.finfo(omega.dtype).tiny)
    return omega * (target / norms)[None, :]
