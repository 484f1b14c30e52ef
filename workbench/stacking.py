"""Which planned runs train as one stacked model (``stack = True``), and the batched updates of the
optimizers a stack can use.

Runs of one ``runs`` algorithm that differ only in their seed and in the values of per-member
optimizer hyperparameters (lr, momentum, dampening, betas, eps, weight decay, decay, beta, the
``schedule``) share one forward, backward and update: the M members' weights are stacked along a
leading member dimension (:mod:`workbench.stacked_training`). This module says which runs may
share a stack (:func:`stack_units`) and how each optimizer updates M members at once
(:class:`StackedUpdate`, one per ``torch.optim.Optimizer`` class).

A stacked update keeps, per parameter of shape ``S``, the parameter and every state tensor of the
optimizer as ``[M, *S]`` tensors and each hyperparameter as an ``[M, 1, ..., 1]`` column (the
member's value, broadcast over ``S``). Its arithmetic is the optimizer's, member by member, so a
member's numbers equal its separate run's to rounding (not bitwise: a batched matmul sums in
another order). Its state converts to and from the optimizer's own ``state_dict`` format
(:meth:`StackedUpdate.member_state`), so a checkpoint of a member is a separate run's checkpoint.

Stackable: an algorithm that trains with :class:`workbench.algorithm.OptimizerAlgorithm`'s own
constructor and step, mini-batch, whose optimizer class has a registered stacked update
(``torch.optim.SGD``, ``Adam``, ``AdamW`` here; a family registers its own with
:func:`stacked_update`), with one parameter group; and a model that ``torch.func.vmap`` can run
(no random layers such as dropout: :func:`model_problem`). Anything else trains as separate runs.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from workbench.algorithm import OptimizerAlgorithm
from workbench.registry import ALGORITHMS

# optimizer class -> its StackedUpdate subclass (exact class: a subclass may change the update)
STACKED_UPDATES: dict[type, type["StackedUpdate"]] = {}


def stacked_update(optimizer_class: type):
    """Class decorator: ``cls`` is the stacked update of ``optimizer_class``."""

    def decorate(cls):
        STACKED_UPDATES[optimizer_class] = cls
        return cls

    return decorate


def column(values: list[float], like: Tensor) -> Tensor:
    """``values`` (one per member) as an ``[M, 1, ..., 1]`` tensor that broadcasts over ``like[m]``."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).reshape(-1, *([1] * (like.dim() - 1)))


class StackedUpdate:
    """The update of one optimizer class for M members at once.

    ``groups`` are the members' ``param_groups[0]`` (their hyperparameters, the learning rate as a
    schedule has set it). Subclasses name the hyperparameters that may differ per member
    (``hyperparameters``), the per-parameter state keys of the optimizer (``state_keys``) and
    implement :meth:`init_state` and :meth:`update`.
    """

    hyperparameters: tuple[str, ...] = ()
    state_keys: tuple[str, ...] = ()

    def __init__(self, groups: list[dict]):
        self.groups = groups

    @classmethod
    def unsupported(cls, group: dict) -> str | None:
        """Why a member with this ``param_group`` cannot be stacked (None: it can)."""
        for key in ("maximize", "differentiable", "capturable"):
            if group.get(key):
                return f"{key}=True"
        return None

    @classmethod
    def shared(cls, group: dict) -> tuple:
        """What the members of one stack must share (the values that choose the update's branches)."""
        return ()

    def value(self, name: str, like: Tensor) -> Tensor:
        """The members' hyperparameter ``name`` as a column for a parameter like ``like``."""
        values = []
        for group in self.groups:
            v = group[name]
            values.append(float(v) if not isinstance(v, Tensor) else v.item())
        return column(values, like)

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        """The state of a stacked parameter ``p`` before its first update (torch's lazy start)."""
        return {}

    def update(self, p: Tensor, g: Tensor, state: dict[str, Tensor]) -> None:
        """One update of the stacked parameter ``p`` [M, *S] with its gradient ``g``, in place."""
        raise NotImplementedError

    def member_state(self, state: dict[str, Tensor], m: int) -> dict:
        """Member ``m``'s part of a stacked state, in the optimizer's own ``state`` format."""
        return {key: state[key][m].clone() for key in self.state_keys}

    def stacked_state(self, states: list[dict]) -> dict[str, Tensor] | None:
        """The members' states of one parameter (the optimizer's format) stacked; None before the
        first update (every member's state empty)."""
        if all(not s for s in states):
            return None
        missing = [k for s in states for k in self.state_keys if k not in s]
        if missing:
            raise ValueError(f"the members' optimizer states differ (no {missing[0]!r} in one of them): "
                             f"they cannot share a stack")
        return {key: torch.stack([torch.as_tensor(s[key]) for s in states]) for key in self.state_keys}


@stacked_update(torch.optim.SGD)
class StackedSGD(StackedUpdate):
    r"""``torch.optim.SGD``: :math:`d = g + \text{wd}\, p`; with momentum
    :math:`b \leftarrow \mu b + (1 - \tau) d` (:math:`b_1 = d`), :math:`d = b` (Nesterov:
    :math:`d + \mu b`); :math:`p \leftarrow p - \text{lr}\, d`."""

    hyperparameters = ("lr", "momentum", "dampening", "weight_decay")

    @classmethod
    def shared(cls, group):
        return (group["momentum"] != 0, bool(group["nesterov"]))

    @property
    def state_keys(self):
        return ("momentum_buffer",) if self.groups[0]["momentum"] != 0 else ()

    def update(self, p, g, state):
        d = g + self.value("weight_decay", p) * p
        if self.state_keys:
            momentum = self.value("momentum", p)
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = d.clone()
            else:
                buf = state["momentum_buffer"]
                buf.mul_(momentum).add_((1 - self.value("dampening", p)) * d)
            buf = state["momentum_buffer"]
            d = d + momentum * buf if self.groups[0]["nesterov"] else buf
        p.sub_(self.value("lr", p) * d)


@stacked_update(torch.optim.Adam)
class StackedAdam(StackedUpdate):
    r"""``torch.optim.Adam`` (and AdamW: decoupled weight decay :math:`p \leftarrow p(1 - \text{lr}\,
    \text{wd})`; Adam's is added to the gradient):
    :math:`m \leftarrow m + (1-\beta_1)(g - m)`, :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`,
    :math:`p \leftarrow p - \frac{\text{lr}}{1-\beta_1^t}\, m / (\sqrt{\hat v} / \sqrt{1-\beta_2^t} + \epsilon)`
    with :math:`\hat v = v` (AMSGrad: the running maximum of :math:`v`)."""

    hyperparameters = ("lr", "betas", "eps", "weight_decay")
    decoupled = False

    @classmethod
    def shared(cls, group):
        return (bool(group["amsgrad"]), bool(group.get("decoupled_weight_decay", cls.decoupled)))

    @property
    def state_keys(self):
        return ("step", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.groups[0]["amsgrad"] else ())

    def betas(self, like: Tensor) -> tuple[Tensor, Tensor]:
        return (column([float(g["betas"][0]) for g in self.groups], like),
                column([float(g["betas"][1]) for g in self.groups], like))

    def init_state(self, p):
        state = {"step": torch.zeros(p.shape[0], dtype=torch.float64, device=p.device),
                 "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        if self.groups[0]["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(p)
        return state

    def update(self, p, g, state):
        lr, eps, wd = self.value("lr", p), self.value("eps", p), self.value("weight_decay", p)
        beta1, beta2 = self.betas(p)
        state["step"] += 1
        if self.shared(self.groups[0])[1]:
            p.mul_(1 - lr * wd)
        else:
            g = g + wd * p
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.add_((1 - beta1) * (g - exp_avg))
        exp_avg_sq.mul_(beta2).add_((1 - beta2) * g * g)
        step = column(state["step"].tolist(), p)
        bias_correction1 = 1 - beta1 ** step
        bias_correction2_sqrt = (1 - beta2 ** step).sqrt()
        second = exp_avg_sq
        if self.groups[0]["amsgrad"]:
            torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            second = state["max_exp_avg_sq"]
        denom = second.sqrt() / bias_correction2_sqrt + eps
        p.sub_((lr / bias_correction1) * exp_avg / denom)

    def member_state(self, state, m):
        out = super().member_state(state, m)
        out["step"] = torch.tensor(float(state["step"][m]), dtype=torch.float32)  # torch's own scalar
        return out

    def stacked_state(self, states):
        stacked = super().stacked_state(states)
        if stacked is not None:
            stacked["step"] = stacked["step"].to(torch.float64).reshape(-1).cpu()
        return stacked


@stacked_update(torch.optim.AdamW)
class StackedAdamW(StackedAdam):
    __doc__ = StackedAdam.__doc__
    decoupled = True


# ---------------------------------------------------------------------------------------------
# which runs share a stack

def _optimizer_of(cls, params: dict):
    """The optimizer ``cls`` builds for ``params`` on a one-weight dummy model."""
    return cls.build_optimizer(torch.nn.Linear(1, 1).parameters(),
                               **{k: v for k, v in params.items() if k != "schedule"})


def why_not_stackable(spec: dict) -> str | None:
    """Why the planned run ``spec`` must train on its own (None: it may share a stack)."""
    cls = ALGORITHMS[spec["algorithm"]]
    if not (isinstance(cls, type) and issubclass(cls, OptimizerAlgorithm)):
        return "not trained by one torch optimizer"
    if cls.step is not OptimizerAlgorithm.step or cls.__init__ is not OptimizerAlgorithm.__init__:
        return "its algorithm has a step of its own"
    if cls.full_batch:
        return "full-batch algorithm"
    optimizer = _optimizer_of(cls, spec["params"])
    rule = STACKED_UPDATES.get(type(optimizer))
    if rule is None:
        return f"no stacked update for {type(optimizer).__name__}"
    if len(optimizer.param_groups) != 1:
        return "several parameter groups"
    return rule.unsupported(optimizer.param_groups[0])


def stack_key(spec: dict) -> tuple | None:
    """What the runs of one stack share (None: ``spec`` trains on its own)."""
    if why_not_stackable(spec) is not None:
        return None
    cls = ALGORITHMS[spec["algorithm"]]
    optimizer = _optimizer_of(cls, spec["params"])
    return (spec["algorithm"], type(optimizer), STACKED_UPDATES[type(optimizer)].shared(optimizer.param_groups[0]))


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


def model_problem(model: torch.nn.Module, problem) -> str | None:
    """Why two copies of ``model`` cannot train stacked on ``problem`` (None: they can): a forward
    and backward of two members on two training examples under ``torch.func.vmap``, which refuses
    random layers (dropout) and data-dependent Python control flow."""
    from workbench.stacked_training import StackedModel

    try:
        stacked = StackedModel([model, model])
        x = problem.inputs(problem.data.x_train[:2]).unsqueeze(0).expand(2, *([-1] * problem.data.x_train[:2].dim()))
        y = problem.data.y_train[:2].unsqueeze(0).expand(2, *([-1] * problem.data.y_train[:2].dim()))
        stacked.losses(problem, x.contiguous(), y.contiguous()).sum().backward()
    except Exception as exc:  # noqa: BLE001  whatever vmap refuses, the runs train separately
        lines = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return None
