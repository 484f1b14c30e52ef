"""The common plots through their figure objects: long series thinned for drawing."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def test_thin_keeps_every_bucket_extreme_and_at_most_max_points():
    from workbench.plots.common import thin

    rng = np.random.default_rng(0)
    x = np.arange(1_000_003, dtype=float)
    y = rng.normal(size=x.size)
    y[123_457], y[999_999] = 50.0, -50.0  # spikes must survive
    tx, ty = thin(x, y, 4000)
    assert tx.size <= 4000 and np.all(np.diff(tx) > 0)
    assert ty.max() == 50.0 and ty.min() == -50.0 and np.array_equal(ty, y[tx.astype(int)])
    width = -(-x.size // 2000)
    for b in (0, 7, (x.size - 1) // width):  # each bucket's min and max are among the kept points
        part = y[b * width:(b + 1) * width]
        kept = ty[(tx >= b * width) & (tx < (b + 1) * width)]
        assert part.min() in kept and part.max() in kept
    assert thin(x[:10], y[:10], 4000)[0].size == 10


def test_a_million_row_curve_is_drawn_through_a_few_thousand_points():
    from workbench.plots.common import plot_metric

    n = 1_000_000
    run = {"label": "long", "status": "finished",
           "metrics": {"step": np.arange(n, dtype=float), "train_loss": np.exp(-np.arange(n) / n) + 1e-3}}
    fig, ax = plt.subplots()
    assert plot_metric([run], "train_loss", "step", "training loss", True, ax)
    (line,) = ax.get_lines()
    assert line.get_xdata().size <= 4000 and line.get_xdata()[0] == 0 and line.get_xdata()[-1] == n - 1
    plt.close(fig)


def _run(label, loss, status="finished", **more):
    steps = np.arange(len(loss), dtype=float)
    return {"label": label, "status": status, "seed": 0, "info": {},
            "metrics": {"step": steps, "epoch": steps / 10, "train_loss": np.asarray(loss, float), **more}}


def test_identical_curves_are_dashed_and_say_so():
    from workbench.plots.common import plot_metric

    loss = np.exp(-np.arange(20) / 5)
    fig, ax = plt.subplots()
    plot_metric([_run("a", loss), _run("b", loss), _run("c", loss * 2)], "train_loss", "step", "loss", True, ax)
    a, b, c = ax.get_lines()
    assert a.get_linestyle() == "-" and b.get_linestyle() == "--" and c.get_linestyle() == "-"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["a", "b (same as a; dashed)", "c"]
    plt.close(fig)


def test_many_labels_put_the_legend_outside_the_axes():
    from workbench.plots.common import plot_metric

    fig, ax = plt.subplots()
    plot_metric([_run(f"lr={k}", np.linspace(1, 0.1 * k, 10)) for k in range(1, 9)], "train_loss", "step",
                "loss", False, ax)
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # right of the axes: it covers no line
    plt.close(fig)


def test_every_test_accuracy_metric_gets_a_plot(tmp_path):
    from workbench.plots.common import comparisons, plot_comparison

    run = _run("a", np.ones(5), test_sign_acc=np.array([50.0, np.nan, 60, np.nan, 70]))
    assert ("test_sign_acc.png", "test_sign_acc", "epoch", "test sign acc", False) in comparisons([run])
    assert tmp_path / "test_sign_acc.png" in plot_comparison([run], tmp_path)


def _captured(monkeypatch):
    from algorithms.shallow import plots as shallow

    figures = []
    monkeypatch.setattr(shallow, "_save", lambda fig, path: figures.append(fig) or path)
    return figures


def test_a_flat_objective_gets_a_linear_axis_and_no_empty_gap_panel(monkeypatch, tmp_path):
    from algorithms.shallow import plots as shallow

    figures = _captured(monkeypatch)
    flat = 0.0518071 + 1e-9 * np.arange(10)
    shallow.plot_loss([_run("convex", flat)], tmp_path, "relu_convex")
    (fig,) = figures
    (ax,) = fig.axes  # no optimum known: no second panel, and the title names none
    assert ax.get_yscale() == "linear" and "optimum" not in ax.get_title()
    fig.canvas.draw()
    ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(set(ticks)) == len(ticks) > 1


def test_prox_particles_have_one_colour_each_and_zero_reads_zero(monkeypatch, tmp_path):
    from algorithms.shallow import plots_wasserstein as wasserstein

    figures = _captured(monkeypatch)
    snaps = {"step": [0, 1, 2], "W": [np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([[2.0, 0.0], [1e-70, 0.0]]),
                                     np.array([[4.0, 0.0], [1.2e-70, 0.0]])][:3],
             "a": [np.array([1.0, 1.0])] * 3}
    run = {"label": "W2", "status": "finished", "seed": 0, "metrics": {}, "snapshots": snaps}
    for W in snaps["W"]:
        W.shape = (2, 2)
    wasserstein.plot_particles_1d([run], tmp_path)
    (fig,) = figures
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len({line.get_color() for line in lines}) == 2
    assert sorted(t.get_text() for t in ax.texts) == ["0", "4"]


def test_exact_zeros_stay_on_a_log_metric_axis(monkeypatch, tmp_path):
    from algorithms.shallow import plots_wasserstein as wasserstein

    figures = _captured(monkeypatch)
    run = _run("jko", np.ones(4), mass_error=np.array([1e-3, 0.0, 1e-8, 0.0]))
    wasserstein._metric_panels([run], (("mass_error", "|mass error|", True),), "step", tmp_path / "m.png")
    ax = figures[0].axes[0]
    assert ax.get_yscale() == "symlog" and ax.get_lines()[0].get_ydata().size == 4


def test_without_a_test_split_metrics_plots_and_summary_name_the_training_set(tiny_config, tmp_path):
    import copy

    from workbench import record
    from workbench.plots import plot_record
    from workbench.runner import Experiment
    from workbench.summary import summary_rows

    config = copy.deepcopy(tiny_config)
    config["dataset_args"] = dict(config["dataset_args"], n_test=0)
    config["runs"] = config["runs"][:1]
    experiment = Experiment.create(config)
    assert experiment.run() == 0
    metrics = record.load_history(experiment.run_dir)["runs"][0]["metrics"]
    assert "test_loss" not in metrics and "test_acc" not in metrics
    assert np.isfinite(metrics["full_train_loss"]).any() and np.isfinite(metrics["full_train_acc"]).any()
    (row,) = summary_rows(experiment.history["runs"])
    assert row["metric"] == "full_train_acc"
    names = {p.name for p in plot_record([experiment.run_dir])}
    assert "full_train_accuracy.png" in names and "test_accuracy.png" not in names


def test_growth_figures_show_events_widths_and_predictions(tmp_path, monkeypatch):
    from pathlib import Path

    from algorithms.growth import plots as growth_plots

    figures = {}
    monkeypatch.setattr(growth_plots, "_save", lambda fig, path: (figures.__setitem__(Path(path).name, fig), path)[1])
    steps = np.arange(6.0)
    events = {"step": [2.0, 4.0], "layer": [0.0, 0.0], "added": [2.0, 2.0],
              "predicted_change": [-0.1, -0.05], "observed_change": [-0.09, -0.06]}
    run = {"label": "tiny", "status": "finished", "seed": 0, "info": {},
           "metrics": {"step": steps, "train_loss": np.exp(-steps), "width_0": np.array([1.0, 1, 3, 3, 5, 5]),
                       "n_params": np.array([9.0, 9, 25, 25, 41, 41])},
           "snapshots": {"step": [5], "events": [events]}}
    paths = growth_plots.plot_growth([run], tmp_path)
    assert [p.name for p in paths] == ["growth_loss.png", "growth_width.png", "growth_prediction.png"]
    (loss_ax,) = figures["growth_loss.png"].axes
    curves = [line for line in loss_ax.get_lines() if np.ptp(line.get_xdata()) > 0]
    verticals = [line for line in loss_ax.get_lines() if np.ptp(line.get_xdata()) == 0]
    assert len(curves) == 1 and curves[0].get_label() == "tiny (train)" and loss_ax.get_yscale() == "log"
    assert sorted(line.get_xdata()[0] for line in verticals) == [2.0, 4.0]  # one per growth event
    width_ax, params_ax = figures["growth_width.png"].axes
    (width,) = width_ax.get_lines()
    np.testing.assert_array_equal(width.get_ydata(), [1, 1, 3, 3, 5, 5])
    assert width.get_label() == "tiny layer 0" and width_ax.get_ylabel() == "hidden width"
    assert all(float(t).is_integer() for t in width_ax.get_yticks())
    np.testing.assert_array_equal(params_ax.get_lines()[0].get_ydata(), run["metrics"]["n_params"])
    (pred_ax,) = figures["growth_prediction.png"].axes
    np.testing.assert_allclose(pred_ax.collections[0].get_offsets(), [[-0.1, -0.09], [-0.05, -0.06]])
    (diagonal,) = pred_ax.get_lines()
    np.testing.assert_allclose(diagonal.get_xdata(), diagonal.get_ydata())
    for fig in figures.values():
        plt.close(fig)


def _curve(label, algorithm, lr, acc, status="finished", seed=0):
    steps = np.arange(len(acc), dtype=float)
    return {"label": label, "algorithm": algorithm, "params": {"lr": lr}, "seed": seed, "status": status,
            "metrics": {"step": steps, "epoch": steps, "time": steps, "test_acc": np.asarray(acc, dtype=float)}}


def test_finished_seeds_make_the_band_and_the_others_are_drawn_apart_and_counted():
    from workbench.plots.common import plot_metric
    from workbench.summary import summary_rows

    runs = [_curve("a", "sgd", 0.1, [10, 80, 90], seed=0), _curve("a", "sgd", 0.1, [10, 82, 94], seed=1),
            _curve("a", "sgd", 0.1, [10, 30], status="stopped", seed=2)]
    fig, ax = plt.subplots()
    assert plot_metric(runs, "test_acc", "step", "acc", False, ax)
    mean_line = next(line for line in ax.get_lines() if line.get_label().startswith("a (n=2"))
    assert mean_line.get_label() == "a (n=2; 1 stopped apart)"
    np.testing.assert_array_equal(mean_line.get_ydata(), [10, 81, 92])  # the stopped run is not in the mean
    (apart,) = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    np.testing.assert_array_equal(apart.get_ydata(), [10, 30])
    lo, hi = ax.get_ylim()
    assert lo > 25  # the range is set after the first points (10 % at step 0 would squash 80-94)
    plt.close(fig)
    (row,) = summary_rows(runs)
    assert row["final"] == "92.00 ± 2.83 (not averaged: 1 stopped)"


def test_one_colour_family_per_algorithm_shaded_by_its_varying_parameter():
    from matplotlib.colors import rgb_to_hsv, to_rgb

    from workbench.plots.common import label_styles

    runs = [_curve("sgd 0.3", "sgd", 0.3, [1]), _curve("sgd 0.01", "sgd", 0.01, [1]), _curve("sgd 0.1", "sgd", 0.1, [1]),
            _curve("adamw", "adamw", 1e-3, [1])]
    styles = label_styles(runs)
    hue = {label: rgb_to_hsv(np.array(style["color"]))[0] for label, style in styles.items()}
    value = {label: np.mean(style["color"]) for label, style in styles.items()}
    assert abs(hue["sgd 0.01"] - hue["sgd 0.3"]) < 0.02 and abs(hue["sgd 0.1"] - hue["sgd 0.3"]) < 0.02
    assert abs(hue["adamw"] - hue["sgd 0.1"]) > 0.05
    assert value["sgd 0.01"] < value["sgd 0.1"] < value["sgd 0.3"]  # dark to light with the learning rate
    assert styles["adamw"]["color"] == to_rgb("C1")


def test_the_summary_figure_marks_the_mean_of_the_finished_seeds_per_label():
    from workbench.plots.common import summary_figure

    runs = [_curve("a", "sgd", 0.1, [10, 90], seed=0), _curve("a", "sgd", 0.1, [10, 94], seed=1),
            _curve("b", "adamw", 1e-3, [10, 70], seed=0), _curve("b", "adamw", 1e-3, [10, 20], "diverged", seed=1)]
    fig = summary_figure(runs, note="2/4 runs finished")
    ax = fig.axes[0]
    assert fig.metric == "test_acc" and "2/4 runs finished" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a (n=2)", "b (n=1; 1 diverged apart)"]
    means = [c.lines[0].get_xdata()[0] for c in ax.containers]
    assert means == [92.0, 70.0]
    hollow = [line for line in ax.get_lines() if line.get_markerfacecolor() == "none"]
    assert [line.get_xdata()[0] for line in hollow] == [20.0]
    plt.close(fig)
