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

1. :math:`Z = \{s : d_s \le \tau \max d\}` (relative threshold ``d_rel_tol``, so scale invariant;
   all of them when :math:`\lambda_{int} = 0` or :math:`D = 0`). The cubic term does not see
   :math:`\eta_Z`: if :math:`\bar H_{ZZ} \not\succ 0` the model is unbounded below (status
   ``"unbounded"``, no step). Otherwise :math:`\eta_Z` is eliminated exactly (Schur complement):
   :math:`\eta_Z = \bar H_{ZZ}^{-1}(\bar g_Z - \bar H_{ZN}\eta_N)`, leaving a cubic problem in
   :math:`\eta_N` with :math:`\bar H_N = \bar H_{NN} - \bar H_{NZ}\bar H_{ZZ}^{-1}\bar H_{ZN}`,
   :math:`\bar g_N - \bar H_{NZ}\bar H_{ZZ}^{-1}\bar g_Z`. If N is empty this is the Newton step
   :math:`\bar H^{-1}\bar g` (status ``"newton"``).
2. With :math:`y = D_N\eta_N`, :math:`K = D_N^{-1}\bar H_N D_N^{-1} = Q\Lambda Q^\top` and
   :math:`b = Q^\top D_N^{-1}\bar g_N`, the problem is :math:`\min_y -b^\top y + \frac12 y^\top\Lambda y
   + \frac c3\|y\|^3`, solved by :math:`y_i = b_i/(\Lambda_i + \mu)` with the shift :math:`\mu = c\|y\|
   \ge \mu_0 = \max(0, -\Lambda_{\min})`. The shift is written :math:`\mu = \mu_0 + t`, so the
   denominators are :math:`s_i + t` with :math:`s_i = \Lambda_i + \mu_0 \ge 0` formed without
   cancellation: close to the pole (the near-hard case) :math:`t` keeps its full relative precision.
   *Easy case*: the root :math:`t^* > 0` of the secular equation
   :math:`\psi(t) = 1/\|y(t)\| - c/(\mu_0 + t)`, increasing and concave, by Newton's method started
   left of the root (monotone convergence), safeguarded by a bracket
   :math:`[t_{lo}, t_{hi}]` from :math:`(s_i + t)(\mu_0 + t) \lessgtr c|b_i|` and bisection (status ``"easy"``).
   *Hard case* (:math:`b_i = 0` where :math:`s_i = 0` and :math:`\psi(0) \ge 0`): :math:`t^* = 0`,
   :math:`y = w + \alpha q_{\min}`, :math:`\alpha = \sqrt{x_0^2 - \|w\|^2}` (status ``"hard"``;
   :math:`-\alpha` is an equally good minimiser, the sign is fixed so that the largest entry of
   the step is positive). :math:`\bar g = 0` with an indefinite model is this case with :math:`w = 0`:
   the step follows the most negative curvature; with :math:`\bar H \succeq 0` it is 0 (status
   ``"zero_gradient"``).
3. S = 1 has a closed form: for :math:`g \ne 0`,
   :math:`\eta = \mathrm{sign}(g)\, 2|g| / (h + \sqrt{h^2 + 2\lambda d^3 |g|})` (the cancellation-free
   form of :math:`(-h + \sqrt{h^2 + 2\lambda d^3 g})/(\lambda d^3)` when h > 0); for g = 0 and h < 0,
   :math:`\eta = -2h/(\lambda d^3)`.
4. Certificate: the backward error :math:`\|M(r^*)\eta - \bar g\| / (m\,\|\eta\| + \|\bar g\|)`
   and :math:`\lambda_{\min}(M(r^*)) \ge -10^{-8} m`, with the scale of M's terms
   :math:`m = \|\bar H\|_2 + c\,r \max_s d_s^2` (M itself may be nearly singular at the solution); a failed certificate gives status
   ``"failed"`` and no step.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

__all__ = ["nesterov_lrs", "cubic_model", "STATUSES"]

STATUSES = ("easy", "hard", "newton", "zero_gradient", "unbounded", "failed")
_TINY = np.finfo(float).tiny
_EPS = np.finfo(float).eps


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


def _fix_sign(v: np.ndarray) -> np.ndarray:
    """v or -v, whichever has its entry of largest magnitude positive (a deterministic choice
    between two equally good minimisers)."""
    return -v if v[np.argmax(np.abs(v))] < 0 else v


def nesterov_lrs(H, g, order3, damping_int: float, *, d_rel_tol: float = 1e-8,
                 pd_tol: float = 1e-12, tol: float = 1e-15, max_iter: int = 200,
                 certify_tol: float = 1e-8):
    r"""Global minimiser :math:`\eta^*` (S,) of the anisotropic cubic model, and solver facts.

    Args:
        H: :math:`\bar H`, (S, S) (symmetrised here).
        g: :math:`\bar g`, (S,).
        order3: diagonal third derivatives (S,); :math:`d = |\text{order3}|^{1/3}`.
        damping_int: :math:`\lambda_{int} \ge 0`; 0 gives the plain Newton step (needs
            :math:`\bar H \succ 0`).
        d_rel_tol: subsets with :math:`d_s \le` d_rel_tol * max d count as :math:`d_s = 0`.
        pd_tol: relative eigenvalue threshold for "positive definite".
        tol, max_iter: relative tolerance on the shift t of the secular equation, iteration cap.
        certify_tol: largest accepted backward error of :math:`M(r^*)\eta = \bar g`.

    Returns:
        ``(eta, info)``: ``eta`` a float64 tensor (S,) on the device of ``H`` (if a tensor), or
        ``None`` when no minimiser exists or the certificate fails; ``info`` a dict with
        ``status`` (one of :data:`STATUSES`), ``r`` (:math:`\|D\eta^*\|`), ``x0``, ``residual``
        (backward error), ``iterations``, ``lambda_min`` (of :math:`M(r^*)`, scaled) and ``message``.
    """
    device = H.device if isinstance(H, torch.Tensor) else None
    H, g, o3 = _checked_inputs(H, g, order3, damping_int)
    S = g.shape[0]
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
    d = np.abs(o3) ** (1.0 / 3.0)
    c = 0.5 * damping_int
    dmax = d.max()
    flat = (d <= d_rel_tol * dmax) if (c > 0 and dmax > 0) else np.ones(S, dtype=bool)
    Z, N = np.flatnonzero(flat), np.flatnonzero(~flat)

    if S == 1 and N.size:
        eta, r, status = _closed_form_s1(H[0, 0], g[0], d[0], c)
        info.update(r=r, x0=max(0.0, -H[0, 0] / (c * d[0] ** 2)))
        return _certify(H, g, d, c, eta, r, info, done, status, certify_tol)

    reduced = _eliminate_flat(H, g, Z, N, pd_tol)
    if reduced is None:
        info["lambda_min"] = float(np.linalg.eigvalsh(H[np.ix_(Z, Z)])[0])
        return done(None, "unbounded",
                    "H restricted to the subsets with d_s = 0 is not positive definite: "
                    "the cubic model is unbounded below (or has no unique minimiser)")
    HN, gN, eta_flat = reduced
    if N.size == 0:
        eta = eta_flat(np.zeros(0))
        info.update(r=0.0, x0=0.0)
        status = "zero_gradient" if not eta.any() else "newton"
        return _certify(H, g, d, c, eta, 0.0, info, done, status, certify_tol)

    etaN, r, status = _curved_minimiser(HN, gN, d[N], c, tol, max_iter, info)
    if etaN is None:
        return done(None, "failed", "the secular equation did not converge")
    eta = eta_flat(etaN)
    info["r"] = float(r)
    return _certify(H, g, d, c, eta, r, info, done, status, certify_tol)


def _checked_inputs(H, g, order3, damping_int):
    """H (S, S), g (S,), order3 (S,) as float64 numpy arrays; ValueError for bad shapes or damping."""
    H, g, o3 = _as_np(H, "H", 2), _as_np(g, "g", 1), _as_np(order3, "order3", 1)
    S = g.shape[0]
    if H.shape != (S, S) or o3.shape != (S,):
        raise ValueError(f"shapes must be H (S, S), g (S,), order3 (S,); got {H.shape}, {g.shape}, {o3.shape}")
    if not (isinstance(damping_int, (int, float)) and math.isfinite(damping_int) and damping_int >= 0):
        raise ValueError(f"damping_int must be a finite number >= 0, got {damping_int!r}")
    return H, g, o3


def _curved_minimiser(HN, gN, dN, c, tol, max_iter, info):
    """eta_N minimising the reduced model on the subsets with d_s > 0: in y = D eta coordinates
    and the eigenbasis of D^-1 H_N D^-1, the secular equation of :func:`_secular`. Returns
    (eta_N or None, r, status); ``info`` gets x0 and the iteration count."""
    K = HN / np.outer(dN, dN)
    lam, Q = np.linalg.eigh(0.5 * (K + K.T))
    b = Q.T @ (gN / dN)
    y, r, status, iterations = _secular(lam, b, c, tol, max_iter)
    info.update(x0=max(0.0, -lam[0] / c), iterations=iterations)
    if y is None:
        return None, r, status
    etaN = (Q @ y) / dN
    return (_fix_sign(etaN) if status == "hard" else etaN), r, status


def _closed_form_s1(h: float, g: float, d: float, c: float):
    """S = 1, d > 0, c > 0: eta minimising -g eta + h eta^2/2 + (c/3) d^3 |eta|^3, r = d |eta|."""
    a = 2.0 * c * d ** 3  # = lambda_int d^3
    if g == 0.0:
        eta = -2.0 * h / a if h < 0 else 0.0
        status = "hard" if h < 0 else "zero_gradient"
    else:
        disc = math.sqrt(h * h + 2.0 * a * abs(g))
        mag = 2.0 * abs(g) / (h + disc) if h > 0 else (disc - h) / a
        eta, status = math.copysign(mag, g), "easy"
    return np.array([eta]), d * abs(eta), status


def _eliminate_flat(H, g, Z, N, pd_tol):
    """Schur complement on the flat subsets Z: (H_N, g_N, eta_flat) with eta_flat(eta_N) the full
    eta; None when H_ZZ is not positive definite."""
    if Z.size == 0:
        return H, g, lambda etaN: etaN
    HZZ = H[np.ix_(Z, Z)]
    scale_H = max(np.abs(H).max(), _TINY)
    if np.linalg.eigvalsh(HZZ)[0] <= pd_tol * scale_H:
        return None
    L = np.linalg.cholesky(HZZ)

    def solve_ZZ(rhs):
        return np.linalg.solve(L.T, np.linalg.solve(L, rhs))

    HNZ = H[np.ix_(N, Z)]

    def eta_flat(etaN):
        eta = np.empty(len(g))
        eta[N] = etaN
        eta[Z] = solve_ZZ(g[Z] - HNZ.T @ etaN)
        return eta

    return H[np.ix_(N, N)] - HNZ @ solve_ZZ(HNZ.T), g[N] - HNZ @ solve_ZZ(g[Z]), eta_flat


def _secular(lam, b, c, tol, max_iter):
    """Global minimiser y of -b.y + y.diag(lam).y/2 + (c/3)|y|^3 (lam ascending, c > 0).

    Returns (y, r = |y|, status, iterations); y None if Newton's method did not converge."""
    mu0 = max(0.0, -lam[0])
    s = lam - lam[0] if lam[0] < 0 else lam.copy()  # s_i = lam_i + mu0 >= 0, s_0 = 0 exactly if mu0 > 0
    pole = s == 0.0
    b2 = b * b
    if not b2[pole].any():
        w = np.where(pole, 0.0, b / np.where(pole, 1.0, s))
        x0 = mu0 / c
        nw = math.sqrt(float(w @ w))
        if mu0 > 0 and nw <= x0:  # psi(0) >= 0: the hard case, t* = 0
            y = w.copy()
            y[int(np.flatnonzero(pole)[0])] = math.sqrt(max(x0 * x0 - nw * nw, 0.0))
            return y, x0, "hard", 0
        if not b2.any():  # b = 0 and the model is convex: eta = 0
            return np.zeros_like(b), 0.0, "zero_gradient", 0

    nz = b2 > 0  # components with b_i = 0 contribute nothing to y (and 0/0 at the pole)
    s_nz, b2_nz = s[nz], b2[nz]

    def psi(t):  # psi(t), dpsi/dt, and the size of its two terms (for the rounding level)
        q = 1.0 / (s_nz + t)
        ny2 = float(b2_nz @ (q * q))
        ny = math.sqrt(ny2)
        right = c / (mu0 + t)
        slope = float(b2_nz @ (q * q * q)) / (ny2 * ny) + right / (mu0 + t)
        return 1.0 / ny - right, slope, 1.0 / ny + right

    # bracket from |b_i|/(s_i + t) <= |y(t)| <= |b|/(s_0 + t) against |y| = (mu0 + t)/c
    def root(p, q):  # positive root of t^2 + p t - q = 0 (p >= 0, q > 0), cancellation-free
        return 2.0 * q / (p + math.sqrt(p * p + 4.0 * q))

    hi = root(s[0] + mu0, c * math.sqrt(float(b2.sum())))
    lo = max((root(si + mu0, c * math.sqrt(bi2) - si * mu0) for si, bi2 in zip(s_nz, b2_nz)
              if c * math.sqrt(bi2) > si * mu0), default=0.0)  # 0 only if psi(0) is finite and < 0
    hi = max(hi, lo) * (1 + 4 * _EPS) + _TINY
    t = lo
    for iteration in range(1, max_iter + 1):
        value, slope, size = psi(t)
        if value < 0:
            lo = t
        elif value > 0:
            hi = t
        t_new = t - value / slope
        if not (lo <= t_new <= hi) or not math.isfinite(t_new):
            t_new = math.sqrt(lo * hi) if lo > 0 and hi > 4 * lo else 0.5 * (lo + hi)
        at_rounding = abs(value) <= 8 * _EPS * size
        converged = at_rounding or abs(t_new - t) <= tol * t_new or hi - lo <= tol * hi
        t = t_new
        if converged:
            break
    else:
        warnings.warn(f"nesterov_lrs: the secular equation did not converge in {max_iter} "
                      "iterations (increase max_iter)", RuntimeWarning, stacklevel=3)
        return None, math.nan, "failed", max_iter
    y = b / (s + t)
    return y, (mu0 + t) / c, "easy", iteration


def _certify(H, g, d, c, eta, r, info, done, status, certify_tol):
    M = H + c * r * np.diag(d * d)
    norm_M = np.linalg.norm(H, 2) + c * r * float(np.max(d * d))  # the scale of M's terms
    residual = np.linalg.norm(M @ eta - g) / max(norm_M * np.linalg.norm(eta) + np.linalg.norm(g), _TINY)
    info["residual"] = float(residual)
    info["lambda_min"] = float(np.linalg.eigvalsh(M)[0] / max(norm_M, _TINY))
    if not np.isfinite(eta).all() or residual > certify_tol or info["lambda_min"] < -1e-8:
        return done(None, "failed", f"certificate failed: backward error {residual:.3g}, "
                                    f"lambda_min(M(r))/|M| = {info['lambda_min']:.3g}")
    return done(eta, status)
