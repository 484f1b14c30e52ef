"""One declaration per algorithm parameter: default, one line of help, value check.

An algorithm lists its parameters in ``PARAMS = dict(name=Param(default, help, check), ...)``;
:class:`workbench.algorithm.Algorithm` derives ``defaults`` from it, refuses unknown names, checks
each value with its ``check`` before any run folder exists, and ``main.py --list`` prints the help.
A check is a function of the value that returns what is wrong with it (``"must be > 0"``) or None;
the ones below cover the usual rules. ``Param.number`` says whether the parameter takes numbers
(a sweep can expand those).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

Check = Callable[[Any], "str | None"]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Param:
    """A parameter of an algorithm: its default, one line of help, and what values it accepts."""

    default: Any
    help: str
    check: Check | None = None
    number: bool | None = None  # None: a number exactly when the default is one

    @property
    def takes_numbers(self) -> bool:
        return _is_number(self.default) if self.number is None else self.number

    def problem(self, value) -> str | None:
        return self.check(value) if self.check is not None else None


def positive(value) -> str | None:
    return None if _is_number(value) and value > 0 else "must be > 0"


def at_least(bound: float) -> Check:
    def check(value) -> str | None:
        return None if _is_number(value) and value >= bound else f"must be >= {bound:g}"
    return check


def int_at_least(bound: int) -> Check:
    def check(value) -> str | None:
        return None if _is_int(value) and value >= bound else f"must be an int >= {bound}"
    return check


def in_interval(lo: float, hi: float, closed: str = "both") -> Check:
    """``closed``: "both", "left" [lo, hi), "right" (lo, hi] or "neither"."""
    left, right = closed in ("both", "left"), closed in ("both", "right")
    shown = f"{'[' if left else '('}{lo:g}, {hi:g}{']' if right else ')'}"

    def check(value) -> str | None:
        ok = _is_number(value) and (lo <= value if left else lo < value) and (value <= hi if right else value < hi)
        return None if ok else f"must be in {shown}"
    return check


def one_of(*choices) -> Check:
    def check(value) -> str | None:
        return None if value in choices else f"must be one of {', '.join(map(repr, choices))}"
    return check


def optional(inner: Check) -> Check:
    """``inner``, or None."""
    def check(value) -> str | None:
        problem = None if value is None else inner(value)
        return None if problem is None else f"{problem} or None"
    return check


def list_of(inner: Check) -> Check:
    """A non-empty list of values that each pass ``inner``."""
    def check(value) -> str | None:
        if isinstance(value, (list, tuple)) and value and all(inner(v) is None for v in value):
            return None
        return f"must be a non-empty list of values, each {inner(None).removeprefix('must be ')}"
    return check


def one_or_list_of(inner: Check) -> Check:
    """A value passing ``inner``, or a non-empty list of them (e.g. one per layer)."""
    def check(value) -> str | None:
        values = value if isinstance(value, (list, tuple)) else [value]
        return None if values and all(inner(v) is None for v in values) else f"{inner(None)} (or a list of those)"
    return check


def describe(params: dict[str, Param]) -> list[str]:
    """``name = default: help`` lines (``--list``, docs)."""
    return [f"{name} = {p.default!r}: {p.help}" for name, p in params.items()]
