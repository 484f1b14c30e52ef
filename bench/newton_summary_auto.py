"""What ``backend="auto"`` buys NewtonSummary: compile time cold and warm, refresh times, run totals.

    .venv/bin/python bench/newton_summary_auto.py [--threads 2] [--sizes 784,128,64,10]

Runs the same child twice with one fresh inductor cache folder: the first compiles cold (trace +
AOTInductor compile, package stored), the second is a later run of the same shapes (load of the
package named by its hint, without a trace, and one reverse refresh that checks it). Each child
times the first ``backend="compiled"`` refresh, then the median of 30 compiled and 30 reverse
refreshes, on a tanh MLP (canonical partition, batch 100, float32), and
checks that both backends give the same numbers. Then it prints, for runs of 2,000 and 20,000
steps at period_hg 1 and 10, the total refresh time of ``"reverse"`` and of what ``"auto"``
picks (first-refresh cost included), with the package cached (warm) and not (cold), and the ratios.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, {root!r})
import torch
from torch import nn
torch.set_num_threads({threads})
from algorithms.optimizers import compute_Hg, partition
sizes = {sizes!r}
layers = []
for a, b in zip(sizes[:-1], sizes[1:]):
    layers += [nn.Linear(a, b), nn.Tanh()]
torch.manual_seed(0)
model = nn.Sequential(*layers[:-1])
pg = partition.canonical(model)[0]
x, y = torch.randn(100, sizes[0]), torch.randint(0, sizes[-1], (100,))
u = [torch.randn_like(p) for g in pg for p in g["params"]]
loss = lambda xb, yb: nn.functional.cross_entropy(model(xb), yb)
def refresh(backend):
    return compute_Hg(pg, loss, x, y, u, model=model, backend=backend)
start = time.perf_counter(); Hc = refresh("compiled"); first = time.perf_counter() - start
Hr = refresh("reverse")
same = max(float((a - b).abs().max() / (b.abs().max() + 1e-30)) for a, b in zip(Hc, Hr))
times = {{"compiled": [], "reverse": []}}
for _ in range(30):
    for backend in times:
        t = time.perf_counter(); refresh(backend); times[backend].append(time.perf_counter() - t)
print(json.dumps({{"first": first, "compiled": statistics.median(times["compiled"]),
                  "reverse": statistics.median(times["reverse"]), "max_rel_diff": same}}))
"""


def child(cache: str, threads: int, sizes: list[int]) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), threads=threads, sizes=sizes)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="784,128,64,10")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    sys.path.insert(0, str(ROOT))
    from algorithms.optimizers.newton_summary.summaries import AUTO_COMPILE_REFRESHES, AUTO_CACHED_REFRESHES

    with tempfile.TemporaryDirectory() as cache:
        cold = child(cache, args.threads, sizes)
        warm = child(cache, args.threads, sizes)
    compile_cold = cold["first"] - cold["compiled"]
    compile_warm = warm["first"] - warm["compiled"]
    rev, comp = warm["reverse"], warm["compiled"]
    print(f"MLP {'-'.join(map(str, sizes))}, batch 100, float32, {args.threads} threads")
    print(f"| measure | value |\n| --- | --- |")
    print(f"| first compiled refresh, no package yet (trace + compile) | {cold['first']:.1f} s |")
    print(f"| first compiled refresh, package cached (load + check against one reverse refresh: a later run) | {warm['first']:.1f} s |")
    print(f"| refresh, reverse loop | {1e3 * rev:.2f} ms |")
    print(f"| refresh, compiled | {1e3 * comp:.2f} ms ({rev / comp:.2f}x faster) |")
    print(f"| max relative difference compiled vs reverse | {max(cold['max_rel_diff'], warm['max_rel_diff']):.1e} |")
    trace = compile_warm  # a later run traces the graph and loads the package
    print(f"\nauto: 'compiled' from {AUTO_CACHED_REFRESHES} planned refreshes with a cached package (else "
          f"reverse), compiling a missing one from {AUTO_COMPILE_REFRESHES}")
    print("| run | refreshes | reverse total | auto, package cached | auto, no package | ratio cached / none |")
    print("| --- | --- | --- | --- | --- | --- |")
    for steps in (2000, 20000):
        for period in (1, 10):
            n = math.ceil(steps / period)
            total_rev = n * rev
            if n < AUTO_CACHED_REFRESHES:
                warm_total = cold_total = total_rev
            elif n < AUTO_COMPILE_REFRESHES:
                warm_total, cold_total = trace + n * comp, n * rev  # no package: no trace, reverse
            else:
                warm_total, cold_total = trace + n * comp, compile_cold + n * comp
            print(f"| {steps} steps, period_hg={period} | {n} | {total_rev:.1f} s | {warm_total:.1f} s | "
                  f"{cold_total:.1f} s | {warm_total / total_rev:.2f} / {cold_total / total_rev:.2f} |")


if __name__ == "__main__":
    main()
