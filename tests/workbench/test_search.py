"""Search spaces and their samplers: what each point of a space is, that every sampler draws exactly
the budget, deterministically, and that spaces survive the record and the command line."""
from __future__ import annotations

import io
import math
import pickle

import numpy as np
import pytest

from workbench.config import parse_value
from workbench.errors import ConfigError
from workbench.safe_pickle import load_record
from workbench.search import Choice, Grid, LogUniform, Uniform, choice, grid, loguniform, sample, uniform


@pytest.mark.parametrize("make, message", [
    (lambda: loguniform(0.0, 1.0), "0 < lo"),
    (lambda: loguniform(1.0, 0.1), "lo < hi"),
    (lambda: uniform(1.0, 1.0), "lo < hi"),
    (lambda: uniform(0.0, float("inf")), "finite"),
    (lambda: grid([]), "at least one value"),
    (lambda: grid([0.1, 0.2, 0.1]), "repeats 0.1"),
    (lambda: choice([grid([1])]), "not other search spaces"),
])
def test_a_malformed_space_is_refused_with_what_to_write(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_points_of_each_space():
    assert uniform(-1.0, 3.0).at(0.25) == 0.0
    assert loguniform(1e-4, 1.0).at(0.5) == pytest.approx(1e-2, rel=1e-9)
    assert loguniform(1e-4, 1.0).at(0.0) == 1e-4
    values = ("a", "b", "c")
    assert [choice(values).at(u) for u in (0.0, 0.33, 0.34, 0.66, 0.67, 0.999)] == ["a", "a", "b", "b", "c", "c"]
    assert grid(1, 2) == grid([1, 2]) and grid([1, 2]) != choice([1, 2])


@pytest.mark.parametrize("sampler", ["sobol", "random"])
def test_samplers_draw_exactly_the_budget_deterministically_inside_the_space(sampler):
    spaces = {"lr": loguniform(1e-4, 1.0), "momentum": uniform(0.0, 0.99), "act": choice(["relu", "tanh"])}
    points = sample(spaces, 12, sampler, seed=3)
    assert len(points) == 12 and points == sample(spaces, 12, sampler, seed=3)
    assert points != sample(spaces, 12, sampler, seed=4)
    for p in points:
        assert 1e-4 <= p["lr"] <= 1.0 and 0.0 <= p["momentum"] <= 0.99 and p["act"] in ("relu", "tanh")
        assert list(p) == ["lr", "momentum", "act"]


def test_a_sobol_budget_of_a_power_of_two_puts_one_point_in_each_equal_slice_of_the_log_range():
    """A scrambled Sobol' net of 2^k points has one point in each interval [j/2^k, (j+1)/2^k) of
    every coordinate; through lo (hi/lo)^u that is one point per equal slice of log(lr)."""
    points = sample({"lr": loguniform(1e-5, 1e-1), "b": uniform(0.0, 1.0)}, 8, "sobol", seed=0)
    slices = sorted(int((math.log10(p["lr"]) + 5) / 4 * 8) for p in points)
    assert slices == list(range(8))
    assert sorted(int(p["b"] * 8) for p in points) == list(range(8))


def test_the_grid_sampler_spaces_continuous_dimensions_evenly_and_insists_on_the_budget():
    points = sample({"lr": loguniform(1e-4, 1.0)}, 5, "grid", seed=0)
    np.testing.assert_allclose([p["lr"] for p in points], [1e-4, 1e-3, 1e-2, 1e-1, 1.0], rtol=1e-9)
    points = sample({"m": grid([0.0, 0.9]), "lr": uniform(0.0, 1.0)}, 6, "grid", seed=0)
    assert [(p["m"], p["lr"]) for p in points] == [(0.0, 0.0), (0.0, 0.5), (0.0, 1.0), (0.9, 0.0), (0.9, 0.5),
                                                   (0.9, 1.0)]
    with pytest.raises(ConfigError, match="grid of 4 points, not budget=5"):
        sample({"a": grid([1, 2]), "b": choice([3, 4])}, 5, "grid", seed=0)
    with pytest.raises(ConfigError, match="only 2 points, fewer than budget=3"):
        sample({"a": grid([1, 2])}, 3, "random", seed=0)


def test_spaces_round_trip_through_the_records_safe_reader():
    spaces = [grid([1e-3, 1e-2]), choice(["relu", "tanh"]), uniform(0.0, 1.0), loguniform(1e-4, 1.0)]
    data = pickle.dumps({"runs": [dict(algorithm="sgd", lr=s) for s in spaces]}, protocol=4)
    back = load_record(io.BytesIO(data), "test")
    assert [r["lr"] for r in back["runs"]] == spaces
    assert [type(r["lr"]) for r in back["runs"]] == [Grid, Choice, Uniform, LogUniform]


def test_command_line_values_may_be_spaces_and_nothing_else_is_called():
    assert parse_value("grid([1e-4, 1e-3])") == grid([1e-4, 1e-3])
    assert parse_value(" loguniform(1e-4, 1) ") == loguniform(1e-4, 1.0)
    assert parse_value("[dict(algorithm='sgd', lr=grid([0.1, 1]))]") == [{"algorithm": "sgd", "lr": grid([0.1, 1])}]
    assert parse_value("dict(budget=4)") == {"budget": 4}
    assert parse_value("__import__('os').getcwd()") == "__import__('os').getcwd()"  # a plain string, never run
    with pytest.raises(ConfigError, match="only grid, choice, uniform, loguniform, dict may be called"):
        parse_value("grid([open('x')])")
