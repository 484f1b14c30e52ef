"""One relu_gd step against a minimal hand-written torch step of the same model and loss.

The minimal step (what a researcher would write): hidden ``torch.addmm(b, x, W.T)``, relu, ``@ a``,
mean squared error (no 1/2) plus (beta/2)(|W|^2 + |b|^2 + |a|^2), ``backward()``,
``optimizer.step()``. The workbench's step is :class:`algorithms.shallow.workbench_algorithms.ReLUGD` as the
runner calls it (full batch, the same optimizer). Both run in the same process on the same data
and starting point, timed in alternating blocks; the ratio is the median of the blocks' ratios.

    .venv/bin/python bench/relu_gd_step.py [--quick] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from algorithms.shallow.model import TwoLayerReLU  # noqa: E402
from algorithms.shallow.workbench_algorithms import ReLUGD  # noqa: E402
from workbench.problem import DataSplit, Problem  # noqa: E402


def _data(n, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.sin(3 * x[:, 0]) + 0.1 * torch.randn(n, generator=g, dtype=dtype)
    return x, y


def _start(m, d, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, d + 1, generator=g, dtype=dtype) * 0.5, torch.randn(m, generator=g, dtype=dtype) * 0.1


def minimal_step(x, y, W0, a0, optimizer, lr, beta):
    """The hand-written step: returns a callable doing one step."""
    W = W0[:, :-1].clone().requires_grad_()
    b = W0[:, -1].clone().requires_grad_()
    a = a0.clone().requires_grad_()
    opt = optimizer([W, b, a], lr=lr)

    def step():
        opt.zero_grad(set_to_none=True)
        out = torch.relu(torch.addmm(b, x, W.T)) @ a
        loss = ((out - y) ** 2).mean()
        total = loss + 0.5 * beta * ((W * W).sum() + (b * b).sum() + (a * a).sum())
        total.backward()
        opt.step()
        return loss.detach()
    return step


def workbench_step(x, y, W0, a0, optimizer, lr, beta):
    model = TwoLayerReLU(W0, a0)
    split = DataSplit(x, y, x[:0], y[:0], task="regression", n_outputs=1)
    problem = Problem(split, lambda: model, torch.device("cpu"), x.dtype)
    algo = ReLUGD(problem, model, optimizer=optimizer, lr=lr, beta=beta)
    return lambda: algo.step(x, y)


def time_pair(first, second, steps, repeats):
    """Median seconds per step of each, timed in alternating blocks (so drift hits both alike),
    and the median of the per-block ratios second / first."""
    for step in (first, second):
        for _ in range(max(5, steps // 10)):
            step()
    times = ([], [])
    for _ in range(repeats):
        for k, step in enumerate((first, second)):
            start = time.perf_counter()
            for _ in range(steps):
                step()
            times[k].append((time.perf_counter() - start) / steps)
    ratio = statistics.median(b / a for a, b in zip(*times))
    return statistics.median(times[0]), statistics.median(times[1]), ratio


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--d", type=int, default=2, help="input dimension")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps, repeats = (200, 7) if args.quick else (1000, 11)
    print(f"relu_gd step vs minimal torch step, d={args.d}, float64, {args.threads} thread(s); "
          "time per step (median of blocks)\n")
    head = f"{'n':>5} {'m':>5} {'optimizer':>9} {'beta':>6} {'minimal us':>11} {'relu_gd us':>11} {'relu_gd/minimal':>16}"
    print(head)
    print("-" * len(head))
    for n, m in ((100, 50), (1000, 1000)):
        x, y = _data(n, args.d, torch.float64)
        W0, a0 = _start(m, args.d, torch.float64)
        for name, opt_cls, lr in (("sgd", torch.optim.SGD, 1e-2), ("adam", torch.optim.Adam, 1e-3)):
            for beta in (0.0, 1e-3):
                s = (steps if n == 100 else max(20, steps // 10))
                t_min, t_wb, ratio = time_pair(minimal_step(x, y, W0, a0, opt_cls, lr, beta),
                                               workbench_step(x, y, W0, a0, name, lr, beta), s, repeats)
                print(f"{n:>5} {m:>5} {name:>9} {beta:>6g} {t_min * 1e6:>11.1f} {t_wb * 1e6:>11.1f} {ratio:>16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
