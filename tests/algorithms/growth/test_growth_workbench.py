"""The workbench's growth algorithm: parameters, growth rows, gamma never 0, exact resume."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from algorithms.growth import GrowingMLP
from workbench.problem import Problem
from workbench.registry import ALGORITHMS, DATASETS, MODELS, load_all
from workbench.errors import ConfigError

load_all()  # every family registers itself

DT = torch.float64


def make_problem(batch_size=None):
    data = DATASETS["student_teacher"](None, n=200, n_test=100, seed=0)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        setattr(data, key, getattr(data, key).to(DT))

    def build():
        return MODELS["growing_mlp"](data.input_shape, data.n_outputs, hidden_size=3,
                                     activation="relu1").to(DT)

    return Problem(data=data, build_model=build, device=torch.device("cpu"), dtype=DT, batch_size=batch_size)


def make_algo(problem, **params):
    torch.manual_seed(0)
    model = problem.build_model()
    cls = ALGORITHMS["growth"]
    params = cls.resolve_params(params)
    cls.check_params(params)
    torch.manual_seed(0)
    return cls(problem, model, **params)


def train(algo, steps):
    x, y = algo.problem.data.x_train, algo.problem.data.y_train
    return [algo.step(x, y) for _ in range(steps)]


@pytest.mark.parametrize("bad,match", [
    (dict(method="gradmax", amplitude="line_search"), "same loss"),
    (dict(method="tiny", amplitude="norm"), "GradMax"),
    (dict(gamma_grid=[0.0, 1.0]), "gamma"),
    (dict(method="grow"), "method"),
    (dict(optimizer="NoSuchOpt"), "torch.optim"),
    (dict(optimizer_args=dict(lr=-1.0)), "learning rate"),
])
def test_invalid_parameters_raise(bad, match):
    cls = ALGORITHMS["growth"]
    with pytest.raises(ValueError, match=match):
        cls.check_params(cls.resolve_params(bad))


def test_growth_needs_a_growing_mlp():
    growth = ALGORITHMS["growth"]
    with pytest.raises(ValueError, match="the growth algorithm needs model='growing_mlp', got Linear"):
        growth.check_model(torch.nn.Linear(10, 10), growth.resolve_params({}))
    two_layers = MODELS["growing_mlp"]((10,), 3, number_hidden_layers=2)
    with pytest.raises(ValueError, match=r"target_width needs 2 widths, got \[4\]"):
        growth.check_model(two_layers, growth.resolve_params({"target_width": [4]}))
    growth.check_model(two_layers, growth.resolve_params({"target_width": [4, 5]}))


@pytest.mark.parametrize("method", ["tiny", "gradmax", "random"])
def test_growth_rows_and_widths(method):
    algo = make_algo(make_problem(), method=method, grow_every=5, neurons_per_growth=2, target_width=6,
                     optimizer_args=dict(lr=0.01, momentum=0.9))
    rows = train(algo, 20)
    widths = [r["width_0"] for r in rows]
    assert widths[3] == 3 and widths[-1] == 6 and max(widths) == 6  # stops at the target
    grown = [i for i, r in enumerate(rows) if not math.isnan(r["growth_added"])]
    assert grown == [4, 9]  # steps 5 and 10; NaN elsewhere
    for i in grown:
        assert rows[i]["growth_gamma"] > 0  # never gamma = 0
        assert rows[i]["n_params"] > rows[i - 1]["n_params"]
        if method != "tiny":  # function-preserving at insertion
            assert rows[i]["growth_observed_change"] == pytest.approx(0.0, abs=1e-12)
            assert rows[i]["growth_predicted_change"] == 0.0
    if method == "tiny":
        assert all(rows[i]["growth_observed_change"] < 0 for i in grown)
    params = set(map(id, algo.model.parameters()))
    assert params == {id(p) for g in algo.optimizer.param_groups for p in g["params"]}
    assert all(p in algo.optimizer.state for p in algo.model.parameters())
    snap = algo.snapshot()
    assert snap["widths"] == [6] and snap["events"]["step"] == [5, 10]


def test_line_search_skips_instead_of_committing_gamma_zero():
    algo = make_algo(make_problem(), method="tiny", grow_every=2, gamma_grid=[1e4])
    with pytest.warns(RuntimeWarning, match="skipped"):
        rows = train(algo, 2)
    assert rows[-1]["width_0"] == 3 and math.isnan(rows[-1]["growth_added"])


def test_fixed_baseline_start_width():
    algo = make_algo(make_problem(), method="none", start_width=7)
    rows = train(algo, 3)
    assert algo.model.hidden_sizes == [7] and rows[-1]["width_0"] == 7


@pytest.mark.parametrize("optimizer,args", [("SGD", dict(lr=0.01, momentum=0.9)), ("Adam", dict(lr=1e-3))])
def test_resume_after_growth_is_exact(optimizer, args):
    params = dict(method="random", grow_every=3, neurons_per_growth=2, target_width=9,
                  optimizer=optimizer, optimizer_args=args, layer_choice="round_robin")
    problem = make_problem()
    ref = make_algo(problem, **params)
    train(ref, 4)  # one growth at step 3
    state = copy.deepcopy(ref.state_dict())  # as if read back from disk: no shared buffers
    resumed = make_algo(problem, **params)  # fresh model at the initial width
    resumed.load_state_dict(state)
    assert resumed.model.hidden_sizes == ref.model.hidden_sizes == [5]
    a, b = train(ref, 5), train(resumed, 5)  # includes a second growth (random: generator state)
    for ra, rb in zip(a, b, strict=True):
        torch.testing.assert_close(ra["train_loss"], rb["train_loss"], rtol=0, atol=0)
    for pa, pb in zip(ref.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_growing_mlp_model_entry():
    model = MODELS["growing_mlp"]((1, 28, 28), 10, hidden_size=4, number_hidden_layers=2)
    assert isinstance(model, GrowingMLP) and model.hidden_sizes == [4, 4]
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        MODELS["growing_mlp"]((10,), 3, hidden_size=0)
