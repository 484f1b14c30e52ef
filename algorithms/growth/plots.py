"""Figures of the growth family (algorithm ``growth``), one line per label (first seed):

* ``growth_loss.png``: training loss (and test loss) against steps, growth events marked;
* ``growth_width.png``: width of each hidden layer and parameter count against steps;
* ``growth_prediction.png``: predicted (first-order, kappa included) against observed loss change
  at every growth, with the diagonal; points off the diagonal show where gamma was too large for
  the first-order prediction (GradMax / random: both are 0 at insertion).

Growth events come from the last snapshot's ``events`` (complete even if a growth step was not a
logged row), falling back to the metric rows where ``growth_added`` is finite.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from algorithms.growth.workbench_algorithm import EVENTS  # noqa: E402
from workbench.plots.common import first_seed_per_label, series  # noqa: E402
from workbench.registry import PLOTTERS  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def growth_events(run: dict) -> dict[str, np.ndarray]:
    """Arrays step, predicted_change, observed_change, added, layer of every committed growth."""
    snaps = run.get("snapshots") or {}
    events = snaps.get(EVENTS) or []
    if events and events[-1] and len(events[-1].get("step", [])):
        return {k: np.asarray(v, dtype=float) for k, v in events[-1].items()}
    metrics = run.get("metrics") or {}
    if "growth_added" not in metrics:
        return {k: np.zeros(0) for k in ("step", "predicted_change", "observed_change", "added", "layer")}
    added = np.asarray(metrics["growth_added"], dtype=float)
    rows = np.isfinite(added)
    return {"step": np.asarray(metrics["step"], dtype=float)[rows], "added": added[rows],
            **{k: np.asarray(metrics[f"growth_{k}"], dtype=float)[rows]
               for k in ("predicted_change", "observed_change", "layer")}}


@PLOTTERS.register("growth")
def plot_growth(runs: list[dict], out_dir: Path) -> list[Path]:
    runs = first_seed_per_label(runs, with_metrics=True)
    if not runs:
        return []
    out_dir = Path(out_dir)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return [plot_loss(runs, colors, out_dir / "growth_loss.png"),
            plot_widths(runs, colors, out_dir / "growth_width.png"),
            plot_prediction(runs, colors, out_dir / "growth_prediction.png")]


def plot_loss(runs: list[dict], colors: list, path: Path) -> Path:
    """Training (and test) loss against steps; dotted verticals at the growth events."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, run in enumerate(runs):
        color = colors[k % len(colors)]
        x, y = series(run, "train_loss", "step")
        ax.plot(x, y, color=color, label=f"{run['label']} (train)")
        xt, yt = series(run, "test_loss", "step")
        if xt.size:
            ax.plot(xt, yt, color=color, ls="--", lw=1, label=f"{run['label']} (test)")
        for step in growth_events(run)["step"]:
            ax.axvline(step, color=color, alpha=0.25, lw=0.8, ls=":")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title("loss (dotted verticals: growth events)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_widths(runs: list[dict], colors: list, path: Path) -> Path:
    """Hidden widths (one line style per layer) and parameter counts against steps."""
    fig, (ax_w, ax_p) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, run in enumerate(runs):
        color = colors[k % len(colors)]
        lw = 1.0 + 2.0 * (len(runs) - 1 - k) / max(len(runs) - 1, 1)  # identical schedules stay visible
        metrics = run.get("metrics") or {}
        width_keys = sorted(key for key in metrics if key.startswith("width_"))
        for j, key in enumerate(width_keys):
            x, y = series(run, key, "step")
            ax_w.step(x, y, where="post", color=color, ls=("-", "--", ":", "-.")[j % 4], lw=lw,
                      label=f"{run['label']} layer {key[6:]}")
        x, y = series(run, "n_params", "step")
        ax_p.step(x, y, where="post", color=color, lw=lw, label=run["label"])
    ax_w.set_xlabel("step")
    ax_w.set_ylabel("hidden width")
    ax_w.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_p.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_w.legend(fontsize=7)
    ax_p.set_xlabel("step")
    ax_p.set_ylabel("parameters")
    ax_p.legend(fontsize=7)
    return _save(fig, path)


def plot_prediction(runs: list[dict], colors: list, path: Path) -> Path:
    """Predicted (first order) against observed loss change of every growth, with the diagonal."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    lo, hi = 0.0, 0.0
    for k, run in enumerate(runs):
        ev = growth_events(run)
        if not ev["step"].size:
            continue
        pred, obs = ev["predicted_change"], ev["observed_change"]
        ax.scatter(pred, obs, s=18, color=colors[k % len(colors)], label=run["label"])
        finite = np.isfinite(pred) & np.isfinite(obs)
        if finite.any():
            lo = min(lo, pred[finite].min(), obs[finite].min())
            hi = max(hi, pred[finite].max(), obs[finite].max())
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="gray", lw=0.8, ls="--")
    ax.set_xlabel("predicted loss change (first order)")
    ax.set_ylabel("observed loss change")
    ax.set_title("growth: predicted vs observed")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _save(fig, path)
