"""Comparison graphs every record gets: one line per run label, mean ± std band over seeds."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from workbench.summary import group_by_label

# (file name, y key, x key, y label, log y)
COMPARISONS = (
    ("train_loss_steps.png", "train_loss", "step", "training loss", True),
    ("train_loss_epochs.png", "train_loss", "epoch", "training loss", True),
    ("test_loss.png", "test_loss", "epoch", "test loss", True),
    ("test_accuracy.png", "test_acc", "epoch", "test accuracy [%]", False),
    ("val_loss.png", "val_loss", "epoch", "validation loss", True),
    ("val_accuracy.png", "val_acc", "epoch", "validation accuracy [%]", False),
    # datasets without a test split: the same on the whole training set, named as such
    ("full_train_loss.png", "full_train_loss", "epoch", "loss on the whole training set (no test split)", True),
    ("full_train_accuracy.png", "full_train_acc", "epoch", "accuracy on the whole training set [%] (no test split)",
     False),
)


# Long series are drawn through at most about this many points (see :func:`thin`).
THIN_POINTS = 4000


def thin_index(y: np.ndarray, max_points: int | None = THIN_POINTS) -> np.ndarray:
    """Indices of at most about ``max_points`` points of ``y``, keeping each bucket's minimum and
    maximum (all indices when there are fewer points).

    The series is cut into ``max_points / 2`` buckets of consecutive points; each keeps the points
    of its smallest and largest y, in order. A curve of 10^6 points then draws as fast as one of
    4000 and shows the same envelope (every spike stays), instead of a solid band."""
    n = y.size
    if max_points is None or n <= max_points:
        return np.arange(n)
    width = -(-n // (max_points // 2))           # points per bucket
    padded = np.concatenate([y, np.full(-n % width, y[-1])]).reshape(-1, width)
    starts = np.arange(padded.shape[0]) * width
    keep = np.concatenate([starts + padded.argmin(axis=1), starts + padded.argmax(axis=1)])
    return np.unique(np.minimum(keep, n - 1))


def thin(x: np.ndarray, y: np.ndarray, max_points: int | None = THIN_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) at the points :func:`thin_index` keeps."""
    if max_points is None or y.size <= max_points:
        return x, y
    keep = thin_index(y, max_points)
    return x[keep], y[keep]


def series(run: dict, key: str, x_key: str, max_points: int | None = THIN_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of ``key`` against ``x_key`` for the rows where ``key`` was measured, thinned to
    about ``max_points`` for drawing (None: every point)."""
    metrics = run.get("metrics") or {}
    if key not in metrics or x_key not in metrics:
        return np.zeros(0), np.zeros(0)
    x = np.asarray(metrics[x_key], dtype=float)
    y = np.asarray(metrics[key], dtype=float)
    keep = np.isfinite(y) & np.isfinite(x)
    return thin(x[keep], y[keep], max_points)


def first_seed_per_label(runs: list[dict], with_metrics: bool = False) -> list[dict]:
    """The first run of every label, in order (``with_metrics``: the first that has rows)."""
    seen, out = set(), []
    for run in runs:
        if run.get("label") not in seen and (run.get("metrics") or not with_metrics):
            seen.add(run.get("label"))
            out.append(run)
    return out


def mean_band(curves: list[tuple[np.ndarray, np.ndarray]]):
    """Mean and std (ddof=1) over seeds on the densest seed's x grid, within the range all seeds cover."""
    curves = [(x, y) for x, y in curves if x.size]
    if not curves:
        return None
    grid = max(curves, key=lambda c: c[0].size)[0]
    hi = min(x[-1] for x, _ in curves)
    grid = grid[grid <= hi]
    if grid.size == 0:
        return None
    ys = np.stack([np.interp(grid, x, y) for x, y in curves])
    return grid, ys.mean(axis=0), (ys.std(axis=0, ddof=1) if len(ys) > 1 else np.zeros_like(grid))


def plot_metric(runs: list[dict], key: str, x_key: str, ylabel: str, logy: bool, ax) -> bool:
    """One line per label (mean ± std band over seeds); a curve equal to an earlier one is drawn
    dashed and says so in the legend; a diverged run ends in a cross at its last finite point.
    Returns whether anything was drawn."""
    drawn = diverged = False
    earlier: list[tuple[np.ndarray, np.ndarray, str]] = []
    for i, (label, group) in enumerate(group_by_label(runs).items()):
        band = mean_band([series(r, key, x_key, max_points=None) for r in group])
        if band is None:
            continue
        x, mean, std = band
        colour = f"C{i % 10}"
        n = len(group)
        shown = label if n == 1 else f"{label} (n={n})"
        same = [name for ex, ey, name in earlier if ex.shape == x.shape and np.array_equal(ex, x)
                and np.allclose(ey, mean, rtol=1e-9, atol=0.0, equal_nan=True)]
        style = {}
        if same:
            style = {"linestyle": (len(same) * 2, (4, 3)), "linewidth": 2.2}
            shown += f" (same as {same[0]}; dashed)"
        earlier.append((x, mean, label))
        ax.plot(*thin(x, mean), color=colour, label=shown,
                marker="o" if x.size < 30 else None, markersize=3, **style)
        for run in group:
            if run.get("status") == "diverged":
                rx, ry = series(run, key, x_key, max_points=None)
                if rx.size:
                    ax.plot(rx[-1:], ry[-1:], "x", color=colour, markersize=10, markeredgewidth=2,
                            label=None if diverged else "diverged (× last finite value)")
                    diverged = True
        if n > 1:
            keep = np.union1d(thin_index(mean - std), thin_index(mean + std))
            ax.fill_between(x[keep], (mean - std)[keep], (mean + std)[keep], color=colour, alpha=0.2, linewidth=0)
        drawn = True
    if drawn:
        ax.set_xlabel({"step": "step", "epoch": "epoch", "time": "wall time [s]"}[x_key])
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        place_legend(ax)
    return drawn


def place_legend(ax, max_inside: int = 5) -> None:
    """Inside, in the emptiest corner, for a few entries; outside on the right for more, so that
    the legend never covers the lines."""
    n = len(ax.get_legend_handles_labels()[1])
    if n <= max_inside:
        ax.legend(fontsize="small", loc="best")
    else:
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def comparisons(runs: list[dict]) -> list[tuple[str, str, str, str, bool]]:
    """:data:`COMPARISONS`, plus one accuracy plot for every other ``test_*acc`` or
    ``full_train_*acc`` metric (e.g. ``test_sign_acc``) the runs report."""
    keys = sorted({k for r in runs for k in (r.get("metrics") or {})
                   if k.startswith(("test_", "full_train_")) and k.endswith("acc")
                   and k not in ("test_acc", "full_train_acc")})
    return [*COMPARISONS, *((f"{k}.png", k, "epoch", k.replace("_", " "), False) for k in keys)]


def plot_comparison(runs: list[dict], out_dir: Path, metrics: list[str] | None = None) -> list[Path]:
    """The comparison figures of the metrics the runs report (``metrics``: only these)."""
    paths = []
    for filename, key, x_key, ylabel, logy in comparisons(runs):
        if metrics and key not in metrics:
            continue
        fig, ax = plt.subplots(figsize=(8, 5))
        if plot_metric(runs, key, x_key, ylabel, logy, ax):
            ax.set_title(f"{ylabel} against {x_key}")
            if len(group_by_label(runs)) > 5:
                fig.set_size_inches(11, 5)
            fig.tight_layout()
            path = Path(out_dir) / filename
            fig.savefig(path, dpi=120)
            paths.append(path)
        plt.close(fig)
    return paths
