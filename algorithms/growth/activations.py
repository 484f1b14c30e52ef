"""Activations for growing networks and their behaviour at 0.

New neurons start at pre-activation 0 (GradMax: alpha = 0 exactly; TINY: gamma alpha c -> 0), so
what matters for growth is sigma at 0, read off torch itself (autograd, float64) for any module:

* ``value``: sigma(0); it must be 0, or new neurons change the function at order gamma.
* ``derivative``: sigma'(0) as torch's autograd defines it at exactly 0. This is what the network
  computes with, so it is what GradMax's gradient of the new incoming weights sees:
  dL/d alpha = sigma'(0) Omega^T E[g c^T]. ``nn.ReLU`` has 0 there (zero-initialised neurons never
  train); :class:`ReLUDerivativeOneAtZero` (``"relu1"``) has 1. SELU has scale * alpha = 1.7581.
* ``left``, ``right``: the one-sided derivatives sigma'(0-), sigma'(0+). TINY's first-order loss
  decrease is exact only when they agree (sigma differentiable at 0): the new neurons' inputs
  gamma alpha c take both signs, and at a kink each sample sees one side. The prediction then uses
  sigma'(0+) and is first-order inexact (flagged, see :class:`~algorithms.growth.proposal.Proposal`).
"""
from __future__ import annotations

from dataclasses import dataclass

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


_SIDE = 1e-300  # a normal float64 next to 0: autograd there gives the one-sided derivative


@dataclass(frozen=True)
class AtZero:
    """sigma(0), torch's sigma'(0), and the one-sided sigma'(0-), sigma'(0+) (float64)."""

    value: float
    derivative: float
    left: float
    right: float

    @property
    def smooth(self) -> bool:
        """sigma differentiable at 0 (the one-sided derivatives agree)."""
        return abs(self.left - self.right) <= 1e-12 * max(1.0, abs(self.right))


def at_zero(activation: nn.Module) -> AtZero:
    """Evaluate ``activation`` and its autograd derivative at -1e-300, 0 and +1e-300 in float64."""
    x = torch.tensor([-_SIDE, 0.0, _SIDE], dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        y = activation(x)
        (grad,) = torch.autograd.grad(y.sum(), x)
    left, derivative, right = (float(v) for v in grad)
    return AtZero(value=float(y[1].detach()), derivative=derivative, left=left, right=right)


def make_activation(activation: nn.Module | None) -> nn.Module:
    """The activation module itself, or SELU for None (the reference's default). Names are the
    workbench's (``model_args=dict(activation="relu1")`` of ``growing_mlp``); the library takes
    modules, as the reference does."""
    if activation is None:
        return nn.SELU()
    if isinstance(activation, nn.Module):
        return activation
    raise ValueError(f"activation must be an nn.Module (e.g. nn.Tanh() or ReLUDerivativeOneAtZero()) or None, "
                     f"got {activation!r}")


def derivative_at_zero(activation: nn.Module) -> float:
    """sigma'(0) exactly as torch's autograd computes it at 0."""
    return at_zero(activation).derivative
