"""Partitions of a model's parameters into S subsets T_1..T_S (the "summary" granularity).

Each function returns ``(param_groups, name_groups)``: ``param_groups`` is a list of S dicts
``{"params": [tensors]}`` accepted by any ``torch.optim.Optimizer`` and by :class:`NewtonSummary`;
``name_groups`` is the parallel list of S lists of parameter names. Every parameter tensor that
requires a gradient appears in exactly one subset; empty subsets are dropped. Order inside and
across subsets follows ``model.named_parameters()``, except that :func:`wb` regroups by kind.
"""
from __future__ import annotations

import torch

__all__ = ["canonical", "trivial", "wb", "from_names"]


def _named(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"partition needs a torch.nn.Module, got {type(model).__name__}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no parameter that requires a gradient")
    return named


def from_names(model: torch.nn.Module, name_groups: list[list[str]]):
    """Groups given by parameter names; every trainable name exactly once, empty groups dropped."""
    named = dict(_named(model))
    seen: set[str] = set()
    for names in name_groups:
        for n in names:
            if n not in named:
                raise ValueError(f"unknown or frozen parameter name {n!r}")
            if n in seen:
                raise ValueError(f"parameter {n!r} appears in two subsets")
            seen.add(n)
    missing = [n for n in named if n not in seen]
    if missing:
        raise ValueError(f"parameters missing from the partition: {missing}")
    name_groups = [list(names) for names in name_groups if names]
    return [{"params": [named[n] for n in names]} for names in name_groups], name_groups


def canonical(model: torch.nn.Module):
    """One subset per parameter tensor (S = number of tensors), in ``named_parameters()`` order."""
    return from_names(model, [[n] for n, _ in _named(model)])


def trivial(model: torch.nn.Module):
    """A single subset holding every parameter (S = 1): NewtonSummary becomes an exact line search."""
    return from_names(model, [[n for n, _ in _named(model)]])


def _is_kind(name: str, kind: str) -> bool:
    return name == kind or name.endswith("." + kind)


def wb(model: torch.nn.Module):
    """Three subsets: every ``*weight``, every ``*bias``, every other tensor (empty ones dropped)."""
    names = [n for n, _ in _named(model)]
    weights = [n for n in names if _is_kind(n, "weight")]
    biases = [n for n in names if _is_kind(n, "bias")]
    others = [n for n in names if n not in weights and n not in biases]
    return from_names(model, [weights, biases, others])
