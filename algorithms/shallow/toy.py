r"""The notes' two-particle toy as a runner problem: dataset ``particle_toy`` and model ``particle_toy``.

Two 1-D particles (x, y) = W[:, 0] with output weights a = (1, 1) (one sign group) and the energy
f(x, y) = (x - 4)^2 / 2, written as the workbench's regression loss on one example:
F = (f(x_0) - y_0)^2 with f = W[0, 0] / sqrt 2 and y_0 = 4 / sqrt 2. See experiments/two_particle_toy.py.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from workbench.problem import DataSplit
from workbench.registry import DATASETS, MODELS, ConfigError

F64 = torch.float64


class ParticleToy(nn.Module):
    """Particles ``W`` (2, 1) (start (0, 1)) and fixed output weights ``a`` = (1, 1); forward(x) (n,)
    returns W[0, 0] / sqrt 2 for every input, so the mean squared error is (x - 4)^2 / 2."""

    def __init__(self, start=(0.0, 1.0)):
        super().__init__()
        self.W = nn.Parameter(torch.tensor(start, dtype=F64).reshape(2, 1))
        self.a = nn.Parameter(torch.ones(2, dtype=F64), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.W[0, 0] / math.sqrt(2.0)).expand(x.shape[0])


@MODELS.register("particle_toy")
def particle_toy_model(input_shape, n_outputs, start=(0.0, 1.0)) -> ParticleToy:
    """The two-particle toy of the notes (only with dataset ``particle_toy``)."""
    if n_outputs != 1 or len(start) != 2:
        raise ConfigError("particle_toy: one regression output and start=(x0, y0) expected")
    return ParticleToy(start)


@DATASETS.register("particle_toy")
def particle_toy_data(data_dir=None, subset=None, target: float = 4.0) -> DataSplit:
    """One example with label target / sqrt 2, so that F = (x - target)^2 / 2 for ``particle_toy``."""
    x = torch.zeros(1, 1, dtype=F64)
    y = torch.full((1,), target / math.sqrt(2.0), dtype=F64)
    return DataSplit(x, y, x[:0], y[:0], "regression", 1)
