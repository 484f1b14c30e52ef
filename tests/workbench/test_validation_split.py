"""The validation split: held out of the training set by a seed of its own, the same for every run,
never trained on, evaluated at every evaluation."""
from __future__ import annotations

import copy

import pytest
import torch

from workbench.config import Config
from workbench.errors import ConfigError
from workbench.problem import DataSplit, build_problem, hold_out, load_data
from workbench.runner import Experiment


def _rows(x: torch.Tensor) -> set:
    return {tuple(row.tolist()) for row in x.reshape(len(x), -1)}


@pytest.mark.parametrize("val_split, expected", [(0.25, 24), (10, 10), (0.01, 1)])
def test_the_split_is_disjoint_complete_and_the_same_for_every_run(tiny_config, val_split, expected):
    full = load_data(Config.of(tiny_config))
    config = Config.of({**tiny_config, "val_split": val_split, "seeds": [0, 1]})
    data = load_data(config)
    assert len(data.x_val) == expected and len(data.x_train) == 96 - expected
    assert not _rows(data.x_val) & _rows(data.x_train)
    assert _rows(data.x_val) | _rows(data.x_train) == _rows(full.x_train)
    again = load_data(config.replace(seeds=[5]))
    assert torch.equal(again.x_val, data.x_val) and torch.equal(again.y_train, data.y_train)
    assert torch.equal(data.x_test, full.x_test)


def test_a_split_that_leaves_nothing_or_everything_is_refused(tiny_config):
    for bad in (96, 200, 0.001):
        with pytest.raises(ConfigError, match="val_split"):
            load_data(Config.of({**tiny_config, "val_split": bad}))
    for bad in (0.0, 1.0, 0):
        with pytest.raises(ConfigError, match="val_split"):
            Config.of({**tiny_config, "val_split": bad})
    own = DataSplit(torch.zeros(4, 1), torch.zeros(4), torch.zeros(0, 1), torch.zeros(0), "regression", 1,
                    x_val=torch.zeros(2, 1), y_val=torch.zeros(2))
    with pytest.raises(ConfigError, match="its own validation split"):
        hold_out(own, 0.5)


def test_runs_record_validation_metrics_equal_to_an_evaluation_of_the_held_out_examples(tiny_config):
    config = {**copy.deepcopy(tiny_config), "val_split": 0.25, "eval_every": 5, "runs": [dict(algorithm="sgd", lr=0.1)]}
    experiment = Experiment.create(config)
    assert experiment.run() == 0
    run = experiment.history["runs"][0]
    metrics = run["metrics"]
    evaluated = ~torch.isnan(torch.as_tensor(metrics["test_loss"]))
    assert evaluated.sum() == 3  # start and two epoch ends
    assert not torch.isnan(torch.as_tensor(metrics["val_loss"]))[evaluated].any()
    assert metrics["epoch"][-1] == 2.0 and metrics["step"][-1] == 2 * 5  # 72 training examples, batches of 16
    assert experiment.history["environment"]["validation_split"]["examples"] == 24
    # the same model on the held-out examples by hand: the last row's val metrics
    problem = build_problem(Config.of(config), torch.device("cpu"))
    from workbench.registry import ALGORITHMS
    from workbench.run_state import initial_model, seed_everything

    model = initial_model(problem, 0)
    seed_everything(0)
    algo = ALGORITHMS["sgd"](problem, model, seed=0, **experiment.plan[0]["params"])
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        order = torch.randperm(problem.n_train, generator=generator)
        for start in range(0, problem.n_train, 16):
            idx = order[start:start + 16]
            algo.step(problem.data.x_train[idx], problem.data.y_train[idx])
    with torch.no_grad():
        out = model(problem.data.x_val)
        loss = torch.nn.functional.cross_entropy(out, problem.data.y_val).item()
        acc = 100.0 * (out.argmax(1) == problem.data.y_val).double().mean().item()
    assert metrics["val_loss"][-1] == pytest.approx(loss, rel=1e-12)
    assert metrics["val_acc"][-1] == pytest.approx(acc, rel=1e-12)


def test_a_regression_dataset_gets_a_validation_loss(tiny_config):
    config = {**copy.deepcopy(tiny_config), "dataset": "synthetic_regression", "dataset_args": dict(n=80, d=4),
              "val_split": 20, "runs": [dict(algorithm="adamw", lr=1e-2)]}
    experiment = Experiment.create(config)
    assert experiment.run() == 0
    metrics = experiment.history["runs"][0]["metrics"]
    assert "val_loss" in metrics and "val_acc" not in metrics and "test_loss" in metrics
