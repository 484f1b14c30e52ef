"""Activations for growing networks and their derivative at 0.

New neurons start with (near) zero incoming weights, so what matters for growth is
sigma(0) (must be 0 for the second-order expansion of the loss to hold) and sigma'(0):

* TINY's first-order improvement of the new neurons is sigma'(0) * sum_i lambda_i^2;
* GradMax's gradient of the new incoming weights is sigma'(0) * Omega^T E[g c^T]. With
  ``nn.ReLU`` autograd uses ReLU'(0) = 0, so zero-initialised neurons never train; use
  :class:`ReLUDerivativeOneAtZero` (``"relu1"``) instead.
"""
from __future__ import annotations

import torch
from torch import nn


class _ReLUOneAtZero(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x >= 0).to(grad.dtype)


class ReLUDerivativeOneAtZero(nn.Module):
    """max(x, 0) whose backward uses the subgradient 1 at x = 0 (TensorFlow's convention)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ReLUOneAtZero.apply(x)


ACTIVATIONS = {
    "relu": nn.ReLU, "relu1": ReLUDerivativeOneAtZero, "selu": nn.SELU, "tanh": nn.Tanh,
    "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU, "sigmoid": nn.Sigmoid, "identity": nn.Identity,
}

# sigma'(0+) of the usual activations (the right derivative where sigma has a kink at 0).
_DERIVATIVE_AT_ZERO = {
    nn.ReLU: 1.0, ReLUDerivativeOneAtZero: 1.0, nn.SELU: 1.0507009873554805, nn.Tanh: 1.0,
    nn.GELU: 0.5, nn.SiLU: 0.5, nn.ELU: 1.0, nn.Sigmoid: 0.25, nn.Identity: 1.0,
    nn.LeakyReLU: 1.0,
}


def make_activation(activation: str | nn.Module | None) -> nn.Module:
    """An activation module from a name in :data:`ACTIVATIONS`, a module, or None (SELU)."""
    if activation is None:
        return nn.SELU()
    if isinstance(activation, nn.Module):
        return activation
    if isinstance(activation, str) and activation in ACTIVATIONS:
        return ACTIVATIONS[activation]()
    raise ValueError(f"unknown activation {activation!r}; valid names: {', '.join(sorted(ACTIVATIONS))}")


def activation_name(activation: nn.Module) -> str:
    for name, cls in ACTIVATIONS.items():
        if type(activation) is cls:
            return name
    return type(activation).__name__


def derivative_at_zero(activation: nn.Module, eps: float = 1e-6) -> float:
    """sigma'(0+) from the table above, else a one-sided finite difference at 0."""
    for cls, value in _DERIVATIVE_AT_ZERO.items():
        if type(activation) is cls:
            return value
    with torch.no_grad():
        x = torch.tensor([0.0, eps], dtype=torch.float64)
        y = activation(x)
    return float((y[1] - y[0]) / eps)


def value_at_zero(activation: nn.Module) -> float:
    with torch.no_grad():
        return float(activation(torch.zeros(1, dtype=torch.float64))[0])
