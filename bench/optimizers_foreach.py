"""Time one optimizer step of PersistentSGD / AdEMA: multi-tensor (foreach) vs for-loop kernel, and
torch.optim.SGD(momentum) as the reference-style implementation, measured in this process.

    .venv/bin/python bench/optimizers_foreach.py [--quick]

Prints microseconds per step (best of several repeats) and the ratio for-loop / foreach
(> 1 means the multi-tensor kernel is faster), then torch AdamW's loop / foreach / fused kernels.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from algorithms.optimizers import AdEMA, PersistentSGD  # noqa: E402

CASES = {
    "mlp 784-256-10 (4 tensors)": [(256, 784), (256,), (10, 256), (10,)],
    "cnn-like (10 tensors)": [(24, 1, 5, 5), (24,), (32, 24, 3, 3), (32,), (256, 800), (256,), (10, 256), (10,),
                               (256,), (256,)],
    "100 tensors of 32x32": [(32, 32)] * 100,
}


def time_step(make_opt, shapes, device, n, repeats) -> float:
    params = [torch.nn.Parameter(torch.randn(*s, device=device)) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = make_opt(params)
    for _ in range(10):
        opt.step()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    n, repeats = (200, 3) if args.quick else (1000, 7)
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} (us per step, best of {repeats})")
    makers = {
        "PersistentSGD": lambda fe: (lambda ps: PersistentSGD(ps, lr=1e-3, decay=0.9, foreach=fe)),
        "AdEMA": lambda fe: (lambda ps: AdEMA(ps, lr=1e-3, beta=0.9, decay=0.9, foreach=fe)),
        "torch SGD(momentum)": lambda fe: (lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, foreach=fe)),
    }
    for case, shapes in CASES.items():
        for name, make in makers.items():
            loop = time_step(make(False), shapes, device, n, repeats)
            multi = time_step(make(True), shapes, device, n, repeats)
            print(f"{case:28s} {name:20s} loop {loop:8.1f}  foreach {multi:8.1f}  loop/foreach {loop / multi:5.2f}x")
    # torch's AdamW kernels (the workbench's ``adamw`` picks fused on CUDA and CPU)
    shapes = CASES["mlp 784-256-10 (4 tensors)"]
    t = {kind: time_step(lambda ps, kw=kw: torch.optim.AdamW(ps, lr=1e-3, **kw), shapes, device, n, repeats)
         for kind, kw in (("loop", dict(foreach=False)), ("foreach", dict(foreach=True)), ("fused", dict(fused=True)))}
    print(f"{'mlp 784-256-10 (4 tensors)':28s} {'torch AdamW':20s} loop {t['loop']:8.1f}  foreach {t['foreach']:8.1f}"
          f"  fused {t['fused']:8.1f}  loop/fused {t['loop'] / t['fused']:5.2f}x")


if __name__ == "__main__":
    main()
