"""Many runs at once: the default experiment shortened to 1 epoch, with workers=1, workers=2 and Ray.

The 9 runs of ``experiments/default.py`` (3 optimizers x 3 seeds, MNIST 784-256-10, batch 64), one
epoch each, ``threads=1`` per run, trained three ways in this process: ``workers=1`` (one after
another, the reference), ``workers=2`` (two worker processes) and ``executor="ray"`` (a local Ray
instance with as many CPUs as workers). Wall time is measured around ``Experiment.create`` + ``run``
(the worker start-up and the dataset's trip to each worker included); Ray's one-time start
(``ray.init``) is timed separately. Every way must give the same numbers; this is checked too.

    Ray's one-time start = ray.init (T_init) + the experiment's start (T_start: from run() to the
    first run's first message: Ray's worker processes importing torch, the dataset's trip through
    the object store, the mailbox actor); then
    Ray's overhead per run = (T_ray - T_start - T_1 / workers) * workers / runs

    .venv/bin/python bench/parallel.py [--workers 2] [--epochs 1] [--quick] [--no-ray]
    --quick: a fifth of an epoch (max_steps=188), for a smoke test
    --gpu-pack: instead, 8 AdamW runs (8 seeds, one epoch) on one GPU with workers = 1, 4 and 8,
                printing the throughput in runs per minute
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbench import record  # noqa: E402
from workbench.config import load_config  # noqa: E402
from workbench.runner import Experiment  # noqa: E402


def timed_run(overrides: list[str], out_dir: str) -> tuple[float, dict, float]:
    """Wall time of create + run, the record, and the seconds from run() to the first message."""
    config = load_config(ROOT / "experiments" / "default.py", overrides + [f"out_dir={out_dir}", "progress=False"])
    start = time.perf_counter()
    experiment = Experiment.create(config)
    first = []
    apply = experiment.apply

    def timed_apply(messages):
        if not first:
            first.append(time.perf_counter())
        return apply(messages)
    experiment.apply = timed_apply
    begin = time.perf_counter()
    code = experiment.run()
    elapsed = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"{overrides}: exit code {code}")
    return elapsed, record.load_history(experiment.run_dir), first[0] - begin


def same_numbers(a: dict, b: dict) -> bool:
    for x, y in zip(a["runs"], b["runs"], strict=True):
        for key in x["metrics"]:
            if key != "time" and not np.array_equal(x["metrics"][key], y["metrics"][key], equal_nan=True):
                return False
    return True


def gpu_pack(base: list[str]) -> int:
    """Runs per minute with 1, 4 and 8 runs packed on one GPU (each run in its own worker)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        reference = None
        for workers in (1, 4, 8):
            overrides = base + ["device=cuda", "seeds=[0,1,2,3,4,5,6,7]", f"workers={workers}",
                                "runs=[dict(algorithm='adamw', lr=1e-3)]"]
            t, history, _ = timed_run(overrides, tmp)
            reference = reference or history
            rows.append((workers, t, 60.0 * len(history["runs"]) / t, same_numbers(history, reference)))
    print("\n8 AdamW runs (8 seeds) of the default experiment on one GPU, one worker process per run slot\n")
    print(f"{'workers':>8} {'wall s':>8} {'runs / minute':>14} {'speed-up':>9} {'same numbers':>13}")
    for workers, t, rate, same in rows:
        print(f"{workers:>8} {t:>8.1f} {rate:>14.1f} {rows[0][1] / t:>9.2f} {str(same):>13}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--gpu-pack", action="store_true", help="runs per minute with 1, 4, 8 runs on one GPU")
    args = parser.parse_args(argv)
    base = [f"epochs={args.epochs}", "threads=1", "log_every=50"]
    if args.quick:
        base.append("max_steps=188")
    if args.gpu_pack:
        return gpu_pack(base)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t1, h1, _ = timed_run(base, tmp)
        rows.append(("workers=1 (this process)", t1, None, True))
        tn, hn, _ = timed_run(base + [f"workers={args.workers}"], tmp)
        rows.append((f"workers={args.workers} (worker processes)", tn, None, same_numbers(hn, h1)))
        ray_line = None
        if not args.no_ray:
            try:
                import ray
            except ImportError:
                ray_line = "ray: not installed (./setup.sh --with-ray)"
            else:
                start = time.perf_counter()
                ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                         configure_logging=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
                t_init = time.perf_counter() - start
                tr, hr, t_start = timed_run(base + ["executor=ray"], tmp)
                ray.shutdown()
                rows.append(("executor=ray (local)", tr, t_init, same_numbers(hr, h1)))
                runs = len(h1["runs"])
                per_run = (tr - t_start - t1 / args.workers) * args.workers / runs
                ray_line = (f"Ray: one-time start: ray.init {t_init:.1f} s + the experiment's start {t_start:.1f} s; "
                            f"overhead per run (T_ray - T_start - T_1/{args.workers}) * {args.workers} / {runs} "
                            f"= {per_run:.2f} s")
    runs = len(h1["runs"])
    steps = int(h1["runs"][0]["metrics"]["step"][-1])
    print(f"\ndefault experiment: {runs} runs x {steps} steps (MNIST 784-256-10, batch 64), threads=1 per run\n")
    head = f"{'executor':<32} {'wall s':>8} {'ray.init s':>10} {'speed-up vs workers=1':>22} {'same numbers':>13}"
    print(head)
    print("-" * len(head))
    for name, t, t_init, same in rows:
        init = f"{t_init:.1f}" if t_init is not None else "-"
        print(f"{name:<32} {t:>8.1f} {init:>10} {t1 / t:>22.2f} {str(same):>13}")
    if ray_line:
        print("\n" + ray_line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
