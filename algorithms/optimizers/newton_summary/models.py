r"""Layers of an MLP under a layer-wise rescaled parametrisation (the ``scaled_mlp`` model of
:mod:`.workbench_algorithm`), for invariance experiments.

Layer i computes :math:`h \mapsto \sigma(a_i W'_i h + c_i b'_i)` with stored parameters
:math:`W'_i = W_i / a_i`, :math:`b'_i = b_i / c_i`, where :math:`(W_i, b_i)` is exactly the
initialisation of the workbench ``mlp`` for the same seed. So the network computes the same function
as ``mlp`` at initialisation, but gradient-based optimizers see a different geometry: gradients
scale by :math:`a_i`, the optimisation variables by :math:`1/a_i`. NewtonSummary with a partition in
which each scaled tensor is its own subset (``canonical``) follows the same trajectory of
:math:`(W_i, b_i)` whatever the scales; SGD and AdamW do not.
"""
from __future__ import annotations

import math

from torch import nn
from torch.nn import functional as F

__all__ = ["ScaledLinear"]


class ScaledLinear(nn.Module):
    """y = (a W') x + c b' with fixed scalars a (``weight_scale``) and c (``bias_scale``)."""

    def __init__(self, linear: nn.Linear, weight_scale: float, bias_scale: float):
        super().__init__()
        for name, value in (("weight_scale", weight_scale), ("bias_scale", bias_scale)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value != 0):
                raise ValueError(f"scaled_mlp {name} must be a finite non-zero number, got {value!r}")
        self.weight_scale, self.bias_scale = float(weight_scale), float(bias_scale)
        self.weight = nn.Parameter(linear.weight.detach() / self.weight_scale)
        self.bias = nn.Parameter(linear.bias.detach() / self.bias_scale) if linear.bias is not None else None

    def forward(self, x):
        bias = None if self.bias is None else self.bias_scale * self.bias
        return F.linear(x, self.weight_scale * self.weight, bias)

    def extra_repr(self) -> str:
        return f"out={self.weight.shape[0]}, in={self.weight.shape[1]}, a={self.weight_scale}, c={self.bias_scale}"
