"""Every registered algorithm checks its parameter values before a run folder exists (a table of
bad values, each rejected by plan_runs with a ConfigError that names the parameter), and draws its
own random numbers from the seed it is given, not from torch's global state."""
from __future__ import annotations

import copy

import pytest
import torch

from workbench.registry import ALGORITHMS, load_all
from workbench.errors import ConfigError
from workbench.plan import plan_runs

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


SEEDED = {  # algorithm -> (config changes, a function of the built algorithm that reads its own stream)
    "growth": (dict(model="growing_mlp", model_args=dict(hidden_size=3)), lambda a: torch.rand(4, generator=a.generator)),
    "newton_summary": ({}, lambda a: next(a.hg_stream)[0]),
    "relu_prox": (dict(model="two_layer_relu", model_args={}, dataset="teacher", dataset_args=dict(n=20, d=2)),
                  lambda a: torch.rand(4, generator=a.generator)),
    "relu_convex": (dict(model="two_layer_relu", model_args={}, dataset="teacher", dataset_args=dict(n=20, d=2)),
                    lambda a: torch.rand(4, generator=a.generator)),
}


@pytest.mark.parametrize("algorithm", sorted(SEEDED))
def test_seeds_are_passed_not_read_from_torch(tiny_config, algorithm):
    """Built twice outside the runner with the same seed, and torch's global generator in
    different states: the algorithm's own stream is the same; another seed gives another."""
    from workbench.problem import build_problem

    changes, draw = SEEDED[algorithm]
    config = {**copy.deepcopy(tiny_config), **changes, "runs": [{"algorithm": algorithm}]}
    if algorithm not in ALGORITHMS:
        pytest.skip(f"{algorithm} is not registered here")
    problem = build_problem(config)
    cls = ALGORITHMS[algorithm]
    params = cls.resolve_params({})
    streams = []
    for torch_seed, seed in ((1, 7), (2, 7), (3, 8)):
        torch.manual_seed(torch_seed)
        algo = cls(problem, problem.build_model(), seed=seed, **params)
        streams.append(draw(algo))
    assert torch.equal(streams[0], streams[1]) and not torch.equal(streams[0], streams[2])


@pytest.mark.parametrize("algorithm", sorted(n for n in ALGORITHMS if not n.startswith("_")))
def test_every_parameter_is_declared_with_help_and_its_default_passes_its_check(algorithm):
    """One declaration per parameter (default, help, check): --list and the docs read it."""
    from workbench.params import Param

    cls = ALGORITHMS[algorithm]
    assert cls.PARAMS and all(isinstance(p, Param) for p in cls.PARAMS.values())
    assert cls.defaults == {name: p.default for name, p in cls.PARAMS.items()}
    for name, param in cls.PARAMS.items():
        assert param.help.strip(), f"{algorithm}.{name} has no help"
        assert param.problem(param.default) is None, f"{algorithm}.{name}: its default fails its own check"


def test_param_checks_name_what_is_wrong():
    from workbench.params import at_least, in_interval, int_at_least, list_of, one_of, optional, positive

    assert positive(0) == "must be > 0" and positive(True) == "must be > 0" and positive(1e-9) is None
    assert at_least(0)(-1) == "must be >= 0" and at_least(0)(0) is None
    assert int_at_least(1)(1.0) == "must be an int >= 1" and int_at_least(1)(2) is None
    assert in_interval(0, 1, "left")(1) == "must be in [0, 1)" and in_interval(0, 1, "left")(0) is None
    assert in_interval(0, 1, "right")(0) == "must be in (0, 1]" and in_interval(0, 1, "right")(1) is None
    assert one_of("a", "b")("c") == "must be one of 'a', 'b'"
    assert optional(positive)(None) is None and optional(positive)(-1) == "must be > 0 or None"
    assert list_of(positive)([1, 2]) is None and list_of(positive)([]) is not None
    assert list_of(positive)([1, -2]) == "must be a non-empty list of values, each > 0"
