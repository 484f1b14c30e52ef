"""Convex reformulation against gradient descent on the planted 2-D teacher, for growing n.

For each n (100 and 1000; --quick: 100 and 300) on ``teacher(n, d=2, k=3)`` with weight decay beta:

* convex: patterns from ``--gates`` Gaussian gates (deduplicated), the group lasso built and solved
  with CLARABEL in the "auto" formulation (Gram form when n >= P (d+1)); wall time (build + solve)
  and the optimum F*; also the textbook sum-of-squares ("residual") form's time, as the ratio;
* reference-style convex (the original repository's formulation): one pattern per neuron of the
  initial network, one signed block per neuron, no deduplication; its time and value (>= F* only if
  it sees enough patterns; it is not the global problem);
* GD: full-batch Adam and plain GD (float64, width 50, init scale 0.1) until F_beta <= 1.01 F*, or
  the time budget; time and steps to 1 %, else the relative gap left after the budget.

Prints one table and the growth ratios t(n_max) / t(n_min). For d >= 2 the pattern set is sampled, so
F* upper-bounds the global optimum and GD may cross it.

    .venv/bin/python bench/convex_vs_gd.py [--quick] [--gates 300] [--budget 30]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from algorithms.shallow.convex import ConvexReLUProblem, pattern_set  # noqa: E402
from algorithms.shallow.data import teacher  # noqa: E402
from algorithms.shallow.init import normal  # noqa: E402
from algorithms.shallow.model import add_bias, objective  # noqa: E402


def reference_style_convex(X: np.ndarray, y: np.ndarray, W: np.ndarray, a: np.ndarray, beta: float):
    """The repository's convex step: D_j = 1[X (|a_j| w_j) > 0] per neuron (duplicates kept), one
    block W_j with fixed sign s_j, objective (1/n)|sum_j s_j D_j X W_j - y|^2 + beta sum_j |W_j|."""
    import cvxpy as cp

    n = X.shape[0]
    D = ((X @ (np.abs(a)[:, None] * W).T) > 0).astype(float)  # (n, m)
    s = np.sign(a)
    B = cp.Variable(W.shape)
    XB = X @ B.T
    pred = cp.sum(cp.multiply(D * s[None, :], XB), axis=1)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(pred - y) / n + beta * cp.sum(cp.norm(B, 2, axis=1))),
                      [cp.multiply(2 * D - 1, XB) >= 0])
    start = time.perf_counter()
    prob.solve(solver="CLARABEL")
    return time.perf_counter() - start, prob.value, prob.status


def run_gd(X: torch.Tensor, y: torch.Tensor, target: float, beta: float, optimizer: str, lr: float,
           budget: float, max_steps: int, width: int = 50, seed: int = 0):
    W0, a0 = normal(X.shape[1] - 1, width, scale=0.1, signs="mixed", seed=seed)
    W, a = W0.clone().requires_grad_(), a0.clone().requires_grad_()
    opt = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer]([W, a], lr=lr)
    start = time.perf_counter()
    hit, best = None, float("inf")
    for step in range(max_steps):
        opt.zero_grad(set_to_none=True)
        value = objective(W, a, X, y, beta)
        value.backward()
        v = value.item()  # full batch: this is F_beta at the current iterate
        best = min(best, v)
        if v <= 1.01 * target:
            hit = (time.perf_counter() - start, step)
            break
        if time.perf_counter() - start > budget:
            break
        opt.step()
    return hit, best, step + 1, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n in {100, 300}, 100 gates, 10 s GD budget")
    parser.add_argument("--gates", type=int, default=None, help="Gaussian gates (default 300; quick 100)")
    parser.add_argument("--budget", type=float, default=None, help="GD seconds per run (default 30; quick 10)")
    parser.add_argument("--beta", type=float, default=1e-4)
    args = parser.parse_args(argv)
    ns = (100, 300) if args.quick else (100, 1000)
    gates = args.gates or (100 if args.quick else 300)
    budget = args.budget or (10.0 if args.quick else 30.0)
    # tiny dense problems: one thread is ~10x faster than two on a shared 2-core machine
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)  # cvxpy's "solution may be inaccurate" chatter

    warm_x, warm_y = teacher(10, 2, seed=1, k=1)  # import cvxpy and compile its solver paths once
    warm_X = add_bias(warm_x).numpy()
    ConvexReLUProblem(warm_X, pattern_set(warm_X, 5, torch.Generator().manual_seed(0))).solve(warm_y.numpy(), 1e-3)

    rows = []
    for n in ns:
        x, y = teacher(n, 2, seed=0, k=3)
        X = add_bias(x)
        Xn, yn = X.numpy(), y.numpy()
        patterns = pattern_set(Xn, gates, torch.Generator().manual_seed(0))
        start = time.perf_counter()
        result = ConvexReLUProblem(Xn, patterns, "auto").solve(yn, args.beta)
        t_convex = time.perf_counter() - start
        start = time.perf_counter()
        residual = ConvexReLUProblem(Xn, patterns, "residual").solve(yn, args.beta)
        t_residual = time.perf_counter() - start
        W0, a0 = normal(2, 50, scale=0.1, signs="mixed", seed=0)
        t_ref, v_ref, s_ref = reference_style_convex(Xn, yn, W0.numpy(), a0.numpy(), args.beta)
        row = {"n": n, "P": result.n_patterns, "t_convex": t_convex, "opt": result.value,
               "form": result.extras["formulation"], "t_residual": t_residual,
               "residual_diff": abs(residual.value - result.value),
               "t_solver": result.extras.get("solver_time") or float("nan"),
               "status": result.status, "t_ref": t_ref, "v_ref": v_ref}
        for name, opt, lr in (("adam", "adam", 1e-2), ("gd", "sgd", 0.1)):
            hit, best, steps, elapsed = run_gd(X, y, result.value, args.beta, opt, lr, budget, 200_000)
            row[name] = (hit, best, steps, elapsed)
        rows.append(row)
        print(f"n={n} done", file=sys.stderr, flush=True)

    print(f"\n2-D teacher (k=3), beta={args.beta}, {gates} gates, GD budget {budget:.0f} s; times in seconds\n")
    head = (f"{'n':>5} {'P':>5} {'form':>8} {'convex t':>9} {'(solver)':>9} {'residual t':>10} {'F* (convex)':>12} {'ref-style t':>11} {'ref-style F':>11} "
            f"{'Adam t to 1%':>13} {'Adam steps':>10} {'GD t to 1%':>11} {'GD steps':>9} {'GD gap left':>11} "
            f"{'t_convex/t_Adam':>15}")
    print(head)
    print("-" * len(head))
    for r in rows:
        def cell(key):
            hit, best, steps, elapsed = r[key]
            t = f"{hit[0]:.2f}" if hit else f">{elapsed:.0f}"
            gap = (best - r["opt"]) / abs(r["opt"])
            return t, (hit[1] if hit else steps), gap, (hit[0] if hit else None)
        ta, sa, ga, tadam = cell("adam")
        tg, sg, gg, _ = cell("gd")
        ratio = f"{r['t_convex'] / tadam:.2f}" if tadam else "n/a"
        print(f"{r['n']:>5} {r['P']:>5} {r['form']:>8} {r['t_convex']:>9.2f} {r['t_solver']:>9.2f} "
              f"{r['t_residual']:>10.2f} {r['opt']:>12.6g} {r['t_ref']:>11.2f} "
              f"{r['v_ref']:>11.4g} {ta:>13} {sa:>10} {tg:>11} {sg:>9} {gg:>11.2%} {ratio:>15}")
    lo, hi = rows[0], rows[-1]
    print(f"\ngrowth n={lo['n']} -> n={hi['n']} (x{hi['n'] / lo['n']:.0f} data):")
    print(f"  convex solve time  x{hi['t_convex'] / lo['t_convex']:.1f}  (patterns {lo['P']} -> {hi['P']})")
    print(f"  residual form      x{hi['t_residual'] / lo['t_residual']:.1f}")
    print(f"  reference-style    x{hi['t_ref'] / lo['t_ref']:.1f}")
    for r in rows:
        print(f"  n={r['n']}: residual-form time / chosen ({r['form']}) time = {r['t_residual'] / r['t_convex']:.2f}, "
              f"|F*_residual - F*| = {r['residual_diff']:.1e}")
    for key, name in (("adam", "Adam"), ("gd", "GD")):
        a, b = lo[key], hi[key]
        if a[0] and b[0]:
            print(f"  {name} time to 1%    x{b[0][0] / max(a[0][0], 1e-9):.1f}  (steps {a[0][1]} -> {b[0][1]})")
        else:
            print(f"  {name}: 1% not reached within the budget at n={lo['n'] if not a[0] else hi['n']}; "
                  f"relative gaps left {(a[1] - lo['opt']) / abs(lo['opt']):.2%} / {(b[1] - hi['opt']) / abs(hi['opt']):.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
