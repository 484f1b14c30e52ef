"""Search spaces of a ``runs`` entry's parameters, and the samplers that draw a tuning budget from them.

A parameter's value in a ``runs`` entry may be a space instead of a value::

    grid([1e-3, 1e-2, 1e-1])   every value: one run per value without ``tune``, a space with it
    choice(["relu", "tanh"])   one of the values (tuning only)
    uniform(0.0, 0.99)         a number in [lo, hi] (tuning only)
    loguniform(1e-4, 1.0)      a number whose logarithm is uniform in [log lo, log hi] (tuning only)

Config files use these names without an import (``from workbench.search import grid`` works too,
for editors); the command line accepts them in a value (``"adamw.lr=grid([1e-4, 1e-3])"``).

A point of a space of d parameters is drawn from u in [0, 1)^d, one coordinate per parameter, in
the order the entry names them: ``lo + u (hi - lo)``, ``lo (hi/lo)^u``, or the value of index
floor(u k) of k values. Samplers (:func:`sample`): ``grid`` (every combination; continuous spaces
get evenly spaced points, log-spaced for loguniform), ``random`` (u uniform, numpy's PCG64) and
``sobol`` (u a scrambled Sobol' sequence, scipy.stats.qmc), all seeded. Drawn numbers are rounded
to 10 significant digits, so that the same seed gives the same values on every machine (the
logarithm and exponential are the C library's, which may differ in the last bit).
"""
from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

from workbench.errors import ConfigError

SAMPLERS = ("grid", "random", "sobol")
SIGNIFICANT_DIGITS = 10


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Space:
    """A parameter's search space. ``values``: the finite values of a discrete space (None for a
    continuous one); ``log``: the space is read on a log scale (figures draw it so)."""

    name = "space"
    values: tuple | None = None
    log = False

    def at(self, u: float) -> Any:
        """The point of the space at ``u`` in [0, 1)."""
        raise NotImplementedError

    def grid_points(self, k: int) -> tuple:
        """k points covering the space, ends included (a discrete space: its values)."""
        raise NotImplementedError

    def candidates(self) -> tuple:
        """Values that stand for the whole space when a parameter's check is run on it."""
        raise NotImplementedError

    def bounds(self) -> tuple[float, float] | None:
        """(smallest, largest) number of the space, if it is numeric."""
        numbers = self.candidates()
        return (min(numbers), max(numbers)) if all(_is_number(v) for v in numbers) else None

    def describe(self) -> dict:
        """A plain description for the record (``kind`` and its arguments)."""
        raise NotImplementedError

    def __eq__(self, other):
        return type(other) is type(self) and other.describe() == self.describe()

    def __hash__(self):
        return hash(repr(self))


class _Discrete(Space):
    def __init__(self, *values):
        if len(values) == 1 and isinstance(values[0], (list, tuple, range)):
            values = tuple(values[0])
        if not values:
            raise ConfigError(f"{self.name}() needs at least one value, e.g. {self.name}([1e-3, 1e-2])")
        if any(isinstance(v, Space) for v in values):
            raise ConfigError(f"{self.name}() takes values, not other search spaces")
        repeated = [v for i, v in enumerate(values) if v in values[:i]]
        if repeated:
            raise ConfigError(f"{self.name}() repeats {repeated[0]!r}: every value once")
        self.values = tuple(values)

    def at(self, u: float) -> Any:
        return self.values[min(int(u * len(self.values)), len(self.values) - 1)]

    def grid_points(self, k: int) -> tuple:
        return self.values

    def candidates(self) -> tuple:
        return self.values

    @property
    def log(self) -> bool:
        """Positive numbers spanning more than a decade are drawn on a log axis."""
        bounds = self.bounds()
        return bounds is not None and bounds[0] > 0 and bounds[1] / bounds[0] > 10

    def describe(self) -> dict:
        return {"kind": self.name, "values": list(self.values)}

    def __reduce__(self):
        return type(self), (list(self.values),)

    def __repr__(self) -> str:
        return f"{self.name}({list(self.values)!r})"


class Grid(_Discrete):
    """Every value: expands into one run per value (a space of its values when tuning)."""

    name = "grid"


class Choice(_Discrete):
    """One of the values, drawn by the tuning sampler."""

    name = "choice"


class _Interval(Space):
    def __init__(self, lo, hi):
        if not (_is_number(lo) and _is_number(hi)) or not lo < hi:
            raise ConfigError(f"{self.name}(lo, hi) needs finite numbers lo < hi, got {self.name}({lo!r}, {hi!r})")
        self.lo, self.hi = float(lo), float(hi)

    def candidates(self) -> tuple:
        return (self.lo, self.hi)

    def describe(self) -> dict:
        return {"kind": self.name, "lo": self.lo, "hi": self.hi}

    def __reduce__(self):
        return type(self), (self.lo, self.hi)

    def __repr__(self) -> str:
        return f"{self.name}({self.lo!r}, {self.hi!r})"


class Uniform(_Interval):
    """A number uniform in [lo, hi]."""

    name = "uniform"

    def at(self, u: float) -> float:
        return _rounded(self.lo + u * (self.hi - self.lo))

    def grid_points(self, k: int) -> tuple:
        return tuple(self.at(j / (k - 1)) for j in range(k)) if k > 1 else (self.at(0.5),)


class LogUniform(_Interval):
    """A number whose logarithm is uniform in [log lo, log hi] (0 < lo < hi)."""

    name = "loguniform"
    log = True

    def __init__(self, lo, hi):
        super().__init__(lo, hi)
        if self.lo <= 0:
            raise ConfigError(f"loguniform(lo, hi) needs 0 < lo, got loguniform({lo!r}, {hi!r}); "
                              "uniform(lo, hi) takes any interval")

    def at(self, u: float) -> float:
        return _rounded(math.exp(math.log(self.lo) + u * (math.log(self.hi) - math.log(self.lo))))

    def grid_points(self, k: int) -> tuple:
        return tuple(self.at(j / (k - 1)) for j in range(k)) if k > 1 else (self.at(0.5),)


def grid(*values) -> Grid:
    """Every value: ``grid([1e-3, 1e-2])`` trains one run per value (a tuning space with ``tune``)."""
    return Grid(*values)


def choice(*values) -> Choice:
    """One of ``values``, chosen by tuning."""
    return Choice(*values)


def uniform(lo, hi) -> Uniform:
    """A number uniform in [lo, hi], chosen by tuning."""
    return Uniform(lo, hi)


def loguniform(lo, hi) -> LogUniform:
    """A number log-uniform in [lo, hi] (0 < lo), chosen by tuning."""
    return LogUniform(lo, hi)


# The names a config file and a command-line value may use without an import.
NAMES = {"grid": grid, "choice": choice, "uniform": uniform, "loguniform": loguniform}


def _rounded(x: float) -> float:
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}")


def spaces_in(entry: dict) -> dict[str, Space]:
    """The parameters of a ``runs`` entry whose value is a search space, in the entry's order."""
    return {k: v for k, v in entry.items() if isinstance(v, Space)}


def grid_product(spaces: dict[str, Space]) -> list[dict]:
    """Every combination of the grid values, the first parameter outermost."""
    names = list(spaces)
    return [dict(zip(names, values)) for values in itertools.product(*(spaces[n].values for n in names))]


def sample(spaces: dict[str, Space], budget: int, sampler: str, seed: int) -> list[dict]:
    """``budget`` points of the product of ``spaces`` (module docstring), the same for the same
    arguments on every machine."""
    names = list(spaces)
    if sampler == "grid":
        return _full_grid(spaces, budget)
    discrete = [s.values for s in spaces.values()]
    if all(v is not None for v in discrete) and math.prod(len(v) for v in discrete) < budget:
        size = math.prod(len(v) for v in discrete)
        raise ConfigError(f"tune: the space ({_shown(spaces)}) has only {size} points, fewer than budget={budget}: "
                          f"use sampler=\"grid\" with budget={size}, or widen the space")
    import numpy as np

    if sampler == "random":
        u = np.random.default_rng(seed).random((budget, len(names)))
    elif sampler == "sobol":
        from scipy.stats import qmc

        with warnings.catch_warnings():  # a budget that is not a power of 2 only loses balance
            warnings.simplefilter("ignore", UserWarning)
            u = qmc.Sobol(len(names), scramble=True, rng=seed).random(budget)
    else:
        raise ConfigError(f"tune: sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    return [{n: spaces[n].at(float(u[i, j])) for j, n in enumerate(names)} for i in range(budget)]


def _full_grid(spaces: dict[str, Space], budget: int) -> list[dict]:
    """Every combination; each continuous space gets k points, the largest k that keeps the grid
    within ``budget``. The grid must have exactly ``budget`` points (that is the fairness)."""
    sizes = [len(s.values) for s in spaces.values() if s.values is not None]
    continuous = sum(s.values is None for s in spaces.values())
    fixed = math.prod(sizes)
    k = 0
    if continuous:
        k = 1
        while fixed * (k + 1) ** continuous <= budget:
            k += 1
    points = [dict(zip(spaces, values)) for values in itertools.product(
        *(s.values if s.values is not None else s.grid_points(k) for s in spaces.values()))]
    if len(points) != budget:
        raise ConfigError(f"tune: sampler=\"grid\" over {_shown(spaces)} makes a grid of {len(points)} points, not "
                          f"budget={budget}: set budget={len(points)}, or use sampler=\"sobol\" or \"random\", which "
                          f"draw exactly the budget")
    return points


def _shown(spaces: dict[str, Space]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in spaces.items())


def nested_space(value) -> bool:
    """A search space inside a list, tuple or dict (only a parameter's whole value may be one)."""
    if isinstance(value, dict):
        return any(isinstance(v, Space) or nested_space(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, Space) or nested_space(v) for v in value)
    return False
