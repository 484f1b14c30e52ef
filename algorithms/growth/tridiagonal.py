"""The truncated pseudo-inverse solve S^+ N through a tridiagonal reduction (CPU, float64).

S (n, n) symmetric, N (n, q). With the Householder reduction S = Q T Q^T (LAPACK ``dsytrd``; T
tridiagonal, with the eigenvalues of S, T = Z diag(w) Z^T),

    S^+ N = Q T^+ (Q^T N),   T^+ = sum over w_i > threshold of z_i z_i^T / w_i,

the pseudo-inverse that an eigendecomposition of S truncates at ``numerical_threshold``. Only the
m eigenpairs (w_s, Z_s) of T with w <= threshold, and w_+ the smallest kept eigenvalue, are
computed (bisection and inverse iteration, O(n m), O(n m^2) where they cluster and are
reorthogonalised). On the complement of Z_s, T is positive
definite with eigenvalues >= w_+, and X = T^+ Y is the solution in that complement of

    P T X = P Y,   P = I - Z_s Z_s^T,

found by conjugate gradients preconditioned with P (T + sigma I)^{-1} P (a tridiagonal LDL^T,
O(n q) per iteration), sigma = max(0, -min w) + w_+ / 10: the preconditioned eigenvalues
w / (w + sigma) lie in [w_+ / (w_+ + sigma), 1), so a handful of iterations reach float64
rounding. The reduction costs 4/3 n^3 flops, half of them in matrix-matrix products; a full
eigendecomposition adds a divide-and-conquer and the accumulation of the n x n eigenvectors
(2 n^3), which the q columns of N do not need.

:func:`truncated_solve_tridiagonal` returns None where LAPACK fails or the iteration does not
converge; the caller then uses the eigendecomposition.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

CG_TOLERANCE = 1e-15   # relative residual of each column
CG_MAX_ITERATIONS = 100
_blas_pinned = False


def truncated_solve_tridiagonal(S: torch.Tensor, N: torch.Tensor, numerical_threshold: float) -> torch.Tensor | None:
    """S^+ N (n, q) float64 for a symmetric CPU S (n, n), or None (see the module docstring)."""
    if N.shape[0] < 2:
        return None
    _blas_on_one_thread()
    W = _solve(S.detach().double().numpy(), N.detach().double().numpy(), numerical_threshold)
    return None if W is None else torch.from_numpy(W).to(N.device)


def _blas_on_one_thread() -> None:
    """Put numpy's and scipy's BLAS (OpenBLAS in the wheels) on one thread for the rest of the
    process, the first time the solve runs. torch has its own thread pool on the same cores, and
    BLAS worker threads keep spinning after each call: measured on 2 cores, torch matrix products
    right after an OpenBLAS dsytrd on two threads took 1.4x their time at the median and up to 40x
    for single calls; restoring two threads after a one-thread call left them 2.2x slower; with
    BLAS pinned at one thread, 1.17x. One thread runs the reduction at 0.8x the speed of two."""
    global _blas_pinned
    if _blas_pinned:
        return
    _blas_pinned = True
    import scipy.linalg  # noqa: F401  loads scipy's BLAS, so that the limit reaches it
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        warnings.warn("threadpoolctl is not installed (run setup again): numpy's BLAS threads will "
                      "compete with torch's around TINY's pseudo-inverse solve", RuntimeWarning, stacklevel=3)
        return
    threadpool_limits(limits=1, user_api="blas")


def _solve(S_np: np.ndarray, Y: np.ndarray, numerical_threshold: float) -> np.ndarray | None:
    from scipy.linalg import LinAlgError, eigh_tridiagonal, eigvalsh_tridiagonal, lapack

    n = S_np.shape[0]
    lwork = int(lapack.dsytrd_lwork(n, lower=1)[0])
    reflectors, d, e, tau, info = lapack.dsytrd(S_np, lower=1, lwork=max(lwork, n))
    if info != 0:
        return None
    try:
        bound = float(np.abs(d).max() + 2 * np.abs(e).max()) + 1.0   # Gershgorin: every |w| < bound
        w_small, Zs = eigh_tridiagonal(d, e, select="v", select_range=(-bound, numerical_threshold))
        m = len(w_small)
        if m == n:
            return np.zeros_like(Y)
        w_plus = float(eigvalsh_tridiagonal(d, e, select="i", select_range=(m, m))[0])
    except (LinAlgError, ValueError):
        return None
    if not w_plus > numerical_threshold:
        return None
    sigma = max(0.0, -float(w_small.min(initial=0.0))) + 0.1 * w_plus
    ld, le, info = lapack.dpttrf(d + sigma, e)
    if info != 0:
        return None

    def project(v):
        return v - Zs @ (Zs.T @ v) if Zs.shape[1] else v

    def T_times(v):
        out = d[:, None] * v
        out[:-1] += e[:, None] * v[1:]
        out[1:] += e[:, None] * v[:-1]
        return out

    def precondition(v):
        return project(lapack.dpttrs(ld, le, v)[0])

    qr_reflectors = np.asfortranarray(reflectors[1:, :-1])
    Y = _apply_q(qr_reflectors, tau, Y, transpose=True)
    X = _projected_cg(lambda v: project(T_times(v)), precondition, project(Y))
    return None if X is None else _apply_q(qr_reflectors, tau, X, transpose=False)


def _apply_q(a: np.ndarray, tau: np.ndarray, Y: np.ndarray, transpose: bool) -> np.ndarray:
    """Q Y or Q^T Y (Y (n, q)) for dsytrd's lower reflectors: Q = diag(1, Q'), Q' the QR-format
    product of the reflectors stored below the subdiagonal, ``a`` = reflectors[1:, :-1] (LAPACK
    dormqr)."""
    from scipy.linalg import lapack

    out = Y.copy()
    lwork = max(1, 64 * Y.shape[1])
    out[1:], _, info = lapack.dormqr("L", "T" if transpose else "N", a, tau, np.asfortranarray(Y[1:]), lwork)
    if info != 0:
        raise RuntimeError(f"dormqr failed with info {info}")
    return out


def _projected_cg(A_times, precondition, rhs: np.ndarray) -> np.ndarray | None:
    """X solving P A X = rhs column by column (rhs in the range of P; A_times(v) is P A v and
    ``precondition`` ends with P); None if some column's relative residual stays above
    sqrt(CG_TOLERANCE) after CG_MAX_ITERATIONS."""
    x = np.zeros_like(rhs)
    scale = np.linalg.norm(rhs, axis=0)
    scale[scale == 0] = 1.0
    r = rhs.copy()
    z = precondition(r)
    p = z.copy()
    rz = (r * z).sum(axis=0)
    for _ in range(CG_MAX_ITERATIONS):
        if (np.linalg.norm(r, axis=0) / scale).max() <= CG_TOLERANCE:
            return x
        Ap = A_times(p)
        curvature = (p * Ap).sum(axis=0)
        step = np.divide(rz, curvature, out=np.zeros_like(rz), where=curvature > 0)
        x += step * p
        r -= step * Ap
        z = precondition(r)
        rz_next = (r * z).sum(axis=0)
        p = z + np.divide(rz_next, rz, out=np.zeros_like(rz), where=rz > 0) * p
        rz = rz_next
    return x if (np.linalg.norm(r, axis=0) / scale).max() <= CG_TOLERANCE ** 0.5 else None
