r"""KL proximal operators of the quadratic energy of a two-layer ReLU network with masses on a grid.

Masses :math:`p \in \mathbb{R}^N_{\ge 0}` sit on frozen neurons :math:`g_k` with fixed signs
:math:`s_k`; the network is :math:`f_p(x) = \sum_k s_k p_k \mathrm{relu}(g_k\cdot\tilde x)`, so with
:math:`A_{ik} = s_k\,\mathrm{relu}(g_k\cdot\tilde x_i)` (n, N) the energy is the convex quadratic

.. math::  F(p) = \frac1n\|Ap - y\|^2 + \frac\beta2\|p\|^2 + \langle V, p\rangle

(``V`` an optional linear potential; A = None gives the purely linear energy used in tests).

**One convention for every solver** (lam = tau / epsilon, tau the JKO time step):

.. math::  \mathrm{prox}(z) = \operatorname*{argmin}_{p\ge 0}\; \lambda F(p) + \mathrm{KL}(p\,|\,z),
           \qquad \mathrm{KL}(p|z) = \sum_k p_k\log\frac{p_k}{z_k} - p_k + z_k .

It is strictly convex; the optimum satisfies :math:`p = z\odot\exp(-\lambda\nabla F(p))`, so
:math:`p_k = 0` exactly where :math:`z_k = 0` and for a linear energy :math:`p = z\,e^{-\lambda V}`.
Three solvers of that one problem:

* ``torch``: damped Newton on p (Hessian :math:`\lambda H + \mathrm{diag}(1/p)`, Woodbury when
  n < N so a step costs O(N n^2)), with a multiplicative (log-space) update
  :math:`p \leftarrow p\,e^{\alpha\Delta/p}` that keeps p > 0 and Armijo backtracking; no learning rate.
* ``scipy``: L-BFGS-B with the analytic gradient, in u = log(p / z) (so p > 0 without bounds).
* ``cvxpy``: the exponential-cone program, built once with a Parameter for log z (DPP) and re-solved
  with CLARABEL (default) or SCS. cvxpy is imported only here, when this solver is built.

Each solver warm-starts from its previous solution (successive Sinkhorn iterations call it with
nearby z) and records ``iterations`` and ``converged`` of its last call.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

__all__ = ["QuadraticEnergy", "ProxSolver", "TorchNewtonProx", "ScipyProx", "CvxpyProx", "PROX_SOLVERS",
           "make_prox", "kl_divergence"]

F64 = torch.float64
_LOG_TINY = -745.0  # log of the smallest positive float64; stands in for log 0 where a finite value is needed
ACCEPT_RESIDUAL = 1e-9  # optimality residual (see ProxSolver.optimality_residual) counted as converged
WARN_RESIDUAL = 1e-6  # above this a library solver's stop is reported as a warning
_P_MIN = 1e-300  # Newton keeps p above this (log p finite); entries at the floor are returned as 0


def kl_divergence(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Unnormalised KL(p | z) = sum p log(p/z) - p + z, with 0 log 0 = 0 (p, z >= 0, (N,))."""
    return (torch.xlogy(p, p) - torch.xlogy(p, z) - p + z).sum()


class QuadraticEnergy:
    r"""F(p) = (1/n)|A p - y|^2 + (beta/2)|p|^2 + <V, p> in float64.

    A : (n, N) or None; y : (n,) or None; V : (N,) or None; beta >= 0. ``N`` is taken from A or V.
    """

    def __init__(self, A: torch.Tensor | None = None, y: torch.Tensor | None = None, beta: float = 0.0,
                 V: torch.Tensor | None = None):
        if A is None and V is None:
            raise ValueError("QuadraticEnergy needs A (and y) or a linear potential V")
        if A is not None:
            if A.dim() != 2 or y is None or y.shape != (A.shape[0],):
                raise ValueError(f"A must be (n, N) and y (n,), got {tuple(A.shape)} and "
                                 f"{None if y is None else tuple(y.shape)}")
            A, y = A.to(F64), y.to(F64)
        N = A.shape[1] if A is not None else V.shape[0]
        if V is not None:
            if V.shape != (N,):
                raise ValueError(f"V must have shape ({N},), got {tuple(V.shape)}")
            V = V.to(F64)
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.A, self.y, self.beta, self.V, self.N = A, y, float(beta), V, N
        self.n = A.shape[0] if A is not None else 0

    @classmethod
    def from_network(cls, grid: torch.Tensor, signs: torch.Tensor, X_biased: torch.Tensor, y: torch.Tensor,
                     beta: float = 0.0) -> "QuadraticEnergy":
        """A_ik = s_k relu(g_k . x~_i) for the grid (N, D), signs (N,), biased inputs X (n, D), targets y (n,)."""
        if grid.dim() != 2 or X_biased.dim() != 2 or grid.shape[1] != X_biased.shape[1]:
            raise ValueError(f"grid (N, D) and X (n, D) must share D, got {tuple(grid.shape)} and {tuple(X_biased.shape)}")
        A = torch.relu(X_biased.to(F64) @ grid.to(F64).T) * signs.to(F64)[None, :]
        return cls(A, y.to(F64).reshape(-1), beta)

    def value(self, p: torch.Tensor) -> torch.Tensor:
        out = p.new_zeros(())
        if self.A is not None:
            r = self.A @ p - self.y
            out = out + (r @ r) / self.n
        if self.beta:
            out = out + 0.5 * self.beta * (p @ p)
        if self.V is not None:
            out = out + self.V @ p
        return out

    def grad(self, p: torch.Tensor) -> torch.Tensor:
        out = self.beta * p
        if self.A is not None:
            out = out + (2.0 / self.n) * (self.A.T @ (self.A @ p - self.y))
        if self.V is not None:
            out = out + self.V
        return out

    def to(self, device) -> "QuadraticEnergy":
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return QuadraticEnergy(mv(self.A), mv(self.y), self.beta, mv(self.V))


class ProxSolver:
    """Base class: ``solver(z)`` or ``solver.solve_log(log_z)`` returns prox(z) (module docstring).

    The log form is what the JKO iteration uses: z = K b may overflow float64 where b is huge
    while p = prox(z) stays moderate, so solvers work with log z throughout (entries with
    log z = -inf, i.e. z = 0, get p = 0).
    """

    def __init__(self, energy: QuadraticEnergy, lam: float, max_iter: int = 200, tol: float = 1e-10,
                 warm_start: bool = True):
        if not lam > 0 or not math.isfinite(lam):
            raise ValueError(f"lam = tau/epsilon must be a finite number > 0, got {lam}")
        if int(max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        if not tol > 0:
            raise ValueError(f"tol must be > 0, got {tol}")
        self.energy, self.lam = energy, float(lam)
        self.max_iter, self.tol, self.warm_start = int(max_iter), float(tol), bool(warm_start)
        self.iterations, self.converged, self.last_residual, self._last = 0, True, 0.0, None

    def objective(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """lam F(p) + KL(p | z)."""
        return self.lam * self.energy.value(p) + kl_divergence(p, z)

    def optimality_residual(self, p: torch.Tensor, log_z: torch.Tensor) -> float:
        """|p - z exp(-lam grad F(p))|_1 / sum p: zero exactly at the prox (its fixed-point equation)."""
        image = torch.exp((log_z - self.lam * self.energy.grad(p)).clamp(max=700.0))
        return float((p - image).abs().sum()) / max(float(p.sum()), _P_MIN)

    def _report(self, solver_ok: bool, message: str, p: torch.Tensor, log_z: torch.Tensor) -> None:
        # Library solvers often stop "inaccurate"/"ABNORMAL" at the float64 limit; judge by optimality.
        residual = self.optimality_residual(p, log_z)
        self.last_residual = residual
        self.converged = solver_ok or residual <= ACCEPT_RESIDUAL
        if residual > WARN_RESIDUAL:
            # constant text, so the default warnings filter reports it once per call site, not per iteration
            warnings.warn(f"{type(self).__name__}: {message}; optimality residual above {WARN_RESIDUAL:g} "
                          "(see .last_residual)", RuntimeWarning)

    def _start(self, log_z: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """Warm start (the previous solution) if usable, else min(z, e^300), on the support."""
        last = self._last
        if self.warm_start and last is not None and last.shape == log_z.shape and bool((last[support] > 0).all()):
            return torch.where(support, last, torch.zeros_like(last))
        return torch.where(support, torch.exp(log_z.clamp(max=300.0)), torch.zeros_like(log_z))

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        z = torch.as_tensor(z, dtype=F64)
        if bool((z < 0).any()) or bool(torch.isnan(z).any()):
            raise ValueError("z must be >= 0")
        return self.solve_log(torch.where(z > 0, torch.log(z.clamp(min=1e-320)), torch.full_like(z, -math.inf)))

    def solve_log(self, log_z: torch.Tensor) -> torch.Tensor:
        if log_z.dim() != 1 or log_z.shape[0] != self.energy.N:
            raise ValueError(f"log z must have shape ({self.energy.N},), got {tuple(log_z.shape)}")
        log_z = log_z.to(F64)
        if bool(torch.isnan(log_z).any()) or bool((log_z == math.inf).any()):
            raise ValueError("log z must not be NaN or +inf")
        support = log_z > -math.inf
        if not bool(support.any()):
            self.iterations, self.converged = 0, True
            return torch.zeros_like(log_z)
        p = self._solve(log_z, support)
        self._last = p
        return p

    def _solve(self, log_z: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _restricted(self, support: torch.Tensor):
        """(idx, A_s, V_s, energy restricted to the support)."""
        idx = torch.nonzero(support).flatten()
        e = self.energy
        A_s = e.A.index_select(1, idx) if e.A is not None else None
        V_s = e.V.index_select(0, idx) if e.V is not None else None
        return idx, A_s, V_s, QuadraticEnergy(A_s, e.y if A_s is not None else None, e.beta, V_s)


class TorchNewtonProx(ProxSolver):
    """Damped Newton with multiplicative updates (module docstring).

    Stops when sqrt(decrement^2 / sum p) <= tol, with decrement^2 = -r . Delta the Newton decrement
    (it bounds the relative L1 error of p, |p - p*|_1 / sum p, to first order).
    """

    def __init__(self, energy, lam, max_iter: int = 100, tol: float = 1e-12, warm_start: bool = True):
        super().__init__(energy, lam, max_iter, tol, warm_start)

    def _newton_direction(self, p: torch.Tensor, r: torch.Tensor, A_s: torch.Tensor | None) -> torch.Tensor:
        # (diag(1/p + lam beta) + (2 lam / n) A^T A) delta = -r on the support
        d_inv = 1.0 / (1.0 / p + self.lam * self.energy.beta)
        if A_s is None:
            return -d_inv * r
        n, N = A_s.shape
        U = math.sqrt(2.0 * self.lam / n) * A_s
        if n < N:  # Woodbury: (D + U^T U)^{-1} = D^{-1} - D^{-1} U^T (I + U D^{-1} U^T)^{-1} U D^{-1}
            M = torch.eye(n, dtype=F64, device=p.device) + (U * d_inv) @ U.T
            t = d_inv * r
            return -(t - d_inv * (U.T @ torch.linalg.solve(M, U @ t)))
        H = U.T @ U + torch.diag(1.0 / d_inv)
        return -torch.linalg.solve(H, r)

    def _solve(self, log_z, support):
        idx, A_s, _, sub = self._restricted(support)
        logz = log_z.index_select(0, idx)
        # phi = lam F(p) + KL(p|z) without the constant sum z (z itself may overflow)
        phi = lambda q: self.lam * sub.value(q) + (torch.xlogy(q, q) - q * logz - q).sum()  # noqa: E731
        # Start from the warm start, or from its fixed-point image z exp(-lam grad F), whichever is lower
        # (the image is exact for a linear energy, however large lam V is).
        p = self._start(log_z, support).index_select(0, idx).clamp(min=_P_MIN)
        image = torch.exp((logz - self.lam * sub.grad(p)).clamp(-700.0, 300.0)).clamp(min=_P_MIN)
        value, value_image = phi(p), phi(image)
        if torch.isfinite(value_image) and (not torch.isfinite(value) or float(value_image) < float(value)):
            p, value = image, value_image
        self.converged, self.iterations = False, 0
        for it in range(1, self.max_iter + 1):
            r = self.lam * sub.grad(p) + torch.log(p) - logz
            delta = self._newton_direction(p, r, A_s)
            decrement = -float(r @ delta)  # Newton decrement^2 > 0; phi - phi* ~ decrement / 2
            if math.sqrt(max(decrement, 0.0) / float(p.sum())) <= self.tol:
                self.converged = True
                break
            du = (delta / p).clamp(-50.0, 50.0)
            slack = 1e-13 * (abs(float(value)) + 1.0)
            alpha = 1.0
            for _ in range(60):
                candidate = (p * torch.exp(alpha * du)).clamp(min=_P_MIN)
                new_value = phi(candidate)
                if torch.isfinite(new_value) and float(new_value) <= float(value) - 1e-4 * alpha * decrement + slack:
                    break
                alpha *= 0.5
            else:
                warnings.warn("torch Newton prox: line search failed; returning the last iterate", RuntimeWarning)
                break
            p, value = candidate, new_value
            self.iterations = it
        else:
            warnings.warn(f"torch Newton prox did not reach tol={self.tol} in {self.max_iter} iterations",
                          RuntimeWarning)
        out = torch.zeros_like(log_z)
        out.index_copy_(0, idx, torch.where(p <= _P_MIN, torch.zeros_like(p), p))
        self.last_residual = self.optimality_residual(out, log_z)
        return out


class ScipyProx(ProxSolver):
    """L-BFGS-B (scipy) with the analytic gradient, in the variable u = log(p / z) (float64 numpy)."""

    def __init__(self, energy, lam, max_iter: int = 20000, tol: float = 1e-16, warm_start: bool = True,
                 memory: int = 30):
        super().__init__(energy, lam, max_iter, tol, warm_start)
        self.memory = int(memory)

    def _solve(self, log_z, support):
        from scipy.optimize import minimize

        idx, _, _, sub = self._restricted(support)
        A = sub.A.cpu().numpy() if sub.A is not None else None
        yv = sub.y.cpu().numpy() if sub.A is not None else None
        V = sub.V.cpu().numpy() if sub.V is not None else None
        logz = log_z.index_select(0, idx).cpu().numpy()
        lam, beta, n = self.lam, sub.beta, sub.n
        start = self._start(log_z, support).index_select(0, idx).cpu().numpy()
        scale = 1.0 / max(start.sum(), 1e-300)  # objective O(1) whatever the total mass

        # Variable u = log(p / z) (unbounded): phi = lam F(z e^u) + sum p (u - 1) (+ const),
        # grad_u = p * (lam grad F(p) + u). Far better conditioned than p-space bounds, where the
        # KL curvature 1/p spans as many orders of magnitude as p does.
        def fun(u):
            p = np.exp(logz + u)
            val = (p * (u - 1.0)).sum()
            grad_p = u.copy()
            if A is not None:
                res = A @ p - yv
                val += lam * (res @ res) / n
                grad_p += lam * (2.0 / n) * (A.T @ res)
            if beta:
                val += 0.5 * lam * beta * (p @ p)
                grad_p += lam * beta * p
            if V is not None:
                val += lam * (V @ p)
                grad_p += lam * V
            return val * scale, p * grad_p * scale

        u0 = (np.log(np.maximum(start, 1e-300)) - logz).clip(-1400.0, 700.0)
        with np.errstate(over="ignore"):
            res = minimize(fun, u0, jac=True, method="L-BFGS-B",
                           options={"maxiter": self.max_iter, "maxfun": 2 * self.max_iter, "ftol": self.tol,
                                    "gtol": self.tol, "maxcor": self.memory})
        self.iterations = int(res.nit)
        out = torch.zeros_like(log_z)
        out.index_copy_(0, idx, torch.as_tensor(np.exp(logz + res.x), dtype=F64, device=log_z.device))
        self._report(bool(res.success), f"L-BFGS-B stopped: {res.message}", out, log_z)
        return out


class CvxpyProx(ProxSolver):
    """The exponential-cone program, built once (Parameter log z), solved by CLARABEL or SCS."""

    def __init__(self, energy, lam, max_iter: int = 500, tol: float = 1e-12, warm_start: bool = True,
                 solver: str = "CLARABEL"):
        super().__init__(energy, lam, max_iter, tol, warm_start)
        try:
            import cvxpy as cp
        except ImportError as err:  # pragma: no cover - cvxpy is in requirements.txt
            raise ImportError("the cvxpy prox solver needs cvxpy: pip install cvxpy") from err
        solver = solver.upper()
        if solver not in ("CLARABEL", "SCS"):
            raise ValueError(f"cvxpy prox solver must be 'CLARABEL' or 'SCS', got {solver!r}")
        self.cp, self.solver = cp, solver
        e = energy
        self._p = cp.Variable(e.N, nonneg=True)
        self._logz = cp.Parameter(e.N)
        terms = []
        if e.A is not None:
            terms.append((lam / e.n) * cp.sum_squares(e.A.cpu().numpy() @ self._p - e.y.cpu().numpy()))
        if e.beta:
            terms.append((0.5 * lam * e.beta) * cp.sum_squares(self._p))
        if e.V is not None:
            terms.append(lam * (e.V.cpu().numpy() @ self._p))
        # KL(p|z) = -entr(p) - p log z - p + z  (the constant sum z is dropped)
        terms += [-cp.sum(cp.entr(self._p)), -(self._logz @ self._p), -cp.sum(self._p)]
        self._problem = cp.Problem(cp.Minimize(sum(terms)))

    def _solve(self, log_z, support):
        cp = self.cp
        self._logz.value = torch.where(support, log_z, torch.full_like(log_z, _LOG_TINY)).cpu().numpy()
        if self.solver == "CLARABEL":
            opts = dict(max_iter=self.max_iter, tol_gap_abs=self.tol, tol_gap_rel=self.tol, tol_feas=self.tol,
                        tol_ktratio=1e-8)
        else:
            opts = dict(max_iters=100 * self.max_iter, eps_abs=self.tol, eps_rel=self.tol)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                self._problem.solve(solver=self.solver, warm_start=self.warm_start, **opts)
        except cp.error.SolverError as err:
            raise FloatingPointError(f"cvxpy prox ({self.solver}) failed: {err}") from err
        status = self._problem.status
        stats = self._problem.solver_stats
        self.iterations = int(stats.num_iters) if stats is not None and stats.num_iters is not None else 0
        if self._p.value is None:
            raise FloatingPointError(f"cvxpy prox ({self.solver}) returned no solution (status {status})")
        p = torch.as_tensor(np.maximum(self._p.value, 0.0), dtype=F64, device=log_z.device)
        p = torch.where(support, p, torch.zeros_like(p))
        self._report(status == cp.OPTIMAL, f"{self.solver} status {status}", p, log_z)
        return p


PROX_SOLVERS = {"torch": TorchNewtonProx, "scipy": ScipyProx, "cvxpy": CvxpyProx}


def make_prox(name: str, energy: QuadraticEnergy, lam: float, **options) -> ProxSolver:
    """Build the prox solver ``name`` ("torch" | "scipy" | "cvxpy") for ``energy`` and lam = tau/epsilon."""
    if name not in PROX_SOLVERS:
        raise ValueError(f"unknown prox solver {name!r}; valid: {', '.join(PROX_SOLVERS)}")
    return PROX_SOLVERS[name](energy, lam, **options)
