r"""Step sizes from the anisotropic cubic (Nesterov) model of the loss along the partition.

With :math:`\bar H` (S, S) symmetric, :math:`\bar g` (S,), :math:`d_s = |\text{order3}_s|^{1/3}`,
:math:`D = \mathrm{Diag}(d)` and :math:`c = \lambda_{int}/2`, the model of
:math:`L(\theta - V\eta) - L(\theta)` is

.. math::

    T(\eta) = -\bar g^\top \eta + \tfrac12 \eta^\top \bar H \eta + \tfrac{\lambda_{int}}{6} \|D\eta\|^3 .

Its global minimiser :math:`\eta^*` solves :math:`(\bar H + c\, r D^2)\eta = \bar g` with
:math:`r = \|D\eta\|` and :math:`M(r) = \bar H + c\,rD^2 \succeq 0`: among all solutions of the
fixed-point equation it is the one of largest :math:`\|D\eta\|` (the others are saddles or local minima).

Solver (float64):

1. :math:`\bar g = 0` -> :math:`\eta = 0` (status ``"zero_gradient"``).
2. :math:`Z = \{s : d_s \le \tau \max d\}` (relative threshold ``d_rel_tol``, so scale invariant;
   all of them when :math:`\lambda_{int} = 0` or :math:`D = 0`). The cubic term does not see
   :math:`\eta_Z`: if :math:`\bar H_{ZZ} \not\succ 0` the model is unbounded below (status
   ``"unbounded"``, no step). Otherwise :math:`\eta_Z` is eliminated exactly (Schur complement):
   :math:`\eta_Z = \bar H_{ZZ}^{-1}(\bar g_Z - \bar H_{ZN}\eta_N)`, leaving a cubic problem in
   :math:`\eta_N` with :math:`\bar H_N = \bar H_{NN} - \bar H_{NZ}\bar H_{ZZ}^{-1}\bar H_{ZN}`,
   :math:`\bar g_N - \bar H_{NZ}\bar H_{ZZ}^{-1}\bar g_Z`. If N is empty this is the Newton step
   :math:`\bar H^{-1}\bar g` (status ``"newton"``).
3. With :math:`y = D_N\eta_N`, :math:`K = D_N^{-1}\bar H_N D_N^{-1} = Q\Lambda Q^\top`,
   :math:`b = Q^\top D_N^{-1}\bar g_N`: :math:`\|y(r)\|^2 = \sum_i b_i^2/(\Lambda_i + c r)^2` in closed
   form, :math:`x_0 = \max(0, -\Lambda_{\min}/c)`, :math:`\varphi(r) = \|y(r)\| - r` decreasing on
   :math:`(x_0, \infty)`.
   *Easy case* :math:`\varphi(x_0^+) > 0`: the unique root by Brent's method on a proven bracket
   (status ``"easy"``). *Hard case* (:math:`b` orthogonal to the eigenvectors of
   :math:`\Lambda_{\min}` and :math:`\|w\| \le x_0`, where w solves the other components):
   :math:`r^* = x_0`, :math:`y = w + \alpha q_{\min}`, :math:`\alpha = \sqrt{x_0^2 - \|w\|^2}`
   (status ``"hard"``; :math:`-\alpha` is an equally good minimiser).
4. Certificate: residual :math:`\|M(r^*)\eta - \bar g\|` relative to :math:`\|\bar g\|`; a failed
   certificate gives status ``"failed"`` and no step.

S = 1 with :math:`g > 0`: :math:`\eta = (-h + \sqrt{h^2 + 2\lambda d^3 g})/(\lambda d^3)`.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

__all__ = ["nesterov_lrs", "cubic_model", "STATUSES"]

STATUSES = ("easy", "hard", "newton", "zero_gradient", "unbounded", "failed")
OK_STATUSES = ("easy", "hard", "newton", "zero_gradient")


def _as_np(a, name: str, ndim: int) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().to("cpu", torch.float64).numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {a.shape}")
    return a


def cubic_model(H, g, order3, damping_int: float, eta) -> float:
    r"""T(eta) = -g.eta + eta.H.eta/2 + (damping_int/6) ||D eta||^3, d = |order3|^(1/3) (float64)."""
    H, g, o3, eta = (_as_np(H, "H", 2), _as_np(g, "g", 1), _as_np(order3, "order3", 1),
                     _as_np(eta, "eta", 1))
    d = np.abs(o3) ** (1.0 / 3.0)
    return float(-g @ eta + 0.5 * eta @ H @ eta + damping_int / 6.0 * np.linalg.norm(d * eta) ** 3)


def nesterov_lrs(H, g, order3, damping_int: float, *, d_rel_tol: float = 1e-8,
                 pd_tol: float = 1e-12, tol: float = 1e-12, max_iter: int = 200,
                 certify_tol: float = 1e-6):
    r"""Global minimiser :math:`\eta^*` (S,) of the anisotropic cubic model, and solver facts.

    Args:
        H: :math:`\bar H`, (S, S) (symmetrised here).
        g: :math:`\bar g`, (S,).
        order3: diagonal third derivatives (S,); :math:`d = |\text{order3}|^{1/3}`.
        damping_int: :math:`\lambda_{int} \ge 0`; 0 gives the plain Newton step (needs
            :math:`\bar H \succ 0`).
        d_rel_tol: subsets with :math:`d_s \le` d_rel_tol * max d count as :math:`d_s = 0`.
        pd_tol: relative eigenvalue threshold for "positive definite".
        tol, max_iter: Brent's method tolerance (relative, on r) and iteration cap.
        certify_tol: largest accepted relative residual of :math:`M(r^*)\eta = \bar g`.

    Returns:
        ``(eta, info)``: ``eta`` a float64 tensor (S,) on the device of ``H`` (if a tensor), or
        ``None`` when no minimiser exists or the certificate fails; ``info`` a dict with
        ``status`` (one of :data:`STATUSES`), ``r`` (:math:`\|D\eta^*\|`), ``x0``, ``residual``
        (relative), ``iterations``, ``lambda_min`` (of :math:`M(r^*)`, scaled) and ``message``.
    """
    device = H.device if isinstance(H, torch.Tensor) else None
    H, g, o3 = _as_np(H, "H", 2), _as_np(g, "g", 1), _as_np(order3, "order3", 1)
    S = g.shape[0]
    if H.shape != (S, S) or o3.shape != (S,):
        raise ValueError(f"shapes must be H (S, S), g (S,), order3 (S,); got {H.shape}, {g.shape}, {o3.shape}")
    if not (isinstance(damping_int, (int, float)) and math.isfinite(damping_int) and damping_int >= 0):
        raise ValueError(f"damping_int must be a finite number >= 0, got {damping_int!r}")
    info = dict(status="failed", r=math.nan, x0=math.nan, residual=math.nan, iterations=0,
                lambda_min=math.nan, message="")

    def done(eta, status, message=""):
        info["status"], info["message"] = status, message
        if eta is None:
            return None, info
        return torch.as_tensor(eta, dtype=torch.float64, device=device), info

    if not (np.isfinite(H).all() and np.isfinite(g).all() and np.isfinite(o3).all()):
        return done(None, "failed", "non-finite H, g or order3")
    H = 0.5 * (H + H.T)
    scale_g = np.linalg.norm(g)
    if scale_g == 0.0:
        info.update(r=0.0, x0=0.0, residual=0.0)
        return done(np.zeros(S), "zero_gradient")
    d = np.abs(o3) ** (1.0 / 3.0)
    c = 0.5 * damping_int
    dmax = d.max()
    zero = (d <= d_rel_tol * dmax) if (c > 0 and dmax > 0) else np.ones(S, dtype=bool)
    Z, N = np.flatnonzero(zero), np.flatnonzero(~zero)
    scale_H = max(np.abs(H).max(), np.finfo(float).tiny)

    # eliminate eta_Z (no cubic term there): needs H_ZZ > 0
    if Z.size:
        HZZ = H[np.ix_(Z, Z)]
        lam_z = np.linalg.eigvalsh(HZZ)
        if lam_z[0] <= pd_tol * scale_H:
            info["lambda_min"] = float(lam_z[0])
            return done(None, "unbounded",
                        "H restricted to the subsets with d_s = 0 is not positive definite: "
                        "the cubic model is unbounded below (or has no unique minimiser)")
        L = np.linalg.cholesky(HZZ)

        def solve_ZZ(rhs):
            return np.linalg.solve(L.T, np.linalg.solve(L, rhs))

        if N.size == 0:
            eta = solve_ZZ(g)
            info.update(r=0.0, x0=0.0, lambda_min=float(lam_z[0]))
            return _certify(H, g, d, c, eta, 0.0, info, done, "newton", certify_tol)
        HNZ = H[np.ix_(N, Z)]
        HN = H[np.ix_(N, N)] - HNZ @ solve_ZZ(HNZ.T)
        gN = g[N] - HNZ @ solve_ZZ(g[Z])
    else:
        HN, gN = H, g
    dN = d[N]
    K = HN / np.outer(dN, dN)
    K = 0.5 * (K + K.T)
    lam, Q = np.linalg.eigh(K)
    b = Q.T @ (gN / dN)
    x0 = max(0.0, -lam[0] / c)
    info["x0"] = float(x0)

    def norm_y(r):
        return math.sqrt(float(np.sum((b / (lam + c * r)) ** 2)))

    # components whose denominator vanishes at x0 (the bottom of the spectrum, if x0 > 0)
    gap_tol = 1e-10 * max(abs(lam).max(), c * x0, np.finfo(float).tiny)
    bottom = (lam + c * x0) <= gap_tol
    b_scale = max(np.linalg.norm(b), np.finfo(float).tiny)
    def w_at_x0():  # the solution components off the bottom of the spectrum, at r = x0
        return np.where(bottom, 0.0, b / np.where(bottom, 1.0, lam + c * x0))

    hard = False
    if bottom.any() and np.linalg.norm(b[bottom]) <= 1e-12 * b_scale:
        hard = np.linalg.norm(w_at_x0()) <= x0 * (1 + 1e-12)
    lo = x0
    if not hard and bottom.any():  # step off the pole at x0
        step = max(x0, np.finfo(float).tiny) * 1e-15
        lo = x0 + step
        while not (norm_y(lo) - lo > 0) and step < max(x0, 1.0):
            step *= 10
            lo = x0 + step
        if not (norm_y(lo) - lo > 0):
            # phi <= 0 just above x0 although b_bottom != 0 in floating point: numerically the
            # hard case (b_bottom is negligible at this scale)
            hard = np.linalg.norm(w_at_x0()) <= x0 * (1 + 1e-9)
    if hard:
        w = w_at_x0()
        alpha = math.sqrt(max(x0 * x0 - float(w @ w), 0.0))
        k = int(np.flatnonzero(bottom)[0])
        y_coef = w.copy()
        y_coef[k] += alpha
        r = x0
        status = "hard"
    else:
        # bracket (lo, hi) with phi(lo) > 0 > phi(hi); hi from ||y(r)|| <= ||b|| / (lam_min + c r)
        hi = (-lam[0] + math.sqrt(lam[0] ** 2 + 4 * c * b_scale)) / (2 * c)
        hi = max(hi, lo) * (1 + 1e-12) + np.finfo(float).tiny
        grow = 0
        while norm_y(hi) - hi > 0 and grow < 200:
            hi *= 2.0
            grow += 1
        if not (norm_y(lo) - lo > 0) or not (norm_y(hi) - hi <= 0):
            return done(None, "failed", "could not bracket the secular equation")
        from scipy.optimize import brentq

        try:
            r, res = brentq(lambda r: norm_y(r) - r, lo, hi, xtol=np.finfo(float).tiny,
                            rtol=max(tol, 4 * np.finfo(float).eps), maxiter=max_iter,
                            full_output=True, disp=False)
        except ValueError as exc:
            return done(None, "failed", f"secular equation: {exc}")
        info["iterations"] = int(res.iterations)
        if not res.converged:
            warnings.warn(f"nesterov_lrs: Brent's method did not converge in {max_iter} iterations "
                          f"(increase max_iter)", RuntimeWarning, stacklevel=2)
        y_coef = b / (lam + c * r)
        status = "easy"
    etaN = (Q @ y_coef) / dN
    if Z.size:
        eta = np.empty(S)
        eta[N] = etaN
        eta[Z] = solve_ZZ(g[Z] - HNZ.T @ etaN)
    else:
        eta = etaN
    info["r"] = float(r)
    return _certify(H, g, d, c, eta, r, info, done, status, certify_tol)


def _certify(H, g, d, c, eta, r, info, done, status, certify_tol):
    M = H + c * r * np.diag(d * d)
    residual = np.linalg.norm(M @ eta - g) / max(np.linalg.norm(g), np.finfo(float).tiny)
    scale = max(np.abs(M).max(), np.finfo(float).tiny)
    info["residual"] = float(residual)
    info["lambda_min"] = float(np.linalg.eigvalsh(M)[0] / scale)
    if not np.isfinite(eta).all() or residual > certify_tol or info["lambda_min"] < -1e-8:
        return done(None, "failed", f"certificate failed: relative residual {residual:.3g}, "
                                    f"lambda_min(M(r))/|M| = {info['lambda_min']:.3g}")
    return done(eta, status)
