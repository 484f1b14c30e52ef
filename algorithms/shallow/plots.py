"""Figures of the shallow ReLU family (relu_gd, relu_convex): the reference's neuron pictures.

Per algorithm group of runs (first seed of each label):

* ``shallow_<algorithm>_output.png``: the training data and the final network's output (a curve for
  1-D inputs, a filled contour for 2-D inputs);
* ``shallow_<algorithm>_neurons.png``: neurons at the start as points of the parameter plane
  (w, b) for 1-D inputs, (w_1, w_2) otherwise; green a_j > 0, red a_j < 0, size ~ |a_j|; next to it
  their trajectories over the snapshots (start marked), or the final neurons when the width changed
  (a convex solve); inputs with d > 2 get no neuron picture;
* ``shallow_<algorithm>_loss.png``: the regularised objective against steps with the convex optimum as
  a horizontal line, and the gap to it on a log scale. For d >= 2 the optimum uses sampled patterns and
  is an upper bound of the global one, so GD may end slightly below it.

:func:`animate_shallow` writes one animation per label: neurons and output over the snapshots, as a
GIF (pillow), or MP4 when ffmpeg is available. Runs need snapshots with ``W`` (m, d+1) and ``a`` (m,);
the data come from ``info["data_x"]``, ``info["data_y"]`` (recorded when the training set is small).
"""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from algorithms.shallow.workbench_algorithms import (CONVEX_OPTIMUM, DATA_X,  # noqa: E402
                                                     DATA_Y, NEURONS, OUTPUT_WEIGHTS)
from workbench.plots.common import first_seed_per_label, series  # noqa: E402
from workbench.registry import ANIMATIONS, PLOTTERS  # noqa: E402

MAX_PANELS = 6
MAX_FRAMES = 150


# -- helpers ------------------------------------------------------------------------------------
def _snapshots(run: dict) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    snaps = run.get("snapshots") or {}
    steps, Ws, As = snaps.get("step") or [], snaps.get(NEURONS) or [], snaps.get(OUTPUT_WEIGHTS) or []
    k = min(len(steps), len(Ws), len(As))
    return (list(steps[:k]), [np.asarray(w, dtype=float).reshape(len(np.asarray(a).reshape(-1)), -1) for w, a in zip(Ws[:k], As[:k])],
            [np.asarray(a, dtype=float).reshape(-1) for a in As[:k]])


def _data(run: dict):
    info = run.get("info") or {}
    if DATA_X not in info or DATA_Y not in info:
        return None
    x = np.asarray(info[DATA_X], dtype=float)
    return x.reshape(x.shape[0], -1), np.asarray(info[DATA_Y], dtype=float).reshape(-1)


def _predict(W: np.ndarray, a: np.ndarray, x: np.ndarray) -> np.ndarray:
    X = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    return np.maximum(X @ W.T, 0.0) @ a if len(W) else np.zeros(x.shape[0])


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", str(text)).strip("_")[:60] or "run"


def _metric(run: dict, key: str) -> tuple[np.ndarray, np.ndarray]:
    return series(run, key, "step")


def convex_optimum(run: dict) -> float | None:
    """The run's convex reference: info[CONVEX_OPTIMUM] (relu_gd) or its last convex_objective."""
    value = (run.get("info") or {}).get(CONVEX_OPTIMUM)
    if value is None:
        _, y = _metric(run, "convex_objective")
        value = y[-1] if y.size else None
    return float(value) if value is not None and np.isfinite(value) else None


def _objective_series(run: dict) -> tuple[np.ndarray, np.ndarray, str]:
    for key in ("full_objective", "objective", "train_loss"):
        x, y = _metric(run, key)
        if x.size >= 2 or (key == "train_loss" and x.size):
            return x, y, key
    return np.zeros(0), np.zeros(0), "objective"


def _neuron_xy(W: np.ndarray) -> np.ndarray:
    """Points drawn for each neuron: (w, b) for 1-D inputs, (w_1, w_2) otherwise."""
    return W[:, :2]


def _scatter_neurons(ax, W, a, marker="o", alpha=0.9, size=None, label=None):
    if not len(W):
        return
    xy = _neuron_xy(W)
    colours = np.where(a >= 0, "tab:green", "tab:red")
    s = size if size is not None else 12 + 40 * np.abs(a) / max(np.abs(a).max(), 1e-12)
    edges = {"edgecolors": "k", "linewidths": 0.3} if marker not in ("x", "+", "|", "_", ".") else {}
    ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=s, marker=marker, alpha=alpha, label=label, zorder=3, **edges)


def _sign_legend(ax) -> None:
    """The legend, with what green and red mean."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    for colour, text in (("tab:green", "output weight a_j > 0"), ("tab:red", "output weight a_j < 0")):
        handles.append(Line2D([], [], color=colour, marker="o", ls="", markeredgecolor="k", markeredgewidth=0.3))
        labels.append(text)
    ax.legend(handles, labels, fontsize="x-small", title="size: |a_j|", title_fontsize="x-small")


def _axis_labels(ax, d: int):
    ax.set_xlabel("w (input weight)" if d == 1 else "w_1")
    ax.set_ylabel("b (bias)" if d == 1 else "w_2")
    ax.axhline(0, color="0.8", lw=0.5)
    ax.axvline(0, color="0.8", lw=0.5)


def _draw_output(ax, data, W, a, title="", colorbar=True):
    x, y = data
    d = x.shape[1]
    if d == 1:
        lo, hi = x.min(), x.max()
        pad = 0.1 * (hi - lo + 1e-12)
        grid = np.linspace(lo - pad, hi + pad, 400)[:, None]
        ax.scatter(x[:, 0], y, s=14, color="k", zorder=3, label="data")
        ax.plot(grid[:, 0], _predict(W, a, grid), color="tab:blue", label="network")
        if len(W) and W.shape[1] == 2:
            with np.errstate(divide="ignore", invalid="ignore"):
                kinks = -W[:, 1] / W[:, 0]
            kinks = kinks[np.isfinite(kinks) & (kinks > lo - pad) & (kinks < hi + pad)]
            ax.plot(kinks, np.full(kinks.shape, ax.get_ylim()[0]), "|", color="tab:purple", ms=8, label="kinks")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.legend(fontsize="x-small")
    elif d == 2:
        lo, hi = x.min(axis=0), x.max(axis=0)
        g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120))
        pred = _predict(W, a, np.stack([g0.ravel(), g1.ravel()], axis=1)).reshape(g0.shape)
        vmin, vmax = min(y.min(), pred.min()), max(y.max(), pred.max())
        cs = ax.contourf(g0, g1, pred, levels=30, cmap="viridis", vmin=vmin, vmax=vmax)
        ax.scatter(x[:, 0], x[:, 1], c=y, cmap="viridis", vmin=vmin, vmax=vmax, s=10, edgecolors="w", linewidths=0.4)
        if colorbar:
            ax.figure.colorbar(cs, ax=ax, fraction=0.046)
        ax.set_xlabel("x_1")
        ax.set_ylabel("x_2")
    ax.set_title(title, fontsize="small")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- figures ------------------------------------------------------------------------------------
def plot_output(runs, out_dir, algorithm) -> list[Path]:
    panels = [(r, _data(r), _snapshots(r)) for r in first_seed_per_label(runs)]
    panels = [(r, dat, s) for r, dat, s in panels if dat is not None and s[0] and dat[0].shape[1] <= 2][:MAX_PANELS]
    if not panels:
        return []
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (run, dat, (steps, Ws, As)) in zip(axes[0], panels):
        _draw_output(ax, dat, Ws[-1], As[-1], f"{run['label']} (step {steps[-1]}, width {len(Ws[-1])})")
    return [_save(fig, Path(out_dir) / f"shallow_{algorithm}_output.png")]


def plot_neurons(runs, out_dir, algorithm) -> list[Path]:
    panels = [(r, _snapshots(r)) for r in first_seed_per_label(runs)]
    # for d > 2 inputs two coordinates of w_j say little (MNIST pixels): no neuron picture
    panels = [(r, s) for r, s in panels if s[0] and s[1][0].shape[1] <= 3][:MAX_PANELS]
    if not panels:
        return []
    fig, axes = plt.subplots(2, len(panels), figsize=(5 * len(panels), 9), squeeze=False)
    for col, (run, (steps, Ws, As)) in enumerate(panels):
        d = Ws[0].shape[1] - 1
        ax = axes[0, col]
        _scatter_neurons(ax, Ws[-1], As[-1])
        _axis_labels(ax, d)
        _sign_legend(ax)
        ax.set_title(f"{run['label']}: neurons at step {steps[-1]} (width {len(As[-1])})", fontsize="small")
        ax = axes[1, col]
        same_width = len({len(a) for a in As}) == 1
        if same_width and len(Ws) > 1:
            traj = np.stack([_neuron_xy(W) for W in Ws])  # (T, m, 2)
            signs = As[-1] >= 0
            for j in range(traj.shape[1]):
                ax.plot(traj[:, j, 0], traj[:, j, 1], "-", lw=0.8, alpha=0.7,
                        color="tab:green" if signs[j] else "tab:red", marker="." if len(Ws) < 40 else None, ms=2)
            ax.scatter(traj[0, :, 0], traj[0, :, 1], s=10, color="k", marker="x", label="start", zorder=4)
            _scatter_neurons(ax, Ws[-1], As[-1], label="end")
            ax.set_title(f"trajectories over {len(Ws)} snapshots (to step {steps[-1]})", fontsize="small")
        else:
            _scatter_neurons(ax, Ws[0], As[0], marker="x", alpha=0.5, size=10, label="start")
            _scatter_neurons(ax, Ws[-1], As[-1], marker="*", size=120, label="final")
            ax.set_title(f"start (x) and final (*) neurons, width {len(As[0])} -> {len(As[-1])}", fontsize="small")
        _axis_labels(ax, d)
        _sign_legend(ax)
    return [_save(fig, Path(out_dir) / f"shallow_{algorithm}_neurons.png")]


def plot_loss(runs, out_dir, algorithm) -> list[Path]:
    """The objective against steps, with the convex optimum (dashed) where a run knows it, and a
    second panel with the distance to it only then."""
    curves = [(i, run, *_objective_series(run)) for i, run in enumerate(runs)]
    curves = [c for c in curves if c[2].size]
    if not curves:
        return []
    optima = {i: convex_optimum(run) for i, run, *_ in curves}
    with_gap = any(opt is not None for opt in optima.values())
    fig, axes = plt.subplots(1, 2 if with_gap else 1, figsize=(13 if with_gap else 7, 5), squeeze=False)
    ax = axes[0, 0]
    values = []
    for i, run, x, y, key in curves:
        colour = f"C{i % 10}"
        ax.plot(x, y, color=colour, label=f"{run['label']} seed {run.get('seed')} ({key})",
                marker="o" if x.size < 30 else None, ms=3)
        values.append(y)
        opt = optima[i]
        if opt is not None:
            gap = y - opt
            pos = gap > 0
            if pos.any():
                axes[0, 1].plot(x[pos], gap[pos], color=colour, label=run["label"])
    for k, opt in enumerate(sorted({round(o, 12) for o in optima.values() if o is not None})):
        ax.axhline(opt, color="k", ls="--", lw=1, label="convex optimum" if k == 0 else None)
        values.append(np.array([opt]))
    values = np.concatenate(values)
    positive = values[values > 0]
    # a log axis only where the values span a decade; else tick labels would all read the same
    ax.set_yscale("log" if positive.size == values.size and positive.max() > 10 * positive.min() else "linear")
    ax.set_xlabel("step")
    ax.set_ylabel("F_beta (regularised objective)")
    ax.set_title("objective; dashed: convex optimum" if with_gap else "objective", fontsize="small")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small")
    if with_gap:
        axg = axes[0, 1]
        if axg.get_lines():
            axg.set_xscale("symlog", linthresh=1)
            axg.set_yscale("log")
            axg.legend(fontsize="x-small")
        axg.set_xlabel("step")
        axg.set_ylabel("F_beta - convex optimum")
        axg.set_title("distance to the convex optimum" + ("" if axg.get_lines() else " (reached)"), fontsize="small")
        axg.grid(True, alpha=0.3)
    return [_save(fig, Path(out_dir) / f"shallow_{algorithm}_loss.png")]


def plot_shallow(runs: list[dict], out_dir: Path) -> list[Path]:
    """Every shallow figure for one algorithm's runs (see the module docstring)."""
    if not runs:
        return []
    algorithm = _slug(runs[0].get("algorithm", "shallow"))
    paths = []
    for fn in (plot_output, plot_neurons, plot_loss):
        paths += fn(runs, out_dir, algorithm)
    return paths


PLOTTERS.register("relu_gd")(plot_shallow)
PLOTTERS.register("relu_convex")(plot_shallow)


# -- animation ----------------------------------------------------------------------------------
@ANIMATIONS.register("relu_gd")
@ANIMATIONS.register("relu_convex")
def animate_shallow(runs: list[dict], out_dir: Path) -> list[Path]:
    """One animation per label (first seed): neurons (left) and the network's output (right) over the
    snapshots. MP4 through ffmpeg when available, else a GIF through pillow. Returns the paths."""
    from matplotlib import animation

    paths = []
    for run in first_seed_per_label(runs):
        steps, Ws, As = _snapshots(run)
        if len(Ws) < 2 or Ws[0].shape[1] > 3:
            continue
        data = _data(run)
        show_output = data is not None and data[0].shape[1] <= 2
        frames = np.unique(np.linspace(0, len(Ws) - 1, min(len(Ws), MAX_FRAMES)).round().astype(int))
        d = Ws[0].shape[1] - 1
        allxy = np.concatenate([_neuron_xy(W) for W in Ws if len(W)] or [np.zeros((1, 2))])
        lo, hi = allxy.min(axis=0), allxy.max(axis=0)
        pad = 0.05 * (hi - lo) + 1e-9
        if show_output and d == 1:
            x, y = data
            preds = [_predict(Ws[k], As[k], np.linspace(x.min(), x.max(), 200)[:, None]) for k in frames]
            ylo, yhi = min(y.min(), min(p.min() for p in preds)), max(y.max(), max(p.max() for p in preds))
        fig, axes = plt.subplots(1, 2 if show_output else 1, figsize=(11 if show_output else 5.5, 4.5), squeeze=False)

        def draw(k, axes=axes, Ws=Ws, As=As, steps=steps, data=data, show_output=show_output, d=d, lo=lo, hi=hi, pad=pad):
            ax = axes[0, 0]
            ax.clear()
            _scatter_neurons(ax, Ws[k], As[k])
            ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
            ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
            _axis_labels(ax, d)
            ax.set_title(f"{run['label']}: neurons, step {steps[k]}", fontsize="small")
            if show_output:
                axo = axes[0, 1]
                axo.clear()
                _draw_output(axo, data, Ws[k], As[k], f"output, step {steps[k]}", colorbar=False)
                if d == 1:
                    axo.set_ylim(ylo - 0.05 * (yhi - ylo), yhi + 0.05 * (yhi - ylo))

        anim = animation.FuncAnimation(fig, draw, frames=list(frames), interval=100)
        stem = Path(out_dir) / f"animation_{_slug(run.get('algorithm', 'shallow'))}_{_slug(run['label'])}"
        if animation.writers.is_available("ffmpeg"):
            path = stem.with_suffix(".mp4")
            anim.save(path, writer=animation.FFMpegWriter(fps=10))
        else:
            path = stem.with_suffix(".gif")
            anim.save(path, writer=animation.PillowWriter(fps=10))
        plt.close(fig)
        paths.append(path)
    return paths
