"""Direct steps of a stack member's optimizer (:mod:`workbench.stacked_training`).

A member's ``optimizer.step()`` costs about 0.2 ms of Python on a CPU besides its kernel (the
profiler hook, ``_init_group``, the grouping by device); in a stack of M members that is paid M
times per step and was a fifth of a stacked MNIST step. A direct step calls the optimizer's own
functional kernel with the member's group and state, which is what ``step()`` does: the same
kernel on the same tensors, bit for bit (tests compare them). It applies once the optimizer's
state exists (its first step goes through ``step()``, which creates the state in its own format)
and for the plain configurations below; anything else returns False and the member's
``optimizer.step()`` runs.

``DIRECT_STEPS`` maps an optimizer class (exactly) to ``fn(optimizer, params, grads) -> bool``;
a family registers its own optimizers' with :func:`direct_step`.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.sgd import sgd as functional_sgd

DIRECT_STEPS: dict[type, Callable[[torch.optim.Optimizer, list, list], bool]] = {}


def direct_step(optimizer_class: type):
    """Function decorator: ``fn(optimizer, params, grads) -> bool`` steps ``optimizer_class``."""

    def decorate(fn):
        DIRECT_STEPS[optimizer_class] = fn
        return fn

    return decorate


def plain_group(optimizer) -> dict | None:
    """The one parameter group, if the optimizer has one and no step hooks; else None."""
    if len(optimizer.param_groups) != 1 or optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks:
        return None
    return optimizer.param_groups[0]


def member_states(optimizer, params) -> list[dict] | None:
    """The optimizer's state of each of ``params``; None before its first step (some state empty)."""
    states = [optimizer.state.get(p) for p in params]
    return None if any(not s for s in states) else states


def _adam(optimizer, params, grads, decoupled: bool) -> bool:
    """torch's ``_fused_adam`` for one device and dtype: the steps counted, then the fused kernel."""
    group = plain_group(optimizer)
    if (group is None or not group["fused"] or group["capturable"] or group["differentiable"]
            or torch.is_tensor(group["lr"]) or getattr(optimizer, "grad_scale", None) is not None):
        return False
    states = member_states(optimizer, params)
    if states is None:
        return False
    steps = [s["step"] for s in states]
    torch._foreach_add_(steps, 1)
    kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
    kernel(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
           [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else [], steps,
           amsgrad=group["amsgrad"], lr=group["lr"], beta1=group["betas"][0], beta2=group["betas"][1],
           weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"],
           grad_scale=None, found_inf=None)
    return True


@direct_step(torch.optim.Adam)
def _adam_step(optimizer, params, grads) -> bool:
    return _adam(optimizer, params, grads, bool(optimizer.param_groups[0].get("decoupled_weight_decay", False)))


@direct_step(torch.optim.AdamW)
def _adamw_step(optimizer, params, grads) -> bool:
    return _adam(optimizer, params, grads, True)


@direct_step(torch.optim.SGD)
def _sgd_step(optimizer, params, grads) -> bool:
    """torch's functional ``sgd`` with the momentum buffers (which exist after the first step)."""
    group = plain_group(optimizer)
    if group is None or group["fused"] or getattr(optimizer, "grad_scale", None) is not None:
        return False
    buffers: list = [None] * len(params)
    if group["momentum"] != 0:
        states = member_states(optimizer, params)
        if states is None or any(s.get("momentum_buffer") is None for s in states):
            return False
        buffers = [s["momentum_buffer"] for s in states]
    functional_sgd(params, grads, buffers, weight_decay=group["weight_decay"], momentum=group["momentum"],
                   lr=group["lr"], dampening=group["dampening"], nesterov=group["nesterov"],
                   maximize=group["maximize"], has_sparse_grad=False, foreach=group["foreach"], fused=group["fused"])
    return True
