"""Tuning: equal budgets, trials that never see the test set, the argmax of the recorded validation
metric, the same choices with every executor and after an interruption at any phase, edge
warnings, and the sensitivity figure."""
from __future__ import annotations

import copy
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from workbench import record  # noqa: E402
from workbench.config import Config  # noqa: E402
from workbench.errors import ConfigError  # noqa: E402
from workbench.plan import plan_runs  # noqa: E402
from workbench.runner import Experiment, Hooks, NothingToResume  # noqa: E402
from workbench.search import grid, loguniform  # noqa: E402
from workbench.summary import summary_table  # noqa: E402

def tuned_config(tiny_config) -> dict:
    """Two tuned entries (log-uniform learning rates, 4 trials x 2 tuning seeds) and an untuned one."""
    config = copy.deepcopy(tiny_config)
    config.update(val_split=0.25, seeds=[0, 1], tune=dict(budget=4, seeds=[0, 1], sampler="sobol"),
                  runs=[dict(algorithm="sgd", lr=loguniform(1e-3, 1.0), momentum=0.9),
                        dict(algorithm="adamw", label="AdamW", lr=loguniform(1e-4, 1e-1)),
                        dict(algorithm="sgd", label="fixed", lr=0.05)])
    return config


@pytest.fixture
def tuned(tiny_config):
    return tuned_config(tiny_config)


def _run(config, hooks=None):
    experiment = Experiment.create(config, hooks=hooks)
    return experiment, experiment.run()


def _numbers(history: dict) -> list:
    return [(r["label"], r["seed"], r["phase"], r["params"], {k: v for k, v in r["metrics"].items() if k != "time"})
            for r in history["runs"]]


def assert_same_tuning(a: dict, b: dict) -> None:
    """Two histories of a tuned config made the same choices with the same numbers (wall time aside)."""
    assert a["tuning"] == b["tuning"]
    for x, y in zip(_numbers(a), _numbers(b), strict=True):
        assert x[:4] == y[:4]
        for key in x[4]:
            assert np.array_equal(x[4][key], y[4][key], equal_nan=True), (x[0], key)


def test_equal_budgets_no_test_evaluation_in_trials_and_the_argmax_is_chosen(tuned):
    experiment, code = _run(tuned)
    assert code == 0
    history = record.load_history(experiment.run_dir)
    runs = history["runs"]
    trials = [r for r in runs if r["phase"] == "tune"]
    finals = [r for r in runs if r["phase"] == "final"]
    assert runs[:len(trials)] == trials  # trials first in the plan
    for entry in (0, 1):
        mine = [r for r in trials if r["entry"] == entry]
        assert len(mine) == 4 * 2 and {r["trial"] for r in mine} == {0, 1, 2, 3}  # budget x tuning seeds
    assert not [r for r in trials if r["entry"] == 2]
    for run in trials:
        assert not any(k.startswith(("test_", "full_train_")) for k in run["metrics"]), run["label"]
        assert "val_acc" in run["metrics"]
    for section in history["tuning"]:
        means = {}
        for r in trials:
            if r["entry"] == section["entry"]:
                means.setdefault(r["trial"], []).append(r["metrics"]["val_acc"][-1])
        best = max(means, key=lambda k: (np.mean(means[k]), -k))
        assert section["chosen_trial"] == best and section["metric"] == "val_acc" and section["at"] == "last"
        assert section["chosen_value"] == pytest.approx(np.mean(means[best]), rel=1e-15)
        chosen_lr = next(r["params"]["lr"] for r in trials if r["entry"] == section["entry"] and r["trial"] == best)
        assert section["chosen"] == {"lr": chosen_lr}
        final = [r for r in finals if r["entry"] == section["entry"]]
        assert [r["seed"] for r in final] == [0, 1] and all(r["params"]["lr"] == chosen_lr for r in final)
    assert [r["label"] for r in finals] == ["sgd momentum=0.9", "AdamW", "fixed"] * 2
    assert all("test_acc" in r["metrics"] for r in finals)
    # the same sampler seed gives every entry with the same kind of space the same points in [0, 1)
    sgd = sorted(np.log(r["params"]["lr"] / 1e-3) / np.log(1e3) for r in trials if r["entry"] == 0 and r["seed"] == 0)
    adamw = sorted(np.log(r["params"]["lr"] / 1e-4) / np.log(1e3) for r in trials if r["entry"] == 1 and r["seed"] == 0)
    np.testing.assert_allclose(sgd, adamw, atol=1e-9)
    table = summary_table(history)
    assert "best test" not in table and "best val_acc" in table and "ddof=1" in table
    assert "4 x 2 seeds" in table and "tuning: val_acc at the last evaluation" in table


def test_the_test_set_changes_no_choice(tuned):
    a, _ = _run(tuned)
    changed = copy.deepcopy(tuned)
    changed["dataset_args"] = {**changed["dataset_args"], "n_test": 200}  # same training examples, other test set
    b, _ = _run(changed)
    ha, hb = record.load_history(a.run_dir), record.load_history(b.run_dir)
    assert ha["tuning"] == hb["tuning"]
    for ra, rb in zip(ha["runs"], hb["runs"], strict=True):
        assert np.array_equal(ra["metrics"]["val_acc"], rb["metrics"]["val_acc"], equal_nan=True)
        if ra["phase"] == "final":
            assert not np.array_equal(ra["metrics"]["test_acc"], rb["metrics"]["test_acc"], equal_nan=True)


@pytest.mark.parametrize("changes, message", [
    (dict(val_split=None), "tune needs a validation split.*val_split"),
    (dict(tune=dict(budget=4, metric="test_acc")), "never reads the test set"),
    (dict(tune=dict(budget=0)), "budget"),
    (dict(tune=dict(budget=4, sampler="tpe")), "sampler must be one of grid, random, sobol"),
    (dict(tune=dict(budget=4, budjet=3)), "has no key 'budjet'"),
    (dict(runs=[dict(algorithm="sgd", lr=0.1)]), "no runs entry has a search space"),
])
def test_tuning_mistakes_are_config_errors(tuned, changes, message):
    with pytest.raises(ConfigError, match=message):
        plan_runs(Config.of({**tuned, **changes}))


def test_a_diverged_trial_is_never_chosen_and_best_over_the_run_can_count(tuned):
    tuned.update(tune=dict(budget=3, sampler="grid", at="best"), seeds=[0], dtype="float32",
                 runs=[dict(algorithm="sgd", lr=grid([0.05, 0.2, 1e20]), momentum=0.9)])
    experiment, code = _run(tuned)
    assert code == 1  # the diverged trial
    section = experiment.history["tuning"][0]
    assert [t["mean"] is None for t in section["trials"]] == [False, False, True]
    assert section["chosen"]["lr"] in (0.05, 0.2) and section["at"] == "best"
    values = {t["trial"]: experiment.history["runs"][t["runs"][0]]["metrics"]["val_acc"] for t in section["trials"][:2]}
    assert section["chosen_value"] == max(np.nanmax(v) for v in values.values())


def test_a_choice_on_the_edge_of_its_space_is_reported(tuned, capsys):
    tuned.update(tune=dict(budget=3, sampler="grid"), seeds=[0],
                 runs=[dict(algorithm="sgd", lr=grid([1e-3, 0.3, 0.03]), momentum=0.0)])
    experiment, code = _run(tuned)
    assert code == 0
    section = experiment.history["tuning"][0]
    chosen, side = section["chosen"]["lr"], "largest"
    assert chosen == 0.3  # in two epochs the largest step learns most (val_acc 83 against 63 and 33 here)
    message = (f"lr={chosen:.4g} is the {side} value tried (3 values in grid([0.001, 0.3, 0.03])); "
               f"the best may lie outside the space: widen it")
    assert section["edges"] == [message]
    assert f"warning: sgd momentum=0.0: {message}" in capsys.readouterr().err
    assert f"lr={chosen:.4g} is the {side} value tried" in summary_table(experiment.history)


def test_the_same_choices_and_numbers_with_worker_processes(tuned):
    one, _ = _run(tuned)
    two, _ = _run({**copy.deepcopy(tuned), "workers": 2})
    assert two.history["environment"]["execution"]["executor"] == "worker processes"
    assert_same_tuning(record.load_history(one.run_dir), record.load_history(two.run_dir))


@pytest.mark.parametrize("stop_at", ["tuning", "final"])
def test_an_interruption_in_either_phase_resumes_to_the_same_record(tuned, stop_at):
    reference, _ = _run(copy.deepcopy(tuned))
    trials = sum(r["phase"] == "tune" for r in reference.history["runs"])
    count = {"steps": 0}
    stop_step = 5 * 2 * (trials // 2) + 3 if stop_at == "tuning" else 5 * 2 * trials + 7

    def stop_once(state):
        count["steps"] += 1
        return count["steps"] == stop_step

    interrupted, code = _run(copy.deepcopy(tuned), hooks=Hooks(should_stop=stop_once))
    assert code == 130
    history = record.load_history(interrupted.run_dir)
    assert ("tuning" in history) == (stop_at == "final")
    resumed = Experiment.resume(interrupted.run_dir)
    assert resumed.run() == 0
    assert_same_tuning(record.load_history(reference.run_dir), record.load_history(interrupted.run_dir))


def test_a_record_stopped_between_the_phases_resumes_into_the_final_phase(tuned):
    reference, _ = _run(copy.deepcopy(tuned))
    experiment = Experiment.create(copy.deepcopy(tuned))
    with experiment.interrupt:
        experiment._train(list(range(len(experiment.plan))))  # the trials only, as a kill right after them
    experiment.record.close(interrupted=True)
    history = record.load_history(experiment.run_dir)
    assert "tuning" not in history and all(r["phase"] == "tune" for r in history["runs"])
    resumed = Experiment.resume(experiment.run_dir)
    assert resumed.run() == 0
    assert_same_tuning(record.load_history(reference.run_dir), record.load_history(experiment.run_dir))
    with pytest.raises(NothingToResume):
        Experiment.resume(experiment.run_dir)


def test_the_sensitivity_figure_draws_each_entry_with_its_chosen_point(tuned):
    from workbench.plots.sensitivity import sensitivity_figures

    experiment, _ = _run(tuned)
    history = record.load_history(experiment.run_dir)
    figures = sensitivity_figures(history)
    assert list(figures) == ["lr"]
    ax = figures["lr"].axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "lr" and "val_acc" in ax.get_ylabel()
    labels = [c.get_label() for c in ax.containers]
    for section in history["tuning"]:
        star = next(line for line in ax.get_lines() if line.get_label().startswith(f"{section['label']}: chosen"))
        assert star.get_marker() == "*"
        assert star.get_xdata()[0] == section["chosen"]["lr"] and star.get_ydata()[0] == section["chosen_value"]
        curve = next(c for c in ax.containers if c.get_label().startswith(f"{section['label']} (tuned")).lines[0]
        xs = sorted(t["params"]["lr"] for t in section["trials"])
        assert list(curve.get_xdata()) == xs
        means = [t["mean"] for t in sorted(section["trials"], key=lambda t: t["params"]["lr"])]
        np.testing.assert_allclose(curve.get_ydata(), means, rtol=1e-15)
    assert len([label for label in labels if "(tuned: 4 trials x 2 seeds)" in label]) == 2
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)


def test_a_grid_sweep_has_a_sensitivity_figure_of_its_final_runs(tiny_config):
    from workbench.plots.sensitivity import sensitivity_figures

    config = {**copy.deepcopy(tiny_config), "seeds": [0, 1],
              "runs": [dict(algorithm="sgd", lr=grid([0.01, 0.1, 1.0]), momentum=grid([0.0, 0.5]))]}
    experiment, _ = _run(config)
    figures = sensitivity_figures(record.load_history(experiment.run_dir))
    assert sorted(figures) == ["lr", "momentum"]
    ax = figures["lr"].axes[0]
    assert ax.get_xscale() == "log" and "test" in ax.get_ylabel()  # no validation split: the test metric, no mark
    assert not [line for line in ax.get_lines() if line.get_marker() == "*"]
    curves = {c.get_label(): c.lines[0] for c in ax.containers}
    assert sorted(curves) == ["sgd momentum=0.0", "sgd momentum=0.5"]
    runs = [r for r in experiment.history["runs"] if r["params"]["momentum"] == 0.5]
    expected = [np.mean([r["metrics"]["test_acc"][-1] for r in runs if r["params"]["lr"] == lr]) for lr in (0.01, 0.1, 1.0)]
    np.testing.assert_allclose(curves["sgd momentum=0.5"].get_ydata(), expected, rtol=1e-15)
    assert figures["momentum"].axes[0].get_xscale() == "linear"


def test_time_to_target_is_the_median_first_crossing_over_the_seeds_that_reached_it():
    from workbench.summary import summary_rows

    def run(seed, acc, loss):
        return {"label": "a", "seed": seed, "status": "finished", "phase": "final",
                "metrics": {"step": np.array([0.0, 10, 20, 30]), "time": np.array([0.0, 1.5, 2.5, 3.5]),
                            "epoch": np.array([0.0, 1, 2, 3]), "test_acc": np.array(acc),
                            "test_loss": np.array(loss)}}
    runs = [run(0, [10, 50, 80, 90], [2, 1, 0.5, 0.4]), run(1, [10, 76, 70, 95], [2, 0.6, 0.7, 0.3]),
            run(2, [10, 40, 60, 70], [2, 1.5, 1.2, 1.0])]
    (row,) = summary_rows(runs, target=(75.0, "test_acc"))
    assert row["steps to target"] == "15 (1 of 3 never)" and row["s to target"] == "2"  # median of 20 and 10
    (row,) = summary_rows(runs, target=(0.45, "test_loss"))
    assert row["steps to target"] == "30 (1 of 3 never)" and row["s to target"] == "3.5"  # losses: <= target
    (row,) = summary_rows(runs[2:], target=(99.0, "test_acc"))
    assert row["steps to target"] == "never (1 of 1)"
    assert row["final"] == "70.00"
    (row,) = summary_rows(runs)
    assert row["final"] == "85.00 ± 13.23"  # mean and std (ddof=1) of 90, 95, 70


def test_an_untuned_entry_is_checked_with_the_model_before_tuning_starts(tuned):
    from workbench.algorithm import Algorithm, register_algorithm
    from workbench.registry import ALGORITHMS

    @register_algorithm("_needs_no_hidden_layer")
    class NeedsNoHiddenLayer(Algorithm):
        @classmethod
        def check_model(cls, model, params):
            raise ValueError("this algorithm trains a linear model only")

    try:
        tuned["runs"] = [*tuned["runs"][:1], dict(algorithm="_needs_no_hidden_layer")]
        with pytest.raises(ConfigError, match=r"runs\[1\] \(_needs_no_hidden_layer\) .*linear model only"):
            Experiment.create(tuned)
        assert not Path(tuned["out_dir"]).exists()
    finally:
        del ALGORITHMS["_needs_no_hidden_layer"]
