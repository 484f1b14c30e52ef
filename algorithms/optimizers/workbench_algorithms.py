"""Registered workbench algorithms of the optimizers family: one ``torch.optim.Optimizer`` each.

Config names ``sgd``, ``adamw`` (fused kernel where torch has one), ``persistent_sgd`` and
``adema``; each declares its parameters in ``PARAMS`` (default and help; the value ranges are the
optimizer constructors' own checks, run by ``check_params`` before any run folder exists, whose
ValueErrors propagate unchanged). Each records its effective step size
(:meth:`effective_step_size`) as the summary table's ``eff. step`` column.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

from algorithms.optimizers.adema import AdEMA
from algorithms.optimizers.persistent_sgd import PersistentSGD
from workbench.algorithm import OptimizerAlgorithm, register_algorithm
from workbench.member_steps import direct_step, member_states, plain_group
from workbench.params import Param

# Devices on which torch.optim.AdamW(fused=True) has kernels for every floating dtype we use.
_FUSED_DEVICES = ("cuda", "cpu")


def constructor_defaults(optimizer_class) -> dict[str, Any]:
    """The keyword defaults of an optimizer's constructor (the one place they are written)."""
    return {name: p.default for name, p in inspect.signature(optimizer_class).parameters.items()
            if p.default is not p.empty and p.kind is p.POSITIONAL_OR_KEYWORD}


def documented(optimizer_class, helps: dict[str, str]) -> dict[str, Param]:
    """``PARAMS`` from the constructor's defaults and one line of help per parameter."""
    return {name: Param(default, helps[name]) for name, default in constructor_defaults(optimizer_class).items()}


class _StepSizeAlgorithm(OptimizerAlgorithm):
    """Records the effective step size: the steady-state step per unit of a constant gradient
    (momentum methods settle into p_t - p_{t-1} -> -eta_eff g); comparing runs by eta_eff instead
    of lr explains most of the reference's results."""

    def effective_step_size(self) -> float | None:
        """eta_eff from the resolved parameters; None where no single number exists."""
        return None

    def summary_facts(self) -> dict[str, Any]:
        return {"eff. step": self.effective_step_size()}


@register_algorithm("sgd")
class SGDAlgorithm(_StepSizeAlgorithm):
    """torch.optim.SGD (lr, momentum, dampening, weight_decay, nesterov); step size lr(1-damp.)/(1-mom.)."""

    PARAMS = dict(lr=Param(1e-3, "learning rate"), momentum=Param(0.0, "momentum factor, in [0, 1)"),
                  dampening=Param(0.0, "dampening of the momentum buffer"),
                  weight_decay=Param(0.0, "L2 penalty added to the gradient"),
                  nesterov=Param(False, "Nesterov momentum"))

    @classmethod
    def build_optimizer(cls, parameters, *, lr, momentum, dampening, weight_decay, nesterov):
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, dampening=dampening,
                               weight_decay=weight_decay, nesterov=nesterov)

    def effective_step_size(self) -> float:
        """lr (1 - dampening) / (1 - momentum) (Nesterov gives the same limit)."""
        p = self.params
        return float(p["lr"]) * (1.0 - float(p["dampening"])) / (1.0 - float(p["momentum"]))


@register_algorithm("adamw")
class AdamWAlgorithm(_StepSizeAlgorithm):
    """torch.optim.AdamW (lr, betas, eps, weight_decay, amsgrad), fused where possible; effective
    step size None (the step is normalised per coordinate: about lr sign(g), not a multiple of g).

    Uses torch's fused kernel wherever torch supports it for these parameters (CUDA, and CPU since
    torch 2.4; the fastest of torch's kernels, bench/optimizers_foreach.py), else the foreach kernel.
    """

    PARAMS = dict(lr=Param(1e-3, "learning rate"),
                  betas=Param((0.9, 0.999), "decay rates of the first and second moment averages", number=True),
                  eps=Param(1e-8, "added to the denominator"),
                  weight_decay=Param(0.01, "decoupled weight decay (p -= lr * weight_decay * p)"),
                  amsgrad=Param(False, "AMSGrad's maximum of the second moments"))

    @classmethod
    def build_optimizer(cls, parameters, *, lr, betas, eps, weight_decay, amsgrad):
        parameters = list(parameters)
        # torch checks fused support only lazily, at the first step, so decide here.
        fused = bool(parameters) and all(
            p.device.type in _FUSED_DEVICES and torch.is_floating_point(p) for p in parameters)
        return torch.optim.AdamW(parameters, lr=lr, betas=tuple(betas), eps=eps,
                                 weight_decay=weight_decay, amsgrad=amsgrad,
                                 fused=fused or None, foreach=None if fused else True)


@register_algorithm("persistent_sgd")
class PersistentSGDAlgorithm(_StepSizeAlgorithm):
    """PersistentSGD = heavy-ball momentum (lr, decay); effective step size lr / (1 - decay)."""

    PARAMS = documented(PersistentSGD, {"lr": "learning rate", "decay": "momentum decay of the persistent buffer, in [0, 1)"})

    @classmethod
    def build_optimizer(cls, parameters, *, lr, decay):
        return PersistentSGD(parameters, lr=lr, decay=decay)

    def effective_step_size(self) -> float:
        """lr / (1 - decay) (heavy ball: the buffer tends to g / (1 - decay))."""
        return float(self.params["lr"]) / (1.0 - float(self.params["decay"]))


@register_algorithm("adema")
class AdEMAAlgorithm(_StepSizeAlgorithm):
    """AdEMA = dampened momentum scaled by 1 - decay (lr, beta, decay); effective step size lr (1 - decay)."""

    PARAMS = documented(AdEMA, {"lr": "learning rate", "beta": "EMA rate of the gradient average, in [0, 1)",
                                "decay": "dampening: the step is scaled by 1 - decay, in [0, 1)"})

    @classmethod
    def build_optimizer(cls, parameters, *, lr, beta, decay):
        return AdEMA(parameters, lr=lr, beta=beta, decay=decay)

    def effective_step_size(self) -> float:
        """lr (1 - decay) (the EMA tends to g; beta only sets how fast)."""
        return float(self.params["lr"]) * (1.0 - float(self.params["decay"]))


def _buffered_step(optimizer, params, grads) -> bool:
    """A stack member's PersistentSGD or AdEMA step (workbench.member_steps): the optimizer's own
    ``_update`` on its buffers, what ``step()`` calls once the buffers exist."""
    group, states = plain_group(optimizer), member_states(optimizer, params)
    if group is None or states is None:
        return False
    optimizer._update(params, grads, [state[optimizer.buffer_name] for state in states], group)
    return True


for _optimizer in (PersistentSGD, AdEMA):
    direct_step(_optimizer)(_buffered_step)
