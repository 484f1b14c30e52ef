"""The optimizers family as registered workbench algorithms, and their effective step sizes."""
from __future__ import annotations

import copy

import pytest
import torch

from algorithms.optimizers import AdEMA, PersistentSGD
from workbench.problem import DataSplit, Problem
from workbench.registry import ALGORITHMS, load_all
from workbench.errors import ConfigError

load_all()  # every family registers itself

# name -> (params for a tiny problem, expected effective step size)
RUNS = {
    "sgd": (dict(lr=0.05, momentum=0.9), 0.05 / (1 - 0.9)),
    "adamw": (dict(lr=1e-2), None),
    "persistent_sgd": (dict(lr=0.02, decay=0.8), 0.02 / (1 - 0.8)),
    "adema": (dict(lr=0.5, beta=0.9, decay=0.5), 0.5 * (1 - 0.5)),
}


def make_problem(task: str = "regression", seed: int = 0) -> Problem:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 5, generator=gen, dtype=torch.float64)
    if task == "regression":
        y = x @ torch.randn(5, 2, generator=gen, dtype=torch.float64) + 0.1
        n_outputs = 2
    else:
        y = (x[:, 0] + x[:, 1] > 0).long()
        n_outputs = 2
    data = DataSplit(x_train=x[:48], y_train=y[:48], x_test=x[48:], y_test=y[48:], task=task,
                     n_outputs=n_outputs)

    def build_model():
        return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()

    return Problem(data=data, build_model=build_model, device=torch.device("cpu"), dtype=torch.float64)


def fresh(name, problem, model, **params):
    return ALGORITHMS[name](problem, copy.deepcopy(model), **params)


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("name", sorted(RUNS))
def test_registered_algorithm_decreases_the_loss(name, task):
    torch.manual_seed(0)
    problem = make_problem(task)
    params, _ = RUNS[name]
    algo = fresh(name, problem, problem.build_model(), **params)
    x, y = problem.data.x_train, problem.data.y_train
    start = problem.loss(algo.model(x), y).item()
    losses = [float(algo.step(x, y)["train_loss"]) for _ in range(40)]
    assert losses[0] == pytest.approx(start)
    assert losses[-1] < 0.7 * start
    assert set(algo.evaluate()) >= {"test_loss"}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_info_reports_the_effective_step_size(name):
    problem = make_problem()
    params, expected = RUNS[name]
    facts = fresh(name, problem, problem.build_model(), **params).summary_facts()
    if expected is None:
        assert facts == {"eff. step": None}
    else:
        assert facts["eff. step"] == pytest.approx(expected, rel=1e-12)


def test_defaults_are_filled_in_and_reach_the_optimizer():
    problem = make_problem()
    model = problem.build_model()
    psgd = fresh("persistent_sgd", problem, model)
    assert isinstance(psgd.optimizer, PersistentSGD)
    assert psgd.optimizer.defaults["lr"] == 0.01 and psgd.optimizer.defaults["decay"] == 0.99
    assert psgd.summary_facts()["eff. step"] == pytest.approx(1.0)  # the reference's setting
    adema = fresh("adema", problem, model)
    assert isinstance(adema.optimizer, AdEMA)
    assert adema.summary_facts()["eff. step"] == pytest.approx(1e-6)
    adamw = fresh("adamw", problem, model, betas=[0.8, 0.9])
    group = adamw.optimizer.param_groups[0]
    assert group["betas"] == (0.8, 0.9) and group["weight_decay"] == 0.01 and group["eps"] == 1e-8
    assert group["fused"] is True  # CPU float64 has a fused AdamW kernel
    sgd = fresh("sgd", problem, model, lr=0.1, nesterov=True, momentum=0.5)
    assert sgd.optimizer.param_groups[0]["nesterov"] is True


@pytest.mark.parametrize("name", sorted(RUNS))
def test_algorithm_state_dict_continues_exactly(name):
    problem = make_problem()
    model = problem.build_model()
    params, _ = RUNS[name]
    x, y = problem.data.x_train, problem.data.y_train
    a = fresh(name, problem, model, **params)
    for _ in range(5):
        a.step(x, y)
    saved = copy.deepcopy(a.state_dict())
    for _ in range(5):
        a.step(x, y)
    b = fresh(name, problem, model, **params)
    b.load_state_dict(saved)
    for _ in range(5):
        b.step(x, y)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb, atol=0.0, rtol=0.0)


def test_unknown_parameter_names_the_closest():
    with pytest.raises(ConfigError, match=r"no parameter 'decya'.*Did you mean 'decay'"):
        ALGORITHMS["persistent_sgd"].resolve_params({"decya": 0.9})
    with pytest.raises(ConfigError, match=r"Did you mean 'momentum'"):
        ALGORITHMS["sgd"].resolve_params({"momentun": 0.9})


@pytest.mark.parametrize("name,params,pattern", [
    ("persistent_sgd", dict(decay=1.0), r"decay value: 1\.0"),
    ("persistent_sgd", dict(lr=-0.1), r"learning rate: -0\.1"),
    ("adema", dict(beta=1.2), r"beta value: 1\.2"),
    ("sgd", dict(momentum=-0.5), r"momentum value: -0\.5"),
    ("adamw", dict(lr=-1.0), r"learning rate: -1\.0"),
])
def test_invalid_hyperparameters_propagate_as_value_error(name, params, pattern):
    problem = make_problem()
    with pytest.raises(ValueError, match=pattern):
        fresh(name, problem, problem.build_model(), **params)


def test_effective_step_sizes_in_closed_form():
    cases = [("persistent_sgd", dict(lr=0.01, decay=0.99), 1.0), ("persistent_sgd", dict(lr=0.3, decay=0.0), 0.3),
             ("adema", dict(lr=1e-3, beta=0.5, decay=0.999), 1e-6), ("sgd", dict(lr=0.1, momentum=0.9), 1.0),
             ("sgd", dict(lr=0.1, momentum=0.9, dampening=0.9), 0.1), ("sgd", dict(lr=0.1), 0.1),
             ("adamw", dict(lr=1e-3), None)]
    problem = make_problem()
    for name, params, expected in cases:
        step = fresh(name, problem, problem.build_model(), **params).effective_step_size()
        assert step == (None if expected is None else pytest.approx(expected, rel=1e-12)), (name, params)


def test_defaults_are_the_optimizer_constructors_own():
    import inspect

    for name, cls in (("persistent_sgd", PersistentSGD), ("adema", AdEMA)):
        signature = inspect.signature(cls).parameters
        own = {k: v for k, v in ALGORITHMS[name].defaults.items() if k != "schedule"}  # every optimizer's extra
        assert own == {k: signature[k].default for k in own} and ALGORITHMS[name].defaults["schedule"] == "constant"


@pytest.mark.parametrize("name,params", [
    ("persistent_sgd", dict(lr=0.05, decay=0.7)),
    ("adema", dict(lr=0.4, beta=0.6, decay=0.3)),
    ("sgd", dict(lr=0.05, momentum=0.7)),
    ("sgd", dict(lr=0.05, momentum=0.7, nesterov=True)),
    ("sgd", dict(lr=0.05, momentum=0.7, dampening=0.4)),
])
def test_effective_step_size_is_the_steady_state_step_for_a_constant_gradient(name, params):
    """Measured, not assumed: on a linear loss c.p the step converges to -eta_eff c."""
    cls = {"persistent_sgd": PersistentSGD, "adema": AdEMA, "sgd": torch.optim.SGD}[name]
    c = torch.tensor([1.0, -3.0], dtype=torch.float64)
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = cls([p], **params)
    for _ in range(300):
        prev = p.detach().clone()
        opt.zero_grad()
        (c @ p).backward()
        opt.step()
    problem = make_problem()
    eta = fresh(name, problem, problem.build_model(), **params).effective_step_size()
    torch.testing.assert_close(p.detach() - prev, -eta * c, rtol=1e-10, atol=0.0)
