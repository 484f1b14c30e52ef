"""Figures of the Wasserstein family: ``relu_prox`` (proximal point) and ``relu_jko`` (JKO on a grid).

relu_prox, per record (first seed of each label):

* ``shallow_relu_prox_output.png`` / ``shallow_relu_prox_neurons.png``: the shallow family's output and
  neuron-trajectory figures (:mod:`workbench.plots.shallow`), from the ``W``/``a`` snapshots;
* ``wasserstein_relu_prox_loss.png``: training loss, prox distance and inner steps against outer steps;
* ``wasserstein_relu_prox_inner.png``: the inner-loop objective F, distance and prox objective
  F + dist/(2 gamma) of one chosen outer step (:data:`INNER_STEP`, default the last snapshot), next
  to all snapshotted inner loops joined end to end (the reference's ``plotprox`` sawtooth).

relu_jko:

* ``wasserstein_relu_jko_mass.png``: masses on the grid over time: an image (grid coordinate x
  snapshot) for 1-D grids (``relu_grid`` circles: the angle of the neuron), the first and last mass
  maps for 2-D grids; positive and negative output signs in separate panels;
* ``wasserstein_relu_jko_metrics.png``: training loss, total mass (and its drift), Sinkhorn iterations.

:func:`animate_jko` (``plot.py --animate``) writes one GIF per label: the masses on a 2-D grid (or
on the circle of a 1-D grid) over the snapshots, through pillow.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from algorithms.shallow import plots as shallow  # noqa: E402
from algorithms.shallow.workbench_algorithms import (GRID, GRID_KIND, INNER_DISTANCE, INNER_OBJECTIVE,  # noqa: E402
                                                     INNER_OF_STEP, MASSES, NEURONS, OUTPUT_WEIGHTS, SIGNS)
from workbench.plots.common import first_seed_per_label  # noqa: E402
from workbench.registry import ANIMATIONS, PLOTTERS  # noqa: E402

# Outer step whose inner loop wasserstein_relu_prox_inner.png shows (None: the last snapshot's);
# the nearest snapshotted outer step is used.
INNER_STEP: int | None = None
MAX_FRAMES = 120


def _metric(run, key):
    return shallow._metric(run, key)


def _save(fig, path: Path) -> Path:
    return shallow._save(fig, path)


def _slug(text) -> str:
    return shallow._slug(text)


# -- relu_prox ----------------------------------------------------------------------------------
def _metric_panels(runs: list[dict], panels, xlabel: str, path: Path, title: str | None = None) -> list[Path]:
    """One panel per (metric key, y label, log y) against steps, one line per run; [] if empty."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels) + 4, 4.5), squeeze=False)
    axes = axes[0]
    drawn = False
    for i, run in enumerate(runs):
        for ax, (key, label, logy) in zip(axes, panels):
            x, y = _metric(run, key)
            if key == "mass_error":
                y = np.abs(y)
            if not x.size:
                continue
            ax.plot(x, y, color=f"C{i % 10}", label=f"{run['label']} s{run.get('seed')}",
                    marker="o" if x.size < 30 else None, ms=3)
            positive = y[y > 0]
            if logy and positive.size == y.size:
                ax.set_yscale("log")
            elif logy and positive.size:  # exact zeros stay on the axis: linear below the smallest value
                ax.set_yscale("symlog", linthresh=float(positive.min()))
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
            drawn = True
    if not drawn:
        plt.close(fig)
        return []
    for ax in axes:
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="x-small")
    if title:
        fig.suptitle(title, fontsize="small")
    return [_save(fig, path)]


def plot_prox_loss(runs: list[dict], out_dir: Path) -> list[Path]:
    panels = (("train_loss", "training loss F", True), ("prox_distance", "dist(W_t+1, W_t)", True),
              ("inner_steps", "inner steps", False))
    return _metric_panels(runs, panels, "outer step", Path(out_dir) / "wasserstein_relu_prox_loss.png",
                          "proximal point: loss, step length and inner work")


def _positive(x: np.ndarray) -> np.ndarray:
    """NaN where x <= 0 (the distance is 0 at the warm start), so log axes stay readable."""
    return np.where(x > 0, x, np.nan)


def _inner_curves(run: dict):
    snaps = run.get("snapshots") or {}
    objs, dists = snaps.get(INNER_OBJECTIVE) or [], snaps.get(INNER_DISTANCE) or []
    outer = snaps.get(INNER_OF_STEP) or []
    k = min(len(objs), len(dists), len(outer))
    return [(int(outer[i]), np.asarray(objs[i], float), np.asarray(dists[i], float))
            for i in range(k) if np.asarray(objs[i]).size]


def plot_inner(runs: list[dict], out_dir: Path, outer_step: int | None = None) -> list[Path]:
    """Inner-loop curves of the snapshotted outer step nearest ``outer_step`` (None: the last)."""
    panels = [(r, _inner_curves(r)) for r in first_seed_per_label(runs)]
    panels = [(r, c) for r, c in panels if c][: shallow.MAX_PANELS]
    if not panels:
        return []
    fig, axes = plt.subplots(2, len(panels), figsize=(5.5 * len(panels), 8), squeeze=False)
    for col, (run, curves) in enumerate(panels):
        gamma = float((run.get("params") or {}).get("gamma") or (run.get("info") or {}).get("gamma") or 1.0)
        steps = np.array([c[0] for c in curves])
        pick = len(curves) - 1 if outer_step is None else int(np.argmin(np.abs(steps - outer_step)))
        t, obj, dist = curves[pick]
        ax = axes[0, col]
        k = np.arange(obj.size)
        ax.plot(k, obj, label="F(V)")
        ax.plot(k, _positive(dist / (2 * gamma)), label="dist(V, W_t) / (2 gamma)")
        ax.plot(k, obj + dist / (2 * gamma), "k--", lw=1, label="prox objective")
        ax.set_yscale("log")
        ax.set_xlabel("inner step")
        ax.set_title(f"{run['label']}: inner loop of outer step {t}", fontsize="small")
        ax.legend(fontsize="x-small")
        ax.grid(True, alpha=0.3)
        ax = axes[1, col]
        offset = 0
        for j, (t_j, obj_j, dist_j) in enumerate(curves):
            kk = offset + np.arange(obj_j.size)
            ax.plot(kk, obj_j, color="C0", lw=0.8, label="F(V)" if j == 0 else None)
            ax.plot(kk, _positive(dist_j), color="C1", lw=0.8, label="dist(V, W_t)" if j == 0 else None)
            offset += obj_j.size
        ax.set_yscale("log")
        ax.set_xlabel("inner steps of the snapshotted outer steps, joined")
        ax.set_title(f"{len(curves)} snapshotted inner loops", fontsize="small")
        ax.legend(fontsize="x-small")
        ax.grid(True, alpha=0.3)
    return [_save(fig, Path(out_dir) / "wasserstein_relu_prox_inner.png")]


def _particle_dim(run: dict) -> int:
    Ws = (run.get("snapshots") or {}).get(NEURONS) or []
    return int(np.asarray(Ws[0]).shape[1]) if Ws and np.asarray(Ws[0]).ndim == 2 else 0


def plot_particles_1d(runs: list[dict], out_dir: Path) -> list[Path]:
    """1-D particles (the two-particle toy): positions against the snapshot step, one panel per label."""
    panels = first_seed_per_label(runs)[: shallow.MAX_PANELS]
    if not panels:
        return []
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, run in zip(axes[0], panels):
        snaps = run["snapshots"]
        steps = np.asarray(snaps["step"], float)
        X = np.stack([np.asarray(W, float)[:, 0] for W in snaps[NEURONS]])  # (T, m)
        a = np.asarray(snaps[OUTPUT_WEIGHTS][-1], float).reshape(-1)
        scale = max(float(np.abs(X).max()), 1e-300)
        for j in range(X.shape[1]):
            ax.plot(steps, X[:, j], "-o" if a[j] >= 0 else "--s", ms=4, color=f"C{j % 10}", alpha=0.8,
                    label=f"particle {j} (a = {a[j]:+.3g})")
            end = X[-1, j] if abs(X[-1, j]) > 1e-12 * scale else 0.0  # rounding residue reads as 0
            ax.annotate(f"{end:.4g}", (steps[-1], X[-1, j]), fontsize="x-small")
        if X.shape[1] <= 10:
            ax.legend(fontsize="x-small")
        ax.set_xlabel("outer step")
        ax.set_ylabel("particle position")
        ax.set_title(run["label"], fontsize="small")
        ax.grid(True, alpha=0.3)
    return [_save(fig, Path(out_dir) / "wasserstein_relu_prox_particles.png")]


def plot_relu_prox(runs: list[dict], out_dir: Path) -> list[Path]:
    """Every relu_prox figure (module docstring)."""
    if not runs:
        return []
    paths = []
    two_d = [r for r in runs if _particle_dim(r) >= 2]
    if two_d:
        for fn in (shallow.plot_output, shallow.plot_neurons):
            paths += fn(two_d, out_dir, "relu_prox")
    paths += plot_particles_1d([r for r in runs if _particle_dim(r) == 1], out_dir)
    paths += plot_prox_loss(runs, out_dir)
    paths += plot_inner(runs, out_dir, INNER_STEP)
    return paths


PLOTTERS.register("relu_prox")(plot_relu_prox)


# -- relu_jko -----------------------------------------------------------------------------------
def _jko_state(run: dict):
    """(steps, P (T, N) masses, grid (N, D), signs (N,), kind) or None."""
    info = run.get("info") or {}
    snaps = run.get("snapshots") or {}
    if GRID not in info or not snaps.get(MASSES):
        return None
    steps = list(snaps.get("step") or [])
    P = np.stack([np.asarray(p, float).reshape(-1) for p in snaps[MASSES]])
    k = min(len(steps), P.shape[0])
    grid = np.asarray(info[GRID], float)
    signs = np.asarray(info.get(SIGNS, np.ones(grid.shape[0])), float).reshape(-1)
    return steps[:k], P[:k], grid, signs, info.get(GRID_KIND, "points")


def _coordinate(grid: np.ndarray, kind: str) -> tuple[np.ndarray, str]:
    if kind == "circle":
        return np.mod(np.arctan2(grid[:, 1], grid[:, 0]), 2 * np.pi), "neuron angle theta of (w, b) [rad]"
    return np.arange(grid.shape[0], dtype=float), "grid index"


def plot_jko_mass(runs: list[dict], out_dir: Path) -> list[Path]:
    panels = [(r, _jko_state(r)) for r in first_seed_per_label(runs)]
    panels = [(r, s) for r, s in panels if s is not None][: shallow.MAX_PANELS]
    if not panels:
        return []
    fig, axes = plt.subplots(2, len(panels), figsize=(5.5 * len(panels), 8.5), squeeze=False)
    for col, (run, (steps, P, grid, signs, kind)) in enumerate(panels):
        for row, (sign, name, cmap) in enumerate(((1, "a > 0", "Greens"), (-1, "a < 0", "Reds"))):
            ax = axes[row, col]
            mask = signs >= 0 if sign > 0 else signs < 0
            if not mask.any():
                ax.set_axis_off()
                continue
            if kind == "plane":
                xy = grid[mask][:, :2]
                for T, marker, alpha in ((0, "s", 0.25), (-1, "o", 0.9)):
                    m = P[T, mask]
                    ax.scatter(xy[:, 0], xy[:, 1], s=5 + 300 * m / max(P[:, mask].max(), 1e-300), c=m, cmap=cmap,
                               marker=marker, alpha=alpha, edgecolors="k", linewidths=0.2,
                               label=f"step {steps[T]}")
                ax.set_xlabel("w (input weight)")
                ax.set_ylabel("b (bias)")
                ax.legend(fontsize="x-small")
                ax.set_title(f"{run['label']}: mass of {name} neurons (first / last)", fontsize="small")
            else:
                coord, label = _coordinate(grid[mask], kind)
                order = np.argsort(coord)
                image = P[:, mask][:, order]
                extent = (coord[order][0], coord[order][-1], steps[-1] if steps else len(P), steps[0] if steps else 0)
                im = ax.imshow(image, aspect="auto", cmap=cmap, extent=extent, interpolation="nearest")
                fig.colorbar(im, ax=ax, fraction=0.046, label="mass p_k")
                ax.set_xlabel(label)
                ax.set_ylabel("step")
                ax.set_title(f"{run['label']}: mass of {name} neurons over time", fontsize="small")
    return [_save(fig, Path(out_dir) / "wasserstein_relu_jko_mass.png")]


def plot_jko_metrics(runs: list[dict], out_dir: Path) -> list[Path]:
    panels = (("train_loss", "training loss F", True), ("total_mass", "total mass", False),
              ("mass_error", "|total mass - initial|", True), ("sinkhorn_iters", "Sinkhorn iterations", False))
    return _metric_panels(runs, panels, "JKO step", Path(out_dir) / "wasserstein_relu_jko_metrics.png")


def plot_relu_jko(runs: list[dict], out_dir: Path) -> list[Path]:
    """Every relu_jko figure (module docstring)."""
    if not runs:
        return []
    paths = plot_jko_mass(runs, out_dir) + plot_jko_metrics(runs, out_dir)
    paths += shallow.plot_output(runs, out_dir, "relu_jko")
    return paths


PLOTTERS.register("relu_jko")(plot_relu_jko)


@ANIMATIONS.register("relu_jko")
def animate_jko(runs: list[dict], out_dir: Path) -> list[Path]:
    """One GIF per label (first seed): grid points sized and coloured by mass, per snapshot."""
    from matplotlib import animation

    paths = []
    for run in first_seed_per_label(runs):
        state = _jko_state(run)
        if state is None or len(state[0]) < 2:
            continue
        steps, P, grid, signs, kind = state
        xy = grid[:, :2] if grid.shape[1] >= 2 else np.stack([grid[:, 0], np.zeros(len(grid))], axis=1)
        # with both signs at one location, draw the negative copy slightly inside so both stay visible
        shrink = np.where(signs < 0, 0.93, 1.0)[:, None] if kind == "circle" else 1.0
        xy = xy * shrink
        top = max(P.max(), 1e-300)
        frames = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), MAX_FRAMES)).round().astype(int))
        fig, ax = plt.subplots(figsize=(5.5, 5.2))
        colours = np.where(signs >= 0, "tab:green", "tab:red")

        def draw(k, ax=ax):
            ax.clear()
            ax.scatter(xy[:, 0], xy[:, 1], s=2 + 250 * P[k] / top, c=colours, alpha=0.8, edgecolors="none")
            ax.set_xlabel("w (input weight)")
            ax.set_ylabel("b (bias)")
            ax.set_aspect("equal")
            ax.set_title(f"{run['label']}: masses at step {steps[k]} (green a>0, red a<0)", fontsize="small")

        anim = animation.FuncAnimation(fig, draw, frames=list(frames), interval=100)
        path = Path(out_dir) / f"animation_relu_jko_{_slug(run['label'])}.gif"
        anim.save(path, writer=animation.PillowWriter(fps=10))
        plt.close(fig)
        paths.append(path)
    return paths


@ANIMATIONS.register("relu_prox")
def animate_prox(runs: list[dict], out_dir: Path) -> list[Path]:
    """``plot.py --animate`` for relu_prox: the shallow family's neuron/output animation for runs whose
    particles live in the (w, b) plane or higher; 1-D particles (the two-particle toy) have only the
    static wasserstein_relu_prox_particles.png."""
    return shallow.animate_shallow([r for r in runs if _particle_dim(r) >= 2], out_dir)
