"""Plots of run records. Matplotlib is imported only here (Agg backend unless a window is asked for).

:func:`plot_record` writes the common comparison graphs (training loss against steps and epochs,
test loss, test accuracy: one line per label, mean ± std over seeds) and, for every algorithm with a
registered plotter (``workbench.registry.PLOTTERS``), that family's own figures.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from workbench import record

# Family plot modules; importing one registers its PLOTTERS entries.
FAMILY_MODULES = ("newton_summary", "growth", "shallow", "wasserstein")
# Animations for --animate: algorithm -> (module, function name) of fn(runs, out_dir) -> [paths].
ANIMATIONS = {
    "relu_gd": ("shallow", "animate_shallow"),
    "relu_convex": ("shallow", "animate_shallow"),
    "relu_prox": ("wasserstein", "animate_prox"),
    "relu_jko": ("wasserstein", "animate_jko"),
}


def load_family_plotters() -> None:
    for name in FAMILY_MODULES:
        importlib.import_module(f"workbench.plots.{name}")


def load_runs(run_dirs: list[Path]) -> tuple[list[dict], list[dict]]:
    """(histories, runs); with several folders, labels get the record name as a prefix."""
    histories = [record.load_history(d) for d in run_dirs]
    runs = []
    for history in histories:
        for run in history["runs"]:
            run = dict(run)
            if len(histories) > 1:
                run["label"] = f"{history['name']}: {run['label']}"
            runs.append(run)
    return histories, runs


def plot_record(run_dirs: list[str | Path], animate: bool = False) -> list[Path]:
    """Write every plot of the given run folders into the first one; return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    from workbench.plots import common
    from workbench.registry import PLOTTERS

    run_dirs = [Path(d) for d in run_dirs]
    out_dir = run_dirs[0]
    _, runs = load_runs(run_dirs)
    paths = common.plot_comparison(runs, out_dir)
    load_family_plotters()
    by_algorithm: dict[str, list[dict]] = {}
    for run in runs:
        by_algorithm.setdefault(run["algorithm"], []).append(run)
    for algorithm, group in by_algorithm.items():
        if algorithm in PLOTTERS:
            paths += PLOTTERS[algorithm](group, out_dir)
        if animate and algorithm in ANIMATIONS:
            module, function = ANIMATIONS[algorithm]
            paths += getattr(importlib.import_module(f"workbench.plots.{module}"), function)(group, out_dir)
    return paths
