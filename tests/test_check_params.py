"""Every registered algorithm checks its parameter values before a run folder exists: a table of
bad values, each rejected by plan_runs with a ConfigError that names the parameter."""
from __future__ import annotations

import copy

import pytest

from workbench.registry import ALGORITHMS, ConfigError, load_all
from workbench.runner import plan_runs

load_all()

BAD = {
    "sgd": [("lr", -1.0), ("momentum", -0.5), ("weight_decay", -1.0)],
    "adamw": [("lr", -1.0), ("eps", -1e-8), ("weight_decay", -0.1)],
    "persistent_sgd": [("lr", -0.01), ("decay", 1.5)],
    "adema": [("lr", -1e-3), ("beta", 1.5), ("decay", -0.1)],
    "newton_summary": [("partition", "bogus"), ("hg_batch_size", 0), ("period_hg", 0), ("damping", -1.0),
                       ("mom_lrs", 1.0), ("backend", "fastest")],
    "growth": [("method", "magic"), ("grow_unit", "hours"), ("grow_every", -1), ("neurons_per_growth", 0),
               ("layer_choice", "worst")],
    "relu_gd": [("lr", -1.0), ("lr", 0.0), ("beta", -1.0), ("optimizer", "nosuchopt"), ("reference_gates", -5)],
    "relu_convex": [("patterns", "bogus"), ("beta", -1.0), ("formulation", "dual"), ("n_gates", -1),
                    ("max_solves", 0), ("solver", "NOSUCHSOLVER"), ("zero_tol", -1.0)],
    "relu_prox": [("gamma", 0.0), ("gamma", -1.0), ("inner_steps", 0), ("inner_lr", 0.0), ("inner_lr_decay", 1.5),
                  ("inner_tol", -1.0), ("distance", "l7"), ("inner_optimizer", "lbfgs2"), ("n_projections", 0),
                  ("assignment_every", 0), ("beta", -1.0), ("inner_momentum", 1.0)],
    "relu_jko": [("epsilon", -1.0), ("epsilon", 0.0), ("tau", 0.0), ("tol", 0.0), ("max_iter", 0), ("check_every", 0),
                 ("kernel_floor", 1.0), ("prox_solver", "magic"), ("beta", -1.0), ("prox_tol", -1.0)],
}


def test_the_table_covers_every_registered_algorithm():
    registered = {name for name in ALGORITHMS if not name.startswith("_")}  # "_test_*": other tests' stand-ins
    assert set(BAD) >= registered, sorted(registered - set(BAD))


@pytest.mark.parametrize("algorithm, key, value", [(a, k, v) for a, rows in BAD.items() for k, v in rows])
def test_a_bad_value_is_rejected_before_any_run_naming_the_parameter(tiny_config, algorithm, key, value):
    if algorithm not in ALGORITHMS:
        pytest.skip(f"{algorithm} is not registered here")
    config = copy.deepcopy(tiny_config)
    config["runs"] = [{"algorithm": algorithm, key: value}]
    with pytest.raises(ConfigError, match=key):
        plan_runs(config)
    config["runs"] = [{"algorithm": algorithm}]
    assert plan_runs(config), "the defaults pass"
