r"""Regression data for the shallow ReLU family (registered as datasets in :mod:`.workbench_data`).

Every generator is ``fn(n, d, seed, ...) -> (x (n, d), y (n,))`` in float64 and depends only on its
arguments. Inputs never carry the bias column (:func:`algorithms.shallow.model.add_bias` adds it).

* ``linear``: y = slope * sum_k x_k + offset (+ noise * N(0, 1)); the reference's ``linear2d`` for
  d = 1 (slope = offset = 0.2).
* ``sinus``: y = sin(frequency * t + phase) + slope * t + offset with t = x_1 (first coordinate);
  the reference's y = sin(10x - pi/2) + 0.2x - 0.5 by default.
* ``random_linear``: x ~ U(-1/2, 1/2)^d (or N(0, I)), y = x . b + noise * U(-1, 1) with b ~ U(-1, 1)^d.
* ``noise``: pure-noise labels (memorisation): x ~ U(-1, 1)^d, y ~ U(-3, 1), or x ~ N(0, I),
  y ~ U(-1, 1) with ``sampling="normal"``.
* ``teacher``: a planted network y = sum_{j<k} a_j relu(w_j . (x, 1)) (+ noise * N(0, 1)) with k random
  unit-norm neurons whose kink hyperplanes cut through the data and a_j = +-U(1/2, 3/2).
* ``mnist_pair``: two MNIST digits, targets +1 / -1, pixels in [0, 1], optionally downsampled and/or
  projected to d dimensions by a fixed Gaussian matrix.

For d = 1, ``linear`` and ``sinus`` use n evenly spaced points of [low, high] (the reference's grid);
otherwise inputs are sampled uniformly from [low, high]^d.
"""
from __future__ import annotations

import math

import numpy as np
import torch


F64 = torch.float64


def _check(n: int, d: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")


def _inputs(n: int, d: int, g: torch.Generator, low: float, high: float, grid: bool) -> torch.Tensor:
    if grid and d == 1:
        return torch.linspace(low, high, n, dtype=F64)[:, None]
    return low + (high - low) * torch.rand(n, d, generator=g, dtype=F64)


def linear(n: int = 20, d: int = 1, seed: int = 0, slope: float = 0.2, offset: float = 0.2,
           noise: float = 0.0, low: float = -0.5, high: float = 0.5, grid: bool = True):
    """y = slope * sum_k x_k + offset + noise * N(0, 1)."""
    _check(n, d)
    g = torch.Generator().manual_seed(int(seed))
    x = _inputs(n, d, g, low, high, grid)
    y = slope * x.sum(dim=1) + offset + noise * torch.randn(n, generator=g, dtype=F64)
    return x, y


def sinus(n: int = 20, d: int = 1, seed: int = 0, frequency: float = 10.0, phase: float = -math.pi / 2,
          slope: float = 0.2, offset: float = -0.5, noise: float = 0.0, low: float = -0.5,
          high: float = 0.5, grid: bool = True):
    """y = sin(frequency * x_1 + phase) + slope * x_1 + offset + noise * N(0, 1)."""
    _check(n, d)
    g = torch.Generator().manual_seed(int(seed))
    x = _inputs(n, d, g, low, high, grid)
    t = x[:, 0]
    y = torch.sin(frequency * t + phase) + slope * t + offset + noise * torch.randn(n, generator=g, dtype=F64)
    return x, y


def random_linear(n: int = 20, d: int = 1, seed: int = 0, noise: float = 0.0, sampling: str = "uniform",
                  return_coefficients: bool = False):
    """x ~ U(-1/2, 1/2)^d or N(0, I); y = x . b + noise * U(-1, 1), b ~ U(-1, 1)^d."""
    _check(n, d)
    g = torch.Generator().manual_seed(int(seed))
    if sampling == "uniform":
        x = torch.rand(n, d, generator=g, dtype=F64) - 0.5
    elif sampling == "normal":
        x = torch.randn(n, d, generator=g, dtype=F64)
    else:
        raise ValueError(f"sampling must be 'uniform' or 'normal', got {sampling!r}")
    b = 2 * torch.rand(d, generator=g, dtype=F64) - 1
    y = x @ b + noise * (2 * torch.rand(n, generator=g, dtype=F64) - 1)
    return (x, y, b) if return_coefficients else (x, y)


def noise(n: int = 20, d: int = 1, seed: int = 0, sampling: str = "uniform"):
    """Labels independent of inputs: x ~ U(-1, 1)^d, y ~ U(-3, 1) (or N(0, I) and U(-1, 1))."""
    _check(n, d)
    g = torch.Generator().manual_seed(int(seed))
    if sampling == "uniform":
        x = 2 * torch.rand(n, d, generator=g, dtype=F64) - 1
        y = 4 * torch.rand(n, generator=g, dtype=F64) - 3
    elif sampling == "normal":
        x = torch.randn(n, d, generator=g, dtype=F64)
        y = 2 * torch.rand(n, generator=g, dtype=F64) - 1
    else:
        raise ValueError(f"sampling must be 'uniform' or 'normal', got {sampling!r}")
    return x, y


def teacher_network(d: int, k: int, seed: int = 0, max_offset: float = 0.5):
    """The planted neurons: W (k, d+1) with unit-norm direction u_j ~ Unif(S^{d-1}) and bias
    b_j ~ U(-max_offset, max_offset) (so the kink hyperplane u.x + b = 0 crosses [-1, 1]^d), scaled to
    |w_j| = 1; a (k,) = random sign * U(1/2, 3/2)."""
    if k < 1:
        raise ValueError(f"the teacher needs k >= 1 neurons, got {k}")
    g = torch.Generator().manual_seed(int(seed) + 7919)  # a stream apart from the inputs'
    u = torch.randn(k, d, generator=g, dtype=F64)
    u = u / u.norm(dim=1, keepdim=True)
    b = max_offset * (2 * torch.rand(k, 1, generator=g, dtype=F64) - 1)
    W = torch.cat([u, b], dim=1)
    W = W / W.norm(dim=1, keepdim=True)
    sign = torch.where(torch.rand(k, generator=g, dtype=F64) < 0.5, -1.0, 1.0)
    a = sign * (0.5 + torch.rand(k, generator=g, dtype=F64))
    return W, a


def teacher(n: int = 100, d: int = 2, seed: int = 0, k: int = 3, noise: float = 0.0,
            teacher_seed: int | None = None, max_offset: float = 0.5, return_teacher: bool = False):
    """x ~ U(-1, 1)^d, y = sum_j a_j relu(w_j . (x, 1)) + noise * N(0, 1) (see :func:`teacher_network`).

    ``teacher_seed`` (default ``seed``) fixes the planted network independently of the sample.
    """
    _check(n, d)
    from algorithms.shallow.model import add_bias, predict

    W, a = teacher_network(d, k, seed if teacher_seed is None else teacher_seed, max_offset)
    g = torch.Generator().manual_seed(int(seed))
    x = 2 * torch.rand(n, d, generator=g, dtype=F64) - 1
    y = predict(W, a, add_bias(x)) + noise * torch.randn(n, generator=g, dtype=F64)
    return (x, y, W, a) if return_teacher else (x, y)


def mnist_pair(images: np.ndarray, labels: np.ndarray, n: int | None = None, d: int | None = None,
               seed: int = 0, digits=(0, 1), downsample: int = 1):
    """Two MNIST digits as regression: y = +1 for ``digits[0]``, -1 for ``digits[1]``.

    ``images`` uint8 (N, 28, 28) and ``labels`` (N,) are one split of MNIST. Pixels are scaled to
    [0, 1], average-pooled by ``downsample`` (1, 2, 4, 7, 14 or 28), then, when ``d`` is given,
    projected to d dimensions by x @ P / sqrt(p) with a Gaussian P fixed by ``seed`` (the same P
    for every split). The first ``n`` examples of the pair are kept (all if None).
    """
    if len(digits) != 2 or digits[0] == digits[1]:
        raise ValueError(f"digits must be two different digits, got {digits!r}")
    if 28 % int(downsample):
        raise ValueError(f"downsample must divide 28, got {downsample!r}")
    keep = np.flatnonzero((labels == digits[0]) | (labels == digits[1]))
    if n is not None:
        keep = keep[:n]
    x = torch.from_numpy(images[keep].astype(np.float64) / 255.0)  # (n, 28, 28)
    if downsample > 1:
        x = torch.nn.functional.avg_pool2d(x[:, None], int(downsample))[:, 0]
    x = x.reshape(len(keep), -1)
    if d is not None:
        p = x.shape[1]
        P = torch.randn(p, int(d), generator=torch.Generator().manual_seed(int(seed)), dtype=F64)
        x = x @ P / math.sqrt(p)
    y = torch.where(torch.from_numpy(labels[keep]) == digits[0], 1.0, -1.0).to(F64)
    return x, y
