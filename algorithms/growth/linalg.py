"""Float64 linear algebra shared by the TINY and GradMax solvers."""
from __future__ import annotations

import warnings

import torch


def sqrt_inverse_psd(S: torch.Tensor, numerical_threshold: float = 1e-6) -> torch.Tensor:
    """Pseudo-inverse square root of a symmetric positive semi-definite matrix.

    .. math:: S = Q \\operatorname{diag}(w) Q^T, \\quad
              S^{-1/2} = Q_+ \\operatorname{diag}(w_+^{-1/2}) Q_+^T

    keeping only the eigenvalues w > ``numerical_threshold``. S: (r, r); returns (r, r) float64.
    If ``eigh`` fails to converge, a ridge of 1e-12 * trace is added and it is retried once.
    """
    S = 0.5 * (S + S.T).double()
    try:
        w, Q = torch.linalg.eigh(S)
    except RuntimeError:
        ridge = 1e-12 * max(float(torch.trace(S)), 1.0)
        w, Q = torch.linalg.eigh(S + ridge * torch.eye(S.shape[0], dtype=S.dtype, device=S.device))
    keep = w > numerical_threshold
    Qk = Q[:, keep]
    return (Qk * w[keep].rsqrt()) @ Qk.T


def optimal_delta(S: torch.Tensor, M: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Best first-order update of the consumer's weights (natural gradient / least squares).

    .. math:: \\Delta = (S^{-1} M)^T, \\qquad d_\\Delta = \\operatorname{tr}(M \\Delta)
              = \\operatorname{tr}(M^T S^{-1} M) \\ge 0

    S: (p, p) = E[b b^T], M: (p, q) = E[b g^T]. Returns Delta (q, p) float64 (the consumer moves by
    -Delta) and d_Delta, the predicted decrease of the loss per unit step. A singular S falls back
    to the pseudo-inverse (the minimum-norm least-squares Delta).
    """
    S, M = S.double(), M.double()
    X = None
    try:
        L, info = torch.linalg.cholesky_ex(S)
        if int(info) == 0:
            X = torch.cholesky_solve(M, L)
            if not torch.isfinite(X).all():
                X = None
    except RuntimeError:
        X = None
    if X is None:
        X = torch.linalg.pinv(S, hermitian=True) @ M
    delta = X.T.contiguous()
    d_delta = float(torch.trace(M.T @ X))
    if d_delta < -1e-10 * max(1.0, float(M.abs().max())):
        warnings.warn(f"optimal delta has a negative first-order decrease {d_delta:.3g}; "
                      "statistics may be corrupted", RuntimeWarning, stacklevel=2)
    return delta, d_delta
