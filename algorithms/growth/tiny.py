"""TINY: new neurons that best reduce the expressivity bottleneck (Verbockhaven et al., TMLR 2024).

With the statistics of :mod:`algorithms.growth.statistics` and Delta from
:func:`algorithms.growth.linalg.optimal_delta`:

1. projected residual  N = E[c v_proj^T] = -M2 + P Delta^T,  shape (r, q)
   (v_proj = -g + Delta b, the desired change no update of the consumer can make);
2. Z = S2^{-1/2} N = U diag(lambda) V^T (thin SVD, lambda descending);
3. keep lambda_i >= min(statistical_threshold, lambda_max) (at least one neuron), at most
   ``maximum_added_neurons``, hence k <= min(r, q);
4. alpha = diag(sqrt(lambda_k)) U_k^T S2^{-1/2}  (k, r),   Omega = V_k diag(sqrt(lambda_k))  (q, k),

so Omega alpha is the rank-k minimiser of E|v_proj - Omega alpha c|^2 and, for tiny gamma, the new
neurons decrease the loss by gamma^2 sigma'(0) (sum lambda_i^2 + kappa).

Whitening. ``"eigh"`` forms S2^{-1/2} from an eigendecomposition, dropping eigenvalues <=
``numerical_threshold`` (the reference's pseudo-inverse). It costs O(r^3) with a large constant
(r = 785 for an MNIST input layer). Since Z has only q columns, the same lambda, alpha, Omega come
from the q x q matrix Z^T Z = N^T S2^{-1} N = V diag(lambda^2) V^T:

    W = S2^{-1} N (Cholesky solve, (r, q)),  alpha = diag(lambda_k^{-1/2}) V_k^T W^T,  Omega = V_k diag(sqrt(lambda_k)).

``"cholesky"`` computes W = S2^+ N with :func:`~algorithms.growth.linalg.pinv_solve_psd`:
constant inputs (MNIST's border pixels) are deflated first, since they make S2 singular; the rest
is solved by Cholesky when it succeeds with every pivot above ``numerical_threshold`` (S2 taken
as invertible, the result equals ``"eigh"``'s), otherwise with ``"eigh"``'s truncation, from a
tridiagonal reduction on the CPU (:mod:`~algorithms.growth.tridiagonal`). ``"ridge"`` uses
it with S2 + eps I, eps = max(numerical_threshold, 1e-6 tr(S2)), when S2 is singular (for example
constant pixels of MNIST): a Tikhonov instead of a truncated pseudo-inverse; N lies in the
range of S2, so the two differ only in the directions with eigenvalues near the threshold.
``"auto"`` (default) is ``"cholesky"``.

Sign convention. (alpha_i, omega_i) and (-alpha_i, -omega_i) give the same Omega alpha, and each
route's eigen / singular vectors come with an arbitrary sign; but the network commits
omega_i sigma(alpha_i c), which differs between the two unless sigma is odd (not for SELU or ReLU).
Every route therefore returns each pair oriented by :func:`orient_neurons`: the entry of largest
magnitude of each outgoing column omega_i is positive. All routes commit the same network.
"""
from __future__ import annotations

import torch

from algorithms.growth.linalg import pinv_solve_psd, sqrt_inverse_psd


def projected_residual(M2: torch.Tensor, P: torch.Tensor | None, delta: torch.Tensor | None) -> torch.Tensor:
    """N = -M2 + P Delta^T (r, q); without projection (P or Delta None) N = -M2."""
    N = -M2.double()
    if P is not None and delta is not None:
        N = N + P.double() @ delta.double().T
    return N


def orient_neurons(alpha: torch.Tensor, omega: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip (alpha_i, omega_i) -> (-alpha_i, -omega_i) where the largest-magnitude entry of the
    outgoing column omega[:, i] is negative (ties: the first such entry). alpha (k, r), omega (q, k)."""
    if omega.numel() == 0:
        return alpha, omega
    rows = omega.abs().argmax(dim=0)
    sign = torch.where(omega.gather(0, rows[None, :])[0] < 0, -1.0, 1.0).to(omega.dtype)
    return alpha * sign[:, None], omega * sign[None, :]


def select_neurons(singular_values: torch.Tensor, statistical_threshold: float,
                   maximum_added_neurons: int | None) -> int:
    """Number k of kept directions: lambda_i >= min(tau, lambda_max), at least 1, at most the cap."""
    if singular_values.numel() == 0:
        raise ValueError("no direction to grow: the residual has an empty SVD")
    tau = min(statistical_threshold, float(singular_values[0]))
    k = max(1, int((singular_values >= tau).sum()))
    if maximum_added_neurons is not None:
        if maximum_added_neurons < 1:
            raise ValueError(f"maximum_added_neurons must be >= 1, got {maximum_added_neurons}")
        k = min(k, maximum_added_neurons)
    return k


def _ridge_cholesky(S2: torch.Tensor, numerical_threshold: float):
    """Cholesky factor of S2, or of S2 + eps I where S2's factorisation fails or has a pivot at or
    below the threshold; None if both fail."""
    L, info = torch.linalg.cholesky_ex(S2)
    if int(info) == 0 and bool((L.diagonal() ** 2 > numerical_threshold).all()):
        return L
    # relative to the trace too: float32 accumulation leaves errors ~1e-7 |S2| in S2
    eps = max(numerical_threshold, 1e-6 * float(torch.trace(S2)))
    eye = torch.eye(S2.shape[0], dtype=S2.dtype, device=S2.device)
    L, info = torch.linalg.cholesky_ex(S2 + eps * eye)
    return L if int(info) == 0 else None


def tiny_added_parameters(S2: torch.Tensor | None, N: torch.Tensor, statistical_threshold: float = 1e-3,
                          maximum_added_neurons: int | None = None, numerical_threshold: float = 1e-6,
                          ignore_singular_values: bool = False, whitening: str = "auto",
                          constant_inputs: torch.Tensor | None = None):
    """alpha (k, r), omega (q, k), singular values (k,) solving the TINY problem (float64).

    S2 None means the identity metric (no covariance); ``ignore_singular_values`` replaces
    sqrt(lambda) by 1 in both alpha and omega; ``whitening`` is "auto" | "cholesky" | "ridge" |
    "eigh" (see the module docstring); ``constant_inputs`` ((r,) bool, the inputs equal in every
    sample) lets the pseudo-inverse solve deflate them without reading them off S2.
    """
    if whitening not in ("auto", "cholesky", "ridge", "eigh"):
        raise ValueError(f"whitening must be auto, cholesky, ridge or eigh, got {whitening!r}")
    N = N.double()
    if S2 is not None and whitening != "eigh":
        # (r, q) = S2^{-1} N, or S2^+ N (the eigh route's pseudo-inverse) when S2 is singular
        L = _ridge_cholesky(S2.double(), numerical_threshold) if whitening == "ridge" else None
        W = (torch.cholesky_solve(N, L) if L is not None
             else pinv_solve_psd(S2, N, numerical_threshold, constant_inputs))
        G = N.T @ W                                          # (q, q) = Z^T Z
        mu, V = torch.linalg.eigh(0.5 * (G + G.T))
        rank_cap = min(N.shape)                               # a thin SVD has min(r, q) values
        lam_all = mu.flip(0).clamp_min(0).sqrt()[:rank_cap]  # descending singular values of Z
        V = V.flip(1)[:, :rank_cap]
        k = select_neurons(lam_all, statistical_threshold, maximum_added_neurons)
        lam, V = lam_all[:k], V[:, :k]
        inv_root = torch.where(lam > 0, lam.clamp_min(torch.finfo(lam.dtype).tiny).rsqrt(), 0.0)
        if ignore_singular_values:
            alpha = (inv_root ** 2)[:, None] * (W @ V).T
            omega = V
        else:
            alpha = inv_root[:, None] * (W @ V).T
            omega = V * lam.sqrt()[None, :]
        return *orient_neurons(alpha, omega), lam
    S_inv_half = None if S2 is None else sqrt_inverse_psd(S2, numerical_threshold)
    Z = N if S_inv_half is None else S_inv_half @ N
    U, lam, Vh = torch.linalg.svd(Z, full_matrices=False)
    k = select_neurons(lam, statistical_threshold, maximum_added_neurons)
    U, lam, V = U[:, :k], lam[:k], Vh[:k].T
    root = torch.ones_like(lam) if ignore_singular_values else lam.sqrt()
    alpha = root[:, None] * U.T
    if S_inv_half is not None:
        alpha = alpha @ S_inv_half
    omega = V * root[None, :]
    return *orient_neurons(alpha, omega), lam
