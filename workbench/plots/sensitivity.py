"""Sensitivity figures: a metric against each swept or tuned parameter, one line per runs entry.

``sensitivity_<param>.png`` for every parameter that is a search space in some ``runs`` entry:

* a tuned entry: its trials' tuning metric (validation, at the evaluation ``tune["at"]`` names)
  against the parameter, the mean over the tuning seeds with a bar of one standard deviation
  (ddof=1) when there are several, the chosen point marked with a star;
* a grid entry without tuning: its final runs' metric at the end of training (validation when
  there is a validation split, else test) against the parameter, mean and standard deviation over
  seeds; with a validation split the best value on it is marked (never a choice on the test set).

A log-uniform space, or a grid of positive numbers spanning more than a decade, is drawn on a log
axis; a space of other values (strings) on a categorical one. With several grids in one entry, one
line per value of the other grids.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from workbench.plots.common import place_legend
from workbench.search import spaces_in
from workbench.summary import column, final_runs, mean_and_spread
from workbench.tuning import higher_is_better


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def swept_parameters(history: dict) -> dict[str, list[tuple[int, dict]]]:
    """parameter -> [(entry index, that entry's spaces)] over the entries that sweep or tune it."""
    out: dict[str, list[tuple[int, dict]]] = {}
    for i, entry in enumerate((history.get("config") or {}).get("runs") or []):
        spaces = spaces_in(entry)
        for key in spaces:
            out.setdefault(key, []).append((i, spaces))
    return out


def _entry_label(history: dict, index: int) -> str:
    for section in history.get("tuning") or []:
        if section["entry"] == index:
            return section["label"]
    entry = history["config"]["runs"][index]
    return entry.get("label") or entry["algorithm"]


def _tuned_lines(section: dict, key: str):
    """[(legend suffix, xs, means, spreads)], the chosen (x, y), and the y label, of a tuned entry."""
    xs, means, spreads = [], [], []
    for trial in section["trials"]:
        summary = mean_and_spread(list(trial["values"].values()))
        if summary is None or trial["mean"] is None:
            continue
        xs.append(trial["params"][key])
        means.append(summary[0])
        spreads.append(summary[1] or 0.0)
    chosen = None
    if section["chosen"] is not None:
        chosen = (section["chosen"][key], section["chosen_value"])
    n = len(section["trials"])
    suffix = f" (tuned: {n} trials x {len(section['seeds'])} seed{'s' * (len(section['seeds']) > 1)})"
    return [(suffix, xs, means, spreads)], chosen, f"{section['metric']} ({section['at']} evaluation, validation)"


def _grid_lines(runs: list[dict], index: int, key: str, spaces: dict):
    """Lines of a grid entry's final runs: one per value of its other grids."""
    group = [r for r in final_runs(runs) if r.get("entry") == index]
    if not group:
        return [], None, ""
    metric = next((k for k in ("val_acc", "val_loss", "test_acc", "test_loss", "full_train_acc", "full_train_loss")
                   if any(column(r, k)[1].size for r in group)), None)
    if metric is None:
        return [], None, ""
    others = [k for k in spaces if k != key]
    lines, best = [], None
    by_rest: dict[tuple, dict] = {}
    for run in group:
        rest = tuple((k, run["params"][k]) for k in others)
        values = column(run, metric)[1]
        if values.size:
            by_rest.setdefault(rest, {}).setdefault(_hashable(run["params"][key]), []).append(float(values[-1]))
    sign = 1.0 if higher_is_better(metric) else -1.0
    for rest, points in by_rest.items():
        xs = list(points)
        stats = [mean_and_spread(points[x]) for x in xs]
        kept = [(x, s) for x, s in zip(xs, stats) if s is not None]
        suffix = "".join(f" {k}={v}" for k, v in rest)
        lines.append((suffix, [x for x, _ in kept], [s[0] for _, s in kept], [s[1] or 0.0 for _, s in kept]))
        if metric.startswith("val_"):
            for x, s in kept:
                if best is None or sign * s[0] > sign * best[1]:
                    best = (x, s[0])
    split = "validation" if metric.startswith("val_") else "test"
    return lines, best, f"{metric} (last evaluation, {split})"


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def sensitivity_figures(history: dict, runs: list[dict] | None = None) -> dict[str, plt.Figure]:
    """parameter -> its figure (module docstring); ``runs`` default to the history's."""
    runs = history["runs"] if runs is None else runs
    tuning = {s["entry"]: s for s in history.get("tuning") or []}
    figures = {}
    for key, entries in swept_parameters(history).items():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ylabels, drawn, log = set(), False, False
        categories: list = []
        for colour, (index, spaces) in enumerate(entries):
            space = spaces[key]
            if index in tuning:
                lines, chosen, ylabel = _tuned_lines(tuning[index], key)
                mark = "chosen"
            else:
                lines, chosen, ylabel = _grid_lines(runs, index, key, spaces)
                mark = "best on validation"
            log = log or space.log
            numeric = space.bounds() is not None
            label = _entry_label(history, index)
            for k, (suffix, xs, means, spreads) in enumerate(lines):
                if not xs:
                    continue
                if not numeric:
                    for x in xs:
                        if x not in categories:
                            categories.append(x)
                    xs = [categories.index(x) for x in xs]
                order = np.argsort(xs)
                x, y, e = (np.asarray(v, dtype=float)[order] for v in (xs, means, spreads))
                style = "o" if len(spaces) > 1 and len(lines) == 1 else "o-"  # other parameters vary too
                ax.errorbar(x, y, yerr=e if e.any() else None, fmt=style, color=f"C{colour % 10}", markersize=4,
                            capsize=3, label=f"{label}{suffix}", alpha=1.0 if k == 0 else 0.6)
                drawn = True
            if chosen is not None:
                cx = chosen[0] if numeric else categories.index(chosen[0])
                ax.plot([cx], [chosen[1]], "*", color=f"C{colour % 10}", markersize=16, markeredgecolor="black",
                        label=f"{label}: {mark} {key}={chosen[0]:.4g}" if numeric else f"{label}: {mark} {chosen[0]}")
            if ylabel:
                ylabels.add(ylabel)
        if not drawn:
            plt.close(fig)
            continue
        if log:
            ax.set_xscale("log")
        if categories:
            ax.set_xticks(range(len(categories)), [str(c) for c in categories])
        ax.set_xlabel(key)
        ax.set_ylabel("; ".join(sorted(ylabels)))
        ax.set_title(f"sensitivity to {key} (mean ± std over seeds, ddof=1)")
        ax.grid(True, alpha=0.3)
        place_legend(ax)
        fig.tight_layout()
        figures[key] = fig
    return figures


def plot_sensitivity(history: dict, out_dir: Path, runs: list[dict] | None = None) -> list[Path]:
    """Write ``sensitivity_<param>.png`` for each swept or tuned parameter; return the paths."""
    paths = []
    for key, fig in sensitivity_figures(history, runs).items():
        path = Path(out_dir) / f"sensitivity_{key}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
