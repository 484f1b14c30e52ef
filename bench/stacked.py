"""Stacked training (``stack = True``) against separate runs: 9 runs (3 learning rates x 3 seeds) of one
optimizer on MNIST 784-256-10, batch 64, float32, one thread per process.

Four ways to train the same 9 runs with the workbench, each timed from ``Experiment.run()`` to its
end (the whole process's work: batches, steps, evaluations, the record), plus a reference-style
loop (plain PyTorch, one run after another, no workbench: ``model(x)``, ``loss.backward()``,
``optimizer.step()`` on the same batches) in the same process:

* separate, ``workers=1``: today's default for one process;
* stacked, ``workers=1``: one stack of 9;
* separate, ``workers=2``: two worker processes;
* stacked, ``workers=2``: two stacks (``stack_size=5``: 5 + 4 runs), one per worker;
* stacked, ``workers=1, threads=2``: one stack of 9 whose matmuls use both cores.

Columns: seconds, milliseconds per run-step (seconds / (9 x steps)), throughput relative to
separate ``workers=1``, and relative to the reference loop. The memory a member of a stack adds
is printed below the table (weights, gradients and optimizer state from the stack's tensors;
activations of one step). Every stacked run's last test accuracy is compared with its separate
run's (they agree to rounding, float32).

With ``--members`` (the default on a GPU, ``--device cuda``, as bench/gpu_check.sh runs it): seed
studies of 8, 32 and 128 runs, one stack against the same runs packed as worker processes
(``workers=4``), in runs per minute, with the stack's peak GPU memory per member.

    .venv/bin/python bench/stacked.py [--optimizers adamw persistent_sgd] [--epochs 1] [--max-steps N]
    python bench/stacked.py --device cuda --optimizers adamw --max-steps 200      (8, 32, 128 runs)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbench.config import load_config  # noqa: E402
from workbench.runner import Experiment  # noqa: E402

# three learning rates of a stable regime each (PersistentSGD's default decay 0.99: effective steps
# 0.1, 0.3, 1.0; 1.0 is the reference's): float32 rounding differences grow where training is chaotic
LRS = {"adamw": (1e-3, 3e-3, 1e-2), "persistent_sgd": (1e-3, 3e-3, 1e-2), "sgd": (0.03, 0.1, 0.3),
       "adema": (10.0, 30.0, 100.0)}


def config(optimizer: str, lrs, seeds, out_dir: str, budget: list[str], threads: int = 1, **names):
    overrides = [f"seeds={list(seeds)}", f"runs=[dict(algorithm={optimizer!r}, lr=grid({list(lrs)}))]", f"out_dir={out_dir!r}", "progress=False", "checkpoint=False", *budget]
    overrides += [f"threads={threads}"] + [f"{k}={v!r}" for k, v in names.items()]
    return load_config(ROOT / "experiments" / "default.py", overrides)


def timed_run(cfg) -> tuple[float, dict]:
    experiment = Experiment.create(cfg)
    start = time.perf_counter()
    experiment.run()
    return time.perf_counter() - start, experiment.history


def reference_loop(cfg, history: dict) -> float:
    """The runs of ``history`` one after another, plain PyTorch: the seed's model, its optimizer, the
    seed's batch order; no evaluation, no record (so it is the floor of the separate runs' work)."""
    from workbench.problem import build_problem
    from workbench.registry import ALGORITHMS
    from workbench.run_state import initial_model

    problem = build_problem(cfg, torch.device(cfg.device if cfg.device != "auto" else "cpu"))
    data, n, bs = problem.data, problem.n_train, problem.batch_size
    steps = int(history["runs"][0]["metrics"]["step"][-1])
    start = time.perf_counter()
    for run in history["runs"]:
        model = initial_model(problem, run["seed"])
        optimizer = ALGORITHMS[run["algorithm"]].build_optimizer(model.parameters(), **{
            k: v for k, v in run["params"].items() if k != "schedule"})
        order = torch.Generator().manual_seed(run["seed"])
        perm, position = torch.randperm(n, generator=order), 0
        for _ in range(steps):
            if position >= n:
                perm, position = torch.randperm(n, generator=order), 0
            idx = perm[position: position + bs]
            position += bs
            optimizer.zero_grad(set_to_none=True)
            problem.loss(model(problem.inputs(data.x_train[idx])), data.y_train[idx]).backward()
            optimizer.step()
    return time.perf_counter() - start


def member_memory(cfg) -> tuple[float, float]:
    """MB a member adds to a stack: weights + gradients + optimizer state, and one step's activations."""
    from workbench.problem import build_problem
    from workbench.registry import ALGORITHMS

    problem = build_problem(cfg, torch.device("cpu"))
    model = problem.build_model()
    run = cfg["runs"][0]
    cls = ALGORITHMS[run["algorithm"]]
    params = cls.resolve_params({k: (v.candidates()[0] if hasattr(v, "candidates") else v)
                                 for k, v in run.items() if k != "algorithm"})
    optimizer = cls.build_optimizer(model.parameters(), **{k: v for k, v in params.items() if k != "schedule"})
    x, y = problem.data.x_train[:problem.batch_size], problem.data.y_train[:problem.batch_size]
    problem.loss(model(problem.inputs(x)), y).backward()
    optimizer.step()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                if isinstance(t, torch.Tensor))
    activations = sum(m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)) * \
        problem.batch_size * torch.finfo(problem.dtype).bits // 8 * 2
    return (2 * weights + state) / 2**20, activations / 2**20


def last_accuracies(history: dict) -> list[float]:
    return [run["metrics"]["test_acc"][-1] for run in history["runs"]]


def cpu_table(optimizer: str, budget: list[str], out: str) -> None:
    lrs, seeds = LRS[optimizer], (0, 1, 2)
    modes = [("separate", 1, {}), ("stacked", 1, dict(stack=True)), ("separate", 2, {}),
             ("stacked", 2, dict(stack=True, stack_size=5)), ("stacked", 1, dict(stack=True, threads=2))]
    results = []
    for name, workers, extra in modes:
        cfg = config(optimizer, lrs, seeds, out, budget, workers=workers, **extra)
        seconds, history = timed_run(cfg)
        name += " 2 threads" if extra.get("threads") == 2 else ""
        results.append((name, workers, seconds, history))
        print(f"  trained {name} workers={workers}: {seconds:.2f} s", file=sys.stderr, flush=True)
    reference = reference_loop(config(optimizer, lrs, seeds, out, budget), results[0][3])
    steps = int(results[0][3]["runs"][0]["metrics"]["step"][-1])
    runs = len(results[0][3]["runs"])
    base = results[0][2]
    print(f"\n{optimizer}: {runs} runs (lr {', '.join(map(str, lrs))} x seeds 0-2), {steps} steps each, "
          f"MNIST 784-256-10, batch 64, float32, one thread per process")
    print(f"{'mode':>18} {'workers':>7} {'seconds':>8} {'ms/run-step':>12} {'vs separate w=1':>16} {'vs reference':>13}")
    print(f"{'reference':>18} {1:>7} {reference:>8.2f} {1e3 * reference / (runs * steps):>12.3f} "
          f"{base / reference:>15.2f}x {1.0:>12.2f}x   (no evaluations, no record)")
    for name, workers, seconds, history in results:
        print(f"{name:>18} {workers:>7} {seconds:>8.2f} {1e3 * seconds / (runs * steps):>12.3f} "
              f"{base / seconds:>15.2f}x {reference / seconds:>12.2f}x")
    separate = last_accuracies(results[0][3])
    worst = max(max(abs(a - b) for a, b in zip(separate, last_accuracies(h))) for _, _, _, h in results)
    weights, activations = member_memory(config(optimizer, lrs, seeds, out, budget))
    print(f"largest difference of a run's last test accuracy from its separate workers=1 run: {worst:.3g} points "
          f"(float32: stacked and separate agree to rounding, which training can amplify)")
    print(f"memory per member of a stack: {weights:.2f} MB weights + gradients + optimizer state, "
          f"{activations:.2f} MB activations of one step")


def members_table(optimizer: str, members: list[int], budget: list[str], out: str, device: str) -> None:
    """Seed studies of ``members`` runs: one stack against ``workers=4`` processes packed on the device."""
    cuda = device == "cuda"
    where = torch.cuda.get_device_name() if cuda else "this CPU"
    print(f"\n{optimizer} on {where}: MNIST 784-256-10, batch 64, float32; a seed study of N runs")
    print(f"{'runs':>5} {'stacked s':>10} {'runs/min':>9} {'workers=4 s':>12} {'runs/min':>9} {'ratio':>6} {'MB/member':>10}")
    for count in members:
        lrs, seeds = (LRS[optimizer][1],), tuple(range(count))
        experiment = Experiment.create(config(optimizer, lrs, seeds, out, budget, workers=1, stack=True, device=device))
        if cuda:  # the dataset is on the GPU already: what the stack adds
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        start = time.perf_counter()
        experiment.run()
        stacked = time.perf_counter() - start
        per_member = f"{(torch.cuda.max_memory_allocated() - before) / count / 2**20:.2f}" if cuda else "-"
        separate, _ = timed_run(config(optimizer, lrs, seeds, out, budget, workers=4, device=device))
        print(f"{count:>5} {stacked:>10.2f} {60 * count / stacked:>9.1f} {separate:>12.2f} {60 * count / separate:>9.1f} "
              f"{separate / stacked:>5.1f}x {per_member:>10}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--optimizers", nargs="+", default=["adamw", "persistent_sgd"], choices=sorted(LRS))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None, help="cap every run at this many steps")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--data-dir", default=None, help="the folder holding MNIST/ (default: the config's data_dir)")
    parser.add_argument("--members", type=int, nargs="+", default=None,
                        help="seed studies of these many runs, stacked against workers=4 (default on cuda: 8 32 128)")
    args = parser.parse_args()
    budget = [f"epochs={args.epochs}"] + ([f"max_steps={args.max_steps}"] if args.max_steps else [])
    budget += [f"data_dir={str(Path(args.data_dir).resolve())!r}"] if args.data_dir else []
    with tempfile.TemporaryDirectory() as out:
        for optimizer in args.optimizers:
            members = args.members or ([8, 32, 128] if args.device == "cuda" else None)
            if members:
                members_table(optimizer, members, budget, out, args.device)
            else:
                cpu_table(optimizer, budget, out)


if __name__ == "__main__":
    main()
