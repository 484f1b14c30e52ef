"""The plan of runs: one per (seed, runs entry), seeds outermost, labels, checks before any folder."""
from __future__ import annotations

import copy

import pytest
import torch

from workbench.errors import ConfigError
from workbench.plan import check_models, default_label, plan_runs


def test_one_run_per_seed_and_entry_seeds_outermost_with_indices(tiny_config):
    config = {**copy.deepcopy(tiny_config), "seeds": [3, 1]}
    plan = plan_runs(config)
    assert [(p["seed"], p["algorithm"]) for p in plan] == [(3, "sgd"), (3, "persistent_sgd"), (1, "sgd"),
                                                          (1, "persistent_sgd")]
    assert [p["index"] for p in plan] == [0, 1, 2, 3]
    assert plan[0]["params"] == {"lr": 0.1, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0,
                                 "nesterov": False, "schedule": "constant"}  # every default filled in


def test_labels_name_what_the_entry_sets_and_repeated_labels_are_numbered(tiny_config):
    config = {**copy.deepcopy(tiny_config), "runs": [
        dict(algorithm="sgd", lr=0.1), dict(algorithm="sgd", lr=0.1), dict(algorithm="adamw", label="mine")]}
    assert [p["label"] for p in plan_runs(config)] == ["sgd lr=0.1 #1", "sgd lr=0.1 #2", "mine"]
    assert default_label("adamw", {}) == "adamw"


@pytest.mark.parametrize("entry, message", [
    (dict(algorithm="sgdd"), r"runs\[1\]: unknown algorithm 'sgdd'.*Did you mean 'sgd'"),
    (dict(algorithm="sgd", lrr=0.1), r"runs\[1\] \(sgd\): algorithm 'sgd' has no parameter 'lrr'"),
    (dict(algorithm="sgd", lr="fast"), r"runs\[1\] \(sgd\): parameter lr must be a number"),
    (dict(algorithm="relu_jko", epsilon=0.0), r"runs\[1\] \(relu_jko\): epsilon must be > 0, got 0.0"),
])
def test_a_bad_entry_is_named_with_its_position(tiny_config, entry, message):
    config = {**copy.deepcopy(tiny_config), "runs": [dict(algorithm="sgd"), entry]}
    with pytest.raises(ConfigError, match=message):
        plan_runs(config)


def test_check_models_asks_every_entry_about_the_model(tiny_config):
    config = {**copy.deepcopy(tiny_config), "runs": [dict(algorithm="sgd"), dict(algorithm="growth")]}
    with pytest.raises(ConfigError, match=r"runs\[1\] \(growth\) with model 'mlp'.*growing_mlp"):
        check_models(config, plan_runs(config), torch.nn.Linear(2, 2))
