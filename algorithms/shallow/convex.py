r"""Convex reformulation of two-layer ReLU training (Pilanci & Ergen 2020), solved with cvxpy.

For biased data X (n, d+1), targets y (n,) and a set of activation patterns D_1..D_P (each D_k a 0/1
vector of length n, used as diag(D_k)), the group lasso

.. math::

    \min_{v, u} \; \frac1n \Big\|\sum_k D_k X (v_k - u_k) - y\Big\|^2
        + \beta \sum_k (\|v_k\|_2 + \|u_k\|_2)
    \quad \text{s.t.}\quad (2D_k - I) X v_k \ge 0,\; (2D_k - I) X u_k \ge 0

has, when the patterns include every pattern of the plane arrangement, the optimal value of the
nonconvex F_beta of :mod:`algorithms.shallow.model` (same 1/n, no 1/2, weight decay beta/2). The cone
constraints make D_k the true ReLU pattern of v_k and u_k, so D_k X v_k = relu(X v_k).

**Balanced recovery.** Each nonzero v_k gives the neuron w = v_k / sqrt|v_k|, a = +sqrt|v_k|, each
nonzero u_k gives w = u_k / sqrt|u_k|, a = -sqrt|u_k|; then a relu(X w) = D_k X v_k and
(beta/2)(|w|^2 + a^2) = beta |v_k|, so F_beta(recovered) equals the convex objective.

**Lower bound.** For any network (W, a), if the pattern set contains its patterns, the convex optimum
is <= F_beta(W, a) (AM-GM: |w||a| <= (|w|^2 + a^2)/2). With sampled patterns the optimum is an upper
bound of the true (all-pattern) optimum.

Patterns come from Gaussian gate vectors g ~ N(0, I_{d+1}) as 1[X g > 0], plus the current network's
own patterns 1[X w_j > 0], deduplicated, with the all-zero pattern removed (it contributes nothing).
For 1-D inputs all 2n - 1 patterns of n distinct points can be enumerated exactly
(:func:`all_patterns_1d`).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch




# -- patterns -----------------------------------------------------------------------------------
def sample_gates(dim: int, n_gates: int, generator: torch.Generator | None = None,
                 seed: int | None = None) -> np.ndarray:
    """Gaussian gate vectors g ~ N(0, I_dim), shape (n_gates, dim), float64."""
    if n_gates < 0:
        raise ValueError(f"n_gates must be >= 0, got {n_gates}")
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    return torch.randn(n_gates, dim, generator=generator, dtype=torch.float64).numpy()


def gate_patterns(X: np.ndarray, gates: np.ndarray) -> np.ndarray:
    """1[X g > 0] for every gate (row of ``gates`` or network neuron): bool (P, n)."""
    return (np.asarray(gates, dtype=np.float64) @ np.asarray(X, dtype=np.float64).T) > 0


def unique_patterns(*pattern_sets: np.ndarray) -> np.ndarray:
    """The union of bool (P_i, n) pattern arrays: duplicates and the all-zero pattern removed,
    first-occurrence order kept. Returns bool (P, n)."""
    sets = [np.asarray(p, dtype=bool) for p in pattern_sets if p is not None and len(p)]
    if not sets:
        raise ValueError("no patterns given")
    allp = np.concatenate(sets, axis=0)
    allp = allp[allp.any(axis=1)]
    if not len(allp):
        return allp
    _, first = np.unique(np.packbits(allp, axis=1), axis=0, return_index=True)
    return allp[np.sort(first)]


def all_patterns_1d(X: np.ndarray) -> np.ndarray:
    """Every nonzero ReLU pattern of 1-D biased data X (n, 2): {x > t} and {x < t} over all
    thresholds t, i.e. 2k - 1 patterns for k distinct inputs. bool (P, n)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"all_patterns_1d needs biased 1-D inputs (n, 2), got {X.shape}")
    x = X[:, 0]
    values = np.unique(x)
    cuts = np.concatenate([[values[0] - 1.0], (values[1:] + values[:-1]) / 2, [values[-1] + 1.0]])
    above = x[None, :] > cuts[:, None]
    return unique_patterns(above, ~above)


# -- the convex program -------------------------------------------------------------------------
def installed_solvers() -> list[str]:
    import cvxpy as cp

    return list(cp.installed_solvers())


def check_solver(name: str) -> str:
    """The cvxpy name of an installed solver (case-insensitive); ValueError listing the installed ones."""
    installed = installed_solvers()
    for s in installed:
        if s.upper() == str(name).upper():
            return s
    raise ValueError(f"cvxpy solver {name!r} is not installed; installed solvers: {', '.join(installed)}")


@dataclass
class ConvexResult:
    """Outcome of one solve. ``V``, ``U`` (P, d+1) are None when the solve failed (``success`` False)."""

    status: str
    success: bool
    value: float
    V: np.ndarray | None
    U: np.ndarray | None
    patterns: np.ndarray
    beta: float
    solver: str
    solve_time: float
    extras: dict = field(default_factory=dict)

    @property
    def n_patterns(self) -> int:
        return int(self.patterns.shape[0])


OK_STATUSES = ("optimal", "optimal_inaccurate")  # cvxpy statuses whose solution is used
FORMULATIONS = ("auto", "residual", "gram")
# The Gram objective is the true one minus |y|^2/n, so CLARABEL's default gap tolerances (1e-8) are
# relative to |y|^2/n rather than to the (much smaller) optimum; 1e-11 costs ~4 more iterations.
GRAM_CLARABEL_OPTIONS = {"tol_gap_abs": 1e-11, "tol_gap_rel": 1e-11}


class ConvexReLUProblem:
    """The group lasso of the module docstring for fixed X (n, d+1) and patterns (P, n).

    The cvxpy problem is built once with Parameters for the targets and beta, so a regularisation path
    or new targets re-solve without rebuilding (cvxpy caches the canonicalisation).

    Two equivalent forms of the data term, chosen by ``formulation``:

    * ``"residual"``: (1/n)|A z - y|^2 as a sum of squares over the n points (sparse, best for small n);
    * ``"gram"``: z^T (A^T A / n) z - 2 (A^T y / n)^T z + |y|^2 / n with the dense (2P(d+1))^2 Gram
      matrix, whose interior-point cost does not grow with n (about 10x faster at n = 1000, P ~ 200);
    * ``"auto"``: gram when n >= P (d+1), else residual.

    Here z stacks the v_k - u_k and A = [D_1 X, ..., D_P X] (n, P(d+1)). The returned value is always
    re-evaluated exactly at the returned point (:func:`convex_objective`), not taken from the solver.
    """

    def __init__(self, X: np.ndarray, patterns: np.ndarray, formulation: str = "auto"):
        import cvxpy as cp

        X = np.asarray(X, dtype=np.float64)
        patterns = np.asarray(patterns, dtype=bool)
        if X.ndim != 2 or patterns.ndim != 2 or patterns.shape[1] != X.shape[0]:
            raise ValueError(f"need X (n, d+1) and patterns (P, n), got {X.shape} and {patterns.shape}")
        if not len(patterns) or not patterns.any(axis=1).all():
            raise ValueError("patterns must be non-empty and contain no all-zero pattern")
        if formulation not in FORMULATIONS:
            raise ValueError(f"formulation must be one of {FORMULATIONS}, got {formulation!r}")
        n, dim = X.shape
        P = patterns.shape[0]
        if formulation == "auto":
            formulation = "gram" if n >= P * dim else "residual"
        self.formulation = formulation
        self.X, self.patterns = X, patterns
        D = patterns.T.astype(np.float64)  # (n, P)
        self.beta = cp.Parameter(nonneg=True, name="beta")
        self.V = cp.Variable((P, dim), name="v")
        self.U = cp.Variable((P, dim), name="u")
        XV, XU = X @ self.V.T, X @ self.U.T  # (n, P): column k is X v_k
        S = 2.0 * D - 1.0
        reg = cp.sum(cp.norm(self.V, 2, axis=1)) + cp.sum(cp.norm(self.U, 2, axis=1))
        if formulation == "residual":
            self.y = cp.Parameter(n, name="y")
            pred = cp.sum(cp.multiply(D, XV - XU), axis=1)
            data_term = cp.sum_squares(pred - self.y) / n
        else:
            self.A = (D[:, :, None] * X[:, None, :]).reshape(n, P * dim)  # (n, P (d+1))
            Q = self.A.T @ self.A / n
            self.c = cp.Parameter(P * dim, name="Aty_over_n")
            z = cp.vec(self.V - self.U, order="C")
            data_term = cp.quad_form(z, cp.psd_wrap((Q + Q.T) / 2)) - 2 * self.c @ z
        self.problem = cp.Problem(
            cp.Minimize(data_term + self.beta * reg),
            [cp.multiply(S, XV) >= 0, cp.multiply(S, XU) >= 0],
        )

    def solve(self, y: np.ndarray, beta: float, solver: str = "CLARABEL", **options) -> ConvexResult:
        """Solve for targets y (n,) and weight decay beta >= 0; never raises on solver failure."""
        import cvxpy as cp

        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        solver = check_solver(solver)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if y.shape != (self.X.shape[0],):
            raise ValueError(f"y must have shape ({self.X.shape[0]},), got {y.shape}")
        if self.formulation == "residual":
            self.y.value = y
        else:
            self.c.value = self.A.T @ y / len(y)
        self.beta.value = float(beta)
        if self.formulation == "gram" and solver == "CLARABEL":
            options = {**GRAM_CLARABEL_OPTIONS, **options}
        start = time.perf_counter()
        try:
            self.problem.solve(solver=solver, **options)
            status = str(self.problem.status)
        except cp.error.SolverError as exc:
            status = f"solver_error: {exc}"
        elapsed = time.perf_counter() - start
        V, U = self.V.value, self.U.value
        success = (status in OK_STATUSES and V is not None and U is not None
                   and np.isfinite(V).all() and np.isfinite(U).all()
                   and self.problem.value is not None and np.isfinite(self.problem.value))
        if not success:
            warnings.warn(f"convex ReLU solve with {solver} failed: status {status}", RuntimeWarning, stacklevel=2)
            return ConvexResult(status, False, float("nan"), None, None, self.patterns, float(beta), solver, elapsed)
        V, U = np.array(V), np.array(U)
        stats = self.problem.solver_stats
        extras = {"iterations": getattr(stats, "num_iters", None), "solver_time": getattr(stats, "solve_time", None),
                  "formulation": self.formulation}
        value = convex_objective(V, U, self.X, self.patterns, y, beta)
        return ConvexResult(status, True, value, V, U, self.patterns, float(beta), solver, elapsed, extras)


def convex_objective(V: np.ndarray, U: np.ndarray, X: np.ndarray, patterns: np.ndarray, y: np.ndarray,
                     beta: float) -> float:
    """(1/n)|sum_k D_k X (v_k - u_k) - y|^2 + beta sum_k (|v_k| + |u_k|), in float64."""
    X = np.asarray(X, dtype=np.float64)
    D = np.asarray(patterns, dtype=np.float64).T
    pred = ((X @ (V - U).T) * D).sum(axis=1)
    reg = np.linalg.norm(V, axis=1).sum() + np.linalg.norm(U, axis=1).sum()
    return float(np.mean((pred - y) ** 2) + beta * reg)


def recover(V: np.ndarray, U: np.ndarray, zero_tol: float = 1e-4):
    """Balanced network from a convex solution: (W (m, d+1), a (m,), block) with ``block`` (m,) the
    pattern index of each neuron. Blocks of norm <= zero_tol * max norm are dropped."""
    V, U = np.asarray(V, dtype=np.float64), np.asarray(U, dtype=np.float64)
    nv, nu = np.linalg.norm(V, axis=1), np.linalg.norm(U, axis=1)
    scale = max(nv.max(initial=0.0), nu.max(initial=0.0))
    keep_v = np.flatnonzero(nv > zero_tol * scale) if scale > 0 else np.array([], dtype=int)
    keep_u = np.flatnonzero(nu > zero_tol * scale) if scale > 0 else np.array([], dtype=int)
    W = np.concatenate([V[keep_v] / np.sqrt(nv[keep_v])[:, None], U[keep_u] / np.sqrt(nu[keep_u])[:, None]])
    a = np.concatenate([np.sqrt(nv[keep_v]), -np.sqrt(nu[keep_u])])
    return W.reshape(-1, V.shape[1]), a, np.concatenate([keep_v, keep_u]).astype(int)


def prune(V: np.ndarray, U: np.ndarray, zero_tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """V, U with the blocks :func:`recover` drops set to zero (for objective bookkeeping)."""
    nv, nu = np.linalg.norm(V, axis=1), np.linalg.norm(U, axis=1)
    scale = max(nv.max(initial=0.0), nu.max(initial=0.0))
    V, U = V.copy(), U.copy()
    V[nv <= zero_tol * scale] = 0.0
    U[nu <= zero_tol * scale] = 0.0
    return V, U


def pattern_set(X: np.ndarray, n_gates: int = 0, generator: torch.Generator | None = None,
                network_W: np.ndarray | None = None, extra: np.ndarray | None = None,
                exact_1d: bool = False) -> np.ndarray:
    """Deduplicated nonzero patterns from: all 1-D patterns (``exact_1d``), ``n_gates`` sampled gates,
    the neurons ``network_W`` (m, d+1), and ``extra`` patterns (P', n)."""
    X = np.asarray(X, dtype=np.float64)
    parts = []
    if exact_1d:
        parts.append(all_patterns_1d(X))
    if n_gates:
        parts.append(gate_patterns(X, sample_gates(X.shape[1], n_gates, generator)))
    if network_W is not None and len(network_W):
        parts.append(gate_patterns(X, network_W))
    if extra is not None and len(extra):
        parts.append(extra)
    if not parts:
        raise ValueError("no pattern source: give n_gates > 0, network_W, extra or exact_1d=True")
    return unique_patterns(*parts)


def solve_convex(X: np.ndarray, y: np.ndarray, beta: float, patterns: np.ndarray | None = None,
                 n_gates: int = 1000, seed: int = 0, network_W: np.ndarray | None = None,
                 solver: str = "CLARABEL", formulation: str = "auto", **options) -> ConvexResult:
    """One-call solve on biased X (n, d+1): patterns given, or built by :func:`pattern_set`."""
    X = np.asarray(X, dtype=np.float64)
    if patterns is None:
        g = torch.Generator().manual_seed(int(seed))
        patterns = pattern_set(X, n_gates, g, network_W)
    return ConvexReLUProblem(X, patterns, formulation).solve(np.asarray(y, dtype=np.float64), beta, solver, **options)
