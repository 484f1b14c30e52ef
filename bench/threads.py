"""torch threads per run, on an idle machine and with one other CPU-bound process.

    .venv/bin/python bench/threads.py            # growth_student_teacher and default (MNIST), 300 steps

Each case trains one run of the experiment in a fresh process (``threads=1`` and ``threads=N``,
N = the CPU count, which is what torch picks when ``threads`` is unset), first alone, then while a
busy-looping process shares the cores. Prints the seconds per run and the ratios.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "growth_student_teacher": ["max_steps=300", "seeds=[0]", "runs=[{'algorithm': 'growth', 'method': 'tiny', "
                               "'grow_every': 100, 'neurons_per_growth': 1, 'target_width': 10, "
                               "'statistics_samples': 1000, 'optimizer': 'SGD', 'optimizer_args': {'lr': 0.05}}]"],
    "default": ["max_steps=300", "seeds=[0]", "runs=[{'algorithm': 'adamw', 'lr': 0.01}]", "epochs=None"],
}

TIMED = """
import sys, time
sys.path.insert(0, {root!r})
from workbench.config import load_config
from workbench.runner import Experiment
config = load_config({config!r}, {overrides!r})
experiment = Experiment.create(config)
start = time.perf_counter()
assert experiment.run() == 0
print(time.perf_counter() - start)
"""


def timed(name: str, threads: int, out_dir: str) -> float:
    overrides = [*CASES[name], f"threads={threads}", "progress=False", f"out_dir={out_dir}"]
    code = TIMED.format(root=str(ROOT), config=str(ROOT / "experiments" / f"{name}.py"), overrides=overrides)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    import tempfile

    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as out_dir:
        for name in CASES:
            for contended in (False, True):
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if contended else None
                try:
                    time.sleep(0.5 if contended else 0)
                    one = min(timed(name, 1, out_dir) for _ in range(2))
                    many = min(timed(name, cores, out_dir) for _ in range(2))
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
                rows.append((name, "one busy process" if contended else "idle", one, many))
    print(f"{cores} CPU cores; seconds per run (best of 2)")
    print(f"| experiment | machine | threads=1 | threads={cores} (torch's default) | threads={cores} / threads=1 |")
    print("| --- | --- | --- | --- | --- |")
    for name, machine, one, many in rows:
        print(f"| {name} | {machine} | {one:.2f} | {many:.2f} | {many / one:.2f} |")


if __name__ == "__main__":
    main()
