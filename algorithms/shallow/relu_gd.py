r"""Gradient descent on a two-layer ReLU network with any torch optimizer, without autograd.

One step on a batch (x, y) (the full training set for full-batch GD) minimises

.. math::

    F_\beta(W, a) = \frac1{|B|} \sum_{i \in B} (f(x_i) - y_i)^2 + \frac\beta2 \sum_j (\|w_j\|^2 + a_j^2)

with the closed-form gradient of :func:`~algorithms.shallow.model.value_and_gradients` (relu'(0) = 0,
as autograd; no autograd graph, which is most of a step's cost at small n and m) written into the
parameters' ``.grad``, and one ``optimizer.step()``. ``beta`` is the weight decay *of the
objective* (the same beta as in :mod:`algorithms.shallow.convex`), not the optimizer's decoupled
decay. In "first layer only" mode (a model built with ``train_output=False``) ``a`` has
requires_grad False and is not handed to the optimizer, so it never moves (the reference inverted
this and never trained a). The model's dtype is used throughout; there is no randomness.

Example::

    model = TwoLayerReLU(W0, a0)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(1000):
        loss, objective = gd_step(model, optimizer, x, y, beta=1e-3)
"""
from __future__ import annotations

import torch

from algorithms.shallow.model import TwoLayerReLU, add_bias, regulariser, value_and_gradients

__all__ = ["gd_step"]


@torch.no_grad()
def gd_step(model: TwoLayerReLU, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
            beta: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on F_beta at the batch x (n, d), y (n,); returns (data term, F_beta), both
    0-d tensors evaluated before the update."""
    W, a = model.W, model.a
    loss, W.grad, a_grad = value_and_gradients(W, a, add_bias(x), y.reshape(-1), beta, need_a=a.requires_grad)
    if a.requires_grad:
        a.grad = a_grad
    total = loss + regulariser(W, a, beta) if beta else loss
    optimizer.step()
    return loss, total
