r"""``scaled_mlp``: an MLP under a layer-wise rescaled parametrisation, for invariance experiments.

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

from workbench.registry import MODELS, ConfigError

__all__ = ["ScaledLinear", "scaled_mlp"]


class ScaledLinear(nn.Module):
    """y = (a W') x + c b' with fixed scalars a (``weight_scale``) and c (``bias_scale``)."""

    def __init__(self, linear: nn.Linear, weight_scale: float, bias_scale: float):
        super().__init__()
        for name, value in (("weight_scale", weight_scale), ("bias_scale", bias_scale)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value != 0):
                raise ConfigError(f"scaled_mlp {name} must be a finite non-zero number, got {value!r}")
        self.weight_scale, self.bias_scale = float(weight_scale), float(bias_scale)
        self.weight = nn.Parameter(linear.weight.detach() / self.weight_scale)
        self.bias = nn.Parameter(linear.bias.detach() / self.bias_scale) if linear.bias is not None else None

    def forward(self, x):
        bias = None if self.bias is None else self.bias_scale * self.bias
        return F.linear(x, self.weight_scale * self.weight, bias)

    def extra_repr(self) -> str:
        return f"out={self.weight.shape[0]}, in={self.weight.shape[1]}, a={self.weight_scale}, c={self.bias_scale}"


@MODELS.register("scaled_mlp")
def scaled_mlp(input_shape, n_outputs, hidden=(256,), activation="tanh", weight_scales=None,
               bias_scales=None) -> nn.Module:
    """The workbench ``mlp`` (same initial function for a seed) with per-layer scale factors:
    ``weight_scales`` / ``bias_scales`` lists of len(hidden) + 1 non-zero numbers (default all 1)."""
    from workbench.models import mlp

    base = mlp(input_shape, n_outputs, hidden=hidden, activation=activation)
    linears = [m for m in base if isinstance(m, nn.Linear)]
    weight_scales = [1.0] * len(linears) if weight_scales is None else list(weight_scales)
    bias_scales = [1.0] * len(linears) if bias_scales is None else list(bias_scales)
    if len(weight_scales) != len(linears) or len(bias_scales) != len(linears):
        raise ConfigError(f"scaled_mlp needs {len(linears)} weight_scales and bias_scales "
                          f"(one per Linear layer), got {len(weight_scales)} and {len(bias_scales)}")
    it = iter(zip(weight_scales, bias_scales))
    layers = [ScaledLinear(m, *next(it)) if isinstance(m, nn.Linear) else m for m in base]
    return nn.Sequential(*layers)
