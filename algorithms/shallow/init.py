"""Initial neurons (W (m, d+1), a (m,)) for :class:`TwoLayerReLU` (the ``two_layer_relu`` model of
:mod:`.workbench_data`).

* :func:`normal`: W = scale * N(0, I); with ``signs="mixed"`` the number of positive neurons is
  pos ~ Binomial(m, 1/2) clipped to [1, m-1] and a = (+1,...,+1, -1,...,-1) **sorted** (positives first,
  as in the reference); ``signs="positive"`` gives a = +1.
* :func:`grid` (d = 1 inputs, i.e. a 2-D parameter plane (w, b)): an m_per_axis x m_per_axis grid on
  [-scale, scale]^2, so m = m_per_axis^2 neurons, with random (unsorted) +-1 signs or all +1.

Both return float64 tensors and depend only on their ``seed``.
"""
from __future__ import annotations

import torch

SIGNS = ("mixed", "positive")


def _check_signs(signs: str) -> None:
    if signs not in SIGNS:
        raise ValueError(f"signs must be one of {SIGNS}, got {signs!r}")


def normal(d: int, m: int, scale: float = 1e-2, signs: str = "mixed",
           seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """W = scale * N(0, I) of shape (m, d+1) and sorted +-1 output weights a (m,)."""
    _check_signs(signs)
    if d < 1 or m < 1:
        raise ValueError(f"need d >= 1 and m >= 1, got d={d}, m={m}")
    if scale < 0:
        raise ValueError(f"scale must be >= 0, got {scale}")
    g = torch.Generator().manual_seed(int(seed))
    W = scale * torch.randn(m, d + 1, generator=g, dtype=torch.float64)
    a = torch.ones(m, dtype=torch.float64)
    if signs == "mixed" and m >= 2:
        pos = int(torch.bernoulli(torch.full((m,), 0.5, dtype=torch.float64), generator=g).sum())
        pos = min(max(pos, 1), m - 1)
        a[pos:] = -1.0
    return W, a


def grid(m_per_axis: int, scale: float = 1.0, signs: str = "mixed",
         seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """m_per_axis^2 neurons (w, b) on a regular grid of [-scale, scale]^2 (1-D inputs plus bias)."""
    _check_signs(signs)
    if m_per_axis < 1:
        raise ValueError(f"m_per_axis must be >= 1, got {m_per_axis}")
    axis = torch.linspace(-scale, scale, m_per_axis, dtype=torch.float64)
    ww, bb = torch.meshgrid(axis, axis, indexing="ij")
    W = torch.stack([ww.reshape(-1), bb.reshape(-1)], dim=1)
    a = torch.ones(W.shape[0], dtype=torch.float64)
    if signs == "mixed":
        g = torch.Generator().manual_seed(int(seed))
        a = torch.where(torch.rand(W.shape[0], generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    return W, a
