"""Cost of growth for a 784-256-10 MLP on MNIST batches.

    python bench/growth.py [--quick] [--batch-size 128] [--device cpu|cuda|all]

Prints, per device:

1. a training step with statistics collection (forward, mean loss, backward, SGD step,
   ``update_computation``) against a plain step (statistics off): TINY statistics (S, M, S2, M2, P)
   and GradMax statistics (M2 only); target <= 1.5x;
2. the same collection in the reference's style (input stored, ``retain_grad`` on the
   pre-activation, one einsum per statistic with concatenated ones, float32 sums), as a ratio;
3. one ``compute_optimal_updates`` (TINY and GradMax; float64 solves) in units of plain training
   steps; target < 20 steps. The reference-style float32 solve is timed too, and the network that
   ``whitening="auto"`` commits is compared with the eigh route's (float64);
4. the workbench's ``growth`` algorithm, which collects statistics only when a growth is due (on
   ``statistics_samples`` examples, not on the training batches): a training step between
   growths against a plain step, one whole growth (statistics, solve, line search, commit) in
   plain steps, and the overhead per training step that it amounts to at ``grow_every`` 100 and
   1000.

Real MNIST from data/MNIST/raw when present, otherwise random tensors of MNIST shape (timings do
not depend on the values).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from algorithms.growth import GrowingMLP, ReLUDerivativeOneAtZero  # noqa: E402


def mnist_batches(batch_size: int, count: int, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    try:
        from workbench import mnist_files

        x, y, _, _ = mnist_files.load(ROOT / "data", "mnist", verify_full_size=False)
        x = (torch.from_numpy(x[: batch_size * count]).float() / 255 - 0.1307) / 0.3081
        y = torch.from_numpy(y[: batch_size * count]).long()
        source = "MNIST"
    except Exception:  # noqa: BLE001  any missing / unreadable file: random data of the same shape
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch_size * count, 28, 28, generator=g)
        y = torch.randint(0, 10, (batch_size * count,), generator=g)
        source = "random tensors"
    x = x.reshape(-1, 784).to(device)
    y = y.to(device)
    return [(x[i * batch_size:(i + 1) * batch_size], y[i * batch_size:(i + 1) * batch_size])
            for i in range(count)], source


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device, repeats: int, inner: int) -> float:
    """Median seconds per call over ``repeats`` blocks of ``inner`` calls (after a warm-up block)."""
    return compare({"fn": (None, fn)}, device, repeats, inner)["fn"]


def compare(fns: dict, device, repeats: int, inner: int) -> dict[str, float]:
    """Median seconds per call of each ``name: (setup, fn)``, measured in interleaved blocks so that
    load from other processes hits every candidate alike (ratios stay meaningful on a busy machine)."""
    times = {name: [] for name in fns}
    for rep in range(repeats + 1):
        for name, (setup, fn) in fns.items():
            if setup is not None:
                setup()
            sync(device)
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            sync(device)
            if rep:  # the first round is a warm-up
                times[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(t) for name, t in times.items()}


class ReferenceStyleStats:
    """GroMo-style collection: the consumer's pre-activation keeps its grad (retain_grad), inputs
    are stored, and each statistic is its own einsum over [x, 1] tensors, summed in float32."""

    def __init__(self, model: GrowingMLP):
        self.model = model
        self.sums = {}
        self.n = 0

    def forward(self, x):
        m = self.model
        self.c = x
        pre0 = m.layers[0](x)
        self.b = m.activation(pre0)
        self.pre1 = m.layers[1](self.b)
        self.pre1.retain_grad()
        return self.pre1

    def update(self):
        ones = lambda t: torch.cat([t, t.new_ones(t.shape[0], 1)], dim=1)  # noqa: E731
        c, b, g = ones(self.c.detach()), ones(self.b.detach()), self.pre1.grad * self.c.shape[0]
        for name, (u, v) in {"S": (b, b), "M": (b, g), "S2": (c, c), "M2": (c, g), "P": (c, b)}.items():
            val = torch.einsum("ij,ik->jk", u, v)
            self.sums[name] = self.sums[name] + val if name in self.sums else val
        self.n += c.shape[0]


def reference_style_tiny(S, M, S2, M2, P, k):
    """The same TINY solve in float32 with torch.linalg.solve (the reference's default dtype)."""
    delta = torch.linalg.solve(S, M).T
    N = -M2 + P @ delta.T
    w, Q = torch.linalg.eigh(S2)
    keep = w > 1e-6
    Sih = (Q[:, keep] * w[keep].rsqrt()) @ Q[:, keep].T
    U, lam, Vh = torch.linalg.svd(Sih @ N, full_matrices=False)
    return (lam[:k].sqrt()[:, None] * U[:, :k].T) @ Sih, Vh[:k].T * lam[:k].sqrt()


def plain_step(model, batches):
    """(optimizer, next batch, one plain step): SGD with momentum, cross-entropy, cycling batches."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    it = [0]

    def batch():
        it[0] = (it[0] + 1) % len(batches)
        return batches[it[0]]

    def plain():
        x, y = batch()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return opt, batch, plain


def bench_device(device, batch_size: int, quick: bool) -> None:
    repeats, inner = (3, 5) if quick else (7, 20)
    batches, source = mnist_batches(batch_size, 8, device)
    torch.manual_seed(0)
    model = GrowingMLP(784, 10, 256, 1, activation=ReLUDerivativeOneAtZero(), store_activity=False, device=device)
    opt, batch, plain = plain_step(model, batches)
    loss_fn = torch.nn.functional.cross_entropy

    def with_stats():
        x, y = batch()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        model.update_computation(loss_reduction="mean")

    ref = ReferenceStyleStats(model)

    def ref_stats():
        x, y = batch()
        opt.zero_grad(set_to_none=True)
        loss_fn(ref.forward(x), y).backward()
        opt.step()
        ref.update()

    t = compare({
        "plain": (model.reset_computation, plain),
        "tiny": (lambda: model.init_computation("tiny"), with_stats),
        "gradmax": (lambda: model.init_computation("gradmax"), with_stats),
        "ref": (model.reset_computation, ref_stats),
    }, device, repeats, inner)
    t_plain, t_tiny, t_gm, t_ref = t["plain"], t["tiny"], t["gradmax"], t["ref"]

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"\n== {name}, batch {batch_size}, {source}, 784-256-10, relu1, SGD momentum ==")
    print(f"plain training step                       {t_plain * 1e3:8.3f} ms")
    print(f"step + TINY statistics (S,M,S2,M2,P)      {t_tiny * 1e3:8.3f} ms   x{t_tiny / t_plain:.2f} of plain (target <= 1.5)")
    print(f"step + GradMax statistics (M2)            {t_gm * 1e3:8.3f} ms   x{t_gm / t_plain:.2f} of plain (target <= 1.5)")
    print(f"step + reference-style statistics         {t_ref * 1e3:8.3f} ms   x{t_ref / t_plain:.2f} of plain; "
          f"ours is x{t_ref / t_tiny:.2f} faster")

    # proposals: statistics of a few batches, then one compute_optimal_updates (interleaved with
    # plain steps, which leave the collected statistics alone)
    r_inner = 1 if quick else 2
    timings, step_time = {}, {}
    # 8 batches: 1024 samples, the workbench's statistics_samples; 4 batches: 512 samples, fewer
    # than the 581 inputs that vary, so S2 is singular beyond MNIST's constant pixels
    for method, whitening, n_batches in (("tiny", "auto", 8), ("tiny", "auto", 4), ("tiny", "ridge", 8),
                                         ("tiny", "eigh", 8), ("gradmax", "auto", 8)):
        model.init_computation(method)
        for _ in range(n_batches):
            with_stats()
        model.store_activity = False
        t = compare({"plain": (None, plain),
                     "solve": (None, lambda m=method, w=whitening: model.compute_optimal_updates(
                         maximum_added_neurons=10, initialization_method=m, whitening=w))},
                    device, repeats, r_inner)
        timings[method, whitening, n_batches], step_time[method, whitening, n_batches] = t["solve"], t["plain"]
        if (method, whitening, n_batches) == ("tiny", "auto", 8):
            st = model.statistics(0)
            f32 = [s_.float() for s_ in (st.S, st.M, st.S2, st.M2, st.P)]
            L, info = torch.linalg.cholesky_ex(st.S2)
            singular = int(info) != 0 or bool((L.diagonal() ** 2 <= 1e-6).any())
            t = compare({"plain": (None, plain), "ref": (None, lambda: reference_style_tiny(*f32, 10))},
                        device, repeats, r_inner)
            t_ref_solve, t_ref_plain = t["ref"], t["plain"]
    model.reset_computation()
    for (method, whitening, n_batches), t_solve in timings.items():
        label = f"compute_optimal_updates {method}" + (f" whitening={whitening}" if method == "tiny" else "")
        label += f", {n_batches * batch_size} samples"
        note = " (S2 singular: pseudo-inverse solve)" if (method, whitening) == ("tiny", "auto") and singular else ""
        print(f"{label:54s}{t_solve * 1e3:8.2f} ms   = {t_solve / step_time[method, whitening, n_batches]:6.1f} "
              f"plain steps (target < 20){note}")
    print(f"{'reference-style TINY solve (float32 eigh)':54s}{t_ref_solve * 1e3:8.2f} ms   = "
          f"{t_ref_solve / t_ref_plain:6.1f} plain steps")
    committed_network_agreement(batches, device)
    bench_workbench_growth(batches, device, repeats, inner)


def committed_network_agreement(batches, device) -> None:
    """The network that whitening="auto" commits against the eigh route's: a float64 784-256-10
    SELU net, statistics of 1024 and 512 samples, 10 neurons at gamma = 1, outputs on the samples."""
    import copy
    import warnings

    for count in (8, 4):
        x = torch.cat([b[0] for b in batches[:count]]).double()
        y = torch.cat([b[1] for b in batches[:count]])
        torch.manual_seed(0)
        model = GrowingMLP(784, 10, 256, 1, activation=torch.nn.SELU(), dtype=torch.float64, device=device)
        model.init_computation("tiny")
        torch.nn.functional.cross_entropy(model(x), y).backward()
        model.update_computation(loss_reduction="mean")
        outputs = {}
        for whitening in ("auto", "eigh"):
            m = copy.deepcopy(model)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                m.compute_optimal_updates(maximum_added_neurons=10, whitening=whitening)
            m.select_update(0)
            m.set_scaling_factor(1.0)
            m.apply_change()
            with torch.no_grad():
                outputs[whitening] = m(x)
        diff = float((outputs["auto"] - outputs["eigh"]).abs().max())
        print(f"committed network, auto against eigh, {x.shape[0]} samples, float64: max |output difference| "
              f"{diff:.1e} (outputs up to {float(outputs['eigh'].abs().max()):.2f})")


def bench_workbench_growth(batches, device, repeats: int, inner: int) -> None:
    """Section 4: the workbench's growth algorithm, statistics only at a growth."""
    import copy

    from workbench.problem import DataSplit, Problem
    from workbench.registry import ALGORITHMS, load_for

    load_for({"algorithms": ["growth"]})
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    data = DataSplit(x, y, x[:0], y[:0], task="classification", n_outputs=10)
    torch.manual_seed(0)
    base = GrowingMLP(784, 10, 256, 1, activation=ReLUDerivativeOneAtZero(), store_activity=False, device=device)
    problem = Problem(data=data, build_model=lambda: copy.deepcopy(base), device=device, dtype=torch.float32,
                      batch_size=batches[0][0].shape[0])
    params = dict(method="tiny", grow_every=0, target_width=1024, neurons_per_growth=10, statistics_samples=1024,
                  optimizer="SGD", optimizer_args={"lr": 0.01, "momentum": 0.9})
    growth = ALGORITHMS["growth"](problem, copy.deepcopy(base), seed=0, **params)
    _, next_batch, plain = plain_step(copy.deepcopy(base), batches)

    t = compare({"plain": (None, plain), "growth": (None, lambda: growth.step(*next_batch()))}, device, repeats, inner)
    grows = []
    for _ in range(max(3, repeats)):
        algo = ALGORITHMS["growth"](problem, copy.deepcopy(base), seed=0, **params)
        sync(device)
        start = time.perf_counter()
        algo.grow()
        sync(device)
        grows.append(time.perf_counter() - start)
    t_grow = statistics.median(grows)
    print("\nworkbench growth algorithm (TINY, statistics only when a growth is due, 1024 samples):")
    print(f"training step between growths              {t['growth'] * 1e3:8.3f} ms   x{t['growth'] / t['plain']:.2f} "
          f"of plain (target <= 1.5)")
    print(f"one growth (statistics, solve, line search, commit) {t_grow * 1e3:8.1f} ms = "
          f"{t_grow / t['plain']:6.1f} plain steps")
    for every in (100, 1000):
        amortised = t["growth"] + t_grow / every
        print(f"amortised step at grow_every={every:<5d}          {amortised * 1e3:8.3f} ms   x{amortised / t['plain']:.2f} of plain")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="all", help="cpu, cuda or all (cuda when available)")
    args = parser.parse_args(argv)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    for dev in devices:
        if dev.startswith("cuda") and not torch.cuda.is_available():
            print("\n(no CUDA device: GPU figures skipped)")
            continue
        bench_device(torch.device(dev), args.batch_size, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
