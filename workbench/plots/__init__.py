"""Plots of run records. Matplotlib is imported only here (Agg backend unless a window is asked for).

:func:`plot_record` writes the common comparison graphs (training loss against steps and epochs,
test loss, test accuracy, validation loss and accuracy: one line per label of the final runs, mean ± std
over seeds), the sensitivity figures of a record with swept or tuned parameters
(:mod:`workbench.plots.sensitivity`) and, for every algorithm whose
family registered a plotter (``workbench.registry.PLOTTERS``; ``ANIMATIONS`` with ``--animate``),
that family's own figures. Only the families of the record's algorithms are loaded.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path

from workbench import record


def load_runs(run_dirs: list[Path], pool: bool = False,
              labels: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    """(histories, runs). With several folders each label gets its record's name as a prefix, or
    the folder's name where two records share a name, so records stay apart; ``pool``: labels
    are kept as they are, and the seeds of equal labels are pooled into one band. ``labels``:
    only the runs whose label (before the prefix) matches one of these shell-style patterns."""
    histories = [record.load_history(d) for d in run_dirs]
    names = [h.get("name", "") for h in histories]
    runs = []
    for history, run_dir, name in zip(histories, run_dirs, names):
        prefix = name if names.count(name) == 1 else Path(run_dir).name
        for run in history["runs"]:
            if labels and not any(fnmatch.fnmatchcase(run["label"], pattern) for pattern in labels):
                continue
            run = dict(run)
            if len(histories) > 1 and not pool:
                run["label"] = f"{prefix}: {run['label']}"
            runs.append(run)
    return histories, runs


def progress_note(histories: list[dict]) -> str | None:
    """"3/9 runs finished (record in progress)" for a record that has not ended, else None."""
    if all(h.get("finished") for h in histories):
        return None
    done = sum(r["status"] == "finished" for h in histories for r in h["runs"])
    planned = 0
    for history in histories:
        try:
            from workbench.config import Config
            from workbench.plan import run_count

            planned += max(run_count(Config.of(history["config"])), len(history["runs"]))
        except Exception:  # noqa: BLE001  a record of an older version, or of a family not installed
            planned += len(history["runs"])
    return f"{done}/{planned} runs finished (record in progress or interrupted)"


def plot_record(run_dirs: list[str | Path], animate: bool = False, pool: bool = False, out_dir: Path | None = None,
                labels: list[str] | None = None, metrics: list[str] | None = None) -> list[Path]:
    """Write every plot of the given run folders into ``out_dir`` (default: the first one); return
    the paths. ``labels``: only the matching runs (:func:`load_runs`); ``metrics``: only the
    comparison figures of these metrics (no sensitivity or family figures)."""
    import matplotlib

    matplotlib.use("Agg")
    from workbench.plots import common
    from workbench.registry import ANIMATIONS, PLOTTERS, load_for

    from workbench.plots.sensitivity import plot_sensitivity
    from workbench.summary import final_runs

    run_dirs = [Path(d) for d in run_dirs]
    out_dir = Path(out_dir) if out_dir is not None else run_dirs[0]
    histories, runs = load_runs(run_dirs, pool, labels)
    paths = []
    if len(histories) == 1 and not metrics:
        paths += plot_sensitivity(histories[0], out_dir, runs)
    runs = final_runs(runs) or runs  # the tuning trials are in the sensitivity figures
    paths += common.plot_comparison(runs, out_dir, metrics, progress_note(histories))
    if metrics:
        return paths
    load_for({"algorithms": sorted({run["algorithm"] for run in runs})}, plots=True)
    by_algorithm: dict[str, list[dict]] = {}
    for run in runs:
        by_algorithm.setdefault(run["algorithm"], []).append(run)
    for algorithm, group in by_algorithm.items():
        if algorithm in PLOTTERS:
            paths += PLOTTERS[algorithm](group, out_dir)
        if animate and algorithm in ANIMATIONS:
            paths += ANIMATIONS[algorithm](group, out_dir)
    return paths
