"""Float64 linear algebra shared by the TINY and GradMax solvers."""
from __future__ import annotations

import warnings

import torch

from algorithms.growth.tridiagonal import truncated_solve_tridiagonal


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


def pinv_solve_psd(S: torch.Tensor, N: torch.Tensor, numerical_threshold: float = 1e-6,
                   constant_inputs: torch.Tensor | None = None) -> torch.Tensor:
    """W = S^+ N for a symmetric PSD S (r, r) and N (r, q), float64, where S^+ keeps only the
    eigenvalues > ``numerical_threshold`` (the pseudo-inverse of :func:`sqrt_inverse_psd`:
    S^+ = S^{-1/2} S^{-1/2}).

    Coordinates that are exactly proportional to the last one (constant inputs against the ones
    column: the border pixels of MNIST) give null directions n_i = e_i - k_i e_b, k_i = S_ib / S_bb,
    detected by E[c_i^2] - E[c_i c_b]^2 / E[c_b^2] = 0 (Cauchy-Schwarz), or given exactly by
    ``constant_inputs`` ((r,) bool, :attr:`GrowthStatistics.constant_inputs`: the inputs equal
    in every sample; used when the last input, a bias's ones, is one of them), which
    float32-accumulated statistics need: their
    rounding leaves E[c_i^2] - E[c_i]^2 ~ 1e-6 E[c_i^2] over 1024 samples. Their orthogonal
    complement has the orthonormal basis Q_c = [e_j (j kept), u], u = (e_b + sum_i k_i e_i) / |.|,
    so S = Q_c A Q_c^T with A = Q_c^T S Q_c, built in O(r^2) and with the same nonzero eigenvalues.
    A (S itself without constant inputs) is solved by Cholesky when that succeeds with every pivot
    above the threshold (the usual case of enough samples), else by the truncated solve of
    :func:`_truncated_solve` on A, smaller than S by the constant inputs. Exact when those
    directions are exactly null (float64 statistics); with float32-accumulated statistics they are
    null to the statistics' own rounding."""
    S, N = S.double(), N.double()

    def symmetric_part(rows, cols):  # (S + S^T) / 2 at (rows, cols), without forming it whole
        return 0.5 * (S[rows[:, None], cols] + S[cols[:, None], rows].T)

    r = S.shape[0]
    b = r - 1
    diag = S.diagonal()
    if r > 1 and float(S[b, b]) > 0:
        column_b = 0.5 * (S[:, b] + S[b, :])
        k = column_b / S[b, b]
        if constant_inputs is not None and bool(constant_inputs[b]):
            constant = constant_inputs.to(S.device).clone()
        else:
            var = diag - column_b * k
            constant = (var <= 1e-6 * diag) & (var <= numerical_threshold)
        constant[b] = False
    else:
        constant = torch.zeros(r, dtype=torch.bool, device=S.device)
    if not bool(constant.any()):
        return _cholesky_or_truncated_solve(0.5 * (S + S.T), N, numerical_threshold)
    idx_c = torch.nonzero(constant).flatten()
    idx_j = torch.nonzero(~constant).flatten()
    idx_j = idx_j[idx_j != b]
    u_sub = torch.cat([k[idx_c], torch.ones(1, dtype=S.dtype, device=S.device)])  # on (constant, b)
    u_sub = u_sub / u_sub.norm()
    idx_u = torch.cat([idx_c, torch.tensor([b], device=S.device)])
    S_ju = symmetric_part(idx_j, idx_u) @ u_sub
    S_uu = u_sub @ symmetric_part(idx_u, idx_u) @ u_sub
    A = torch.empty(idx_j.numel() + 1, idx_j.numel() + 1, dtype=S.dtype, device=S.device)
    A[:-1, :-1] = symmetric_part(idx_j, idx_j)
    A[:-1, -1] = A[-1, :-1] = S_ju
    A[-1, -1] = S_uu
    QcT_N = torch.cat([N.index_select(0, idx_j), (u_sub @ N.index_select(0, idx_u))[None, :]])
    X = _cholesky_or_truncated_solve(A, QcT_N, numerical_threshold)   # A^+ Q_c^T N
    W = torch.zeros_like(N)
    W[idx_j] = X[:-1]
    W[idx_u] += u_sub[:, None] * X[-1][None, :]
    return W


def _cholesky_or_truncated_solve(S: torch.Tensor, N: torch.Tensor, numerical_threshold: float) -> torch.Tensor:
    """S^{-1} N by Cholesky when it succeeds with every pivot above the threshold (then S is taken
    as invertible, S^+ = S^{-1}), else the truncated solve."""
    L, info = torch.linalg.cholesky_ex(S)
    if int(info) == 0 and bool((L.diagonal() ** 2 > numerical_threshold).all()):
        return torch.cholesky_solve(N, L)
    return _truncated_solve(S, N, numerical_threshold)


def _truncated_solve(S: torch.Tensor, N: torch.Tensor, numerical_threshold: float) -> torch.Tensor:
    """S^+ N with S^+ = sum over the eigenvalues w > threshold of q q^T / w (S symmetric): on the
    CPU through a tridiagonal reduction (:mod:`algorithms.growth.tridiagonal`), otherwise, or
    where that fails, from an eigendecomposition."""
    if S.device.type == "cpu":
        W = truncated_solve_tridiagonal(S, N, numerical_threshold)
        if W is not None:
            return W
    w, Q = torch.linalg.eigh(S)
    keep = w > numerical_threshold
    Qk = Q[:, keep]
    return (Qk / w[keep]) @ (Qk.T @ N)


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
