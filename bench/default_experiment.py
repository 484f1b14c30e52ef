"""The default experiment as a new user runs it: whole processes, wall-clock, this machine's cores.

1. ``--section default``: ``python main.py default`` (3 optimizers x 3 seeds, 10 MNIST epochs)
   with the defaults of before (``workers=1 flush_denormal=False``: one run after another, subnormal
   floats computed) against today's defaults (``workers="auto"``, ``flush_denormal=True``), each a
   whole ``main.py`` process with its plots. The records are compared value by value (every
   column but ``time``): a run whose arithmetic never meets a subnormal is bit-identical, the
   others differ where flushed values were used. The target: today's at most 0.45 of before's.
2. ``--section one-run``: one AdamW run, one epoch (``main.py default epochs=1 seeds=[0]
   runs=[adamw lr=0.01]``), whole process, against a reference-style script in the GradRetentionNet
   reference's manner (torchvision ``MNIST`` + ``ToTensor`` / ``Normalize`` + ``DataLoader(batch_size=64,
   shuffle=True)``, the same 784-256-10 MLP and AdamW, a test evaluation at the end). Both pay
   ``import torch`` (and torch's lazy ``torch._dynamo`` import at the first optimizer); the ratio is
   ours over the reference's (target at most 0.5). ``main.py`` leaves out of the exit path what
   nothing waits for: the plots (a forked child draws them) and the interpreter's teardown.

3. ``--section startup``: what a worker process costs to start, by start method. Two runs of one
   step each (the default experiment, ``max_steps=1``), ``Experiment.create`` + ``run`` in this
   process, with ``workers=1`` (no worker) and with two workers started by *fork* (Linux's for CPU
   runs) and by *spawn* (Windows' and macOS's only method: a fresh interpreter that imports torch and
   loads the dataset); the difference to ``workers=1`` is the start-up of the two workers, which
   start side by side.

Runs are interleaved (before, today, before, ...) so that drifts of this machine's speed hit both;
the table gives every repeat and the median.

    .venv/bin/python bench/default_experiment.py [--section default|one-run|startup|all] [--epochs 10] [--repeat 1]
"""
from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

REFERENCE = r'''
import sys, torch
from torchvision import datasets, transforms
transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
train = datasets.MNIST(sys.argv[1], train=True, download=False, transform=transform)
test = datasets.MNIST(sys.argv[1], train=False, download=False, transform=transform)
loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
criterion = torch.nn.CrossEntropyLoss()
for step, (x, y) in enumerate(loader):
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    if step % 100 == 0:
        print(f"step {step} loss {loss.item():.4f}")
correct = 0
with torch.no_grad():
    for x, y in torch.utils.data.DataLoader(test, batch_size=1000):
        correct += (model(x).argmax(1) == y).sum().item()
print(f"test accuracy {correct / len(test):.4f}")
'''


def timed(command: list[str], cwd: Path = ROOT) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONUTF8": "1"})
    return time.perf_counter() - start


def latest_record(out_dir: Path) -> dict:
    (run_dir,) = [p for p in out_dir.iterdir() if p.is_dir()]
    with open(run_dir / "history.pkl", "rb") as f:
        return pickle.load(f)


def compare(before: dict, today: dict) -> list[str]:
    lines = []
    for a, b in zip(before["runs"], today["runs"], strict=True):
        worst, same = 0.0, True
        for key in a["metrics"]:
            if key == "time":
                continue
            x, y = np.asarray(a["metrics"][key], float), np.asarray(b["metrics"][key], float)
            if not np.array_equal(x, y, equal_nan=True):
                same = False
                worst = max(worst, float(np.nanmax(np.abs(x - y))))
        lines.append(f"  {a['label']} seed={a['seed']}: " + ("bit-identical" if same else
                                                              f"max |difference| {worst:.3g} (flushed subnormals)"))
    return lines


def section_default(epochs: int, repeat: int) -> None:
    ways = {"before (workers=1 flush_denormal=False)": ["workers=1", "flush_denormal=False"],
            "today's defaults": []}
    times = {way: [] for way in ways}
    records = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeat):
            for way, overrides in ways.items():
                out = Path(tmp) / f"{rep}_{len(records)}"
                times[way].append(timed([PYTHON, "main.py", "default", f"epochs={epochs}", "progress=False",
                                         f"out_dir={out}", *overrides]))
                records[way] = latest_record(out)
    print(f"\n== the default experiment, {epochs} epochs, 3 optimizers x 3 seeds, whole process "
          f"({os.cpu_count()} CPU cores) ==")
    for way, t in times.items():
        print(f"  {way:<42} {' '.join(f'{x:7.1f}' for x in t)} s   median {statistics.median(t):7.1f} s")
    before, today = (statistics.median(t) for t in times.values())
    print(f"  today / before: {today / before:.2f}   (target <= 0.45)")
    env = records["today's defaults"]["environment"]["execution"]
    print(f"  today's execution: {env}")
    print("  records, every column but time:")
    print("\n".join(compare(*records.values())))


def section_one_run(repeat: int) -> None:
    data = ROOT / "data"
    if not (data / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        sys.exit(f"the reference needs the uncompressed MNIST files in {data}/MNIST/raw (run setup)")
    times = {"workbench": [], "reference": []}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "reference.py"
        script.write_text(REFERENCE, encoding="utf-8")
        for rep in range(repeat):
            times["workbench"].append(timed([
                PYTHON, "main.py", "default", "epochs=1", "seeds=[0]", "runs=[{'algorithm': 'adamw', 'lr': 0.01}]",
                "progress=False", f"out_dir={Path(tmp) / str(rep)}"]))
            times["reference"].append(timed([PYTHON, str(script), str(data)]))
    print("\n== one AdamW run, one MNIST epoch, whole process (import torch to exit) ==")
    for way, t in times.items():
        print(f"  {way:<42} {' '.join(f'{x:7.2f}' for x in t)} s   median {statistics.median(t):7.2f} s")
    ours, reference = (statistics.median(t) for t in times.values())
    print(f"  workbench / reference: {ours / reference:.2f}   (target <= 0.5)")


def section_startup(repeat: int) -> None:
    sys.path.insert(0, str(ROOT))
    from workbench import executors
    from workbench.config import load_config
    from workbench.runner import Experiment

    chosen = {"method": None}
    original = executors.start_method
    executors.start_method = lambda config, device: chosen["method"] or original(config, device)
    ways = {"workers=1 (this process)": (1, None), "workers=2, fork": (2, "fork"), "workers=2, spawn": (2, "spawn")}
    times = {way: [] for way in ways}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            for way, (workers, method) in ways.items():
                chosen["method"] = method
                config = load_config(ROOT / "experiments" / "default.py", [
                    "max_steps=1", "seeds=[0]", "runs=[{'algorithm': 'sgd', 'lr': 0.1}, {'algorithm': 'adamw'}]",
                    f"workers={workers}", "progress=False", f"out_dir={tmp}"])
                start = time.perf_counter()
                Experiment.create(config).run()
                times[way].append(time.perf_counter() - start)
    executors.start_method = original
    print("\n== starting worker processes: two one-step runs, create + run ==")
    base = statistics.median(times["workers=1 (this process)"])
    for way, t in times.items():
        extra = statistics.median(t) - base
        print(f"  {way:<42} {' '.join(f'{x:6.2f}' for x in t)} s   median {statistics.median(t):6.2f} s"
              + (f"   workers' start-up {extra:5.2f} s" if way != "workers=1 (this process)" else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--section", default="all", choices=["default", "one-run", "startup", "all"])
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the default experiment (section 1)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved repeats of each way")
    args = parser.parse_args()
    if args.section in ("one-run", "all"):
        section_one_run(max(args.repeat, 3))
    if args.section in ("startup", "all"):
        section_startup(max(args.repeat, 3))
    if args.section in ("default", "all"):
        section_default(args.epochs, args.repeat)


if __name__ == "__main__":
    main()
