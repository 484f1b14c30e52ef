"""Figures of NewtonSummary runs (algorithm ``newton_summary``).

* ``newton_summary_lrs.png``: one panel per run label, the effective learning rate of every subset
  (``lr_group_<i>``) against steps, mean over seeds (band: min-max over seeds); subsets named after
  the first tensor of each (``info["name_groups"]``); symmetric-log y axis since rates can be 0.
* ``newton_summary_solver.png``: per label, the final cumulative counts of each solver status
  (easy / hard / newton / zero_gradient / unbounded / failed / fallback), mean over seeds.
"""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from algorithms.optimizers.newton_summary.workbench_algorithm import NAME_GROUPS  # noqa: E402
from workbench.plots.common import series  # noqa: E402
from workbench.registry import PLOTTERS  # noqa: E402
from workbench.summary import group_by_label  # noqa: E402

STATUSES = ("easy", "hard", "newton", "zero_gradient", "unbounded", "failed", "fallback")


def _group_keys(runs):
    keys = set()
    for run in runs:
        keys |= {k for k in (run.get("metrics") or {}) if re.fullmatch(r"lr_group_\d+", k)}
    return sorted(keys, key=lambda k: int(k.rsplit("_", 1)[1]))


def _group_name(runs, i):
    for run in runs:
        names = (run.get("info") or {}).get(NAME_GROUPS)
        if names and i < len(names):
            grp = names[i]
            return grp[0] + (f" +{len(grp) - 1}" if len(grp) > 1 else "")
    return f"group {i}"


def plot_lrs(runs: list[dict], out_dir: Path) -> list[Path]:
    groups = group_by_label(runs)
    panels = [(label, rs, _group_keys(rs)) for label, rs in groups.items()]
    panels = [p for p in panels if p[2]]
    if not panels:
        return []
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels)), squeeze=False)
    for ax, (label, rs, keys) in zip(axes[:, 0], panels):
        for j, key in enumerate(keys):
            curves = [c for c in (series(r, key, "step") for r in rs) if c[0].size]
            if not curves:
                continue
            n = min(c[0].size for c in curves)
            x = curves[0][0][:n]
            ys = np.stack([c[1][:n] for c in curves])
            colour = f"C{j % 10}"
            ax.plot(x, ys.mean(0), color=colour, label=_group_name(rs, int(key.rsplit("_", 1)[1])))
            if len(curves) > 1:
                ax.fill_between(x, ys.min(0), ys.max(0), color=colour, alpha=0.15, linewidth=0)
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_title(f"{label} (n={len(rs)} seed{'s' if len(rs) > 1 else ''})", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate per subset")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(out_dir) / "newton_summary_lrs.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_solver(runs: list[dict], out_dir: Path) -> list[Path]:
    groups = group_by_label(runs)
    counts = {}
    for label, rs in groups.items():
        rows = []
        for r in rs:
            m = r.get("metrics") or {}
            row = []
            for s in STATUSES:
                col = np.asarray(m.get(f"solver_{s}", []), dtype=float)
                col = col[np.isfinite(col)]
                row.append(col[-1] if col.size else 0.0)
            rows.append(row)
        if rows:
            counts[label] = np.mean(rows, axis=0)
    if not counts or not any(c.sum() for c in counts.values()):
        return []
    labels = list(counts)
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(labels) + 2), 3.6))
    bottom = np.zeros(len(labels))
    for k, s in enumerate(STATUSES):
        vals = np.array([counts[l][k] for l in labels])
        if vals.any():
            ax.bar(range(len(labels)), vals, bottom=bottom, label=s, color=f"C{k}")
            bottom += vals
    ax.set_xticks(range(len(labels)), [l[:28] for l in labels], rotation=15, fontsize=7)
    ax.set_ylabel("refreshes (mean over seeds)")
    ax.set_title("cubic solver status per refresh (fallback: previous rates kept)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(out_dir) / "newton_summary_solver.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


@PLOTTERS.register("newton_summary")
def plot_newton_summary(runs: list[dict], out_dir: Path) -> list[Path]:
    return plot_lrs(runs, out_dir) + plot_solver(runs, out_dir)
