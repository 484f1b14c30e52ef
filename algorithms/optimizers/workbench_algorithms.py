"""Registered workbench algorithms of the optimizers family: one ``torch.optim.Optimizer`` each.

Config names and parameters (every parameter has a default; an unknown one is a ConfigError):

- ``sgd``: torch.optim.SGD(lr, momentum, dampening, weight_decay, nesterov)
- ``adamw``: torch.optim.AdamW(lr, betas, eps, weight_decay, amsgrad), fused kernel where torch has one
- ``persistent_sgd``: :class:`PersistentSGD` (lr, decay)
- ``adema``: :class:`AdEMA` (lr, beta, decay)

``info()`` records ``{"effective_step_size": ...}`` (see :func:`effective_step_size`).
Hyperparameter errors raised by the optimizer constructors (ValueError) propagate unchanged.
"""
from __future__ import annotations

from typing import Any

import torch

from algorithms.optimizers.adema import AdEMA
from algorithms.optimizers.persistent_sgd import PersistentSGD
from algorithms.optimizers.step_size import effective_step_size
from workbench.algorithm import OptimizerAlgorithm, register_algorithm

# Devices on which torch.optim.AdamW(fused=True) has kernels for every floating dtype we use.
_FUSED_DEVICES = ("cuda", "cpu")


class _StepSizeAlgorithm(OptimizerAlgorithm):
    """Fills in defaults before the optimizer is built and records the effective step size."""

    def __init__(self, problem, model, seed: int | None = None, **params):
        super().__init__(problem, model, seed=seed, **self.resolve_params(params))

    def info(self) -> dict[str, Any]:
        return {"effective_step_size": effective_step_size(self.registered_name, self.params)}


@register_algorithm("sgd")
class SGDAlgorithm(_StepSizeAlgorithm):
    """torch.optim.SGD (lr, momentum, dampening, weight_decay, nesterov); step size lr(1-damp.)/(1-mom.)."""

    defaults = dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)

    def build_optimizer(self, parameters, *, lr, momentum, dampening, weight_decay, nesterov):
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, dampening=dampening,
                               weight_decay=weight_decay, nesterov=nesterov)


@register_algorithm("adamw")
class AdamWAlgorithm(_StepSizeAlgorithm):
    """torch.optim.AdamW (lr, betas, eps, weight_decay, amsgrad), fused where possible; step size None.

    Uses torch's fused kernel wherever torch supports it for these parameters (CUDA, and CPU since
    torch 2.4; the fastest of torch's kernels, bench/optimizers_foreach.py), else the foreach kernel.
    """

    defaults = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False)

    def build_optimizer(self, parameters, *, lr, betas, eps, weight_decay, amsgrad):
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

    defaults = dict(lr=0.01, decay=0.99)

    def build_optimizer(self, parameters, *, lr, decay):
        return PersistentSGD(parameters, lr=lr, decay=decay)


@register_algorithm("adema")
class AdEMAAlgorithm(_StepSizeAlgorithm):
    """AdEMA = dampened momentum scaled by 1 - decay (lr, beta, decay); effective step size lr (1 - decay)."""

    defaults = dict(lr=1e-3, beta=0.999, decay=0.999)

    def build_optimizer(self, parameters, *, lr, beta, decay):
        return AdEMA(parameters, lr=lr, beta=beta, decay=decay)
