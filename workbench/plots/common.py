"""Comparison graphs every record gets: one line per run label, mean ± std band over its finished
seeds, the other runs apart; and the summary figure (the final metric per label)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from workbench.summary import group_by_label, split_by_status

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


# One colour family per algorithm (matplotlib's tab10 hues); the labels of one algorithm get shades
# of it, and once the families run out line styles tell them apart.
LINE_STYLES = ("-", "--", ":", "-.")


def _shade(base: str, k: int, n: int) -> tuple:
    """The k-th of n shades of ``base``: from darker (k = 0) to lighter."""
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(base))
    if n == 1:
        return tuple(rgb)
    t = k / (n - 1)  # 0 .. 1
    towards = np.zeros(3) if t < 0.5 else np.ones(3)
    amount = 0.45 * abs(2 * t - 1)
    return tuple(rgb * (1 - amount) + towards * amount)


def _sort_key(labels: list[str], runs_of: dict[str, dict]):
    """Labels of one algorithm ordered by the parameter values that differ between them."""
    params = [runs_of[label].get("params") or {} for label in labels]
    varying = [k for k in params[0] if any(p.get(k) != params[0].get(k) for p in params)] if params else []

    def key(label):
        values = runs_of[label].get("params") or {}
        return tuple((0, v) if isinstance(v, (int, float)) else (1, str(v)) for v in (values.get(k) for k in varying))
    return key


def label_styles(runs: list[dict]) -> dict[str, dict]:
    """label -> ``color`` and ``linestyle``: one colour family per algorithm, in order of first
    appearance; an algorithm's labels shaded dark to light by their varying parameters."""
    runs_of = {}
    for run in runs:
        runs_of.setdefault(run["label"], run)
    by_algorithm: dict[str, list[str]] = {}
    for label, run in runs_of.items():
        by_algorithm.setdefault(run.get("algorithm", ""), []).append(label)
    styles = {}
    for family, labels in enumerate(by_algorithm.values()):
        ordered = sorted(labels, key=_sort_key(labels, runs_of))
        base = f"C{family % 10}"
        for k, label in enumerate(ordered):
            styles[label] = {"color": _shade(base, k, len(ordered)),
                             "linestyle": LINE_STYLES[(family // 10 + (k if len(ordered) > 6 else 0)) % len(LINE_STYLES)]}
    return styles


def _legend_label(label: str, averaged: list[dict], apart: list[dict]) -> str:
    shown = label if len(averaged) <= 1 and not apart else f"{label} (n={len(averaged)}"
    if apart:
        counts = {}
        for run in apart:
            counts[run.get("status", "?")] = counts.get(run.get("status", "?"), 0) + 1
        shown += "; " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + " apart"
    return shown + (")" if shown != label else "")


def plot_metric(runs: list[dict], key: str, x_key: str, ylabel: str, logy: bool, ax) -> bool:
    """One line per label (mean ± std band over its finished seeds); stopped, diverged and failed
    runs are drawn apart, thin and dotted, and counted in the legend; a curve equal to an earlier one
    is drawn dashed and says so in the legend; a diverged run ends in a cross at its last finite
    point. The y-range is set by the curves after their first point. Returns whether anything was drawn."""
    drawn = diverged = False
    earlier: list[tuple[np.ndarray, np.ndarray, str]] = []
    styles = label_styles(runs)
    visible: list[np.ndarray] = []
    for label, group in group_by_label(runs).items():
        averaged, apart = split_by_status(group)
        colour, linestyle = styles[label]["color"], styles[label]["linestyle"]
        band = mean_band([series(r, key, x_key, max_points=None) for r in averaged])
        if band is not None:
            x, mean, std = band
            shown = _legend_label(label, averaged, apart)
            same = [name for ex, ey, name in earlier if ex.shape == x.shape and np.array_equal(ex, x)
                    and np.allclose(ey, mean, rtol=1e-9, atol=0.0, equal_nan=True)]
            style = {"linestyle": linestyle}
            if same:
                style = {"linestyle": (len(same) * 2, (4, 3)), "linewidth": 2.2}
                shown += f" (same as {same[0]}; dashed)"
            earlier.append((x, mean, label))
            ax.plot(*thin(x, mean), color=colour, label=shown, marker="o" if x.size < 30 else None, markersize=3,
                    **style)
            if len(averaged) > 1:
                keep = np.union1d(thin_index(mean - std), thin_index(mean + std))
                ax.fill_between(x[keep], (mean - std)[keep], (mean + std)[keep], color=colour, alpha=0.2, linewidth=0)
            visible += [mean[1:] - std[1:], mean[1:] + std[1:]] if x.size > 1 else [mean - std, mean + std]
            drawn = True
        for run in apart:
            rx, ry = series(run, key, x_key)
            if not rx.size:
                continue
            ax.plot(rx, ry, color=colour, linestyle=":", linewidth=1.0,
                    label=None if band is not None else _legend_label(label, averaged, apart))
            visible.append(ry[1:] if ry.size > 1 else ry)
            drawn = True
            if run.get("status") == "diverged":
                ax.plot(rx[-1:], ry[-1:], "x", color=colour, markersize=10, markeredgewidth=2,
                        label=None if diverged else "diverged (× last finite value)")
                diverged = True
    if drawn:
        ax.set_xlabel({"step": "step", "epoch": "epoch", "time": "wall time [s]"}[x_key])
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        _limit_y(ax, visible, logy)
        ax.grid(True, alpha=0.3)
        place_legend(ax)
    return drawn


def _limit_y(ax, visible: list[np.ndarray], logy: bool) -> None:
    """A y-range from the curves after their first point (the start of training would squash the
    differences that matter), with a 5 % margin; kept as it is when that leaves nothing."""
    values = np.concatenate([v[np.isfinite(v)] for v in visible]) if visible else np.zeros(0)
    if logy:
        values = values[values > 0]
    if values.size < 2 or values.min() == values.max():
        return
    lo, hi = (np.log10(values.min()), np.log10(values.max())) if logy else (values.min(), values.max())
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    ax.set_ylim(*((10 ** lo, 10 ** hi) if logy else (lo, hi)))


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


def plot_comparison(runs: list[dict], out_dir: Path, metrics: list[str] | None = None,
                    note: str | None = None) -> list[Path]:
    """The comparison figures of the metrics the runs report (``metrics``: only these) and the
    summary figure; ``note`` (e.g. "3/9 runs finished") goes under each title."""
    paths = []
    for filename, key, x_key, ylabel, logy in comparisons(runs):
        if metrics and key not in metrics:
            continue
        fig, ax = plt.subplots(figsize=(8, 5))
        if plot_metric(runs, key, x_key, ylabel, logy, ax):
            ax.set_title(f"{ylabel} against {x_key}" + (f"\n{note}" if note else ""))
            if len(group_by_label(runs)) > 5:
                fig.set_size_inches(11, 5)
            fig.tight_layout()
            path = Path(out_dir) / filename
            fig.savefig(path, dpi=120)
            paths.append(path)
        plt.close(fig)
    fig = summary_figure(runs, note)
    if fig is not None and (not metrics or fig.metric in metrics):
        path = Path(out_dir) / "summary.png"
        fig.savefig(path, dpi=120)
        paths.append(path)
    if fig is not None:
        plt.close(fig)
    return paths


def summary_figure(runs: list[dict], note: str | None = None):
    """The final value of the summary metric per label (its last evaluation): each finished seed a
    dot, their mean with a bar of one standard deviation (ddof=1); runs of other statuses as hollow
    markers, not averaged. None when no run has the metric. ``fig.metric`` names it."""
    from workbench.summary import SUMMARY_METRICS, column, final_runs

    runs = final_runs(runs) or runs
    metric = next((k for k in SUMMARY_METRICS if any(column(r, k)[1].size for r in runs)), None)
    if metric is None:
        return None
    styles = label_styles(runs)
    groups = list(group_by_label(runs).items())
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.45 * len(groups)))
    other_drawn = False
    for y, (label, group) in enumerate(groups):
        averaged, apart = split_by_status(group)
        colour = styles[label]["color"]
        finals = [column(r, metric)[1][-1] for r in averaged if column(r, metric)[1].size]
        if finals:
            ax.plot(finals, [y] * len(finals), "o", color=colour, alpha=0.5, markersize=4)
            spread = np.std(finals, ddof=1) if len(finals) > 1 else 0.0
            ax.errorbar([np.mean(finals)], [y], xerr=[spread], fmt="D", color=colour, markersize=7, capsize=4)
        for run in apart:
            values = column(run, metric)[1]
            if values.size:
                ax.plot([values[-1]], [y], "o", markerfacecolor="none", color=colour, markersize=7,
                        label=None if other_drawn else "stopped / diverged / failed (not averaged)")
                other_drawn = True
    ax.set_yticks(range(len(groups)), [_legend_label(label, *split_by_status(group)) for label, group in groups])
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} at the last evaluation (mean ± std over finished seeds, ddof=1)")
    ax.set_title("final results" + (f"\n{note}" if note else ""))
    ax.grid(True, axis="x", alpha=0.3)
    if other_drawn:
        ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    fig.metric = metric
    return fig
