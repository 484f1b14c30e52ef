"""Time one NewtonSummary refresh of (H-bar, g-bar, order3): the torch.func path (vmap over the S
masked directions), the batched-autograd path and the compiled (traced + inductor) reverse loop against the reverse-over-reverse loop of the
reference implementation, on the same MLP, batch and direction, measured in this process.

    .venv/bin/python bench/newton_summary.py [--quick] [--threads N]

For each model (tanh MLP, canonical partition, batch 100, float32) and device (CPU, and CUDA when
available) it prints the median milliseconds per refresh of each backend, the ratio
reverse / backend (> 1: faster than the reference loop), the cost of one AdamW training step
(forward + backward + fused AdamW) and of one NewtonSummary step without refresh, and the
amortised NewtonSummary cost per step at period_hg = 10 relative to one AdamW step:
(step without refresh + refresh / 10) / AdamW step. It also checks that the backends agree.
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time
import warnings

import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from algorithms.optimizers import NewtonSummary, compute_Hg, partition  # noqa: E402

MODELS = {"784-128-64-10": (784, 128, 64, 10), "784-1024-200-100-10 (paper)": (784, 1024, 200, 100, 10)}
PERIOD_HG = 10


def build(sizes, device):
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(fns: dict, device, repeats: int, inner: dict | None = None) -> dict:
    """Interleaved repeats (the machine may be shared), median per function, after a warm-up;
    ``inner[k]`` calls of function k per timed block (cheap functions), the block mean counted."""
    inner = inner or {}
    for k, fn in fns.items():
        for _ in range(max(1, inner.get(k, 1) // 4)):
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            n = inner.get(k, 1)
            sync(device)
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            sync(device)
            times[k].append(1e3 * (time.perf_counter() - t0) / n)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_model(name, sizes, device, repeats, backends):
    torch.manual_seed(0)
    model = build(sizes, device)
    x = torch.randn(100, sizes[0], device=device)
    y = torch.randint(0, sizes[-1], (100,), device=device)
    loss_fn = nn.functional.cross_entropy
    full_loss = lambda xb, yb: loss_fn(model(xb), yb)
    groups, _ = partition.canonical(model)
    u = [torch.randn_like(p) for g in groups for p in g["params"]]
    refresh = {b: (lambda b=b: compute_Hg(groups, full_loss, x, y, u, model=model, backend=b)) for b in backends}
    ref = compute_Hg(groups, full_loss, x, y, u, backend="reverse")
    agree = {}
    for b in backends:
        t0 = time.perf_counter()
        out = refresh[b]()
        if b == "compiled":
            print(f"  (compiled backend: first call, trace + inductor compile, {time.perf_counter() - t0:.1f} s)")
        agree[b] = max(float(((a - r).abs().max() / r.abs().max().clamp_min(1e-30))) for a, r in zip(out, ref))

    adam_model = build(sizes, device)
    adam = torch.optim.AdamW(adam_model.parameters(), lr=1e-3, fused=True)

    def adamw_step():
        adam.zero_grad(set_to_none=True)
        loss_fn(adam_model(x), y).backward()
        adam.step()

    ns_model = build(sizes, device)
    ns = NewtonSummary(partition.canonical(ns_model)[0], lambda xb, yb: loss_fn(ns_model(xb), yb), [(x, y)],
                       damping=0.1, dct_nesterov={"use": True, "damping_int": 1.0}, period_hg=10 ** 9,
                       momentum=0.9, momentum_damp=0.9)

    def ns_step_no_refresh():  # k > 0 and k % period_hg != 0 after the first step
        ns.zero_grad(set_to_none=True)
        loss_fn(ns_model(x), y).backward()
        ns.step()

    ns_step_no_refresh()  # first step refreshes once
    times = median_ms({**{f"refresh {b}": refresh[b] for b in backends}, "adamw step": adamw_step,
                       "ns step (no refresh)": ns_step_no_refresh}, device, repeats,
                      inner={"adamw step": 20, "ns step (no refresh)": 20})
    S = len(groups)
    print(f"\n{name}  S={S}  device={device.type}  threads={torch.get_num_threads()}  batch=100  float32")
    rev = times["refresh reverse"]
    for b in backends:
        t = times[f"refresh {b}"]
        print(f"  refresh {b:<8} {t:9.2f} ms   reverse/{b} = {rev / t:5.2f}x   max rel. diff vs reverse {agree[b]:.1e}")
    a, n0 = times["adamw step"], times["ns step (no refresh)"]
    print(f"  AdamW step        {a:9.2f} ms   NewtonSummary step without refresh {n0:.2f} ms ({n0 / a:.2f}x AdamW)")
    best = min(backends, key=lambda b: times[f"refresh {b}"])
    for b in sorted({best, "reverse"}):
        t = times[f"refresh {b}"]
        print(f"  period_hg={PERIOD_HG}, {b}: refresh/{PERIOD_HG} = {t / PERIOD_HG / a:.2f}x AdamW step; "
              f"NewtonSummary step amortised = {(n0 + t / PERIOD_HG) / a:.2f}x AdamW step")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small MLP only, few repeats")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    models = dict(list(MODELS.items())[:1]) if args.quick else MODELS
    for device in devices:
        for name, sizes in models.items():
            big = sizes[1] > 512 and device.type == "cpu"
            backends = ("func", "compiled", "reverse") if big else ("func", "batched", "compiled", "reverse")
            bench_model(name, sizes, device, 3 if args.quick else (5 if big else 15), backends)


if __name__ == "__main__":
    main()
