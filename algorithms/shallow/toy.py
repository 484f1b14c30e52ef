r"""The notes' two-particle toy (dataset and model ``particle_toy`` in :mod:`.workbench_data`).

Two 1-D particles (x, y) = W[:, 0] with output weights a = (1, 1) (one sign group) and the energy
f(x, y) = (x - 4)^2 / 2, written as the workbench's regression loss on one example:
F = (f(x_0) - y_0)^2 with f = W[0, 0] / sqrt 2 and y_0 = 4 / sqrt 2. See experiments/two_particle_toy.py.
"""
from __future__ import annotations

import math

import torch
from torch import nn

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
