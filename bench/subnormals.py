"""AdamW on MNIST with and without flushing subnormal floats: does an epoch get slower as it trains?

x86 CPUs compute with subnormal floats (below 1.2e-38 in float32) about 100x slower than with
normal ones. AdamW's second moments of the weights of MNIST's constant border pixels decay towards
zero and reach that range within a few epochs, so its epochs slow down; ``flush_denormal=True``
(the workbench's default) makes the CPU treat them as zero. Both runs below are the workbench's
own (the default experiment's 784-256-10 MLP at batch 64, ``runs=[adamw lr=0.01]``, one thread, in
this process, the same seed), one with ``flush_denormal=False`` and one with ``True``; the epoch
times come from the record (the ``time`` of each epoch's last row). The last column is the last
epoch's time over the first's (the target with the flag: at most 1.1). Every recorded value is
compared too: a run whose arithmetic never meets a subnormal is bit-identical either way.

    .venv/bin/python bench/subnormals.py [--epochs 5] [--optimizer adamw]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbench import record  # noqa: E402
from workbench.config import load_config  # noqa: E402
from workbench.runner import Experiment  # noqa: E402


def epoch_times(run: dict) -> list[float]:
    """Seconds of each epoch: differences of the ``time`` at the rows where ``epoch`` is whole."""
    epochs, times = np.asarray(run["metrics"]["epoch"]), np.asarray(run["metrics"]["time"])
    ends = [float(times[np.flatnonzero(epochs == e)[-1]]) for e in range(int(epochs.max()) + 1)]
    return list(np.diff(ends))


def train(flush: bool, epochs: int, optimizer: str, out_dir: str) -> dict:
    config = load_config(ROOT / "experiments" / "default.py", [
        f"epochs={epochs}", "seeds=[0]", f"runs=[{{'algorithm': '{optimizer}', 'lr': 0.01}}]", "workers=1",
        "threads=1", f"flush_denormal={flush}", f"out_dir={out_dir}", "progress=False"])
    experiment = Experiment.create(config)
    experiment.run()
    return record.load_history(experiment.run_dir)["runs"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--optimizer", default="adamw", help="a registered algorithm taking lr (adamw, sgd, ...)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        runs = {flush: train(flush, args.epochs, args.optimizer, out) for flush in (False, True)}
    print(f"{args.optimizer} lr=0.01 on MNIST 784-256-10, batch 64, one thread: seconds per epoch")
    print(f"{'flush_denormal':>15} " + " ".join(f"{'epoch ' + str(e + 1):>8}" for e in range(args.epochs))
          + f" {'last/first':>11} {'total s':>8}")
    for flush, run in runs.items():
        t = epoch_times(run)
        print(f"{str(flush):>15} " + " ".join(f"{x:>8.2f}" for x in t) + f" {t[-1] / t[0]:>11.2f} {sum(t):>8.2f}")
    off, on = runs[False]["metrics"], runs[True]["metrics"]
    for key in sorted(set(off) - {"time"}):
        a, b = np.asarray(off[key]), np.asarray(on[key])
        same = np.array_equal(a, b, equal_nan=True)
        print(f"  {key:<16} {'bit-identical' if same else f'max |difference| {np.nanmax(np.abs(a - b)):.3g}'}")


if __name__ == "__main__":
    main()
