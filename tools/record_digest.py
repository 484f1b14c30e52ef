"""Every shipped experiment, shortened, reduced to what its record computed: for a before/after check
of a change that must not change any number (a refactoring).

Each ``experiments/*.py`` runs in this process with ``workers=1``, its first seed, and a short
budget (``max_steps`` below, ``epochs=None``; an experiment whose own budget is smaller keeps it),
no plots. What is kept per run: label, algorithm, parameters, seed, status, error's last line,
every metric column except the wall-clock ones (``time``, ``*_time``, ``*_time_*``) and every
snapshot, as plain numpy arrays. ``--out FILE``
writes them (pickle); ``--compare A B`` says, per experiment and run, whether two such files are
equal bit for bit, and exits 1 if any differs.

    .venv/bin/python tools/record_digest.py --out before.pkl        # on the old commit
    .venv/bin/python tools/record_digest.py --out after.pkl         # on the new one
    .venv/bin/python tools/record_digest.py --compare before.pkl after.pkl
"""
from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHORT = ["workers=1", "progress=False", "save_every=3600"]
MAX_STEPS = 30


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        try:
            return np.asarray(value)
        except ValueError:  # ragged: snapshots of growing widths
            return [_plain(v) for v in value]
    return value


def digest(name: str, out_dir: str) -> list[dict]:
    from workbench import record
    from workbench.config import load_config
    from workbench.runner import Experiment

    path = ROOT / "experiments" / f"{name}.py"
    config = load_config(path, SHORT + [f"out_dir={out_dir}"])
    budget = [f"seeds=[{config['seeds'][0]}]"]
    if config["max_steps"] is None or config["max_steps"] > MAX_STEPS:
        budget.append(f"max_steps={MAX_STEPS}")
    config = load_config(path, SHORT + budget + [f"out_dir={out_dir}"])
    experiment = Experiment.create(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        experiment.run()
    history = record.load_history(experiment.run_dir)
    return [{"label": r["label"], "algorithm": r["algorithm"], "params": repr(r["params"]), "seed": r["seed"],
             "status": r["status"], "error": (r["error"] or "").strip().splitlines()[-1:],
             "metrics": {k: np.asarray(v) for k, v in r["metrics"].items() if not _a_clock(k)},
             "snapshots": _plain(r["snapshots"])} for r in history["runs"]]


def _a_clock(metric: str) -> bool:
    """Wall-clock columns (``time``, ``solve_time``, ``refresh_time_total``): never equal twice."""
    return metric == "time" or metric.endswith("_time") or "_time_" in metric


def _equal(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype == b.dtype and (
            np.array_equal(a, b, equal_nan=a.dtype.kind in "fc") if a.dtype.kind != "O" else
            all(_equal(x, y) for x, y in zip(a.ravel(), b.ravel())))
    return a == b


def compare(before: dict, after: dict) -> int:
    differ = 0
    for name in sorted(set(before) | set(after)):
        if name not in before or name not in after:
            print(f"{name}: only in {'after' if name in after else 'before'}")
            differ += 1
            continue
        for a, b in zip(before[name], after[name]):
            same = _equal(a, b)
            differ += not same
            print(f"{name:<28} {a['label']:<34} {'bit-identical' if same else 'DIFFERS'}")
        if len(before[name]) != len(after[name]):
            print(f"{name}: {len(before[name])} runs before, {len(after[name])} after")
            differ += 1
    print(f"{differ} difference(s)")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="write the digests of every experiment to this file")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--only", nargs="*", help="experiment names (default: every experiments/*.py)")
    args = parser.parse_args()
    if args.compare:
        before, after = (pickle.loads(Path(p).read_bytes()) for p in args.compare)
        return compare(before, after)
    names = args.only or sorted(p.stem for p in (ROOT / "experiments").glob("*.py"))
    digests = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            digests[name] = digest(name, tmp)
            print(f"{name}: {len(digests[name])} runs, "
                  f"{sum(len(r['metrics'].get('step', [])) for r in digests[name])} rows", flush=True)
    if args.out:
        Path(args.out).write_bytes(pickle.dumps(digests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
