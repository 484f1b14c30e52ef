"""Which planned runs train as one stacked model (``stack = True``).

Runs of one ``runs`` algorithm that differ only in their seed and in their parameter values (lr,
momentum, betas, weight decay, the ``schedule``, ...) share one forward and one backward: the M
members' weights are stacked along a leading member dimension (:mod:`workbench.stacked_training`).
Each member keeps its own optimizer, which updates its slice of the stack in place; so any
``torch.optim.Optimizer`` works, its state is the separate run's, and a checkpoint of a member is a
separate run's checkpoint.

Stackable (:func:`why_not_stackable`): an algorithm that trains with
:class:`workbench.algorithm.OptimizerAlgorithm`'s own constructor and step (``sgd``, ``adamw``,
``persistent_sgd``, ``adema``, ``torch.optim.NAME``, ``file.py:Class`` optimizers), on mini-batches;
and a model that ``torch.func.vmap`` can run (no random layers such as dropout, no data-dependent
Python control flow: :func:`why_model_cannot_stack`). Anything else trains as separate runs.
"""
from __future__ import annotations

from collections.abc import Callable

from workbench.algorithm import OptimizerAlgorithm
from workbench.registry import ALGORITHMS

def why_not_stackable(spec: dict) -> str | None:
    """Why the planned run ``spec`` must train on its own (None: it may share a stack)."""
    cls = ALGORITHMS[spec["algorithm"]]
    if not (isinstance(cls, type) and issubclass(cls, OptimizerAlgorithm)):
        return "not trained by one torch optimizer"
    if cls.step is not OptimizerAlgorithm.step or cls.__init__ is not OptimizerAlgorithm.__init__:
        return "its algorithm has a step of its own"
    if cls.full_batch:
        return "full-batch algorithm"
    return None


def stack_key(spec: dict) -> tuple | None:
    """What the runs of one stack share (None: ``spec`` trains on its own)."""
    return None if why_not_stackable(spec) is not None else (spec["algorithm"],)


def stack_units(plan: list[dict], todo: list[int], size: int | None,
                step_of: Callable[[int], int] = lambda index: 0) -> list[tuple[int, ...]]:
    """The runs ``todo`` as units of work: stacks of at most ``size`` runs (None: no cap) that share
    a :func:`stack_key` and the step they continue from (``step_of``: 0, or their checkpoint's), and
    single runs; in the order of each unit's first run."""
    groups: dict[tuple, list[int]] = {}
    units: list[list[int]] = []
    for index in todo:
        key = stack_key(plan[index])
        if key is None:
            units.append([index])
            continue
        key = (*key, step_of(index))
        group = groups.get(key)
        if group is None or (size is not None and len(group) >= size):
            group = groups[key] = []
            units.append(group)
        group.append(index)
    return [tuple(unit) for unit in units]


def why_model_cannot_stack(model: torch.nn.Module, problem) -> str | None:
    """Why two copies of ``model`` cannot train stacked on ``problem`` (None: they can): a forward
    and backward of two members on two training examples, as a stack runs them (``torch.func.vmap``
    refuses random layers such as dropout and data-dependent Python control flow)."""
    import torch

    from workbench.stacked_training import StackedModel

    x, y = problem.inputs(problem.data.x_train[:2]), problem.data.y_train[:2]
    try:
        StackedModel([model, model]).losses(problem, torch.stack([x, x]), torch.stack([y, y])).sum().backward()
    except Exception as exc:  # noqa: BLE001  whatever vmap refuses, the runs train separately
        lines = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return None
